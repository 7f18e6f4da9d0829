"""StreamBucket: prefect-aws `S3Bucket` plus the multipart calls stream-ingest needs.

Each method is one S3 call (ListParts/ListMultipartUploads: every page). Provider
errors become domain errors in `_s3_errors`, the one place that knows S3 error codes.
Needs s3:CreateMultipartUpload, UploadPart, ListMultipartUploadParts, CompleteMultipart
Upload, AbortMultipartUpload, ListBucketMultipartUploads, GetObject (HEAD, and the
copy source of UploadPartCopy), PutObjectTagging, and DeleteObject (a salvage moves its
object off the stream's key: flows/salvage.py) on the bucket. What S3 errors mean (retry or not) is decided by one
table, `stream_ingest.errors.s3_error`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from prefect_aws.s3 import S3Bucket

from stream_ingest.errors import (
    BucketMissing,
    CredentialsRejected,
    KeyTaken,
    S3Rejected,
    S3Unavailable,
    UploadGone,
    s3_error,
)
from stream_ingest.records import PendingUpload, UploadedPart
from stream_ingest.verify import ObjectFacts

NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
# Metadata on every upload we create: the janitor only ever touches uploads of ours.
CREATED_BY = {"created-by": "stream-ingest"}
# Part checksums S3 verifies on upload and combines at completion (what s3transfer
# uses too). Without an algorithm, moto computes a whole-object CRC64 at completion,
# re-reading the object: 2-4x slower completes (benchmarks/).
CHECKSUM = "CRC32"
STREAM_ID = "stream-id"  # object metadata: the stream whose take the object is
# Object metadata: which upload of ours completed the object, where neither its ETag
# nor a checksum can say so (stream_ingest/verify.py).
UPLOAD_MARK = "upload-mark"


@contextmanager
def _s3_errors(bucket: str, upload_id: str | None = None) -> Iterator[None]:
    """Map botocore errors to stream-ingest's domain errors."""
    try:
        yield
    except ClientError as exc:
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        raise s3_error(code, status, bucket, upload_id) from None
    except NoCredentialsError:
        raise CredentialsRejected("no credentials configured") from None
    except (
        EndpointConnectionError,
        ConnectTimeoutError,
        ReadTimeoutError,
        ConnectionClosedError,
    ) as exc:
        raise S3Unavailable(type(exc).__name__) from None


def facts_of(head: dict[str, Any]) -> ObjectFacts:
    """What an object's HEAD says that proves whose parts made it."""
    return ObjectFacts(
        etag=head.get("ETag", ""),
        crc32=head.get("ChecksumCRC32", ""),
        mark=head.get("Metadata", {}).get(UPLOAD_MARK, ""),
        size=head.get("ContentLength"),
    )


class StreamBucket(S3Bucket):
    """An S3 bucket that stream-ingest uploads recordings into, part by part.

    Example:
        ```python
        from blocks.bucket import StreamBucket
        bucket = StreamBucket.load("stream-ingest")
        upload_id = bucket.create_multipart_upload("rec/cam1.mp4")
        ```
    """

    _block_type_name = "Stream Bucket"
    _block_type_slug = "stream-bucket"
    _description = "S3 bucket with the multipart operations of stream-ingest."

    @property
    def s3(self) -> Any:
        return self.credentials.get_s3_client()

    def create_multipart_upload(
        self, key: str, stream_id: str = "", mark: str = "", checksum: bool = True
    ) -> str:
        """Start a multipart upload marked as ours (and as `stream_id`'s, so that a
        HEAD tells whose take an object is, and with `mark`, so that it tells which
        upload completed it); returns its upload id. `checksum=False` for an upload
        whose parts are all copied (no bytes here to checksum)."""
        metadata = (
            CREATED_BY
            | ({STREAM_ID: stream_id} if stream_id else {})
            | ({UPLOAD_MARK: mark} if mark else {})
        )
        with _s3_errors(self.bucket_name):
            resp = self.s3.create_multipart_upload(
                Bucket=self.bucket_name,
                Key=key,
                Metadata=metadata,
                **({"ChecksumAlgorithm": CHECKSUM} if checksum else {}),
            )
        return resp["UploadId"]

    def copy_part(
        self,
        key: str,
        upload_id: str,
        number: int,
        source_etag: str,
        offset: int,
        size: int,
        source_key: str = "",
    ) -> UploadedPart:
        """Part `number` copied server-side from bytes [offset, offset+size) of the
        object now at `source_key` (default: `key` itself), only while it is still the
        one with `source_etag`. The checksum is S3's where it gives one, else "" (the
        caller computes it)."""
        with _s3_errors(self.bucket_name, upload_id):
            resp = self.s3.upload_part_copy(
                Bucket=self.bucket_name,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource={"Bucket": self.bucket_name, "Key": source_key or key},
                CopySourceRange=f"bytes={offset}-{offset + size - 1}",
                CopySourceIfMatch=source_etag,
            )
        result = resp["CopyPartResult"]
        return UploadedPart(number, result["ETag"], size, result.get("ChecksumCRC32", ""))

    def upload_part(
        self, key: str, upload_id: str, number: int, body: bytes | bytearray
    ) -> UploadedPart:
        """Upload one part with its CRC32 (S3 checks it); returns what S3 holds."""
        with _s3_errors(self.bucket_name, upload_id):
            resp = self.s3.upload_part(
                Bucket=self.bucket_name,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
                ChecksumAlgorithm=CHECKSUM,
            )
        return UploadedPart(number, resp["ETag"], len(body), resp.get("ChecksumCRC32", ""))

    def list_parts(self, key: str, upload_id: str) -> list[UploadedPart]:
        """Every part S3 holds for the upload. ListParts returns at most 1,000 parts
        a page, so this follows NextPartNumberMarker to the end."""
        parts: list[UploadedPart] = []
        marker = 0
        while True:
            with _s3_errors(self.bucket_name, upload_id):
                resp = self.s3.list_parts(
                    Bucket=self.bucket_name, Key=key, UploadId=upload_id, PartNumberMarker=marker
                )
            parts += [
                UploadedPart(p["PartNumber"], p["ETag"], p["Size"], p.get("ChecksumCRC32", ""))
                for p in resp.get("Parts", [])
            ]
            if not resp.get("IsTruncated"):
                return parts
            marker = int(resp["NextPartNumberMarker"])

    def complete_multipart_upload(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[UploadedPart],
        *,
        if_absent: bool = False,
    ) -> str:
        """Complete from `parts` (any order); returns the object's ETag. Part checksums
        go along when every part has one (an upload created with a checksum algorithm
        needs them; one created without must not get them). `if_absent`: only if no
        object has the key (If-None-Match: *), else KeyTaken; on an S3 API that does not
        implement the condition, a HEAD stands in for it just before (a narrower guard:
        a key taken between the two is replaced)."""
        with_crc = all(p.crc32 for p in parts)
        body = {
            "Parts": [
                {"PartNumber": p.number, "ETag": p.etag}
                | ({"ChecksumCRC32": p.crc32} if with_crc else {})
                for p in sorted(parts, key=lambda p: p.number)
            ]
        }
        call = {"Bucket": self.bucket_name, "Key": key, "UploadId": upload_id}
        try:
            with _s3_errors(self.bucket_name, upload_id):
                resp = self.s3.complete_multipart_upload(
                    **call, MultipartUpload=body, **({"IfNoneMatch": "*"} if if_absent else {})
                )
        except S3Rejected as exc:
            if exc.code in ("PreconditionFailed", "412"):
                raise KeyTaken(key) from None
            if not if_absent or exc.code not in ("NotImplemented", "501"):
                raise
            if self.head_object(key) is not None:
                raise KeyTaken(key) from None
            with _s3_errors(self.bucket_name, upload_id):
                resp = self.s3.complete_multipart_upload(**call, MultipartUpload=body)
        return resp.get("ETag", "")

    def abort_multipart_upload(self, key: str, upload_id: str) -> None:
        """Abort the upload; an upload that is already gone is not an error."""
        try:
            with _s3_errors(self.bucket_name, upload_id):
                self.s3.abort_multipart_upload(Bucket=self.bucket_name, Key=key, UploadId=upload_id)
        except UploadGone:
            pass

    def delete_object(self, key: str, etag: str) -> None:
        """Delete the object at `key` only while it is the one with `etag` (If-Match,
        where S3 implements it; elsewhere a HEAD just before stands in for it)."""
        call = {"Bucket": self.bucket_name, "Key": key}
        try:
            with _s3_errors(self.bucket_name):
                self.s3.delete_object(**call, IfMatch=etag)
            return
        except S3Rejected as exc:
            if exc.code in ("PreconditionFailed", "412"):
                raise KeyTaken(key) from None
            if exc.code not in ("NotImplemented", "501"):
                raise
        if (self.head_object(key) or {}).get("ETag") != etag:
            raise KeyTaken(key)
        with _s3_errors(self.bucket_name):
            self.s3.delete_object(**call)

    def list_multipart_uploads(self, prefix: str = "") -> list[PendingUpload]:
        """Every in-progress upload under `prefix`, following both markers."""
        out: list[PendingUpload] = []
        kwargs: dict[str, str] = {"Bucket": self.bucket_name, "Prefix": prefix}
        while True:
            with _s3_errors(self.bucket_name):
                resp = self.s3.list_multipart_uploads(**kwargs)
            for u in resp.get("Uploads", []):
                out.append(PendingUpload(u["Key"], u["UploadId"], u["Initiated"].timestamp()))
            if not resp.get("IsTruncated"):
                return out
            kwargs["KeyMarker"] = resp["NextKeyMarker"]
            kwargs["UploadIdMarker"] = resp["NextUploadIdMarker"]

    def head_object(self, key: str) -> dict[str, Any] | None:
        """The object's HEAD response, or None if there is no such object."""
        try:
            with _s3_errors(self.bucket_name):
                # The checksum too, where the store keeps one (verify.py).
                return self.s3.head_object(Bucket=self.bucket_name, Key=key, ChecksumMode="ENABLED")
        except S3Rejected as exc:
            if exc.code in NOT_FOUND:
                return None
            raise

    def read_range(self, key: str, offset: int, size: int) -> bytes | None:
        """`size` bytes of the object at `offset` (fewer at its end), or None if there
        is no such object."""
        if size <= 0:
            return b""
        try:
            with _s3_errors(self.bucket_name):
                resp = self.s3.get_object(
                    Bucket=self.bucket_name, Key=key, Range=f"bytes={offset}-{offset + size - 1}"
                )
                return resp["Body"].read()
        except S3Rejected as exc:
            if exc.code in NOT_FOUND:
                return None
            raise

    def owner(self, key: str) -> str | None:
        """Whose take the object at `key` is: its stream id ("" for an object that
        stream-ingest did not make, or made before it recorded owners), or None if
        there is no object at `key`."""
        head = self.head_object(key)
        return None if head is None else head.get("Metadata", {}).get(STREAM_ID, "")

    def tag_object(self, key: str, tags: dict[str, str]) -> None:
        """Replace the object's tags."""
        tagset = [{"Key": k, "Value": v} for k, v in tags.items()]
        with _s3_errors(self.bucket_name):
            self.s3.put_object_tagging(Bucket=self.bucket_name, Key=key, Tagging={"TagSet": tagset})

    def check_bucket(self) -> None:
        """Fail fast with BucketMissing or CredentialsRejected before any upload."""
        try:
            with _s3_errors(self.bucket_name):
                self.s3.head_bucket(Bucket=self.bucket_name)
        except S3Rejected as exc:  # HEAD answers carry only the status
            if exc.code in NOT_FOUND:
                raise BucketMissing(self.bucket_name) from None
            raise
        except CredentialsRejected as exc:
            if exc.code in ("403", "Forbidden"):
                raise CredentialsRejected("403 Forbidden on HeadBucket") from None
            raise
