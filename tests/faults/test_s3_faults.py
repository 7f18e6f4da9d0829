"""S3 misbehaving mid-stream (through the fault proxy): 5xx answers and dropped
connections for a while, and a response lost after S3 acted on the request. The run
must ride them out by itself (botocore's retries, then the task's), the object must
be byte-identical, and only requests that S3 had processed may repeat a part."""

from __future__ import annotations

import hashlib

import pytest

from tests.faults.conftest import check_object, recorder, report, reuploads
from tests.faults.proxy import FaultProxy
from tests.flows.helpers import MIB, payload, run_in_thread, wait_for_parts

pytestmark = pytest.mark.usefixtures("registered")

PART = 5 * MIB


def _ingest_with_fault(watch, store, proxy: FaultProxy, name: str, data: bytes, install) -> dict:
    """Ingest a growing file; call `install(proxy)` once its first part is recorded."""
    writer = recorder(store, watch / name, data, steps=14)
    writer.start()
    thread, out = run_in_thread(watch / name)
    wait_for_parts(store, 1, timeout=120)
    install(proxy)
    thread.join(240)
    writer.join(10)
    assert not thread.is_alive(), "the run did not end"
    state = out["state"]
    assert state.is_completed(), state.message
    return state.result()


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_for_a_while_is_retried_without_reupload(
    registered, s3, store, proxy, watch, request, status
):
    data = payload(6 * PART + 99, seed=41)
    # More failures in a row than botocore's 4 attempts: the task retry must step in.
    result = _ingest_with_fault(
        watch,
        store,
        proxy,
        f"s3-{status}.mp4",
        data,
        lambda p: p.add("UploadPart", "status", status=status, times=7),
    )

    check_object(s3, registered.s3_bucket, result["s3_key"], data)
    assert proxy.count("UploadPart", "status") == 7
    parts = proxy.parts_reached_s3(result["s3_upload_id"])
    assert sorted(parts) == list(range(1, 8))  # a refused request never reached S3
    report(request, reuploads(parts))


def test_all_s3_calls_failing_for_seconds_mid_stream(registered, s3, store, proxy, watch, request):
    data = payload(6 * PART + 5, seed=42)

    def outage(p: FaultProxy) -> None:
        p.add(None, "status", status=503, seconds=4)

    result = _ingest_with_fault(watch, store, proxy, "s3-outage.mp4", data, outage)

    check_object(s3, registered.s3_bucket, result["s3_key"], data)
    assert proxy.count(None, "status") > 0  # the outage did meet requests
    parts = proxy.parts_reached_s3(result["s3_upload_id"])
    assert sorted(parts) == list(range(1, 8))
    report(request, reuploads(parts))


def test_dropped_connections_for_seconds_mid_stream(registered, s3, store, proxy, watch, request):
    data = payload(6 * PART + 5, seed=43)

    def partition(p: FaultProxy) -> None:
        p.add(None, "drop", seconds=4)
        p.add("UploadPart", "delay", delay=1.0, times=2)  # then slow for a moment

    result = _ingest_with_fault(watch, store, proxy, "s3-drops.mp4", data, partition)

    check_object(s3, registered.s3_bucket, result["s3_key"], data)
    assert proxy.count(None, "drop") > 0
    parts = proxy.parts_reached_s3(result["s3_upload_id"])
    assert sorted(parts) == list(range(1, 8))
    report(request, reuploads(parts))


def test_upload_part_answer_lost_after_s3_stored_it(registered, s3, store, proxy, watch, request):
    data = payload(6 * PART + 5, seed=44)
    result = _ingest_with_fault(
        watch,
        store,
        proxy,
        "s3-lost-answer.mp4",
        data,
        lambda p: p.add("UploadPart", "drop_after", part=4, times=2),
    )

    check_object(s3, registered.s3_bucket, result["s3_key"], data)
    parts = proxy.parts_reached_s3(result["s3_upload_id"])
    # Part 4 reached S3 three times (two answers lost); every other part once.
    assert reuploads(parts) == [4, 4]
    assert sorted(set(parts)) == list(range(1, 8))
    report(request, reuploads(parts))


def test_complete_answer_lost_after_s3_completed(registered, s3, store, proxy, watch, request):
    """S3 completed the object but the answer never arrived: the retried Complete
    finds no upload. The run must see that the object is its own and finish."""
    data = payload(3 * PART + 12345, seed=45)
    result = _ingest_with_fault(
        watch,
        store,
        proxy,
        "s3-complete-lost.mp4",
        data,
        lambda p: p.add("CompleteMultipartUpload", "drop_after", times=1),
    )

    assert result["status"] == "completed"
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    check_object(s3, registered.s3_bucket, result["s3_key"], data)
    assert proxy.count("CompleteMultipartUpload", "drop_after") == 1
    assert proxy.count("CompleteMultipartUpload") == 2  # S3 answers a repeat with success
    parts = proxy.parts_reached_s3(result["s3_upload_id"])
    assert sorted(parts) == [1, 2, 3, 4]
    assert s3.list_multipart_uploads(Bucket=registered.s3_bucket).get("Uploads", []) == []
    report(request, reuploads(parts))
