"""What every object stream-ingest creates carries besides its bytes: a Content-Type
from its key's extension, a storage class, server-side encryption, and the operator's
tags and metadata merged with ours. Pure pydantic, no I/O.

The fields are the `StreamBucket` block's (stream_ingest/blocks/bucket.py). S3 gives an
object what its multipart upload was created with, and UploadPartCopy copies bytes
only: so a first take, a revision (copied parts and sent ones) and a salvage copy get
the same options by each being created with them (CreateMultipartUpload). Tags are set
after completion (PutObjectTagging; some stores drop tags given at create).
"""

from __future__ import annotations

import mimetypes
import re
from posixpath import splitext
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator

# The recordings' types, whatever the host's mime.types says (Python's own table has
# no .mkv, and the host's differ from one worker to the next).
VIDEO_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mkv": "video/x-matroska",
    ".mov": "video/quicktime",
    ".ts": "video/mp2t",
    ".m2ts": "video/mp2t",
    ".flv": "video/x-flv",
    ".webm": "video/webm",
    ".avi": "video/x-msvideo",
}
# Storage classes whose objects can be read at once: a revision copies its unchanged
# parts from the object, and a salvage copies it. GLACIER and DEEP_ARCHIVE objects need
# a restore first (a lifecycle rule can move recordings there once they are final).
STORAGE_CLASSES = (
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "OUTPOSTS",
    "EXPRESS_ONEZONE",
)
ARCHIVE_CLASSES = ("GLACIER", "DEEP_ARCHIVE")
# The tags a completed object gets (stream_ingest/flows/completed.py); S3 allows 10.
OUR_TAGS = ("sha256", "stream-id", "size", "revision")
MAX_TAGS = 10
# S3's limit on an object's user metadata (keys and values); ours take under 200 bytes.
MAX_EXTRA_METADATA = 1800
TAG_TEXT = re.compile(r"^[\w\s+\-=.:/@]*$")  # S3's characters of tag keys and values
METADATA_KEY = re.compile(r"^[a-z0-9][a-z0-9._-]*$")  # header-safe, as S3 stores it
MEDIA_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+(\s*;.*)?$")


def our_tags(sha256: str, stream_id: str, size: int, revision: int) -> dict[str, str]:
    """The tags that find a recording again once its checkpoint expired."""
    return dict(zip(OUR_TAGS, (sha256, stream_id, str(size), str(revision)), strict=True))


class ObjectOptions(BaseModel):
    content_types: dict[str, str] = Field(
        default_factory=dict,
        description="Content-Type by extension, over the built-in ones (.mp4 video/mp4, "
        ".mkv video/x-matroska, .mov video/quicktime, .ts video/mp2t, ...) and then "
        'Python\'s mimetypes, e.g. {".mkv": "video/webm"}.',
    )
    storage_class: str = Field(
        "",
        description="Storage class of every object (STANDARD, STANDARD_IA, "
        "INTELLIGENT_TIERING, ...); '' for the bucket's default. Not GLACIER or "
        "DEEP_ARCHIVE: revisions and salvage copy from the object.",
    )
    server_side_encryption: Literal["", "AES256", "aws:kms"] = Field(
        "",
        description="SSE of every object: AES256 (SSE-S3), aws:kms (SSE-KMS), '' for the "
        "bucket's default.",
    )
    sse_kms_key_id: str = Field(
        "", description="KMS key (id, ARN or alias) for aws:kms; '' for the AWS managed key."
    )
    bucket_key_enabled: bool = Field(
        False, description="Use an S3 Bucket Key for aws:kms (fewer KMS requests)."
    )
    extra_tags: dict[str, str] = Field(
        default_factory=dict,
        description="Tags added to every object, at most 6 besides ours (sha256, stream-id, "
        "size, revision); on a conflict ours win.",
    )
    extra_metadata: dict[str, str] = Field(
        default_factory=dict,
        description="User metadata (x-amz-meta-*) of every object, ASCII; on a conflict ours "
        "win (created-by, stream-id, upload-mark).",
    )

    @field_validator("content_types", mode="before")
    @classmethod
    def _types(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        out = {}
        for ext, media in value.items():
            ext = str(ext).strip().lower()
            ext = ext if ext.startswith(".") else f".{ext}"
            if not MEDIA_TYPE.match(str(media)):
                raise ValueError(f"{media!r} for {ext} is not a media type (type/subtype)")
            out[ext] = media
        return out

    @field_validator("storage_class")
    @classmethod
    def _storage_class(cls, value: str) -> str:
        value = value.strip().upper()
        if value in ARCHIVE_CLASSES:
            raise ValueError(
                f"{value} objects cannot be read without a restore, and revisions and "
                "salvage copy from the object: use a lifecycle rule to move them there"
            )
        if value and value not in STORAGE_CLASSES:
            raise ValueError(
                f"unknown storage class {value!r}: one of {', '.join(STORAGE_CLASSES)}"
            )
        return value

    @field_validator("sse_kms_key_id", "bucket_key_enabled")
    @classmethod
    def _kms_only(cls, value: Any, info: ValidationInfo) -> Any:
        sse = info.data.get("server_side_encryption")
        if value and sse is not None and sse != "aws:kms":
            raise ValueError("applies to server_side_encryption aws:kms only")
        return value

    @field_validator("extra_tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            if not 1 <= len(key) <= 128 or len(text) > 256:
                raise ValueError(f"tag {key!r}: keys are 1-128 characters, values up to 256")
            if not (TAG_TEXT.match(key) and TAG_TEXT.match(text)):
                raise ValueError(f"tag {key!r}: letters, digits, spaces and + - = . _ : / @ only")
        room = MAX_TAGS - len(OUR_TAGS)
        if len(set(value) - set(OUR_TAGS)) > room:
            raise ValueError(
                f"at most {room} tags: S3 allows {MAX_TAGS} and stream-ingest sets "
                f"{len(OUR_TAGS)} ({', '.join(OUR_TAGS)})"
            )
        return value

    @field_validator("extra_metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str]) -> dict[str, str]:
        out = {}
        for key, text in value.items():
            name = key.strip().lower()
            if not METADATA_KEY.match(name):
                raise ValueError(f"metadata key {key!r}: letters, digits, . _ - only")
            if not (text.isascii() and text.isprintable()):
                raise ValueError(f"metadata {key!r}: printable ASCII values only")
            out[name] = text
        if sum(len(k) + len(v) for k, v in out.items()) > MAX_EXTRA_METADATA:
            raise ValueError(f"more than {MAX_EXTRA_METADATA} bytes (S3 allows 2 KB with ours)")
        return out

    def content_type(self, key: str) -> str:
        """The Content-Type of the object at `key` ("" when nothing knows the extension:
        the store's default)."""
        ext = splitext(key)[1].lower()
        found = self.content_types.get(ext) or VIDEO_TYPES.get(ext)
        return found or mimetypes.guess_type("x" + ext, strict=False)[0] or ""

    def stored_as(self) -> dict[str, Any]:
        """CreateMultipartUpload's storage class and encryption arguments."""
        out: dict[str, Any] = {}
        if self.storage_class:
            out["StorageClass"] = self.storage_class
        if self.server_side_encryption:
            out["ServerSideEncryption"] = self.server_side_encryption
        if self.sse_kms_key_id:
            out["SSEKMSKeyId"] = self.sse_kms_key_id
        if self.bucket_key_enabled:
            out["BucketKeyEnabled"] = True
        return out

    def create_arguments(self, key: str, ours: dict[str, str]) -> dict[str, Any]:
        """Every CreateMultipartUpload argument of the options for an object at `key`,
        with our metadata `ours` over the extra metadata."""
        media = self.content_type(key)
        return (
            {"Metadata": self.extra_metadata | ours}
            | ({"ContentType": media} if media else {})
            | self.stored_as()
        )

    def tags(self, ours: dict[str, str]) -> dict[str, str]:
        """The tags of an object: the extra tags, ours over them."""
        return self.extra_tags | ours
