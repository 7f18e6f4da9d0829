"""Two runs racing for one stream (as two workers on one pool would run them): two
flow processes started together for a new file, two reruns of a crashed stream, and a
run frozen past its lease that wakes up while its successor uploads. Exactly one run
uploads each part, and the object is right."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.conftest import edit_config
from tests.faults.conftest import (
    check_object,
    close_hint,
    kill_flow_when,
    recorded_parts,
    recorder,
    report,
    reuploads,
)
from tests.flows.helpers import (
    MIB,
    payload,
    run_in_thread,
    start_flow_process,
    until,
    wait_for_parts,
)

pytestmark = pytest.mark.usefixtures("registered")

PART = 5 * MIB
LOSER = "being uploaded by another run"


def _logs(paths: list[Path]) -> list[str]:
    return [p.read_text(errors="replace") if p.exists() else "" for p in paths]


def test_two_processes_start_together_on_a_new_file(
    registered, s3, store, proxy, watch, tmp_path, request
):
    data = payload(4 * PART + 999, seed=71)
    src = watch / "together.mp4"
    writer = recorder(store, src, data, steps=12)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [start_flow_process(src, log=log) for log in logs]
    # Grow the file only once both runs are in (a busy machine can start one process
    # seconds after the other): then neither can finish before the other looks.
    until(
        lambda: all(log.exists() and "Beginning flow run" in log.read_text() for log in logs),
        120,
        "both runs to begin",
    )
    writer.start()
    codes = [p.wait(240) for p in procs]
    writer.join(10)

    assert codes == [0, 0], _logs(logs)
    assert sum(LOSER in text for text in _logs(logs)) == 1, _logs(logs)  # one stood back
    [record] = store.streams.list()
    assert record.status == "completed"
    check_object(s3, registered.s3_bucket, record.s3_key, data)
    assert proxy.count("CreateMultipartUpload") == 1
    parts = proxy.parts_reached_s3()
    assert sorted(parts) == [1, 2, 3, 4, 5]
    report(request, reuploads(parts))


def test_two_reruns_of_a_crashed_stream_race_for_its_lease(
    registered, s3, store, proxy, watch, tmp_path, monkeypatch, request
):
    # A lease far longer than the test: only the take-over of a crashed run's lease
    # (compare-and-set in Redis) lets a rerun in, and only one of them.
    edit_config(lease_ttl_seconds=300)
    data = payload(5 * PART + 3, seed=72)
    src = watch / "reruns.mp4"
    writer = recorder(store, src, data, steps=14)
    writer.start()
    sid = kill_flow_when(src, tmp_path / "first.log", store, lambda: recorded_parts(store) >= 2)
    writer.join(60)
    checkpointed = set(store.parts.get(sid))
    upload_id = store.streams.require(sid).s3_upload_id
    before = proxy.parts_reached_s3(upload_id)
    mark = proxy.mark()
    # Hold the winner at its first S3 call (resuming lists the parts) until the other
    # run has looked: a busy machine may start one process seconds after the other,
    # and a finished file would otherwise let the first finish before the race.
    gate = proxy.add("ListParts", "hold", times=1)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [start_flow_process(src, stream_id=sid, log=log) for log in logs]
    try:
        until(lambda: any(LOSER in t for t in _logs(logs)), 180, "one run to stand back")
    finally:
        gate.release()
    codes = [p.wait(240) for p in procs]

    assert codes == [0, 0], _logs(logs)
    assert sum(LOSER in text for text in _logs(logs)) == 1
    record = store.streams.require(sid)
    assert record.status == "completed" and record.s3_upload_id == upload_id
    check_object(s3, registered.s3_bucket, record.s3_key, data)
    rerun = proxy.parts_reached_s3(upload_id, since=mark)
    assert sorted(rerun) == sorted(set(range(1, 7)) - checkpointed)  # each once
    again = reuploads(before + rerun)
    assert again == sorted(set(before) - checkpointed)
    report(request, again)


def test_run_frozen_past_its_lease_wakes_while_its_successor_uploads(
    registered, s3, store, proxy, watch, tmp_path, monkeypatch, request
):
    edit_config(max_parts_in_flight=1)
    data = payload(6 * PART + 11, seed=73)
    src = watch / "frozen.mp4"
    held = proxy.add("UploadPart", "hold", part=3, times=1)
    with open(src, "wb") as fh:
        fh.write(data[: 3 * PART + MIB])
        fh.flush()
        first = start_flow_process(src, log=tmp_path / "first.log")
        try:
            assert held.arrived.wait(180), (tmp_path / "first.log").read_text()
            first.send_signal(signal.SIGSTOP)  # a VM pause, a GC stall, a stuck NFS read
            sid = store.streams.list()[0].stream_id
            until(lambda: store.leases.holder(sid) is None, 60, "the frozen run's lease to expire")
            thread, out = run_in_thread(src, stream_id=sid)
            wait_for_parts(store, 3)  # the successor uploaded part 3 itself
            first.send_signal(signal.SIGCONT)
            held.release()  # the frozen run's part 3 reaches S3 after all
            assert first.wait(120) != 0  # it found its lease gone and stopped
        finally:
            first.send_signal(signal.SIGCONT)
            if first.poll() is None:
                first.kill()
                first.wait(10)
        # The stale run must not have touched the stream its successor owns.
        assert store.streams.require(sid).status == "uploading"
        fh.write(data[3 * PART + MIB :])
    close_hint(store, src)
    thread.join(240)

    state = out["state"]
    assert state.is_completed(), state.message
    result = state.result()
    check_object(s3, registered.s3_bucket, result["s3_key"], data)
    parts = proxy.parts_reached_s3(result["s3_upload_id"])
    assert reuploads(parts) == [3]  # the stale run's late copy of part 3, same bytes
    assert sorted(set(parts)) == list(range(1, 8))
    assert store.streams.require(sid).status == "completed"
    report(request, reuploads(parts))
