"""The stream-ingest flow under prefect_test_harness, with a private redis-server
and a moto S3 server: growing files, head rewrites, empty and tiny files."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import stream_ingest.flows.completed as completed_module
import stream_ingest.flows.finalize as finalize_module
import stream_ingest.flows.ingest as ingest_module
import stream_ingest.parts as parts_module
from stream_ingest.blocks.bucket import StreamBucket
from stream_ingest.flows.buffers import PARTS_IN_MEMORY, PartBuffers
from stream_ingest.flows.ingest import stream_ingest
from tests.conftest import edit_config
from tests.flows.helpers import (
    MIB,
    GrowingWriter,
    object_bytes,
    payload,
    until,
    wait_for_part,
)

pytestmark = pytest.mark.usefixtures("registered")


def _ingest(path: Path) -> dict:
    return stream_ingest(path=str(path))


def _recorded(path: Path, data: bytes, steps: int) -> dict:
    """The flow's result for `data` written to a new file in `steps`, as it records."""
    path.touch()
    writer = GrowingWriter(path, data, steps=steps, pause=0.15)
    writer.start()
    result = _ingest(path)
    writer.join(5)
    assert writer.done.is_set()
    return result


@pytest.mark.on_ceph
def test_finished_file_is_uploaded_byte_identically(registered, s3, store, tmp_path):
    data = payload(17 * MIB + 12345, seed=1)
    src = Path(registered.watch_dir) / "cam 1" / "täst.mp4"
    src.parent.mkdir()
    src.write_bytes(data)

    result = _ingest(src)

    assert result["status"] == "completed"
    assert result["s3_key"] == "rec/cam 1/täst.mp4"
    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == data
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    assert int(result["total_bytes"]) == len(data)
    tags = s3.get_object_tagging(Bucket=registered.s3_bucket, Key=result["s3_key"])["TagSet"]
    assert {"Key": "sha256", "Value": result["sha256"]} in tags
    assert store.streams.get(result["stream_id"]).status == "completed"
    assert result["stream_id"] not in {r.stream_id for r in store.streams.active()}
    # The upload opened after the stream began; the object was in S3 before its
    # SHA-256 was read and the record completed.
    assert result["started_at_utc"] <= result["opened_at_utc"] < result["object_at_utc"]
    assert "" < result["object_at_utc"] < result["completed_at_utc"]
    # A run not created by the sensor (here: called directly) names itself.
    assert _flow_run(result["flow_run_id"]).name == "ingest-täst.mp4"


def test_a_run_reads_its_file_through_one_open_and_lets_go_of_it(registered, s3, monkeypatch):
    """Every open of a recording is an IN_OPEN the sensor handles: a run's reads
    (parts, their check at finalize, the SHA-256) share one descriptor, closed when
    the run ends (a deleted recording's space is freed then)."""
    import stream_ingest.flows.source as source

    data = payload(17 * MIB + 12345, seed=3)
    src = Path(registered.watch_dir) / "held.mp4"
    src.write_bytes(data)
    opened: list[str] = []
    real = source._open_owned

    def counted(path, owned):
        opened.append(path)
        return real(path, owned)

    monkeypatch.setattr(source, "_open_owned", counted)

    result = _ingest(src)

    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == data
    # One open for the four parts (and one for a first look that found the name
    # changed since the stream was claimed, if the stat by name could not tell).
    assert opened in ([str(src)], [str(src)] * 2)
    assert str(src) not in {path for path, _owned in source._HELD.kept()}


def test_prefect_does_not_walk_the_config_blocks_of_a_task_s_inputs(registered, monkeypatch):
    """Prefect walks (and rebuilds) every task input looking for futures: the config
    block, with its S3 and Redis blocks inside, was 6 % of a short run's CPU. The
    tasks get it quoted; no visit reaches the blocks inside it."""
    import prefect.utilities.collections as collections

    visited: list[type] = []
    real = collections.visit_collection

    def recording(expr, *args, **kwargs):
        visited.append(type(expr))
        return real(expr, *args, **kwargs)

    monkeypatch.setattr(collections, "visit_collection", recording)
    src = Path(registered.watch_dir) / "quoted.mp4"
    src.write_bytes(payload(MIB, seed=7))

    assert _ingest(src)["status"] == "completed"
    assert visited, "the recording saw no visit: the test would prove nothing"
    assert StreamBucket not in visited


@pytest.mark.on_ceph
def test_file_growing_in_steps_is_uploaded_byte_identically(registered, s3, store):
    data = payload(23 * MIB + 777, seed=2)
    src = Path(registered.watch_dir) / "growing.mkv"

    result = _recorded(src, data, steps=12)

    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == data
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    parts = store.parts.get(result["stream_id"])
    assert len(parts) == 5  # four full 5 MiB parts while growing, then the tail
    assert sorted(p.offset for p in parts.values()) == [i * 5 * MIB for i in range(5)]


def test_a_recording_s_parts_are_checked_at_its_end_without_part_buffers(
    registered, s3, store, monkeypatch
):
    """At a recording's end its uploaded parts are checked slice by slice: a part
    buffer (the process's bounded pool) is borrowed only for a part that is sent, so
    many recordings ending at once do not wait behind each other's parts in flight."""
    borrowed: list[int] = []
    sent: list[int] = []
    checked: list[bool] = []
    pool = PartBuffers(PARTS_IN_MEMORY)
    real_borrow, real_put = pool.borrow, finalize_module.put_part
    real_check = finalize_module.unchanged_in_slices

    def borrow(size):
        borrowed.append(size)
        return real_borrow(size)

    def put(ctx, number, body, offset):
        sent.append(number)
        return real_put(ctx, number, body, offset)

    def check(known, read, slice_size):
        checked.append(real_check(known, read, slice_size))
        return checked[-1]

    monkeypatch.setattr(pool, "borrow", borrow)
    monkeypatch.setattr(finalize_module, "BUFFERS", pool)
    monkeypatch.setattr(finalize_module, "put_part", put)
    monkeypatch.setattr(finalize_module, "unchanged_in_slices", check)
    data = payload(17 * MIB + 99, seed=13)
    src = Path(registered.watch_dir) / "checked.mkv"

    result = _recorded(src, data, steps=9)

    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == data
    assert checked and all(checked)  # the live parts, read before the last write
    assert len(borrowed) == len(sent) >= 1  # the tail, never read before


def test_under_the_fixed_policy_every_part_but_the_last_has_the_same_size(
    registered, s3, store, monkeypatch
):
    """Cloudflare R2 completes only parts of one size but the last: what S3 holds when
    a growing recording completes (ListParts), and when its revision does (parts
    copied from the first take and parts sent), is parts of part_size_mib, where a
    growing plan would have doubled them."""
    monkeypatch.setattr(parts_module, "DOUBLING_INTERVAL", 2)  # growing: 10 MiB from part 3
    edit_config(part_size_policy="fixed")
    held: list[list[int]] = []
    real = StreamBucket.complete_multipart_upload

    def listed_first(self, key, upload_id, parts, **kwargs):
        in_s3 = sorted(self.list_parts(key, upload_id), key=lambda p: p.number)
        held.append([p.size for p in in_s3])
        return real(self, key, upload_id, parts, **kwargs)

    monkeypatch.setattr(StreamBucket, "complete_multipart_upload", listed_first)
    data = payload(22 * MIB + 7, seed=11)
    src = Path(registered.watch_dir) / "r2.mkv"

    first = _recorded(src, data, steps=9)
    more = payload(9 * MIB, seed=12)
    with open(src, "ab") as fh:  # grown after completion: a revision
        fh.write(more)
    second = stream_ingest(stream_id=first["stream_id"])

    assert object_bytes(s3, registered.s3_bucket, second["s3_key"]) == data + more
    assert int(second["revision"]) == 2
    assert held == [[5 * MIB] * 4 + [2 * MIB + 7], [5 * MIB] * 6 + [1 * MIB + 7]]
    record = store.streams.get(first["stream_id"])
    assert (record.part_size_policy, record.part_base_bytes) == ("fixed", 5 * MIB)


@pytest.mark.parametrize(
    ("patch_at", "patch"),
    [
        (0, b"\x00\x00\x00\x20ftypisom-PATCHED-AT-CLOSE"),  # MP4/MKV head at close
        (7 * MIB + 3, b"\x12\x34\x56\x78"),  # a 4-byte size field mid-file, in part 2
    ],
    ids=["head", "mid-file"],
)
def test_bytes_rewritten_at_close_are_uploaded_byte_identically(
    registered, s3, store, patch_at, patch
):
    """Finalize's CRC32 check finds a rewrite of parts that were already uploaded."""
    data = payload(16 * MIB + 99, seed=3)
    src = Path(registered.watch_dir) / "rewrite.mp4"
    src.touch()
    # The rewrite comes once the part it changes is uploaded, however late the run starts.
    uploaded = lambda: wait_for_part(store, patch_at // (5 * MIB) + 1)  # noqa: E731
    writer = GrowingWriter(
        src, data, steps=8, pause=0.15, head_patch=patch, patch_at=patch_at, before_patch=uploaded
    )
    writer.start()

    result = _ingest(src)
    writer.join(5)

    expected = data[:patch_at] + patch + data[patch_at + len(patch) :]
    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == expected
    assert result["sha256"] == hashlib.sha256(expected).hexdigest()
    assert int(result["reuploaded_parts"]) == 1  # the patched part changed after upload


@pytest.mark.parametrize(
    "patch", [b"", b"\x1a\x45\xdf\xa3-PATCHED-AT-CLOSE"], ids=["grown", "head"]
)
def test_the_sha256_is_read_at_the_end_only_where_the_parts_did_not_give_it(
    registered, s3, store, monkeypatch, patch
):
    """Each part's bytes feed the file's SHA-256 as they go up in order: a recording
    that only grew needs no read at its end; one whose head was patched at close is
    read whole (the patched part was uploaded again, the digest started over)."""
    edit_config(max_parts_in_flight=1)  # one part at a time: every part in order
    read_for_digest: list[int] = []
    real = completed_module.read_into

    def counted(path: str, offset: int, size: int, buf: bytearray, owned=None) -> memoryview:
        read_for_digest.append(size)
        return real(path, offset, size, buf, owned)

    monkeypatch.setattr(completed_module, "read_into", counted)
    data = payload(16 * MIB + 99, seed=5)
    src = Path(registered.watch_dir) / "fed.mkv"
    src.touch()
    # A head rewrite comes once the first part is uploaded, however late the run starts.
    uploaded = lambda: wait_for_part(store, 1)  # noqa: E731
    writer = GrowingWriter(src, data, steps=8, pause=0.15, head_patch=patch, before_patch=uploaded)
    writer.start()

    result = _ingest(src)
    writer.join(5)

    expected = patch + data[len(patch) :]
    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == expected
    assert result["sha256"] == hashlib.sha256(expected).hexdigest()
    assert sum(read_for_digest) == (len(expected) if patch else 0)


def test_a_rewrite_during_finalize_is_caught(registered, s3, store, monkeypatch):
    """The file changes while finalize verifies it, in a part already verified: the
    stream goes back to tailing, and the next finalize uploads that part again."""
    edit_config(max_parts_in_flight=1)  # one part at a time: part 1 is read before 4
    data = payload(16 * MIB + 5, seed=4)
    src = Path(registered.watch_dir) / "during.mkv"
    src.write_bytes(data)
    real, rewritten = finalize_module._verify, threading.Event()

    def verify_and_rewrite(ctx, pr, known):
        if pr.number == 4 and not rewritten.is_set():  # the last part of the first pass
            with open(src, "r+b") as fh:
                fh.seek(MIB)  # inside part 1, verified by now
                fh.write(b"REWRITTEN")
            rewritten.set()
        return real(ctx, pr, known)

    monkeypatch.setattr(finalize_module, "_verify", verify_and_rewrite)
    result = _ingest(src)

    expected = data[:MIB] + b"REWRITTEN" + data[MIB + 9 :]
    assert rewritten.is_set()
    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == expected
    assert result["sha256"] == hashlib.sha256(expected).hexdigest()
    assert int(result["reuploaded_parts"]) == 1


def _dropped_in(path: Path, data: bytes) -> None:
    """A finished file copied in: its mtime is an hour old."""
    path.write_bytes(data)
    hour_ago = time.time() - 3600
    os.utime(path, (hour_ago, hour_ago))


def test_a_finished_file_is_not_read_again_at_finalize(registered, s3, store, monkeypatch):
    """Parts read after the file's last change hold its final bytes: finalize reads
    only the short last part, which nobody read before."""
    data = payload(17 * MIB + 12345, seed=6)  # three full 5 MiB parts and a tail
    src = Path(registered.watch_dir) / "dropped.mp4"
    _dropped_in(src, data)
    reads: list[int] = []
    real = finalize_module.read_into

    def counted(path, offset, size, buf, owned=None):
        reads.append(offset)
        return real(path, offset, size, buf, owned)

    monkeypatch.setattr(finalize_module, "read_into", counted)
    result = _ingest(src)

    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == data
    assert reads == [15 * MIB]


def test_finalize_sends_a_part_from_its_buffer_not_a_copy(registered, s3, store, monkeypatch):
    """A part read at finalize goes to S3 from the pool's buffer, as a live part
    does: a copy would hold its bytes twice and cost a memcpy per part."""
    data = payload(12 * MIB + 4321, seed=8)
    src = Path(registered.watch_dir) / "sent-as-is.mp4"
    _dropped_in(src, data)
    sent: list[type] = []
    real = finalize_module.put_part

    def spy(ctx, number, body, offset):
        sent.append(type(body))
        return real(ctx, number, body, offset)

    monkeypatch.setattr(finalize_module, "put_part", spy)
    # A pool of its own: a larger buffer other tests left in the process's pool may be
    # lent (then a copy of the part's length is what goes, by design).
    monkeypatch.setattr(finalize_module, "BUFFERS", PartBuffers(PARTS_IN_MEMORY))
    result = _ingest(src)

    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == data
    assert sent == [bytearray]


def test_a_finished_file_rewritten_before_finalize_is_caught(registered, s3, store, monkeypatch):
    """The same file, rewritten in place at the same size after its parts were read:
    the mtime moved, so no part is taken as final and the change is uploaded."""
    data = payload(17 * MIB + 12345, seed=7)
    src = Path(registered.watch_dir) / "rewritten.mp4"
    _dropped_in(src, data)
    real = ingest_module.finalize

    def rewrite_then_finalize(*args, **kwargs):
        if not rewrite_then_finalize.done:
            with open(src, "r+b") as fh:
                fh.seek(6 * MIB)  # inside part 2, uploaded by now
                fh.write(b"CHANGED")
            rewrite_then_finalize.done = True
        return real(*args, **kwargs)

    rewrite_then_finalize.done = False
    monkeypatch.setattr(ingest_module, "finalize", rewrite_then_finalize)
    result = _ingest(src)

    expected = data[: 6 * MIB] + b"CHANGED" + data[6 * MIB + 7 :]
    assert rewrite_then_finalize.done
    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == expected
    assert int(result["reuploaded_parts"]) == 1


def _flow_run(flow_run_id: str) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(uuid.UUID(flow_run_id))


def _task_runs(flow_run_id: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )


def test_a_file_far_ahead_goes_up_in_batch_task_runs(registered, s3, store):
    """Seven full parts ready at once, two upload slots: one task run uploads them
    all (upload-parts-1-7), then finalize uploads the tail; nothing per part."""
    edit_config(max_parts_in_flight=2)
    data = payload(35 * MIB + 3, seed=8)
    src = Path(registered.watch_dir) / "far-ahead.mp4"
    _dropped_in(src, data)

    result = _ingest(src)

    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == data
    names = sorted(
        r.name for r in _task_runs(store.streams.require(result["stream_id"]).flow_run_id)
    )
    assert [n for n in names if n.startswith("upload-part")] == ["upload-parts-1-7"]
    assert sorted(store.parts.get(result["stream_id"])) == list(range(1, 9))


@pytest.mark.parametrize(
    ("failures", "task_tries"),
    [(1, 1), (2, 2)],
    ids=["part-retried-in-the-batch", "batch-retried-by-prefect"],
)
def test_a_failing_part_of_a_batch_sends_no_other_part_twice(
    registered, s3, store, monkeypatch, failures, task_tries
):
    """Part 3 of a batch meets S3 503s. Once: it is retried by itself inside the task
    run. Past its own retries (one, here): the task run fails and Prefect retries it,
    and that try sends only the parts the first did not checkpoint."""
    import stream_ingest.flows.retry as retry_module
    import stream_ingest.flows.upload as upload_module
    from stream_ingest.errors import S3Unavailable

    monkeypatch.setattr(retry_module, "RETRY_DELAYS", [0])
    monkeypatch.setattr(retry_module, "RETRIES", 1)
    monkeypatch.setattr(upload_module.upload_parts, "retry_delay_seconds", [0])
    edit_config(max_parts_in_flight=2)
    data = payload(25 * MIB + 3, seed=9)
    src = Path(registered.watch_dir) / "retried-batch.mp4"
    _dropped_in(src, data)
    sent: list[int] = []
    real = upload_module.put_part

    def flaky(ctx, number, body, offset):
        sent.append(number)
        if number == 3 and sent.count(3) <= failures:
            raise S3Unavailable("503 SlowDown")
        return real(ctx, number, body, offset)

    monkeypatch.setattr(upload_module, "put_part", flaky)
    result = _ingest(src)

    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == data
    # Part 3 went once per failure and once more; every other part once.
    assert {k: sent.count(k) for k in set(sent)} == {1: 1, 2: 1, 3: failures + 1, 4: 1, 5: 1}
    runs = _task_runs(store.streams.require(result["stream_id"]).flow_run_id)
    assert [r.run_count for r in runs if r.name == "upload-parts-1-5"] == [task_tries]


@pytest.mark.parametrize("size", [0, 1, 5 * MIB - 1, 5 * MIB, 5 * MIB + 1])
def test_empty_tiny_and_boundary_sizes(registered, s3, size):
    data = payload(size, seed=size)
    src = Path(registered.watch_dir) / f"size-{size}.ts"
    src.write_bytes(data)

    result = _ingest(src)

    assert result["status"] == "completed"
    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == data
    assert int(result["total_bytes"]) == size


def test_rerun_of_completed_stream_is_a_noop(registered, s3, store):
    src = Path(registered.watch_dir) / "again.mp4"
    src.write_bytes(payload(MIB, seed=9))
    first = _ingest(src)

    second = stream_ingest(path=str(src), stream_id=first["stream_id"])
    third = _ingest(src)  # by path: same file identity, same stream

    assert second["message"] == "already completed"
    assert third["stream_id"] == first["stream_id"]
    assert third["message"] == "already completed"


def test_a_live_stream_goes_up_in_window_task_runs(registered, s3, store):
    """A recorder that stays ahead by less than two parts: one task run covers a
    window of 8 parts, each sent once its bytes are there, instead of one task run
    per part (three API events each). The last window ends early with the recording
    and finalize sends the rest."""
    data = payload(12 * 5 * MIB + 4321, seed=9)  # twelve full 5 MiB parts and a tail
    src = Path(registered.watch_dir) / "live-window.mkv"
    src.touch()
    writer = GrowingWriter(src, data, steps=60, pause=0.1)  # 1 MiB steps: 2 s per part
    writer.start()

    result = _ingest(src)
    writer.join(5)

    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == data
    runs = _task_runs(store.streams.require(result["stream_id"]).flow_run_id)
    uploads = sorted(r.name for r in runs if r.name.startswith("upload-part"))
    windows = [r.name for r in runs if r.task_key.startswith("upload_window")]
    assert windows, uploads
    assert len(uploads) <= 5, uploads  # twelve full parts: per part would be 12
    assert len(store.parts.get(result["stream_id"])) == 13


def test_a_window_that_falls_behind_sends_its_backlog_in_parallel(
    registered, s3, store, monkeypatch
):
    """S3 takes 1 s a part while the recorder writes one every 0.4 s: the window
    sends the parts that are ready several at once instead of letting the backlog
    grow part by part (one at a time, the close -> object was the whole backlog)."""
    from stream_ingest.blocks.bucket import StreamBucket

    lock, live, peak = threading.Lock(), [0], [0]
    writing = threading.Event()
    real = StreamBucket.upload_part

    def slow(self, *args, **kwargs):
        with lock:
            live[0] += 1
            if writing.is_set():
                peak[0] = max(peak[0], live[0])
        try:
            time.sleep(1.0)
            return real(self, *args, **kwargs)
        finally:
            with lock:
                live[0] -= 1

    monkeypatch.setattr(StreamBucket, "upload_part", slow)
    data = payload(7 * 5 * MIB + 99, seed=12)
    src = Path(registered.watch_dir) / "behind.mkv"
    src.touch()

    def record() -> None:
        with open(src, "r+b") as fh:  # open from the start: the recording is live
            until(lambda: store.streams.list() and store.streams.list()[0].s3_upload_id, 60, "open")
            writing.set()  # the first part arrives alone: the stream gets a window
            for i in range(0, len(data), MIB):
                fh.write(data[i : i + MIB])
                fh.flush()
                time.sleep(0.08)
            writing.clear()

    writer = threading.Thread(target=record, daemon=True)
    writer.start()
    result = _ingest(src)
    writer.join(5)

    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == data
    runs = _task_runs(store.streams.require(result["stream_id"]).flow_run_id)
    assert [r.name for r in runs if r.task_key.startswith("upload_window")]
    assert 2 <= peak[0] <= 4  # in parallel while recording, at most half the slots


def test_a_run_is_tagged_with_its_stream_once(registered, monkeypatch):
    """A run started by hand gets its `stream:<id>` tag from the flow; a run the sensor
    created tagged is not read and updated again for it."""
    import uuid

    from prefect import get_client, tags

    import stream_ingest.flows.report as report

    added: list[str] = []
    add_tag = report.add_tag
    monkeypatch.setattr(report, "add_tag", lambda run, tag: (added.append(tag), add_tag(run, tag)))

    by_hand = Path(registered.watch_dir) / "by-hand.mkv"
    by_hand.write_bytes(payload(MIB, seed=31))
    state = stream_ingest(path=str(by_hand), return_state=True)
    sid = state.result()["stream_id"]
    with get_client(sync_client=True) as client:
        assert f"stream:{sid}" in client.read_flow_run(state.state_details.flow_run_id).tags
    assert added == [f"stream:{sid}"]

    # What the sensor does: the run is created with its stream's id and tag.
    by_sensor = Path(registered.watch_dir) / "by-sensor.mkv"
    by_sensor.write_bytes(payload(MIB, seed=32))
    sid2 = str(uuid.uuid4())
    with tags(f"stream:{sid2}"):
        state = stream_ingest(path=str(by_sensor), stream_id=sid2, return_state=True)
    assert state.result()["status"] == "completed"
    with get_client(sync_client=True) as client:
        assert f"stream:{sid2}" in client.read_flow_run(state.state_details.flow_run_id).tags
    assert added == [f"stream:{sid}"]  # nothing added for the tagged run
