"""What a flow run works with: the IngestConfig block and the stream it owns.

`StreamContext` is a plain class on purpose: Prefect walks dataclasses and pydantic
models passed to tasks (looking for futures), and this one holds live clients. The
flow owns the stream's record: tasks return a new record, and the flow keeps it with
`with_record`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from types import MappingProxyType
from typing import Any

from stream_ingest.bandwidth import Kind
from stream_ingest.blocks.bucket import StreamBucket
from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.blocks.config import IngestConfig
from stream_ingest.flows.configs import read_config
from stream_ingest.flows.digest import FileSha256
from stream_ingest.flows.source import Owned
from stream_ingest.lag import Stored
from stream_ingest.records import PartRecord, StreamRecord
from stream_ingest.settings import config_block_name


class Pace:
    """Whether the stream is live for the bandwidth limit (stream_ingest/bandwidth.py):
    its file grew while this run watched it. A file that never grows (dropped in
    finished, or a rerun of an ended recording) is a backlog."""

    def __init__(self) -> None:
        self.live = False

    @property
    def kind(self) -> Kind:
        return Kind.LIVE if self.live else Kind.BACKLOG


class StreamContext:
    """One stream being uploaded by one run, holding its lease token. `prior` are the
    parts of the stream's completed object when this run uploads a revision of it:
    a part whose bytes have not changed is copied from there instead of sent.
    `sha256` is the file's digest as its parts are read, `pace` its class for the
    bandwidth limit, and `stored` the parts S3 holds, for its lag (stream_ingest/lag.py)
    (all shared by every copy)."""

    def __init__(
        self,
        config: IngestConfig,
        record: StreamRecord,
        token: str,
        prior: Mapping[int, PartRecord] | None = None,
        sha256: FileSha256 | None = None,
        pace: Pace | None = None,
        stored: Stored | None = None,
    ) -> None:
        self.config = config
        self.record = record
        self.token = token
        self.prior: Mapping[int, PartRecord] = MappingProxyType(dict(prior or {}))
        self.sha256 = sha256 or FileSha256()
        self.pace = pace or Pace()
        self.stored = stored or Stored()

    @property
    def bucket(self) -> StreamBucket:
        return self.config.bucket

    @property
    def store(self) -> CheckpointStore:
        return self.config.checkpoints

    @property
    def path(self) -> str:
        return self.record.original_path

    @property
    def owned(self) -> Owned:
        """What the run's reads of its file must find (stream_ingest/flows/source.py)."""
        rec = self.record
        folder = rec.watch_dir or self.config.watch_dir
        return Owned(folder, rec.identity, self.config.follow_symlinks)

    def with_record(self, record: StreamRecord) -> StreamContext:
        return StreamContext(
            self.config, record, self.token, self.prior, self.sha256, self.pace, self.stored
        )

    def with_prior(self, prior: Mapping[int, PartRecord]) -> StreamContext:
        return StreamContext(
            self.config, self.record, self.token, prior, self.sha256, self.pace, self.stored
        )

    def __repr__(self) -> str:  # shown in Prefect's task inputs: no secrets, no clients
        return f"StreamContext({self.record.stream_id})"


# Config blocks read ahead of their run's flow, by run id: (block name, the read).
_read_early: dict[str, tuple[str, Future[IngestConfig]]] = {}
_early_lock = threading.Lock()


def early_config_read(run_id: str, parameters: Mapping[str, Any]) -> Callable[[], None]:
    """The read of the config block the run's flow will load (its `config` parameter,
    else the default name), to run beside the engine's start of the run: it is then
    no longer one more call after Running, in line with the engine's, before the
    stream's first byte. The read is registered here, in the caller's thread, so
    `forget_early_read` at the run's end always finds it; the caller must run the
    returned read (the flow waits for it)."""
    name = _block_name(parameters.get("config"))
    read: Future[IngestConfig] = Future()
    with _early_lock:
        _read_early[run_id] = (name, read)

    def load() -> None:
        try:
            read.set_result(read_config(name))
        except BaseException as exc:  # the flow raises it where it would have read
            read.set_exception(exc)

    return load


def config_of_run(run_id: str, name: str | None) -> IngestConfig:
    """The config block `name` (default: the configured one) for this run: read
    early if it was, else now."""
    name = _block_name(name)
    with _early_lock:
        early = _read_early.pop(run_id, None)
    if early is not None and early[0] == name:
        return early[1].result()
    return read_config(name)


def forget_early_read(run_id: str) -> None:
    """The run ended (a run of another flow, or one that failed before loading)."""
    with _early_lock:
        _read_early.pop(run_id, None)


def _block_name(name: str | None) -> str:
    return name or config_block_name()
