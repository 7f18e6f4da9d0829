"""IngestConfig blocks read again only when their stored document changed.

A change saved in the UI applies without a restart: the sensor looks at its block
every `reload_seconds`, a worker's runs each load theirs as they start, and the
bandwidth limit follows the block while streams upload. Building a block each time
cost most of an idle sensor's CPU and some 60 ms of a worker's per run start (a new
Prefect client and TLS context per load, the block's JSON schema for its secrets, a
new Redis client and its connections). So each look is one read of the stored
document through a client kept open (a few ms), and the block is built only when the
document (its nested blocks included, as the API returns them) is not the one last
built from. The digest is of the document as read, secrets included so that a
rotated key applies; only the digest is kept. A block built once serves every run
of the process that names it: its Redis and S3 clients are thread-safe.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from typing import Any

from stream_ingest.blocks.config import IngestConfig

BLOCK_TYPE = "ingest-config"

ReadDigest = Callable[[str], str]


class Reloader:
    """`reloader()`: the block `name`, built by `load` only when its document changed
    (or could not be read: `load` then says why, as at the start)."""

    def __init__(
        self, name: str, load: Callable[[str], IngestConfig], digest: ReadDigest | None = None
    ) -> None:
        self.name, self.load = name, load
        self._digest = digest or DocumentDigest()
        self._built: tuple[str, IngestConfig] | None = None
        # Runs starting together build the block once: the others wait for it.
        self._building = threading.Lock()

    def __call__(self) -> IngestConfig:
        try:
            now: str | None = self._digest(self.name)
        except Exception:  # Prefect away, the block deleted: load raises what to fix
            now = None
        built = self._built
        if now is not None and built is not None and built[0] == now:
            return built[1]
        with self._building:
            built = self._built
            if now is not None and built is not None and built[0] == now:
                return built[1]  # built by another caller meanwhile
            config = self.load(self.name)
            self._built = (now, config) if now is not None else None
            return config

    def close(self) -> None:
        close = getattr(self._digest, "close", None)
        if close is not None:
            close()


class DocumentDigest:
    """SHA-256 of a stored IngestConfig document, read through one Prefect client for
    the sensor's life (opened at the first read)."""

    def __init__(self) -> None:
        self._client: Any = None
        self._url: str | None = None
        self._opening = threading.Lock()

    def __call__(self, name: str) -> str:
        from prefect.settings import get_current_settings

        url = get_current_settings().api.url
        with self._opening:
            if self._client is None or url != self._url:  # opened for another API
                self.close()
                from prefect.client.orchestration import get_client

                client = get_client(sync_client=True)
                client.__enter__()
                self._client, self._url = client, url
            client = self._client
        doc = client.read_block_document_by_name(name, BLOCK_TYPE, include_secrets=True)
        body = json.dumps(
            {"schema": str(doc.block_schema_id), "data": doc.data}, sort_keys=True, default=str
        )
        return hashlib.sha256(body.encode()).hexdigest()

    def close(self) -> None:
        if self._client is not None:
            self._client.__exit__(None, None, None)
            self._client = None


class Configs:
    """`configs(name)`: the IngestConfig block `name` for a process whose runs and
    threads load blocks by name, each built only when its document changed; one
    client reads the documents of them all."""

    def __init__(
        self, load: Callable[[str], IngestConfig], digest: ReadDigest | None = None
    ) -> None:
        self.load = load
        self._digest = digest or DocumentDigest()
        self._by_name: dict[str, Reloader] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str) -> IngestConfig:
        with self._lock:
            reloader = self._by_name.get(name)
            if reloader is None:
                reloader = self._by_name[name] = Reloader(name, self.load, self._digest)
        return reloader()
