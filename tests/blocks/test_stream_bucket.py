"""StreamBucket against moto's S3 server in its own process (over HTTP)."""

from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from prefect_aws import AwsClientParameters, AwsCredentials, MinIOCredentials

import stream_ingest.blocks.bucket as bucket_module
from stream_ingest.blocks.bucket import CREATED_BY, StreamBucket, _s3_errors
from stream_ingest.blocks.registration import build_config
from stream_ingest.capabilities import Capabilities
from stream_ingest.devstack.ceph import S3Server
from stream_ingest.devstack.services import MotoServer, free_port
from stream_ingest.errors import (
    BucketMissing,
    CredentialsRejected,
    KeyTaken,
    S3Rejected,
    S3Unavailable,
    UploadGone,
)
from stream_ingest.settings import load_settings
from stream_ingest.verify import multipart_etag

MIB = 1024 * 1024


def md5_etag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def settings_for(endpoint: str, bucket: str, **over: object):
    values: dict[str, object] = dict(
        s3_endpoint_url=endpoint,
        s3_bucket=bucket,
        s3_prefix="rec",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    values.update(over)
    return load_settings(**values)


def block_for(server: S3Server, bucket: str) -> StreamBucket:
    return build_config(
        settings_for(
            server.url,
            bucket,
            aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key,
        )
    ).bucket


@pytest.fixture(params=["build_config", "minio"])
def bucket(request: pytest.FixtureRequest, s3_server: S3Server, bucket_name: str) -> StreamBucket:
    """The bucket block both ways a user builds it: from the settings, and by hand
    with MinIO credentials pointing at the endpoint."""
    if request.param == "build_config":
        return block_for(s3_server, bucket_name)
    credentials = MinIOCredentials(
        minio_root_user=s3_server.access_key,
        minio_root_password=s3_server.secret_key,
        aws_client_parameters={"endpoint_url": s3_server.url},
    )
    return StreamBucket(bucket_name=bucket_name, credentials=credentials)


@pytest.fixture
def fast_bucket(s3_server: S3Server, bucket_name: str) -> StreamBucket:
    return block_for(s3_server, bucket_name)


def test_the_client_is_made_once_per_credentials(
    fast_bucket: StreamBucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """prefect-aws finds its cached client by hashing the whole credentials block:
    the bucket keeps its client instead, and makes a new one for new credentials."""
    made: list[AwsCredentials] = []
    real = AwsCredentials.get_s3_client

    def counted(self: AwsCredentials) -> object:
        made.append(self)
        return real(self)

    monkeypatch.setattr(AwsCredentials, "get_s3_client", counted)
    first = fast_bucket.s3
    assert fast_bucket.s3 is first and fast_bucket.s3 is first
    assert len(made) == 1
    fast_bucket.credentials = fast_bucket.credentials.model_copy()
    assert fast_bucket.s3 is not None and len(made) == 2


# Measured: moto keeps part checksums; Ceph's gateway (16.2) accepts and ignores them.
KEEPS_CHECKSUMS = {"moto": True, "ceph": False}


def key() -> str:
    return f"rec/{uuid.uuid4().hex[:8]}/cam 1.mp4"


# -- the multipart calls ----------------------------------------------------------


def test_upload_part_sends_its_own_crc32_and_botocore_computes_none(
    fast_bucket: StreamBucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The part's CRC32 goes with it (stream_ingest/checksums.py): botocore does not
    compute a second one over the same bytes, and S3 holds the part with zlib's."""
    from botocore import httpchecksum

    computed: list[int] = []
    kinds = dict(httpchecksum._CHECKSUM_CLS)
    for name, cls in kinds.items():

        class Counting(cls):  # type: ignore[misc, valid-type]
            def update(self, chunk: bytes) -> None:
                computed.append(len(chunk))
                super().update(chunk)

        monkeypatch.setitem(httpchecksum._CHECKSUM_CLS, name, Counting)
    k = key()
    upload_id = fast_bucket.create_multipart_upload(k)
    data = bytearray(os.urandom(5 * MIB))
    part = fast_bucket.upload_part(k, upload_id, 1, data)

    assert computed == []
    assert part.crc32 == crc32_b64(bytes(data))
    fast_bucket.complete_multipart_upload(k, upload_id, [part])


@pytest.mark.on_ceph
@pytest.mark.parametrize("signing", [True, False], ids=["signed", "unsigned"])
def test_payload_signing_decides_whether_botocore_hashes_a_part(
    s3_server: S3Server, s3, bucket_name: str, signing: bool
) -> None:
    """On an http:// endpoint botocore puts the SHA-256 of each body in the signature
    (a second pass over every part) unless `s3_payload_signing` is false; the part's
    CRC32 goes with it either way, and the store takes both kinds of request."""
    bucket = build_config(
        settings_for(
            s3_server.url,
            bucket_name,
            aws_access_key_id=s3_server.access_key,
            aws_secret_access_key=s3_server.secret_key,
            s3_payload_signing=signing,
        )
    ).bucket
    sent: list[dict[str, str]] = []

    def seen(request, **_: object) -> None:
        sent.append({k.lower(): _text(v) for k, v in request.headers.items()})

    bucket.s3.meta.events.register("before-send.s3.UploadPart", seen)
    k, data = key(), os.urandom(MIB)
    upload_id = bucket.create_multipart_upload(k)
    part = bucket.upload_part(k, upload_id, 1, bytearray(data))
    bucket.complete_multipart_upload(k, upload_id, [part])

    [headers] = sent
    signed = hashlib.sha256(data).hexdigest()
    assert headers["x-amz-content-sha256"] == (signed if signing else "UNSIGNED-PAYLOAD")
    assert headers["x-amz-checksum-crc32"] == crc32_b64(data)
    assert bucket.unsigned_over_http is not signing
    assert s3.get_object(Bucket=bucket_name, Key=k)["Body"].read() == data


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def test_payload_signing_off_changes_nothing_on_https() -> None:
    """Over TLS botocore leaves a body with a checksum unsigned anyway: the setting
    is about http:// endpoints only, and the bucket says so."""
    https = build_config(
        settings_for("https://s3.example.test", "recordings", s3_payload_signing=False)
    ).bucket
    http = build_config(
        settings_for("http://s3.example.test", "recordings", s3_payload_signing=False)
    ).bucket
    assert https.unsigned_over_http is False and http.unsigned_over_http is True
    config = http.credentials.aws_client_parameters.config
    assert config["s3"] == {"payload_signing_enabled": False}
    assert config["retries"] == {"max_attempts": 4, "mode": "standard"}


@pytest.mark.on_ceph
def test_multipart_upload_round_trip(
    bucket: StreamBucket, s3, bucket_name: str, s3_server: S3Server
) -> None:
    k = key()
    bucket.check_bucket()
    upload_id = bucket.create_multipart_upload(k)
    assert upload_id
    pending = {(u.key, u.upload_id) for u in bucket.list_multipart_uploads("rec/")}
    assert (k, upload_id) in pending
    (listed,) = [u for u in bucket.list_multipart_uploads("rec/") if u.upload_id == upload_id]
    assert listed.initiated_epoch > 0  # moto reports a fixed date, so only its type here

    first, last = b"\x01" * (5 * MIB), b"tail bytes"
    p1 = bucket.upload_part(k, upload_id, 1, first)
    p2 = bucket.upload_part(k, upload_id, 2, last)
    e1, e2 = p1.etag, p2.etag
    assert (e1, e2) == (md5_etag(first), md5_etag(last))
    if KEEPS_CHECKSUMS[s3_server.name]:
        assert (p1.crc32, p2.crc32) == (crc32_b64(first), crc32_b64(last))  # S3 checked them
    else:
        assert (p1.crc32, p2.crc32) == ("", "")
    parts = bucket.list_parts(k, upload_id)  # (moto's ListParts leaves out checksums)
    assert [(p.number, p.etag, p.size) for p in parts] == [(1, e1, len(first)), (2, e2, len(last))]

    etag = bucket.complete_multipart_upload(k, upload_id, [p2, p1])  # any order
    # What finalize uses to prove the object is ours; Ceph answers none (HEAD below).
    assert etag == {"moto": multipart_etag([e1, e2]), "ceph": ""}[s3_server.name]
    head = bucket.head_object(k)
    assert head is not None
    assert head["ContentLength"] == len(first) + len(last)
    assert head["ETag"] == multipart_etag([e1, e2])
    assert head["Metadata"] == CREATED_BY == {"created-by": "stream-ingest"}
    body = s3.get_object(Bucket=bucket_name, Key=k)["Body"].read()
    assert body == first + last
    assert upload_id not in {u.upload_id for u in bucket.list_multipart_uploads()}

    bucket.tag_object(k, {"sha256": hashlib.sha256(body).hexdigest(), "stream-id": "s1"})
    tags = bucket.s3.get_object_tagging(Bucket=bucket.bucket_name, Key=k)["TagSet"]
    assert {t["Key"]: t["Value"] for t in tags} == {
        "sha256": hashlib.sha256(body).hexdigest(),
        "stream-id": "s1",
    }
    assert bucket.head_object(k + ".missing") is None


@pytest.mark.on_ceph
def test_reuploading_a_part_replaces_it(bucket: StreamBucket, s3_server: S3Server) -> None:
    k = key()
    upload_id = bucket.create_multipart_upload(k)
    bucket.upload_part(k, upload_id, 1, b"old head")
    new = bucket.upload_part(k, upload_id, 1, b"new head!")
    listed = [(p.number, p.etag, p.size) for p in bucket.list_parts(k, upload_id)]
    assert listed == [(1, new.etag, 9)]
    assert new.crc32 == (crc32_b64(b"new head!") if KEEPS_CHECKSUMS[s3_server.name] else "")
    bucket.abort_multipart_upload(k, upload_id)


def _one_part_upload(bucket: StreamBucket, k: str, body: bytes) -> tuple[str, list]:
    upload_id = bucket.create_multipart_upload(k)
    return upload_id, [bucket.upload_part(k, upload_id, 1, body)]


@pytest.mark.on_ceph
def test_a_conditional_completion_leaves_a_taken_key_alone(
    fast_bucket: StreamBucket, s3, bucket_name: str, s3_server: S3Server
) -> None:
    """On Ceph, whose gateway ignores the condition, the bucket's HEAD refuses it."""
    k = key()
    upload_id, parts = _one_part_upload(fast_bucket, k, b"our take")
    s3.put_object(Bucket=bucket_name, Key=k, Body=b"someone else's")
    with pytest.raises(KeyTaken):
        fast_bucket.complete_multipart_upload(k, upload_id, parts, if_absent=True)
    assert s3.get_object(Bucket=bucket_name, Key=k)["Body"].read() == b"someone else's"
    assert upload_id in {u.upload_id for u in fast_bucket.list_multipart_uploads()}
    s3.delete_object(Bucket=bucket_name, Key=k)
    etag = fast_bucket.complete_multipart_upload(k, upload_id, parts, if_absent=True)
    assert etag == {"moto": multipart_etag([parts[0].etag]), "ceph": ""}[s3_server.name]
    assert s3.get_object(Bucket=bucket_name, Key=k)["Body"].read() == b"our take"


class _TakenJustBefore:
    """An S3 client whose CompleteMultipartUpload finds the key taken by another
    writer an instant before it reaches the store (after any HEAD of the bucket's)."""

    def __init__(self, real: object, s3: object, bucket: str) -> None:
        self._real, self._s3, self._bucket = real, s3, bucket

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)

    def complete_multipart_upload(self, **kwargs: object) -> dict:
        self._s3.put_object(Bucket=self._bucket, Key=kwargs["Key"], Body=b"someone else's")
        return self._real.complete_multipart_upload(**kwargs)


@pytest.mark.on_ceph
def test_what_the_head_guard_leaves_open(
    fast_bucket: StreamBucket, s3, bucket_name: str, s3_server: S3Server, monkeypatch
) -> None:
    """The narrower guard, precisely: a key taken after the bucket's HEAD found it free
    and before the completion reached the store is replaced where the store ignores
    the condition (Ceph), and refused where it honours it (moto, as S3)."""
    k = key()
    upload_id, parts = _one_part_upload(fast_bucket, k, b"our take")
    honoured = fast_bucket.capabilities(k).conditional_complete  # probed before the race
    assert honoured == {"moto": True, "ceph": False}[s3_server.name]
    real = StreamBucket.s3.fget
    monkeypatch.setattr(
        StreamBucket, "s3", property(lambda b: _TakenJustBefore(real(b), s3, bucket_name))
    )
    if honoured:
        with pytest.raises(KeyTaken):
            fast_bucket.complete_multipart_upload(k, upload_id, parts, if_absent=True)
        assert s3.get_object(Bucket=bucket_name, Key=k)["Body"].read() == b"someone else's"
    else:
        fast_bucket.complete_multipart_upload(k, upload_id, parts, if_absent=True)
        assert s3.get_object(Bucket=bucket_name, Key=k)["Body"].read() == b"our take"


class _NoConditionalWrites:
    """An S3 client for an API that does not implement If-None-Match (501), as older
    S3-compatible stores answer; everything else is the real client's."""

    def __init__(self, real: object) -> None:
        self._real = real

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)

    def complete_multipart_upload(self, **kwargs: object) -> dict:
        if "IfNoneMatch" in kwargs:
            error = {"Code": "NotImplemented", "Message": "conditional writes"}
            meta = {"HTTPStatusCode": 501}
            raise ClientError({"Error": error, "ResponseMetadata": meta}, "Complete")
        return self._real.complete_multipart_upload(**kwargs)


def test_without_conditional_writes_a_head_guards_the_key(
    fast_bucket: StreamBucket, s3, bucket_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caller no longer HEADs before a first take's completion: where the API
    cannot refuse a taken key itself, the bucket looks before it completes."""
    real = StreamBucket.s3.fget
    monkeypatch.setattr(StreamBucket, "s3", property(lambda b: _NoConditionalWrites(real(b))))
    taken, free = key(), key()
    s3.put_object(Bucket=bucket_name, Key=taken, Body=b"someone else's")
    upload_id, parts = _one_part_upload(fast_bucket, taken, b"our take")
    with pytest.raises(KeyTaken):
        fast_bucket.complete_multipart_upload(taken, upload_id, parts, if_absent=True)
    assert s3.get_object(Bucket=bucket_name, Key=taken)["Body"].read() == b"someone else's"

    upload_id, parts = _one_part_upload(fast_bucket, free, b"our take")
    fast_bucket.complete_multipart_upload(free, upload_id, parts, if_absent=True)
    assert s3.get_object(Bucket=bucket_name, Key=free)["Body"].read() == b"our take"


@pytest.mark.on_ceph
def test_list_multipart_uploads_filters_by_prefix(bucket: StreamBucket) -> None:
    ours = bucket.create_multipart_upload("rec/a.mp4")
    theirs = bucket.create_multipart_upload("other-app/b.bin")
    assert {u.upload_id for u in bucket.list_multipart_uploads("rec/")} == {ours}
    assert {u.upload_id for u in bucket.list_multipart_uploads()} == {ours, theirs}


@pytest.mark.on_ceph
def test_abort_and_what_a_gone_upload_looks_like(bucket: StreamBucket) -> None:
    k = key()
    upload_id = bucket.create_multipart_upload(k)
    bucket.upload_part(k, upload_id, 1, b"x")
    bucket.abort_multipart_upload(k, upload_id)
    assert upload_id not in {u.upload_id for u in bucket.list_multipart_uploads()}
    bucket.abort_multipart_upload(k, upload_id)  # already gone: not an error
    bucket.abort_multipart_upload(k, "never-existed")
    with pytest.raises(UploadGone) as info:
        bucket.list_parts(k, upload_id)
    assert info.value.upload_id == upload_id
    assert not info.value.transient
    # (moto answers UploadPart and CompleteMultipartUpload on an aborted upload with a
    # 500 instead of S3's NoSuchUpload, so their mapping is checked in
    # test_s3_error_mapping instead.)
    assert bucket.head_object(k) is None


@pytest.mark.on_ceph
def test_list_parts_follows_pages_past_1000_parts(
    fast_bucket: StreamBucket, s3, bucket_name: str
) -> None:
    # moto, like S3, accepts small non-final parts until completion.
    k = key()
    upload_id = fast_bucket.create_multipart_upload(k)
    numbers = range(1, 1006)

    def upload(n: int) -> tuple[int, str]:
        return n, fast_bucket.upload_part(k, upload_id, n, n.to_bytes(2, "big") * (n % 3 + 1)).etag

    with ThreadPoolExecutor(16) as pool:
        etags = dict(pool.map(upload, numbers))
    first_page = s3.list_parts(Bucket=bucket_name, Key=k, UploadId=upload_id)
    assert first_page["IsTruncated"] and len(first_page["Parts"]) == 1000  # really paged

    parts = fast_bucket.list_parts(k, upload_id)
    assert [p.number for p in parts] == list(numbers)
    assert {p.number: p.etag for p in parts} == etags
    assert all(p.size == 2 * (p.number % 3 + 1) for p in parts)
    fast_bucket.abort_multipart_upload(k, upload_id)


# -- failures ---------------------------------------------------------------------


def test_a_found_bucket_is_asked_for_once_per_block(moto_server: MotoServer) -> None:
    """A batch's files share their run's block: one HeadBucket, not one per file."""
    name = f"once-{uuid.uuid4().hex[:8]}"
    block = build_config(settings_for(moto_server.url, name)).bucket
    with pytest.raises(BucketMissing):
        block.check_bucket()
    block.s3.create_bucket(Bucket=name)
    asked = []
    block.s3.meta.events.register("before-call.s3.HeadBucket", lambda **kw: asked.append(1))
    block.check_bucket()
    block.check_bucket()
    assert asked == [1]


def test_missing_bucket(moto_server: MotoServer) -> None:
    block = build_config(settings_for(moto_server.url, f"missing-{uuid.uuid4().hex[:8]}")).bucket
    with pytest.raises(BucketMissing) as info:
        block.check_bucket()
    assert info.value.bucket == block.bucket_name
    assert not info.value.transient
    with pytest.raises(BucketMissing):
        block.create_multipart_upload("rec/a.mp4")
    with pytest.raises(BucketMissing):
        block.list_multipart_uploads()


class AuthMotoServer(MotoServer):
    """moto with request authentication on: unknown access keys are refused."""

    name = "moto-auth"

    def env(self) -> dict[str, str]:
        return {**super().env(), "INITIAL_NO_AUTH_ACTION_COUNT": "0"}


@pytest.fixture(scope="module")
def auth_moto() -> Iterator[MotoServer]:
    with AuthMotoServer() as server:
        yield server  # type: ignore[misc]


def test_rejected_credentials(auth_moto: MotoServer) -> None:
    block = build_config(
        settings_for(auth_moto.url, "any-bucket", aws_access_key_id="AKIAWRONG")
    ).bucket
    with pytest.raises(CredentialsRejected) as info:
        block.create_multipart_upload("rec/a.mp4")
    assert info.value.code == "InvalidAccessKeyId"
    assert not info.value.transient
    with pytest.raises(CredentialsRejected):  # HEAD: a bare 403 without an error code
        block.check_bucket()
    with pytest.raises(CredentialsRejected):
        block.list_multipart_uploads()


def test_unreachable_endpoint_is_s3_unavailable_quickly(bucket_name: str) -> None:
    port = free_port()  # nothing listens there
    credentials = AwsCredentials(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
        aws_client_parameters=AwsClientParameters(
            endpoint_url=f"http://127.0.0.1:{port}",
            config={"connect_timeout": 1, "read_timeout": 2, "retries": {"max_attempts": 1}},
        ),
    )
    block = StreamBucket(bucket_name=bucket_name, credentials=credentials)
    started = time.monotonic()
    with pytest.raises(S3Unavailable) as info:
        block.check_bucket()
    assert info.value.transient
    with pytest.raises(S3Unavailable):
        block.create_multipart_upload("rec/a.mp4")
    with pytest.raises(S3Unavailable):
        block.list_parts("rec/a.mp4", "upload")
    assert time.monotonic() - started < 10


def test_unreachable_endpoint_with_the_registered_config(bucket_name: str) -> None:
    block = build_config(settings_for(f"http://127.0.0.1:{free_port()}", bucket_name)).bucket
    started = time.monotonic()
    with pytest.raises(S3Unavailable):
        block.check_bucket()
    assert time.monotonic() - started < 20


def client_error(code: str, status: int, operation: str = "UploadPart") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        operation,
    )


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("InvalidAccessKeyId", 403, CredentialsRejected),
        ("SignatureDoesNotMatch", 403, CredentialsRejected),
        ("AccessDenied", 403, CredentialsRejected),
        ("ExpiredToken", 400, CredentialsRejected),
        ("ServiceUnavailable", 503, S3Unavailable),
        ("SlowDown", 503, S3Unavailable),
        ("InternalError", 500, S3Unavailable),
        ("RequestTimeout", 400, S3Unavailable),
        ("", 502, S3Unavailable),
        ("NoSuchUpload", 404, UploadGone),
        ("NoSuchBucket", 404, BucketMissing),
    ],
)
def test_s3_error_mapping(code: str, status: int, expected: type[Exception]) -> None:
    with pytest.raises(expected) as info, _s3_errors("bkt", "upload-123"):
        raise client_error(code, status)
    if expected is UploadGone:
        assert info.value.upload_id == "upload-123"  # type: ignore[attr-defined]
    if expected is BucketMissing:
        assert info.value.bucket == "bkt"  # type: ignore[attr-defined]
    if expected is CredentialsRejected:
        assert info.value.code == code  # type: ignore[attr-defined]


def test_permanent_client_errors_become_one_line_refusals() -> None:
    with pytest.raises(S3Rejected, match="InvalidPart") as info, _s3_errors("bkt", "u"):
        raise client_error("InvalidPart", 400)
    assert info.value.code == "InvalidPart" and not info.value.transient
    with pytest.raises(S3Rejected), _s3_errors("bkt"):  # NoSuchUpload needs an upload
        raise client_error("NoSuchUpload", 404)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (NoCredentialsError(), CredentialsRejected),
        (EndpointConnectionError(endpoint_url="http://x"), S3Unavailable),
        (ConnectTimeoutError(endpoint_url="http://x"), S3Unavailable),
        (ReadTimeoutError(endpoint_url="http://x"), S3Unavailable),
    ],
)
def test_transport_error_mapping(error: Exception, expected: type[Exception]) -> None:
    with pytest.raises(expected), _s3_errors("bkt"):
        raise error


# -- what each store can do --------------------------------------------------------

# Measured: moto does all three; Ceph's gateway (16.2) ignores If-None-Match on
# CompleteMultipartUpload, keeps no part checksums and drops tags given at create.
EXPECTED = {
    "moto": Capabilities(conditional_complete=True, checksums=True, tags_on_create=True),
    "ceph": Capabilities(conditional_complete=False, checksums=False, tags_on_create=False),
}


@pytest.mark.on_ceph
def test_the_capability_probe_finds_what_the_store_does_and_leaves_nothing(
    fast_bucket: StreamBucket, s3, bucket_name: str, s3_server: S3Server, store
) -> None:
    found = fast_bucket.probe_capabilities("rec/cam1/a.mp4")
    assert found == EXPECTED[s3_server.name]
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket_name)
    assert not s3.list_multipart_uploads(Bucket=bucket_name).get("Uploads")

    # Found once per process, and kept in Redis for the other processes.
    calls: list[str] = []
    real = StreamBucket.probe_capabilities
    spy = lambda b, near="": calls.append(near) or real(b, near)  # noqa: E731
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(StreamBucket, "probe_capabilities", spy)
        assert fast_bucket.capabilities("rec/a.mp4", store.hints) == found
        assert fast_bucket.capabilities("rec/b.mp4", store.hints) == found
        assert calls == ["rec/a.mp4"]
        assert store.hints.cached_capabilities(fast_bucket.store_id) == found.to_json()
        bucket_module._known.clear()  # another process: Redis has the answer
        assert fast_bucket.capabilities("rec/c.mp4", store.hints) == found
        assert calls == ["rec/a.mp4"]


def test_a_store_that_lacks_a_capability_is_named_once_per_process(
    fast_bucket: StreamBucket, caplog: pytest.LogCaptureFixture, monkeypatch
) -> None:
    lacking = Capabilities(conditional_complete=False, checksums=True, tags_on_create=True)
    monkeypatch.setattr(StreamBucket, "probe_capabilities", lambda b, near="": lacking)
    with caplog.at_level("WARNING", logger="prefect.stream_ingest.bucket"):
        fast_bucket.capabilities("rec/a.mp4")
        fast_bucket.capabilities("rec/a.mp4", fresh=True)
    warned = [r.getMessage() for r in caplog.records if "lacks" in r.getMessage()]
    assert len(warned) == 1
    assert fast_bucket.store_id in warned[0]
    assert (
        "conditional completion (If-None-Match on CompleteMultipartUpload) is ignored: a HEAD"
        in warned[0]
    )


# -- the object options -------------------------------------------------------------


def test_every_upload_is_created_with_the_object_options(
    fast_bucket: StreamBucket, s3, bucket_name: str
) -> None:
    """What the store is sent (the request's headers, seen by a botocore hook: moto
    echoes no KMS key) and what the completed object then has; our metadata wins over
    the extra metadata, so the upload mark survives."""
    bucket = fast_bucket.model_copy(
        update={
            "content_types": {".mkv": "video/webm"},
            "storage_class": "STANDARD_IA",
            "server_side_encryption": "aws:kms",
            "sse_kms_key_id": "alias/recordings",
            "bucket_key_enabled": True,
            "extra_metadata": {"project": "p1", "upload-mark": "theirs"},
        }
    )
    sent: list[dict[str, str]] = []

    def seen(request, **_: object) -> None:
        sent.append(
            {k.lower(): v if isinstance(v, str) else v.decode() for k, v in request.headers.items()}
        )

    events = bucket.s3.meta.events
    events.register("before-send.s3.CreateMultipartUpload", seen)
    try:
        k = f"rec/{uuid.uuid4().hex[:8]}/take.partial.mkv"
        upload_id = bucket.create_multipart_upload(k, "sid-1", "mark-1")
    finally:
        events.unregister("before-send.s3.CreateMultipartUpload", seen)
    part = bucket.upload_part(k, upload_id, 1, b"recording")
    bucket.complete_multipart_upload(k, upload_id, [part])

    [headers] = sent
    assert headers["x-amz-server-side-encryption"] == "aws:kms"
    assert headers["x-amz-server-side-encryption-aws-kms-key-id"] == "alias/recordings"
    assert headers["x-amz-server-side-encryption-bucket-key-enabled"] == "true"
    assert headers["x-amz-storage-class"] == "STANDARD_IA"
    assert headers["content-type"] == "video/webm"
    head = s3.head_object(Bucket=bucket_name, Key=k)
    assert head["ContentType"] == "video/webm"
    assert head["StorageClass"] == "STANDARD_IA"
    assert head["Metadata"] == CREATED_BY | {
        "project": "p1",
        "stream-id": "sid-1",
        "upload-mark": "mark-1",
    }


def test_the_extra_tags_go_with_ours_and_ours_win(
    fast_bucket: StreamBucket, s3, bucket_name: str
) -> None:
    bucket = fast_bucket.model_copy(update={"extra_tags": {"team": "news", "size": "big"}})
    k = key()
    upload_id = bucket.create_multipart_upload(k)
    bucket.complete_multipart_upload(k, upload_id, [bucket.upload_part(k, upload_id, 1, b"x")])
    bucket.tag_object(k, {"size": "1", "sha256": "abc"})
    tags = s3.get_object_tagging(Bucket=bucket_name, Key=k)["TagSet"]
    assert {t["Key"]: t["Value"] for t in tags} == {"team": "news", "size": "1", "sha256": "abc"}


@pytest.mark.parametrize(
    ("options", "field", "words"),
    [
        ({"storage_class": "STANDRD"}, "storage_class", "unknown storage class 'STANDRD'"),
        ({"storage_class": "DEEP_ARCHIVE"}, "storage_class", "without a restore"),
        ({"server_side_encryption": "aws:kms:dsse"}, "server_side_encryption", "'AES256'"),
        ({"sse_kms_key_id": "alias/x"}, "sse_kms_key_id", "aws:kms only"),
        ({"extra_tags": {f"t{i}": "v" for i in range(7)}}, "extra_tags", "at most 6 tags"),
        ({"extra_metadata": {"a b": "v"}}, "extra_metadata", "metadata key 'a b'"),
        ({"content_types": {"mkv": "matroska"}}, "content_types", "not a media type"),
    ],
)
def test_bad_object_options_are_refused_at_config_load_in_one_line(
    registered, options: dict, field: str, words: str
) -> None:
    """Saved the way the UI saves them (unchecked), refused when a component loads the
    config, naming the field."""
    from stream_ingest.blocks.config import load_config
    from stream_ingest.errors import ConfigurationError

    block = StreamBucket.load(registered.config_block)
    block.__dict__.update(options)  # what a UI edit may store
    block.save(registered.config_block, overwrite=True)
    with pytest.raises(ConfigurationError) as err:
        load_config()
    message = str(err.value)
    assert "\n" not in message and f"bucket.{field}" in message and words in message
