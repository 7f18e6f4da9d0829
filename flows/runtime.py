"""What a flow run works with: the IngestConfig block and the stream it owns.

`StreamContext` is a plain class on purpose: Prefect walks dataclasses and pydantic
models passed to tasks (looking for futures), and this one holds live clients. The
flow owns the stream's record: tasks return a new record, and the flow keeps it with
`with_record`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from blocks.bucket import StreamBucket
from blocks.checkpoints import CheckpointStore
from blocks.config import IngestConfig
from flows.digest import FileSha256
from stream_ingest.records import PartRecord, StreamRecord


class StreamContext:
    """One stream being uploaded by one run, holding its lease token. `prior` are the
    parts of the stream's completed object when this run uploads a revision of it:
    a part whose bytes have not changed is copied from there instead of sent.
    `sha256` is the file's digest as its parts are read (shared by every copy)."""

    def __init__(
        self,
        config: IngestConfig,
        record: StreamRecord,
        token: str,
        prior: Mapping[int, PartRecord] | None = None,
        sha256: FileSha256 | None = None,
    ) -> None:
        self.config = config
        self.record = record
        self.token = token
        self.prior: Mapping[int, PartRecord] = MappingProxyType(dict(prior or {}))
        self.sha256 = sha256 or FileSha256()

    @property
    def bucket(self) -> StreamBucket:
        return self.config.bucket

    @property
    def store(self) -> CheckpointStore:
        return self.config.checkpoints

    @property
    def path(self) -> str:
        return self.record.original_path

    def with_record(self, record: StreamRecord) -> StreamContext:
        return StreamContext(self.config, record, self.token, self.prior, self.sha256)

    def with_prior(self, prior: Mapping[int, PartRecord]) -> StreamContext:
        return StreamContext(self.config, self.record, self.token, prior, self.sha256)

    def __repr__(self) -> str:  # shown in Prefect's task inputs: no secrets, no clients
        return f"StreamContext({self.record.stream_id})"
