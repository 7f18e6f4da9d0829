"""StreamBucket: prefect-aws `S3Bucket` plus the multipart calls stream-ingest needs.

Each method is one S3 call (ListParts/ListMultipartUploads: every page). Provider
errors become domain errors in `_s3_errors`, the one place that knows S3 error codes.
Needs s3:CreateMultipartUpload, UploadPart, ListMultipartUploadParts, CompleteMultipart
Upload, AbortMultipartUpload, ListBucketMultipartUploads, GetObject (HEAD, and the
copy source of UploadPartCopy), PutObjectTagging, and DeleteObject (a salvage moves its
object off the stream's key: stream_ingest/flows/salvage.py) on the bucket. What S3 errors mean (retry or not) is decided by one
table, `stream_ingest.errors.s3_error`.

S3 APIs differ in what they do with conditional completion, checksums and tags given
at create (stream_ingest/capabilities.py): `capabilities` finds out by doing each once
per store and process, on a probe key of its own, and says what a store lacks.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from prefect.exceptions import MissingContextError
from prefect.logging import get_logger, get_run_logger
from prefect_aws.s3 import S3Bucket
from pydantic import PrivateAttr

from stream_ingest import metrics
from stream_ingest.capabilities import Capabilities
from stream_ingest.checksums import crc32_b64
from stream_ingest.errors import (
    BucketMissing,
    CredentialsRejected,
    KeyTaken,
    S3Rejected,
    S3Unavailable,
    UploadGone,
    s3_error,
)
from stream_ingest.objects import ObjectOptions
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
# The capability probe's objects: a name of their own, next to the keys of the bucket
# that the credentials may write (a policy may allow only the prefix).
PROBE_NAME = ".stream-ingest-probe-"
PROBE_TAG = "stream-ingest-probe"

# What each store (endpoint, bucket) was found to do, for the life of the process,
# and the stores whose missing capabilities were already logged.
_known: dict[str, Capabilities] = {}
_warned: set[str] = set()
_probing = threading.Lock()


class CapabilityCache(Protocol):
    """Where the probe's findings outlive the process (`store.hints` of a CheckpointStore:
    in Redis)."""

    def cached_capabilities(self, where: str) -> str | None: ...

    def cache_capabilities(self, where: str, text: str) -> None: ...


@contextmanager
def _s3_errors(bucket: str, upload_id: str | None = None) -> Iterator[None]:
    """Map botocore errors to stream-ingest's domain errors."""
    try:
        yield
    except ClientError as exc:
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code not in NOT_FOUND:  # "no such object" is an answer, not an error
            metrics.S3_ERRORS.labels(code or str(status)).inc()
        raise s3_error(code, status, bucket, upload_id) from None
    except NoCredentialsError:
        metrics.S3_ERRORS.labels("NoCredentials").inc()
        raise CredentialsRejected("no credentials configured") from None
    except (
        EndpointConnectionError,
        ConnectTimeoutError,
        ReadTimeoutError,
        ConnectionClosedError,
    ) as exc:
        metrics.S3_ERRORS.labels(metrics.error_name(exc)).inc()
        raise S3Unavailable(type(exc).__name__) from None


def facts_of(head: dict[str, Any]) -> ObjectFacts:
    """What an object's HEAD says that proves whose parts made it."""
    return ObjectFacts(
        etag=head.get("ETag", ""),
        crc32=head.get("ChecksumCRC32", ""),
        mark=head.get("Metadata", {}).get(UPLOAD_MARK, ""),
        size=head.get("ContentLength"),
    )


class StreamBucket(ObjectOptions, S3Bucket):
    """An S3 bucket that stream-ingest uploads recordings into, part by part.

    Example:
        ```python
        from stream_ingest.blocks.bucket import StreamBucket
        bucket = StreamBucket.load("stream-ingest")
        upload_id = bucket.create_multipart_upload("rec/cam1.mp4")
        ```

    Where the store does not honour If-None-Match on CompleteMultipartUpload (Ceph's
    RADOS Gateway ignores it), a completion that must not replace an object HEADs the
    key just before completing: a narrower guard (`complete_multipart_upload`).

    Every upload it creates gets the object options (stream_ingest/objects.py):
    Content-Type, storage class, encryption and extra metadata; `tag_object` adds the
    extra tags.
    """

    _block_type_name = "Stream Bucket"
    _block_type_slug = "stream-bucket"
    _description = "S3 bucket with the multipart operations of stream-ingest."
    # Set once check_bucket passed: a run's block (loaded per run) asks S3 once, not
    # once per file of a batch.
    _bucket_found: bool = PrivateAttr(default=False)
    # The client, with the credentials object it was made from: prefect-aws finds its
    # cached client by hashing the whole credentials block (client parameters
    # included), which cost about 5 % of a batch's CPU when done on every call.
    _client: tuple[Any, Any] | None = PrivateAttr(default=None)

    @property
    def s3(self) -> Any:
        held, credentials = self._client, self.credentials
        if held is None or held[0] is not credentials:
            held = self._client = (credentials, credentials.get_s3_client())
        return held[1]

    @property
    def _client_params(self) -> Any:
        """The credentials' AwsClientParameters (None for credentials without them)."""
        return getattr(self.credentials, "aws_client_parameters", None)

    @property
    def store_id(self) -> str:
        """Which store this is, for the capability caches: endpoint and bucket."""
        endpoint = getattr(self._client_params, "endpoint_url", None) or "aws"
        return f"{endpoint}/{self.bucket_name}"

    @property
    def unsigned_over_http(self) -> bool:
        """Whether request bodies go unsigned to a plain http:// endpoint
        (`s3_payload_signing` false, i.e. botocore's s3.payload_signing_enabled)."""
        params = self._client_params
        endpoint = getattr(params, "endpoint_url", None) or ""
        s3_config = (getattr(params, "config", None) or {}).get("s3") or {}
        return endpoint.startswith("http://") and s3_config.get("payload_signing_enabled") is False

    def capabilities(
        self, near: str = "", cache: CapabilityCache | None = None, fresh: bool = False
    ) -> Capabilities:
        """What this store does with conditional completion, checksums and tags at
        create: from this process's cache, else `cache` (Redis), else a probe next to
        the key `near` (its folder), remembered in both. `fresh`: probe regardless
        (doctor). What the store lacks is logged once per process, as a warning."""
        key = self.store_id
        with _probing:
            found = None if fresh else _known.get(key)
            if found is None and cache is not None and not fresh:
                text = cache.cached_capabilities(self.store_id)
                found = Capabilities.from_json(text) if text else None
            if found is None:
                try:
                    found = self.probe_capabilities(near)
                except S3Rejected as exc:  # e.g. a permission the probe needs and the product not
                    found = Capabilities()
                    _log().warning(
                        "S3 store %s: the capability probe was refused (%s); acting as if "
                        "the store lacked every capability",
                        self.store_id,
                        exc,
                    )
                else:
                    if cache is not None:
                        cache.cache_capabilities(self.store_id, found.to_json())
            _known[key] = found
            if key not in _warned and found.missing():
                _warned.add(key)
                _log().warning("S3 store %s lacks: %s", self.store_id, "; ".join(found.missing()))
        return found

    def probe_capabilities(self, near: str = "") -> Capabilities:
        """Find out, by doing each once on a probe key in the folder of `near`: two
        one-part uploads completed at the same key, the first with a tag given at
        create and part checksums, the second only if the key is free (it is not).
        The probe's object and any upload left open are removed."""
        folder = near.rpartition("/")[0]
        key = (
            f"{folder}/{PROBE_NAME}{uuid.uuid4().hex}" if folder else PROBE_NAME + uuid.uuid4().hex
        )
        opened: list[str] = []
        try:
            checksums, tagged = self._probe_upload(key, opened, tag=True)
            try:
                with _s3_errors(self.bucket_name):
                    found = self.s3.get_object_tagging(Bucket=self.bucket_name, Key=key)
                tags = found.get("TagSet", [])  # Ceph leaves it out when there are none
                tags_on_create: bool | None = tagged and any(t["Key"] == PROBE_TAG for t in tags)
            except S3Rejected:  # no s3:GetObjectTagging (the product never reads tags)
                tags_on_create = None
            try:
                self._probe_upload(key, opened, if_absent=True)
                conditional: bool | None = False  # completed over the probe's object
            except S3Rejected as exc:
                if exc.code in ("PreconditionFailed", "412"):
                    conditional = True
                elif exc.code in ("NotImplemented", "501"):
                    conditional = False
                else:
                    raise
        finally:
            try:
                with _s3_errors(self.bucket_name):
                    for upload_id in opened:
                        self.s3.abort_multipart_upload(
                            Bucket=self.bucket_name, Key=key, UploadId=upload_id
                        )
                    self.s3.delete_object(Bucket=self.bucket_name, Key=key)
            except S3Rejected:
                pass  # not allowed: a few bytes under a name of the probe's own
        return Capabilities(conditional, checksums, tags_on_create)

    def _probe_upload(
        self, key: str, opened: list[str], tag: bool = False, if_absent: bool = False
    ) -> tuple[bool, bool]:
        """One upload of one part, completed; returns whether the part got a checksum
        and whether the tag was accepted at create. `opened` holds it until completed.
        Raw S3 calls: what counts the product's own calls does not see the probe."""
        s3, where = self.s3, {"Bucket": self.bucket_name, "Key": key}
        tagged = tag
        with _s3_errors(self.bucket_name):
            try:
                # Stored as recordings are: a bucket policy may require the encryption.
                resp = s3.create_multipart_upload(
                    **where,
                    ChecksumAlgorithm=CHECKSUM,
                    **({"Tagging": f"{PROBE_TAG}=1"} if tag else {}),
                    **self.stored_as(),
                )
            except ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
                if not tag or status >= 500:
                    raise
                tagged = False  # refused with a tag: tags at create are not kept
                resp = s3.create_multipart_upload(
                    **where, ChecksumAlgorithm=CHECKSUM, **self.stored_as()
                )
        upload_id = resp["UploadId"]
        opened.append(upload_id)
        with _s3_errors(self.bucket_name, upload_id):
            part = s3.upload_part(
                **where,
                UploadId=upload_id,
                PartNumber=1,
                Body=b"stream-ingest capability probe",
                ChecksumAlgorithm=CHECKSUM,
            )
            crc = part.get("ChecksumCRC32", "")
            s3.complete_multipart_upload(
                **where,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [
                        {"PartNumber": 1, "ETag": part["ETag"]}
                        | ({"ChecksumCRC32": crc} if crc else {})
                    ]
                },
                **({"IfNoneMatch": "*"} if if_absent else {}),
            )
        opened.remove(upload_id)
        return bool(crc), tagged

    def create_multipart_upload(
        self, key: str, stream_id: str = "", mark: str = "", checksum: bool = True
    ) -> str:
        """Start a multipart upload marked as ours (and as `stream_id`'s, so that a
        HEAD tells whose take an object is, and with `mark`, so that it tells which
        upload completed it); returns its upload id. `checksum=False` for an upload
        whose parts are all copied (no bytes here to checksum). The object gets the
        block's object options, our metadata over the extra metadata."""
        metadata = (
            CREATED_BY
            | ({STREAM_ID: stream_id} if stream_id else {})
            | ({UPLOAD_MARK: mark} if mark else {})
        )
        with _s3_errors(self.bucket_name):
            resp = self.s3.create_multipart_upload(
                Bucket=self.bucket_name,
                Key=key,
                **self.create_arguments(key, metadata),
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
        """Upload one part with its CRC32 (S3 checks it); returns what S3 holds. The
        CRC32 is ours (stream_ingest/checksums.py): botocore computes none when the
        request carries one."""
        with _s3_errors(self.bucket_name, upload_id):
            resp = self.s3.upload_part(
                Bucket=self.bucket_name,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
                ChecksumAlgorithm=CHECKSUM,
                ChecksumCRC32=crc32_b64(body),
            )
        return UploadedPart(number, resp["ETag"], len(body), resp.get("ChecksumCRC32", ""))

    def list_parts(self, key: str, upload_id: str) -> list[UploadedPart]:
        """Every part S3 holds for the upload. ListParts returns at most 1,000 parts
        a page, so this follows NextPartNumberMarker to the end. UploadGone when the
        upload is no longer there."""
        parts: list[UploadedPart] = []
        marker = 0
        while True:
            try:
                with _s3_errors(self.bucket_name, upload_id):
                    resp = self.s3.list_parts(
                        Bucket=self.bucket_name,
                        Key=key,
                        UploadId=upload_id,
                        PartNumberMarker=marker,
                    )
            except S3Rejected as exc:
                # Ceph's gateway answers ListParts on a gone upload with NoSuchKey (S3:
                # NoSuchUpload); the call names no other object that could be missing.
                if exc.code in NOT_FOUND:
                    raise UploadGone(upload_id) from None
                raise
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
        object has the key (If-None-Match: *), else KeyTaken. On a store that does not
        honour the condition (it ignores it, or answers NotImplemented: `capabilities`,
        probed at the first such completion), a HEAD of the key just before stands in
        for it: a narrower guard, under which a key taken between the HEAD and the
        completion is replaced."""
        with_crc = all(p.crc32 for p in parts)
        body = {
            "Parts": [
                {"PartNumber": p.number, "ETag": p.etag}
                | ({"ChecksumCRC32": p.crc32} if with_crc else {})
                for p in sorted(parts, key=lambda p: p.number)
            ]
        }
        call = {"Bucket": self.bucket_name, "Key": key, "UploadId": upload_id}
        guarded = if_absent and not self.capabilities(key).conditional_complete
        if guarded and self.head_object(key) is not None:
            raise KeyTaken(key)
        condition = {"IfNoneMatch": "*"} if if_absent and not guarded else {}
        try:
            with _s3_errors(self.bucket_name, upload_id):
                resp = self.s3.complete_multipart_upload(**call, MultipartUpload=body, **condition)
        except S3Rejected as exc:
            if exc.code in ("PreconditionFailed", "412"):
                raise KeyTaken(key) from None
            if not condition or exc.code not in ("NotImplemented", "501"):
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

    def object_tags(self, key: str) -> dict[str, str]:
        """The object's tags; {} where the store keeps none or does not answer."""
        try:
            with _s3_errors(self.bucket_name):
                resp = self.s3.get_object_tagging(Bucket=self.bucket_name, Key=key)
        except (S3Rejected, CredentialsRejected):  # no object, NotImplemented, AccessDenied
            return {}
        return {t["Key"]: t["Value"] for t in resp.get("TagSet", [])}

    def tag_object(self, key: str, tags: dict[str, str]) -> None:
        """Replace the object's tags with `tags` and the extra tags (`tags` win)."""
        tagset = [{"Key": k, "Value": v} for k, v in self.tags(tags).items()]
        with _s3_errors(self.bucket_name):
            self.s3.put_object_tagging(Bucket=self.bucket_name, Key=key, Tagging={"TagSet": tagset})

    def put_manifest(self, key: str, body: bytes) -> None:
        """Write a small JSON object of ours at `key` (a recording's manifest), with
        the block's storage class and encryption and its extra metadata."""
        with _s3_errors(self.bucket_name):
            self.s3.put_object(
                Bucket=self.bucket_name,
                Key=key,
                Body=body,
                ContentType="application/json",
                Metadata=self.extra_metadata | CREATED_BY,
                **self.stored_as(),
            )

    def check_bucket(self) -> None:
        """Fail fast with BucketMissing or CredentialsRejected before any upload (once
        per block object: a bucket deleted later fails the upload's own request)."""
        if self._bucket_found:
            return
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
        self._bucket_found = True


def _log() -> Any:
    """The run's logger inside a flow run (the warning shows in the UI), else ours."""
    try:
        return get_run_logger()
    except MissingContextError:
        return get_logger("stream_ingest.bucket")
