"""IngestConfig: the one block every component reads (flow, sensor, CLI, janitor).

It names the bucket block and the checkpoint-store block and holds the options they
must agree on (stream_ingest/options.py). Each flow run loads it when it starts and the
sensor reloads it every few seconds, so a change saved in the UI reaches every
component without a restart (a new watch folder needs a sensor restart; the sensor
says so).
"""

from __future__ import annotations

from prefect.blocks.core import Block
from prefect.exceptions import ObjectNotFound
from pydantic import Field, ValidationError, model_validator

from stream_ingest.blocks.bucket import StreamBucket
from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.errors import ConfigurationError
from stream_ingest.options import IngestOptions
from stream_ingest.settings import config_block_name, describe


class IngestConfig(Block, IngestOptions):
    """Where and how stream-ingest uploads recordings.

    Example:
        ```python
        from stream_ingest.blocks.config import IngestConfig
        config = IngestConfig.load("stream-ingest")
        print(config.bucket.bucket_name, config.s3_prefix, config.part_size_mib)
        ```
    """

    _block_type_name = "Ingest Config"
    _block_type_slug = "ingest-config"
    _description = "stream-ingest's configuration: bucket, checkpoints, keys, parts, timeouts."

    bucket: StreamBucket = Field(description="The bucket recordings are uploaded into.")
    checkpoints: CheckpointStore = Field(description="Where streams are checkpointed (Redis).")

    @model_validator(mode="after")
    def _hand_retention_to_the_store(self) -> IngestConfig:
        # The store expires a stream's keys when it ends, in whichever component ends
        # it: it learns the retention from the one block they all load.
        self.checkpoints.set_retention(self.retention_seconds)
        return self


def load_config(name: str | None = None) -> IngestConfig:
    """Load the IngestConfig block `name` (default: STREAM_INGEST_CONFIG_BLOCK, else
    "stream-ingest"), or raise ConfigurationError saying how to fix it."""
    name = name or config_block_name()
    require_api_url()
    try:
        return IngestConfig.load(name)
    except RuntimeError as exc:  # Prefect wraps the ValidationError of a bad document
        if not isinstance(exc.__cause__, ValidationError):
            raise
        raise ConfigurationError(
            f"ingest-config/{name} is invalid: {describe(exc.__cause__)}; "
            "fix it in the UI's Blocks page"
        ) from None
    except ValueError as exc:
        if not isinstance(exc.__cause__, ObjectNotFound):
            raise
        raise ConfigurationError(
            f"block ingest-config/{name} not found; run `stream-ingest blocks register`"
        ) from None


def require_api_url() -> None:
    """Without an API URL, Prefect's client starts a throwaway server of its own: the
    block would not be found, and runs would land where no worker looks."""
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        raise ConfigurationError(
            "PREFECT_API_URL is not set: point it at the Prefect API the workers use "
            "(e.g. http://127.0.0.1:4200/api), or start ./dev.sh in this folder"
        )
