"""kill -9 of the flow-run process while a request of it is held at the S3 proxy:
mid-part (UploadPart held) and between the last part and completion
(CompleteMultipartUpload held). Each is run twice: the held request reaches S3 after
the kill (it was on the wire) or never does. The operator then reruns the stream;
the object must be byte-identical and only unrecorded parts may go up again."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.flows.ingest import stream_ingest
from tests.faults.conftest import (
    check_object,
    close_hint,
    kill_flow_when,
    recorded_parts,
    recorder,
    report,
    reuploads,
)
from tests.faults.proxy import FaultProxy, Rule
from tests.flows.helpers import (
    MIB,
    GrowingWriter,
    payload,
    until,
)

pytestmark = pytest.mark.usefixtures("registered")

PART = 5 * MIB


def _kill_while_held(
    src: Path, data: bytes, held: Rule, log: Path, store: CheckpointStore
) -> tuple[str, GrowingWriter]:
    """Grow `src` while a flow process ingests it; kill -9 the process once `held`
    holds one of its requests. Returns the stream id and the writer (maybe still
    writing)."""
    writer = recorder(store, src, data, steps=16)
    writer.start()
    return kill_flow_when(src, log, store, lambda: held.arrived.wait(0.2)), writer


def _let_go(proxy: FaultProxy, held: Rule, op: str, reach_s3: bool) -> None:
    """Release the dead run's held request: on to S3, or dropped."""
    before = proxy.count(op)
    held.release(forward=reach_s3)
    until(lambda: proxy.count(op) > before, 30, f"the held {op} to be let go")


@pytest.mark.parametrize("reach_s3", [True, False], ids=["part-reached-s3", "part-lost"])
def test_kill_mid_part_then_rerun(registered, s3, store, proxy, watch, tmp_path, request, reach_s3):
    data = payload(6 * PART + 4321, seed=31)
    total = -(-len(data) // PART)
    held = proxy.add("UploadPart", "hold", part=3, times=1)
    sid, writer = _kill_while_held(watch / "mid-part.mp4", data, held, tmp_path / "f.log", store)
    checkpointed = set(store.parts.get(sid))
    upload_id = store.streams.require(sid).s3_upload_id
    _let_go(proxy, held, "UploadPart", reach_s3)
    writer.join(60)
    assert writer.done.is_set()
    assert 3 not in checkpointed  # the kill came before part 3's answer
    first_run = proxy.parts_reached_s3(upload_id)
    assert (3 in first_run) == reach_s3
    mark = proxy.mark()

    result = stream_ingest(path=str(watch / "mid-part.mp4"), stream_id=sid)

    assert result["status"] == "completed"
    assert result["s3_upload_id"] == upload_id  # resumed, not started again
    check_object(s3, registered.s3_bucket, result["s3_key"], data)
    rerun = proxy.parts_reached_s3(upload_id, since=mark)
    assert sorted(rerun) == sorted(set(range(1, total + 1)) - checkpointed)
    again = reuploads(first_run + rerun)
    # Only parts that reached S3 but were never checkpointed go up twice.
    assert again == sorted(set(first_run) - checkpointed)
    assert (3 in again) == reach_s3
    report(request, again)


@pytest.mark.parametrize("reach_s3", [True, False], ids=["complete-reached-s3", "complete-lost"])
def test_kill_between_last_part_and_completion_then_rerun(
    registered, s3, store, proxy, watch, tmp_path, request, reach_s3
):
    data = payload(3 * PART + 777, seed=32)
    held = proxy.add("CompleteMultipartUpload", "hold", times=1)
    src = watch / "at-complete.mkv"
    sid, writer = _kill_while_held(src, data, held, tmp_path / "f.log", store)
    assert writer.done.is_set()  # completion only starts once the recording ended
    assert sorted(store.parts.get(sid)) == [1, 2, 3, 4]
    assert store.streams.require(sid).status == "finalizing"
    upload_id = store.streams.require(sid).s3_upload_id
    _let_go(proxy, held, "CompleteMultipartUpload", reach_s3)
    first_run = proxy.parts_reached_s3(upload_id)
    mark = proxy.mark()

    result = stream_ingest(path=str(src), stream_id=sid)

    assert result["status"] == "completed"
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    check_object(s3, registered.s3_bucket, result["s3_key"], data)
    assert proxy.parts_reached_s3(upload_id, since=mark) == []
    # Completed once in all: by the dead run's request, or by the rerun.
    assert proxy.count("CompleteMultipartUpload", "forwarded", since=mark) == (not reach_s3)
    assert s3.list_multipart_uploads(Bucket=registered.s3_bucket).get("Uploads", []) == []
    assert upload_id not in store.parts.uploads()
    report(request, reuploads(first_run))


def test_a_rerun_fills_the_hole_a_killed_run_left_and_sends_nothing_twice(
    registered, s3, store, proxy, watch, tmp_path, request
):
    # A file far ahead goes up several parts at a time, so parts finish out of order:
    # part 1 is held while 2-5 are checkpointed, then the run is killed. The rerun is
    # caught up at once (one full part missing), and its window must stop before 2.
    data = payload(5 * PART + 3, seed=33)
    src = watch / "hole.mkv"
    src.write_bytes(data)
    close_hint(store, src)
    held = proxy.add("UploadPart", "hold", part=1, times=1)
    sid = kill_flow_when(
        src, tmp_path / "f.log", store, lambda: held.arrived.is_set() and recorded_parts(store) >= 4
    )
    assert sorted(store.parts.get(sid)) == [2, 3, 4, 5]
    upload_id = store.streams.require(sid).s3_upload_id
    _let_go(proxy, held, "UploadPart", reach_s3=False)
    mark = proxy.mark()

    result = stream_ingest(path=str(src), stream_id=sid)

    assert result["status"] == "completed"
    assert result["s3_upload_id"] == upload_id
    check_object(s3, registered.s3_bucket, result["s3_key"], data)
    assert sorted(proxy.parts_reached_s3(upload_id, since=mark)) == [1, 6]
    report(request, reuploads(proxy.parts_reached_s3(upload_id)))
