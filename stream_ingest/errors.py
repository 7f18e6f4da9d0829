"""Domain errors. Each carries its data and says in one line what happened.

`terminal` errors end the stream (the multipart upload is aborted); the others leave
it resumable (status failed, upload kept). `transient` errors are worth an automatic
retry; the rest are not, so a bad bucket or bad credentials never cause a retry storm.
"""

from __future__ import annotations


class StreamError(Exception):
    terminal = False
    transient = False


class SourceMissing(StreamError):
    terminal = True

    def __init__(self, path: str) -> None:
        super().__init__(f"source file not found: {path}")
        self.path = path


class SourceNotAFile(StreamError):
    def __init__(self, path: str) -> None:
        super().__init__(f"source is not a regular file: {path}")
        self.path = path


class SourceUnreadable(StreamError):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"source file is not readable: {path} ({reason})")
        self.path = path


class SourceShrank(StreamError):
    terminal = True

    def __init__(self, path: str, before: int, after: int) -> None:
        super().__init__(f"source file shrank from {before} to {after} bytes: {path}")
        self.path, self.before, self.after = path, before, after


class SourceReplaced(StreamError):
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
