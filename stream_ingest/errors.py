"""Domain errors. Each carries its data and says in one line what happened.

`terminal` errors end the stream (what was uploaded is salvaged, stream_ingest/flows/salvage.py);
the others leave it resumable (status failed, upload kept). `transient` errors are worth an automatic
retry; the rest are not, so a bad bucket or bad credentials never cause a retry storm.
"""

from __future__ import annotations


class StreamError(Exception):
    terminal = False
    transient = False


class SourceError(StreamError):
    """The source file cannot be read as the stream's own: gone, changed, not a
    file, or reached through a link out of the watch folder."""


class SourceMissing(SourceError):
    terminal = True

    def __init__(self, path: str) -> None:
        super().__init__(f"source file not found: {path}")
        self.path = path


class SourceNotAFile(SourceError):
    def __init__(self, path: str) -> None:
        super().__init__(f"source is not a regular file: {path}")
        self.path = path


class SourceUnreadable(SourceError):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"source file is not readable: {path} ({reason})")
        self.path = path


class SourceShrank(SourceError):
    terminal = True

    def __init__(self, path: str, before: int, after: int) -> None:
        super().__init__(f"source file shrank from {before} to {after} bytes: {path}")
        self.path, self.before, self.after = path, before, after


class SourceReplaced(SourceError):
    terminal = True

    def __init__(self, path: str) -> None:
        super().__init__(f"source file was replaced by another file: {path}")
        self.path = path


class UploadGone(StreamError):
    def __init__(self, upload_id: str) -> None:
        super().__init__(f"multipart upload {upload_id[:16]}... no longer exists")
        self.upload_id = upload_id


class BucketMissing(StreamError):
    def __init__(self, bucket: str) -> None:
        super().__init__(f"S3 bucket does not exist: {bucket}")
        self.bucket = bucket


class CredentialsRejected(StreamError):
    def __init__(self, code: str) -> None:
        super().__init__(f"S3 rejected the credentials ({code}); check the bucket block")
        self.code = code


class S3Unavailable(StreamError):
    transient = True

    def __init__(self, detail: str) -> None:
        super().__init__(f"S3 unavailable: {detail}")
        self.detail = detail


class CheckpointUnavailable(StreamError):
    transient = True

    def __init__(self, detail: str) -> None:
        super().__init__(f"Redis checkpoint store unavailable: {detail}")
        self.detail = detail


class LeaseLost(StreamError):
    def __init__(self, stream_id: str) -> None:
        super().__init__(f"stream {stream_id} is now owned by another run; stopping")
        self.stream_id = stream_id


class StreamNotFound(StreamError):
    def __init__(self, stream_id: str) -> None:
        super().__init__(f"no stream with id {stream_id}")
        self.stream_id = stream_id


class ConfigurationError(StreamError):
    """A block or setting is missing or wrong; the message says which."""


class S3Rejected(StreamError):
    """S3 refused the request for a reason a retry cannot change (permissions, a
    malformed request, a part S3 will not take): fail at once, with S3's code."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"S3 refused the request: {code}" + (f" ({detail})" if detail else ""))
        self.code = code


class KeyTooLong(StreamError, ValueError):
    def __init__(self, path: str, length: int) -> None:
        super().__init__(f"S3 key for {path} would be {length} bytes; S3 allows 1024")
        self.path, self.length = path, length


class SourceOutsideFolder(SourceError):
    def __init__(self, path: str, target: str) -> None:
        super().__init__(
            f"{path} leads to {target}, outside the watch folder "
            "(set follow_symlinks in the IngestConfig block to upload such files)"
        )
        self.path, self.target = path, target


class KeyTaken(StreamError):
    """Another object appeared at the key while this stream was uploading (a
    conditional completion failed): the stream needs another key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"another object took the key {key} during the upload")
        self.key = key


class SalvageUnfinished(StreamError):
    """A salvage of the stream began (its file was lost) and was cut short: it may
    have completed the parts at the stream's key already. Terminal: the stream ends as
    the salvage, never as a completed take of those parts."""

    terminal = True

    def __init__(self, stream_id: str, key: str) -> None:
        super().__init__(f"stream {stream_id}: its salvage into {key} was cut short")
        self.stream_id, self.key = stream_id, key


class CannotSalvage(StreamError):
    """A stream's parts cannot be kept as an object now; its upload is left as it is."""

    def __init__(self, stream_id: str, why: str) -> None:
        super().__init__(f"stream {stream_id} cannot be salvaged: {why}")
        self.stream_id, self.why = stream_id, why


# S3 error codes by what a retry can do about them (S3 API reference, "Error codes").
TRANSIENT_S3_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        "ConditionalRequestConflict",  # two conditional writes raced: S3 says retry
    }
)
CREDENTIAL_S3_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "ExpiredToken",
        "InvalidToken",
        "403",
        "Forbidden",
    }
)


def s3_error(code: str, status: int, bucket: str, upload_id: str | None) -> StreamError:
    """The domain error for an S3 error response (pure: the one table of S3 codes)."""
    if code == "NoSuchUpload" and upload_id:
        return UploadGone(upload_id)
    if code in ("NoSuchBucket",):
        return BucketMissing(bucket)
    if code in CREDENTIAL_S3_CODES:
        return CredentialsRejected(code)
    if code == "NotImplemented":  # a 501 a retry cannot change (an unsupported header)
        return S3Rejected(code)
    if status >= 500 or code in TRANSIENT_S3_CODES:
        return S3Unavailable(f"{code or status} from S3")
    return S3Rejected(code or str(status))
