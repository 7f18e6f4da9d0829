"""The product's Prefect blocks, for `prefect block register -m blocks` run beside
prefect.yaml (`stream-ingest blocks register` registers them and saves their documents).
They live in `stream_ingest.blocks`; this folder only re-exports them."""

from stream_ingest.blocks.bucket import StreamBucket
from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.blocks.config import IngestConfig

__all__ = ["CheckpointStore", "IngestConfig", "StreamBucket"]
