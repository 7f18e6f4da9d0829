"""The checkpoint's records and what S3 reports, as typed values, and their Redis
hash encoding (pure)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime

from stream_ingest.parts import PartPlan
from stream_ingest.states import Status


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class UploadedPart:
    """A part as S3 holds it (UploadPart's answer, or one entry of ListParts)."""

    number: int
    etag: str
    size: int
    crc32: str = ""  # S3's base64 CRC32 of the part ("" for uploads made without one)


@dataclass(frozen=True)
class PendingUpload:
    """One in-progress multipart upload (ListMultipartUploads)."""

    key: str
    upload_id: str
    initiated_epoch: float


@dataclass(frozen=True)
class PartRecord:
    """One uploaded part: S3's etag plus what S3 does not know (offset, sha256)."""

    number: int
    etag: str
    offset: int
    size: int
    checksum: str
    crc32: str = ""  # S3's checksum of the part, sent back at completion
    copied: bool = False  # copied server-side from the previous revision, not sent

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> PartRecord:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Revision:
    """One completed state of a stream's object: the first take is revision 1; a
    file that grew or was patched after completion gives the next one."""

    number: int
    size: int
    sha256: str
    completed_at_utc: str
    parts_uploaded: int  # sent from the file
    parts_copied: int = 0  # copied server-side from the previous revision

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Revision:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class StreamRecord:
    """The `stream:{id}:meta` hash. Missing numbers read as their defaults. Frozen: a
    change is a new value (`dataclasses.replace`) that the flow writes and keeps."""

    stream_id: str
    original_path: str = ""
    watch_dir: str = ""  # the folder the path was found in: keys are relative to it
    identity: str = ""
    status: Status = Status.DETECTED
    s3_bucket: str = ""
    s3_key: str = ""
    s3_upload_id: str = ""
    part_base_bytes: int = 0
    part_size_policy: str = ""  # "" (records made before policies): growing
    started_at_utc: str = field(default_factory=utc_now)
    # A run opened the multipart upload (it reads the file next); stamped again for a
    # new upload (a revision, a re-key, an upload lost), kept when a run resumes one.
    opened_at_utc: str = ""
    last_activity_at_utc: str = ""
    completed_at_utc: str = ""  # the record says completed (after the SHA-256 and tag)
    object_at_utc: str = ""  # the completed object checked in S3 (before its SHA-256)
    bytes_uploaded: int = 0
    total_bytes: int = -1
    parts_count: int = 0
    reuploaded_parts: int = 0
    failures: int = 0  # failed runs since the last success (bounds automated reruns)
    flow_run_id: str = ""
    error: str = ""
    sha256: str = ""
    revision: int = 1  # the revision being uploaded, or the last one completed
    object_etag: str = ""  # the completed object's ETag (a revision's copy source)
    completed_mtime_ns: int = 0  # the file's mtime at completion: a later change is news
    upload_mark: str = ""  # the mark in the metadata of the upload's object (verify.py)
    # Set when a salvage begins (a crash part-way goes on from there), kept once done:
    # the object that holds the first `salvaged_bytes` of the file (stream_ingest/salvage.py).
    salvage_key: str = ""
    salvaged_bytes: int = 0
    # What ffprobe made of the completed revision (stream_ingest/media.py MediaReport,
    # as JSON); "" until it is read, and again from a revision's completion until its own.
    media: str = ""
    # The recovery point (stream_ingest/lag.py, lag_of), written by the running flow at
    # most every 10 s: the host uploading, the file's size as last observed and when,
    # the bytes of it not in S3 then, when the oldest of those was first seen ("" when
    # none is missing), and the upload's rate over the last interval (bytes/s).
    host: str = ""
    observed_bytes: int = 0
    observed_at_utc: str = ""
    behind_bytes: int = 0
    behind_since_utc: str = ""
    upload_rate_bps: int = 0

    @property
    def part_plan(self) -> PartPlan:
        """How the stream's file is cut into parts, the same for every run of it."""
        return PartPlan.of(self.part_base_bytes, self.part_size_policy)

    def to_hash(self) -> dict[str, str]:
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_hash(cls, raw: dict[bytes | str, bytes | str]) -> StreamRecord:
        data = {
            (k.decode() if isinstance(k, bytes) else k): (
                # A path may hold bytes that are not UTF-8: they come back as they went in.
                v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else v
            )
            for k, v in raw.items()
        }
        kwargs: dict[str, object] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value: object = data[f.name]
            if f.type == "int":
                value = int(value)  # type: ignore[arg-type]
            elif f.name == "status":
                value = Status(value)
            kwargs[f.name] = value
        return cls(**kwargs)  # type: ignore[arg-type]

    def public(self) -> dict[str, object]:
        """The stable JSON shape of `streams show --json`."""
        out: dict[str, object] = asdict(self)
        out["status"] = str(self.status)
        out["media"] = _media(self.media)
        return out


def _media(text: str) -> object:
    """The kept media report as JSON values (None: not read); text that is not JSON
    (nothing writes it) as it is, rather than no `streams show` at all."""
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text
