"""What a flow run works with: settings, the two blocks, and the stream it owns.

`StreamContext` is a plain class on purpose: Prefect walks dataclasses and pydantic
models passed to tasks (looking for futures), and this one holds live clients.
"""

from __future__ import annotations

from prefect_redis import RedisDatabase

from blocks.bucket import StreamBucket
from blocks.checkpoints import CheckpointStore
from blocks.records import StreamRecord
from stream_ingest.errors import ConfigurationError
from stream_ingest.settings import Settings


def load_blocks(settings: Settings) -> tuple[StreamBucket, CheckpointStore]:
    """Load the bucket and Redis blocks named in the settings, with a message that
    says how to fix it when one is missing."""
    try:
        bucket = StreamBucket.load(settings.bucket_block)
    except ValueError as exc:
        raise ConfigurationError(
            f"StreamBucket block {settings.bucket_block!r} not found ({exc}); "
            "run `stream-ingest blocks register`"
        ) from None
    try:
        redis_block = RedisDatabase.load(settings.redis_block)
    except ValueError as exc:
        raise ConfigurationError(
            f"RedisDatabase block {settings.redis_block!r} not found ({exc}); "
            "run `stream-ingest blocks register`"
        ) from None
    return bucket, CheckpointStore.from_block(redis_block, settings.redis_namespace)


class StreamContext:
    """One stream being uploaded by one run, holding its lease token."""

    def __init__(
        self,
        settings: Settings,
        bucket: StreamBucket,
        store: CheckpointStore,
        record: StreamRecord,
        token: str,
    ) -> None:
        self.settings = settings
        self.bucket = bucket
        self.store = store
        self.record = record
        self.token = token

    @property
    def path(self) -> str:
        return self.record.original_path

    @property
    def base(self) -> int:
        return self.record.part_base_bytes

    def __repr__(self) -> str:  # shown in Prefect's task inputs: no secrets, no clients
        return f"StreamContext({self.record.stream_id})"
