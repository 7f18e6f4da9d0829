"""The source changing under a fault (tests/flows covers the fault-free cases): the
head rewritten at close while S3 refuses the re-upload, and the source truncated or
deleted while the flow-run process is dead, then rerun by the operator."""

from __future__ import annotations

import hashlib

import pytest

from stream_ingest.flows.ingest import stream_ingest
from tests.faults.conftest import (
    check_object,
    kill_flow_when,
    recorded_parts,
    recorder,
    report,
    reuploads,
)
from tests.flows.helpers import MIB, payload, run_in_thread, until, wait_for_parts

pytestmark = pytest.mark.usefixtures("registered")

PART = 5 * MIB
PATCH = b"\x00\x00\x00\x20ftypisom-REWRITTEN-AT-CLOSE"


def _uploads(s3, bucket: str) -> list[dict]:
    return s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def _salvaged(s3, bucket: str, record) -> bytes:
    stem, ext = record.s3_key.rsplit(".", 1)
    assert record.salvage_key == f"{stem}.partial.{ext}"
    return s3.get_object(Bucket=bucket, Key=record.salvage_key)["Body"].read()


def test_head_rewrite_at_close_while_s3_refuses_the_reupload(
    registered, s3, store, proxy, watch, request
):
    data = payload(4 * PART + 321, seed=61)
    src = watch / "rewrite-503.mp4"
    writer = recorder(store, src, data, steps=10, head_patch=PATCH)
    thread, out = run_in_thread(src)
    # The recording starts once the run has opened its upload: a run that starts late
    # would find the file finished and patched already, with nothing to re-upload.
    until(lambda: [r for r in store.streams.list() if r.s3_upload_id], 120, "the upload")
    writer.start()
    wait_for_parts(store, 1)
    # From now on part 1 (which only finalize uploads again) fails more often than
    # botocore retries: finalize's own retry must re-verify and re-upload it.
    proxy.add("UploadPart", "status", status=503, part=1, times=6)
    thread.join(240)
    writer.join(10)

    state = out["state"]
    assert state.is_completed(), state.message
    result = state.result()
    expected = PATCH + data[len(PATCH) :]
    assert result["sha256"] == hashlib.sha256(expected).hexdigest()
    check_object(s3, registered.s3_bucket, result["s3_key"], expected)
    assert proxy.count("UploadPart", "status") == 6
    parts = proxy.parts_reached_s3(result["s3_upload_id"])
    assert reuploads(parts) == [1]  # the rewritten part, once, however often refused
    assert int(result["reuploaded_parts"]) == 1
    report(request, reuploads(parts))


def _killed_after_two_parts(src, data, store, tmp_path) -> str:
    writer = recorder(store, src, data, steps=12)
    writer.start()
    sid = kill_flow_when(src, tmp_path / "flow.log", store, lambda: recorded_parts(store) >= 2)
    writer.join(60)
    assert writer.done.is_set()
    return sid


def test_source_truncated_while_the_run_is_dead(
    registered, s3, store, proxy, watch, tmp_path, request
):
    data = payload(5 * PART + 1, seed=62)
    src = watch / "truncated.mp4"
    sid = _killed_after_two_parts(src, data, store, tmp_path)
    with open(src, "r+b") as fh:
        fh.truncate(PART + 7)  # shorter than the two recorded parts
    mark = proxy.mark()

    state = stream_ingest(path=str(src), stream_id=sid, return_state=True)

    assert state.is_failed() and "shrank" in state.message
    record = store.streams.require(sid)
    # The recorded parts are the only copy of the first take's start: kept.
    assert record.status == "salvaged" and "shrank" in record.error
    # (the salvage's copies inside S3 go to an upload of their own)
    assert proxy.parts_reached_s3(record.s3_upload_id, since=mark) == []
    assert _uploads(s3, registered.s3_bucket) == []  # completed into the partial object
    assert _salvaged(s3, registered.s3_bucket, record) == data[: record.salvaged_bytes]
    report(request, [])


def test_source_deleted_while_the_run_is_dead(
    registered, s3, store, proxy, watch, tmp_path, request
):
    data = payload(5 * PART + 1, seed=63)
    src = watch / "deleted.mp4"
    sid = _killed_after_two_parts(src, data, store, tmp_path)
    src.unlink()
    mark = proxy.mark()

    state = stream_ingest(path=str(src), stream_id=sid, return_state=True)

    assert state.is_failed()
    assert f"source file not found: {src}" in state.message
    record = store.streams.require(sid)
    # The rerun takes the crashed run's lease, then finds the source gone: the stream
    # cannot be finished; what it uploaded is kept as an object of its own.
    assert record.status == "salvaged" and "source file not found" in record.error
    assert _uploads(s3, registered.s3_bucket) == []
    assert proxy.parts_reached_s3(record.s3_upload_id, since=mark) == []  # nothing sent again
    assert record.salvaged_bytes >= 2 * PART
    assert _salvaged(s3, registered.s3_bucket, record) == data[: record.salvaged_bytes]
    objects = s3.list_objects_v2(Bucket=registered.s3_bucket).get("Contents", [])
    assert [o["Key"] for o in objects] == [record.salvage_key]  # nothing at the stream's key
    report(request, [])
