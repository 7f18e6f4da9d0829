"""Seed settings from `STREAM_INGEST_*` environment variables.

They are read in two places only: `stream-ingest blocks register`, which saves them
into the blocks (after that the `IngestConfig` block is the truth, and a change made
in the UI reaches every component), and `stream-ingest dev`, which starts the local
stack from them. Every other process reads one variable here, `CONFIG_BLOCK`: the name
of the block to load. Invalid values are rejected with the variable's name.
"""

from __future__ import annotations

import os

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream_ingest.options import IngestOptions

ENV_PREFIX = "STREAM_INGEST_"
DEFAULT_CONFIG_BLOCK = "stream-ingest"
BLOCK_NAME = r"^[a-z0-9-]+$"  # Prefect's rule for block document names


class SettingsError(ValueError):
    """One line per invalid setting, each naming its environment variable."""


class Settings(IngestOptions, BaseSettings):
    """The options plus how to reach Redis and S3; seeds the blocks."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    config_block: str = Field(DEFAULT_CONFIG_BLOCK, pattern=BLOCK_NAME)
    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"), description="Checkpoint Redis URL."
    )
    redis_namespace: str = Field("stream-ingest", min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    s3_bucket: str = Field("recordings", min_length=3, max_length=63)
    s3_endpoint_url: str | None = Field(None, description="MinIO or moto; unset for AWS.")
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_region: str = "us-east-1"
    s3_payload_signing: bool = Field(
        True,
        description="Sign each request's body (its SHA-256) on an http:// endpoint, as "
        "botocore does. false saves about 0.7 CPU-s per GiB there; parts keep their CRC32. "
        "No effect on https://.",
    )

    @field_validator("s3_endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        # An empty variable (docker-compose's `${VAR:-}`) means unset, i.e. AWS; boto3
        # would otherwise fail at the first upload with "Invalid endpoint".
        if not value or not value.strip():
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https:// (or be empty for AWS)")
        return value.strip()


def load_settings(**overrides: object) -> Settings:
    """Load settings or raise `SettingsError` naming each bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError("invalid settings: " + describe(exc, ENV_PREFIX)) from None


def describe(exc: ValidationError, prefix: str = "") -> str:
    """`PREFIX_FIELD: message; ...` for every error, without the rejected values
    (they may be secrets)."""
    return "; ".join(
        # A nested block's field by its path (bucket.storage_class).
        f"{prefix}{str(err['loc'][0]).upper() if prefix else '.'.join(map(str, err['loc']))}: "
        f"{err['msg']}"
        if err["loc"]
        else f"{prefix}: {err['msg']}"
        for err in exc.errors()
    )


def config_block_name() -> str:
    """The one variable every component reads: which IngestConfig block to load."""
    name = os.environ.get(ENV_PREFIX + "CONFIG_BLOCK", "").strip() or DEFAULT_CONFIG_BLOCK
    return name
