"""Redis killed (-9) mid-stream and started again, with its data (AOF, fsync always)
and without it. The run must ride out the outage by itself, finish the same upload,
and upload again only a part whose checkpoint write met the outage."""

from __future__ import annotations

import hashlib
import time

import pytest

from tests.conftest import edit_config
from tests.faults.conftest import (
    check_object,
    close_hint,
    kill_redis,
    report,
    reuploads,
    start_redis,
)
from tests.flows.helpers import MIB, payload, run_in_thread, until, wait_for_parts

PART = 5 * MIB
modes = pytest.mark.parametrize(
    "redis_server", [True, False], indirect=True, ids=["with-aof", "without-data"]
)


def _finish(thread, out) -> dict:
    thread.join(240)
    assert not thread.is_alive(), "the run did not end"
    state = out["state"]
    assert state.is_completed(), state.message
    return state.result()


@modes
def test_redis_down_while_the_run_waits_for_growth(
    registered, s3, store, proxy, watch, request, redis_server
):
    data = payload(6 * PART + 17, seed=51)
    src = watch / "redis-idle.mp4"
    with open(src, "wb") as fh:  # one handle, held open like a recorder's
        fh.write(data[: 2 * PART + MIB])
        fh.flush()
        thread, out = run_in_thread(src)
        sid = wait_for_parts(store, 2)
        kill_redis(request)
        time.sleep(2)  # the run polls the (dead) Redis for a close hint meanwhile
        start_redis(request)
        fh.write(data[2 * PART + MIB :])
    close_hint(store, src)

    result = _finish(thread, out)

    assert result["stream_id"] == sid
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    check_object(s3, registered.s3_bucket, result["s3_key"], data)
    parts = proxy.parts_reached_s3(result["s3_upload_id"])
    assert sorted(parts) == list(range(1, 8))  # one upload, each part once
    report(request, reuploads(parts))


@modes
def test_redis_down_while_a_part_is_checkpointed(
    registered, s3, store, proxy, watch, request, monkeypatch, redis_server
):
    # One part at a time, so that part 3 is the only one that meets the outage.
    edit_config(max_parts_in_flight=1)
    data = payload(6 * PART + 17, seed=52)
    src = watch / "redis-part.mp4"
    held = proxy.add("UploadPart", "hold", part=3, times=1)
    with open(src, "wb") as fh:
        fh.write(data)
    thread, out = run_in_thread(src)
    assert held.arrived.wait(120), "part 3 never reached the proxy"
    upload_id = store.streams.list()[0].s3_upload_id
    kill_redis(request)
    held.release()  # S3 stores part 3; recording it in Redis fails
    until(lambda: proxy.parts_reached_s3(upload_id).count(3) >= 2, 60, "part 3 to be retried")
    start_redis(request)
    close_hint(store, src)

    result = _finish(thread, out)

    assert result["s3_upload_id"] == upload_id
    check_object(s3, registered.s3_bucket, result["s3_key"], data)
    parts = proxy.parts_reached_s3(upload_id)
    again = reuploads(parts)
    assert set(again) == {3}  # only the part whose checkpoint write failed
    assert sorted(set(parts)) == list(range(1, 8))
    assert store.streams.require(result["stream_id"]).status == "completed"
    report(request, again)


@modes
def test_redis_restarted_between_the_last_part_and_the_end(
    registered, s3, store, proxy, watch, request, redis_server
):
    data = payload(6 * PART + 17, seed=53)
    src = watch / "redis-end.mp4"
    src.write_bytes(data)
    thread, out = run_in_thread(src)
    sid = wait_for_parts(store, 6)  # every full part; only the short tail is left
    kill_redis(request)
    start_redis(request)
    close_hint(store, src)  # the recording ends: finalize finds Redis as it is now

    result = _finish(thread, out)

    assert result["stream_id"] == sid
    check_object(s3, registered.s3_bucket, result["s3_key"], data)
    parts = proxy.parts_reached_s3()
    assert sorted(parts) == list(range(1, 8))  # one upload, each part once
    assert proxy.count("CreateMultipartUpload") == 1
    record = store.streams.require(sid)
    assert record.status == "completed" and record.sha256 == result["sha256"]
    report(request, reuploads(parts))
