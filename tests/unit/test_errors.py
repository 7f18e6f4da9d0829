"""What each failure means: one table of S3 error codes, and which errors the tasks
retry. Permanent refusals and bad input fail at once; only transient ones retry."""

from __future__ import annotations

import pytest

from stream_ingest.errors import (
    BucketMissing,
    CheckpointUnavailable,
    CredentialsRejected,
    KeyTooLong,
    S3Rejected,
    S3Unavailable,
    SourceMissing,
    SourceOutsideFolder,
    UploadGone,
    s3_error,
)
from stream_ingest.flows.retry import is_transient


@pytest.mark.parametrize(
    ("code", "status", "kind", "retried"),
    [
        ("AccessDenied", 403, CredentialsRejected, False),
        ("InvalidAccessKeyId", 403, CredentialsRejected, False),
        ("SignatureDoesNotMatch", 403, CredentialsRejected, False),
        ("NoSuchBucket", 404, BucketMissing, False),
        ("InvalidBucketName", 400, S3Rejected, False),
        ("InvalidPart", 400, S3Rejected, False),
        ("InvalidPartOrder", 400, S3Rejected, False),
        ("EntityTooSmall", 400, S3Rejected, False),
        ("KeyTooLongError", 400, S3Rejected, False),
        ("MalformedXML", 400, S3Rejected, False),
        ("NoSuchUpload", 404, UploadGone, False),
        ("InternalError", 500, S3Unavailable, True),
        ("ServiceUnavailable", 503, S3Unavailable, True),
        ("SlowDown", 503, S3Unavailable, True),
        ("", 502, S3Unavailable, True),
        ("RequestTimeout", 400, S3Unavailable, True),
        ("Throttling", 400, S3Unavailable, True),
        ("ConditionalRequestConflict", 409, S3Unavailable, True),
        ("NotImplemented", 501, S3Rejected, False),
        ("PreconditionFailed", 412, S3Rejected, False),
    ],
)
def test_s3_errors_by_kind(code: str, status: int, kind: type, retried: bool) -> None:
    error = s3_error(code, status, "bucket-x", "upload-1234567890abcdef")
    assert type(error) is kind
    assert is_transient(error) is retried
    assert "\n" not in str(error) and (code in str(error) or kind is not S3Rejected)


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (CheckpointUnavailable("ConnectionError: refused"), True),
        (ConnectionResetError(104, "Connection reset by peer"), True),
        (TimeoutError("timed out"), True),
        (SourceMissing("/rec/a.mp4"), False),
        (SourceOutsideFolder("/rec/a.mp4", "/etc/a.mp4"), False),
        (KeyTooLong("/rec/a.mp4", 2000), False),
        (ValueError("a bug"), False),
        (KeyError("a bug"), False),
        (PermissionError(13, "Permission denied"), False),
    ],
)
def test_only_transient_errors_are_retried(error: BaseException, retried: bool) -> None:
    assert is_transient(error) is retried
