"""The end of a recording asked of the OS, files outside the folder, names that are
not UTF-8, and Redis wiped at each step of finalize (flow under the test harness)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import pytest

from stream_ingest.blocks.bucket import StreamBucket
from stream_ingest.blocks.store_streams import Streams
from stream_ingest.flows.ingest import stream_ingest
from stream_ingest.records import StreamRecord
from stream_ingest.states import Status
from tests.conftest import edit_config
from tests.flows.helpers import (
    MIB,
    lose_redis_data,
    object_bytes,
    payload,
    run_in_thread,
    upload_part_calls,
)

pytestmark = pytest.mark.usefixtures("registered")


def test_a_writer_that_stalls_past_the_idle_timeout_is_still_recording(registered, s3, store):
    """A low-rate muxer or a camera that reconnects: no growth for longer than the
    idle timeout (3 s here) while the recorder holds the file open for writing."""
    data = payload(7 * MIB + 99, seed=91)
    src = Path(registered.watch_dir) / "stall.mkv"
    stalled = threading.Event()

    def recorder() -> None:
        with open(src, "wb") as fh:
            fh.write(data[: 3 * MIB])
            fh.flush()
            stalled.set()
            time.sleep(6)  # twice the idle timeout, file still open for writing
            fh.write(data[3 * MIB :])

    writer = threading.Thread(target=recorder, name="writer")
    writer.start()
    stalled.wait(10)
    thread, out = run_in_thread(src)
    writer.join(30)
    thread.join(60)

    result = out["state"].result()
    assert result["status"] == "completed"
    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == data


def test_with_writer_detection_off_the_idle_timeout_ends_it(registered, s3, store):
    """Where writers cannot be seen, the idle timeout decides, as documented."""
    edit_config(detect_writers=False)
    src = Path(registered.watch_dir) / "off.mkv"
    held = open(src, "wb")  # noqa: SIM115 - held open on purpose: invisible to the flow now
    try:
        held.write(payload(MIB, seed=92))
        held.flush()
        started = time.monotonic()
        result = stream_ingest(path=str(src))
    finally:
        held.close()
    assert result["status"] == "completed" and int(result["total_bytes"]) == MIB
    assert time.monotonic() - started >= 3  # waited the idle timeout


def test_a_symlink_out_of_the_folder_is_not_uploaded(registered, s3, store, tmp_path):
    secret = tmp_path / "outside" / "secret.mp4"
    secret.parent.mkdir()
    secret.write_bytes(b"not for S3")
    link = Path(registered.watch_dir) / "link.mp4"
    link.symlink_to(secret)

    state = stream_ingest(path=str(link), return_state=True)

    assert state.is_failed()
    assert "outside the watch folder" in state.message and str(secret) in state.message
    assert s3.list_objects_v2(Bucket=registered.s3_bucket).get("KeyCount", 0) == 0
    [record] = store.streams.list()
    assert record.status == Status.FAILED and "follow_symlinks" in record.error

    edit_config(follow_symlinks=True)
    other = Path(registered.watch_dir) / "followed.mp4"
    other.symlink_to(secret)
    result = stream_ingest(path=str(other))
    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == b"not for S3"


def test_a_name_that_is_not_utf8_uploads(registered, s3, store):
    """As the sensor hands it over: the path in the stream's record, none in the run's
    JSON parameters (they cannot carry such bytes)."""
    folder = os.fsencode(registered.watch_dir)
    raw = folder + b"/cam\xff 100%.mp4"
    with open(raw, "wb") as fh:
        fh.write(b"take one")
    path = os.fsdecode(raw)
    sid = str(uuid.uuid4())
    store.identities.claim(
        f"{os.stat(raw).st_dev}:{os.stat(raw).st_ino}",
        StreamRecord(stream_id=sid, original_path=path, watch_dir=registered.watch_dir),
    )

    result = stream_ingest(path="", stream_id=sid)

    assert result["s3_key"] == "rec/cam%FF 100%25.mp4"
    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == b"take one"
    assert store.streams.get(sid).original_path == path  # the bytes came back as they went in


STEPS = ["start", "before-complete", "after-complete", "after-tag"]


@pytest.mark.parametrize("step", STEPS)
def test_redis_wiped_during_finalize_still_completes(
    registered, s3, store, moto_server, monkeypatch, step
):
    data = payload(11 * MIB + 7, seed=93)
    src = Path(registered.watch_dir) / f"wipe-{step}.mp4"
    src.write_bytes(data)
    original = {n: getattr(StreamBucket, n) for n in ("complete_multipart_upload", "tag_object")}
    set_status = Streams.set_status

    def on_status(self, sid, status, **values):
        if step == "start" and status == Status.FINALIZING:
            lose_redis_data(store)
        return set_status(self, sid, status, **values)

    def on_complete(self, *args, **kwargs):
        if step == "before-complete":
            lose_redis_data(store)
        etag = original["complete_multipart_upload"](self, *args, **kwargs)
        if step == "after-complete":
            lose_redis_data(store)
        return etag

    def on_tag(self, *args, **kwargs):
        original["tag_object"](self, *args, **kwargs)
        if step == "after-tag":
            lose_redis_data(store)

    monkeypatch.setattr(Streams, "set_status", on_status)
    monkeypatch.setattr(StreamBucket, "complete_multipart_upload", on_complete)
    monkeypatch.setattr(StreamBucket, "tag_object", on_tag)
    log_start = Path(moto_server.log_path).stat().st_size

    state = stream_ingest(path=str(src), return_state=True)

    assert state.is_completed(), state.message
    result = state.result()
    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == data
    record = store.streams.get(result["stream_id"])
    assert record.status == Status.COMPLETED and record.sha256 == result["sha256"]
    calls = upload_part_calls(Path(moto_server.log_path), log_start, record.s3_upload_id)
    assert sorted(calls) == [1, 2, 3], "a part S3 already held was uploaded again"


def _paused_recorder(
    src: Path, data: bytes, touched: threading.Event, store, then: int = 0
) -> threading.Thread:
    """A recorder that writes its first part, pauses (a low-rate muxer) while another
    program opens and closes the file (touch: the sensor records a close), then
    writes the rest and closes. `then`: bytes written right after the touch, before
    the pause (the touch's close is stale by the time anyone looks)."""

    def record() -> None:
        with open(src, "wb") as fh:
            fh.write(data[: 6 * MIB])
            fh.flush()
            os.utime(src)
            st = os.stat(src)
            store.hints.note_closed(str(src), _identity(src), st.st_size, st.st_mtime_ns)
            fh.write(data[6 * MIB : 6 * MIB + then])
            fh.flush()
            touched.set()
            time.sleep(1.5)  # past the settle (0.5 s), within the idle timeout (3 s)
            fh.write(data[6 * MIB + then :])
        st = os.stat(src)
        store.hints.note_closed(str(src), _identity(src), st.st_size, st.st_mtime_ns)

    return threading.Thread(target=record, name="writer")


def _identity(src: Path) -> str:
    from stream_ingest.flows.source import identity_of

    return identity_of(str(src)) or ""


def test_with_writers_unknown_a_close_does_not_end_a_recording(registered, s3, store):
    """detect_writers off (another container, a network mount): a touch's close while
    the recorder pauses must not complete a third of the recording."""
    edit_config(detect_writers=False)
    data = payload(13 * MIB + 5, seed=93)
    src = Path(registered.watch_dir) / "touched-live.mkv"
    touched = threading.Event()
    writer = _paused_recorder(src, data, touched, store)
    writer.start()
    touched.wait(10)
    thread, out = run_in_thread(src)
    writer.join(30)
    thread.join(60)

    result = out["state"].result()
    assert result["status"] == "completed"
    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == data


def test_trusted_closes_end_a_recording_only_when_no_write_followed(registered, s3, store):
    """trust_close_hints: the touch's close is stale once the recorder writes on; the
    recorder's own close ends the recording after the settle, not the idle timeout."""
    edit_config(detect_writers=False, trust_close_hints=True, idle_timeout_seconds=120)
    data = payload(13 * MIB + 5, seed=94)
    src = Path(registered.watch_dir) / "trusted.mkv"
    touched = threading.Event()
    writer = _paused_recorder(src, data, touched, store, then=MIB)
    writer.start()
    touched.wait(10)
    thread, out = run_in_thread(src)
    writer.join(30)
    thread.join(60)  # far less than the idle timeout: the close ended it

    assert not thread.is_alive()
    result = out["state"].result()
    assert result["status"] == "completed"
    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == data
    assert store.hints.closed_at(str(src), result["identity"]) is None  # used
