"""Settings for every component, read from `STREAM_INGEST_*` environment variables.

Invalid values are rejected when the settings load, with the setting's name in the
message, so a bad deployment fails at start instead of mid-stream.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from stream_ingest.keys import validate_template

ENV_PREFIX = "STREAM_INGEST_"
DEFAULT_EXTENSIONS = (".mp4", ".mkv", ".mov", ".ts", ".m2ts", ".flv", ".webm", ".avi")


class SettingsError(ValueError):
    """One line per invalid setting, each naming its environment variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    watch_dir: Path = Field(Path("recordings"), description="Folder the recorders write into.")
    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"), description="Checkpoint Redis URL."
    )
    redis_namespace: str = Field("stream-ingest", min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    s3_bucket: str = Field("recordings", min_length=3, max_length=63)
    s3_prefix: str = Field("recordings", description="Key prefix; '' for the bucket root.")
    s3_key_template: str = Field("{prefix}/{relpath}", description="S3 key of a recording.")
    s3_endpoint_url: str | None = Field(None, description="MinIO or moto; unset for AWS.")
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_region: str = "us-east-1"
    idle_timeout_seconds: float = Field(30.0, gt=0)
    settle_seconds: float = Field(1.0, ge=0, description="No-growth wait after a close hint.")
    poll_interval_seconds: float = Field(0.2, gt=0, le=10)
    part_size_mib: int = Field(8, ge=5, le=5 * 1024, description="Base part size (S3 min 5).")
    max_parts_in_flight: int = Field(4, ge=1, le=64)
    lease_ttl_seconds: float = Field(30.0, ge=2)
    bucket_block: str = Field("stream-ingest", description="Name of the StreamBucket block.")
    redis_block: str = Field("stream-ingest", description="Name of the RedisDatabase block.")
    deployment: str = Field("stream-ingest/stream-ingest")
    video_extensions: Annotated[tuple[str, ...], NoDecode] = DEFAULT_EXTENSIONS
    ignore_patterns: Annotated[tuple[str, ...], NoDecode] = (
        ".*",
        "*.tmp",
        "*.part",
        "*.crdownload",
        "*~",
    )
    use_polling: bool = Field(False, description="Poll the folder (network mounts).")
    upload_ttl_hours: float = Field(24.0, gt=0, description="Janitor: orphan upload age.")

    @field_validator("s3_key_template")
    @classmethod
    def _template(cls, value: str) -> str:
        validate_template(value)
        return value

    @field_validator("s3_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return value.strip("/")

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

    @field_validator("video_extensions", mode="before")
    @classmethod
    def _extensions(cls, value: object) -> object:
        if isinstance(value, str):  # "mp4,.mkv" from the environment
            value = [v for v in value.replace(" ", "").split(",") if v]
        return tuple(v.lower() if v.startswith(".") else f".{v.lower()}" for v in value)

    @field_validator("ignore_patterns", mode="before")
    @classmethod
    def _patterns(cls, value: object) -> object:
        if isinstance(value, str):  # ".*, *.tmp" from the environment: strip each one
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value

    @cached_property
    def part_size_bytes(self) -> int:
        return self.part_size_mib * 1024 * 1024


def load_settings(**overrides: object) -> Settings:
    """Load settings or raise `SettingsError` naming each bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = ENV_PREFIX + str(err["loc"][0]).upper() if err["loc"] else ENV_PREFIX
            lines.append(f"{name}: {err['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(lines)) from None
