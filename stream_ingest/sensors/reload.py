"""The sensor's config block, read again only when it changed.

The sensor looks at its IngestConfig block every `reload_seconds` so that a change
saved in the UI applies without a restart. Building the block each time cost the
idle sensor most of its CPU (a new Prefect client and TLS context per load, the
block's JSON schema for its secrets, a new Redis client): about 70 ms every 10 s, as
much as the sensor spends on a recording's events. So each look is one read of the
stored document through a client kept open, and the block is built only when the
document (its nested blocks included, as the API returns them) is not the one last
built from. The digest is of the document as read, secrets included so that a
rotated key applies; only the digest is kept.
"""

from __future__ import annotations

import hashlib
import json
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

    def __call__(self) -> IngestConfig:
        try:
            now: str | None = self._digest(self.name)
        except Exception:  # Prefect away, the block deleted: load raises what to fix
            now = None
        if now is not None and self._built is not None and self._built[0] == now:
            return self._built[1]
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

    def __call__(self, name: str) -> str:
        if self._client is None:
            from prefect.client.orchestration import get_client

            client = get_client(sync_client=True)
            client.__enter__()
            self._client = client
        doc = self._client.read_block_document_by_name(name, BLOCK_TYPE, include_secrets=True)
        body = json.dumps(
            {"schema": str(doc.block_schema_id), "data": doc.data}, sort_keys=True, default=str
        )
        return hashlib.sha256(body.encode()).hexdigest()

    def close(self) -> None:
        if self._client is not None:
            self._client.__exit__(None, None, None)
            self._client = None
