"""What every component must agree on: the watch folder, key naming, part size,
timeouts, which files are recordings. Pure pydantic, no I/O.

The same fields are the `IngestConfig` block's (stream_ingest/blocks/config.py), the one source every
component reads at run time, and the seed `Settings` (settings.py) that
`stream-ingest blocks register` saves into it from `STREAM_INGEST_*` variables.
"""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator
from pydantic_settings import NoDecode

from stream_ingest.keys import validate_template
from stream_ingest.parts import MIB, PartPlan, PartSizePolicy

DEFAULT_EXTENSIONS = (".mp4", ".mkv", ".mov", ".ts", ".m2ts", ".flv", ".webm", ".avi")
DEFAULT_IGNORE = (".*", "*.tmp", "*.part", "*.crdownload", "*~")
DEFAULT_RETENTION_DAYS = 30.0
DAY_SECONDS = 86_400.0


class IngestOptions(BaseModel):
    watch_dir: str = Field(
        "recordings", min_length=1, description="Folder the recorders write into (recursive)."
    )
    s3_prefix: str = Field("recordings", description="Key prefix; '' for the bucket root.")
    s3_key_template: str = Field(
        "{prefix}/{relpath}",
        description="S3 key of a recording; fields prefix relpath name stem ext stream_id date.",
    )
    part_size_mib: int = Field(
        8, ge=5, le=5 * 1024, description="Base part size in MiB (S3's minimum is 5)."
    )
    part_size_policy: PartSizePolicy = Field(
        "growing",
        description="growing: the part size doubles every 900 parts, so a recording can "
        "reach S3's 5 TiB limit; fixed: every part but the last is part_size_mib (Cloudflare "
        "R2 requires it), so a recording can be at most 10,000 parts of it and fails past "
        "that. A stream keeps the policy and size it started with (resume, revisions).",
    )
    max_parts_in_flight: int = Field(
        8, ge=1, le=64, description="Parallel part uploads per stream (memory: size x this)."
    )
    bandwidth_limit_mbps: float = Field(
        0.0,
        ge=0,
        description="Upload limit of one host in Mbit/s (10^6 bits), shared by all its streams "
        "and runs (a token bucket in Redis per host name); 0: none. Live recordings share it "
        "equally and go before finished files. A change applies within 10 s, no restart.",
    )
    batch_small_files: int = Field(
        50,
        ge=0,
        le=500,
        description="Finished files of at most one part that the sensor sees together "
        "(renamed in, or written and closed in one burst) go up in one flow run, a row each "
        "in its table artifact and no media facts, up to this many per run; 0: a flow run "
        "per file. A live recording always gets its own run.",
    )
    idle_timeout_seconds: float = Field(
        30.0, gt=0, description="No growth for this long ends a recording."
    )
    settle_seconds: float = Field(
        0.25,
        ge=0,
        description="An ended recording must stay unchanged this long before it completes.",
    )
    poll_interval_seconds: float = Field(
        0.2, gt=0, le=10, description="How often a run looks at its file."
    )
    lease_ttl_seconds: float = Field(
        30.0, ge=2, description="One uploader per stream; renewed every third of this."
    )
    stuck_timeout_seconds: float = Field(
        300.0,
        ge=5,
        description="A run whose stream makes no progress for this long is stuck: its lease "
        "is left to expire for a rerun, and a warm worker crashes the run.",
    )
    video_extensions: Annotated[tuple[str, ...], NoDecode] = Field(
        DEFAULT_EXTENSIONS, description="Extensions of recordings (case-insensitive)."
    )
    ignore_patterns: Annotated[tuple[str, ...], NoDecode] = Field(
        DEFAULT_IGNORE, description="File name patterns the sensor ignores."
    )
    use_polling: bool = Field(False, description="Poll the folder instead of inotify.")
    detect_writers: bool = Field(
        True,
        description="End a recording when no process has it open for writing (/proc). "
        "Turn off where recorders run outside the worker's view (another host or container).",
    )
    trust_close_hints: bool = Field(
        False,
        description="Where writers are unknown (detect_writers off, network mounts), end a "
        "recording when the sensor saw it closed and nothing was written since, after the "
        "settle, instead of the idle timeout. Any program that opens a file for writing "
        "(touch, backup tools) sends such a close: turn on only where recorders alone do.",
    )
    follow_symlinks: bool = Field(
        False, description="Upload files that symlinks in the folder point to outside it."
    )
    on_existing: Literal["keep-both", "overwrite", "skip"] = Field(
        "keep-both",
        description="When another stream's object has the key: keep-both (this one gets "
        "'name (2).ext'), overwrite it, or skip this recording.",
    )
    upload_ttl_hours: float = Field(
        24.0,
        gt=0,
        description="Janitor: time without progress after which an upload of ours that no "
        "run holds is judged: a failed stream's is salvaged if its file cannot be read (else "
        "kept), one that is no longer its stream's is aborted.",
    )
    retention_days: float = Field(
        DEFAULT_RETENTION_DAYS,
        gt=0,
        description="How long Redis keeps a stream that ended (completed, aborted, skipped, salvaged): "
        "its record, parts and revisions expire then (the object's tags keep its stream id, "
        "take, size and SHA-256). At least upload_ttl_hours.",
    )
    lag_alert_seconds: float = Field(
        60.0,
        gt=0,
        description="A stream lags when the oldest byte of its file not yet in S3 is older "
        "than this (what a dead host would lose): the event stream-ingest.stream.lagging, "
        "and caught-up when it is back under. A slow stream's lag is at least the time it "
        "takes to write one part.",
    )
    lag_alert_grace_seconds: float = Field(
        30.0,
        ge=0,
        description="How long a stream's lag must stay over lag_alert_seconds before it "
        "is announced as lagging (a short burst is not).",
    )
    ffprobe_path: str = Field(
        "ffprobe",
        description="ffprobe that reads each completed recording's media facts (duration, "
        "codecs, resolution, frame rate, bitrate) after its object is complete: a name on "
        "the worker's PATH or a path; '' turns it off. Where it is missing, recordings "
        "complete without facts.",
    )
    ffprobe_timeout_seconds: float = Field(
        30.0,
        gt=0,
        le=600,
        description="How long ffprobe may read a recording; past it the facts are left "
        "unread (the stream is completed either way).",
    )
    metrics_enabled: bool = Field(
        False,
        description="Serve Prometheus metrics over HTTP from the warm worker and the sensor "
        "(docs/operate.md lists them). Read when each starts.",
    )
    metrics_worker_port: int = Field(
        9464, ge=1, le=65535, description="Port of the warm worker's metrics endpoint."
    )
    metrics_sensor_port: int = Field(
        9465, ge=1, le=65535, description="Port of the sensor's metrics endpoint."
    )
    log_format: Literal["human", "json"] = Field(
        "human",
        description="human: Prefect's console lines; json: one JSON object per line with "
        "the stream id, take, flow run id and host. Read when the worker, the sensor and "
        "each flow run start.",
    )
    deployment: str = Field(
        "stream-ingest/stream-ingest",
        pattern=r"^[^/]+/[^/]+$",
        description="Deployment the sensor and reruns trigger (flow/deployment).",
    )
    alert_block: str = Field(
        "",
        description="Alerts: the Prefect notification block that `stream-ingest automations "
        "apply` sends them to, as TYPE-SLUG/NAME (custom-webhook/studio-alerts, "
        "slack-webhook/ops, sendgrid-email/oncall) or the block's NAME alone where no other "
        "notification block has it; '' for no alerts.",
    )
    stuck_after_seconds: float = Field(
        300.0,
        ge=10,
        description="Alerts: a running stream that sends no progress event and does not end "
        "for this long is reported stuck. A running stream sends one every third of this "
        "(at most a minute apart), stalled or not; at least 10 (Prefect's shortest proactive "
        "window). Applied by `automations apply`.",
    )

    @field_validator("watch_dir", mode="before")
    @classmethod
    def _folder(cls, value: object) -> object:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("retention_days")
    @classmethod
    def _retention(cls, value: float, info: ValidationInfo) -> float:
        # The janitor aborts an orphaned upload once it is upload_ttl_hours old, and it
        # needs the upload's entry in the registry for that: a stream that expired
        # before then would take the entry along and leave the upload to cost forever.
        ttl_hours = info.data.get("upload_ttl_hours")
        if ttl_hours is not None and value * 24 < ttl_hours:
            raise ValueError(
                f"must be at least upload_ttl_hours ({ttl_hours:g} h = {ttl_hours / 24:g} days)"
            )
        return value

    @field_validator("s3_key_template")
    @classmethod
    def _template(cls, value: str) -> str:
        validate_template(value)
        return value

    @field_validator("s3_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return value.strip("/")

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

    @property
    def part_size_bytes(self) -> int:
        return self.part_size_mib * MIB

    @property
    def part_plan(self) -> PartPlan:
        """The part plan a new stream starts with."""
        return PartPlan.of(self.part_size_bytes, self.part_size_policy)

    @property
    def retention_seconds(self) -> float:
        return self.retention_days * DAY_SECONDS

    def options(self) -> IngestOptions:
        """Just the shared fields (of a subclass: the block or the seed settings)."""
        return IngestOptions.model_validate(self.model_dump(include=set(OPTION_FIELDS)))


OPTION_FIELDS = tuple(IngestOptions.model_fields)
