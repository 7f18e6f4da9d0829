"""Once S3 has completed the object, the stream is completed whatever becomes of the
file or the tags: a file deleted, replaced or cut short right after completion, or a
store without object tagging, never fails nor aborts it (flow under the test harness)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import botocore.client
import pytest
from botocore.exceptions import ClientError

import stream_ingest.flows.ingest as ingest_module
from stream_ingest.blocks.bucket import StreamBucket
from stream_ingest.blocks.store_streams import Streams
from stream_ingest.errors import CheckpointUnavailable
from stream_ingest.flows.ingest import stream_ingest
from stream_ingest.states import Status
from tests.flows.helpers import MIB, object_bytes, payload

pytestmark = pytest.mark.usefixtures("registered")


@pytest.fixture
def aborts(monkeypatch) -> list[str]:
    """The upload ids the run aborts."""
    calls: list[str] = []
    abort = StreamBucket.abort_multipart_upload

    def recorded(self, key, upload_id):
        calls.append(upload_id)
        return abort(self, key, upload_id)

    monkeypatch.setattr(StreamBucket, "abort_multipart_upload", recorded)
    return calls


def _after_completion(monkeypatch, then) -> None:
    """Call `then()` right after S3 answers the completion."""
    complete = StreamBucket.complete_multipart_upload

    def completing(self, *args, **kwargs):
        etag = complete(self, *args, **kwargs)
        then()
        return etag

    monkeypatch.setattr(StreamBucket, "complete_multipart_upload", completing)


def _die_after_completion(monkeypatch, src: Path) -> None:
    """Run the flow on `src` and let its process die right after S3 completed the
    object, before anything is recorded."""
    with monkeypatch.context() as dying:

        def die():
            raise RuntimeError("the run's process died here")

        _after_completion(dying, die)
        dying.setattr(ingest_module, "record_end", lambda *args: None)  # a dead run records nothing
        assert stream_ingest(path=str(src), return_state=True).is_failed()


def _swap(src: Path) -> None:
    src.rename(src.with_suffix(".old"))
    src.write_bytes(b"another take")


@pytest.mark.parametrize(
    "change",
    [Path.unlink, _swap, lambda src: src.write_bytes(b"cut")],
    ids=["deleted", "replaced", "cut-short"],
)
def test_a_file_changed_right_after_completion_leaves_the_stream_completed(
    registered, s3, store, monkeypatch, aborts, caplog, change
):
    # Patched at close: its whole SHA-256 is read after completion, from the file.
    data = payload(11 * MIB + 7, seed=96)
    src = Path(registered.watch_dir) / "gone-after.mp4"
    src.write_bytes(data)
    _after_completion(monkeypatch, lambda: change(src))
    monkeypatch.setattr(ingest_module, "MAX_REKEYS", 0)  # no second upload hides a failure

    with caplog.at_level(logging.WARNING):
        state = stream_ingest(path=str(src), return_state=True)

    assert state.is_completed(), state.message
    result = state.result()
    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == data
    record = store.streams.require(result["stream_id"])
    assert record.status == Status.COMPLETED and record.error == ""
    assert record.sha256 == "" and "its SHA-256 is not recorded" in caplog.text
    assert aborts == []


@pytest.mark.parametrize(("code", "status"), [("NotImplemented", 501), ("AccessDenied", 403)])
def test_a_store_without_object_tagging_still_completes(
    registered, s3, store, monkeypatch, aborts, caplog, code, status
):
    call = botocore.client.BaseClient._make_api_call
    refused: list[str] = []

    def without_tagging(self, operation, params):
        if operation == "PutObjectTagging":
            refused.append(operation)
            error = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
            raise ClientError(error, operation)
        return call(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", without_tagging)
    data = payload(6 * MIB + 5, seed=97)
    src = Path(registered.watch_dir) / "untagged.mp4"
    src.write_bytes(data)

    with caplog.at_level(logging.WARNING):
        state = stream_ingest(path=str(src), return_state=True)

    assert refused == ["PutObjectTagging"]  # refused for good: asked once
    assert state.is_completed(), state.message
    result = state.result()
    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == data
    record = store.streams.require(result["stream_id"])
    assert record.status == Status.COMPLETED
    assert record.sha256 == hashlib.sha256(data).hexdigest()  # kept in the checkpoint
    assert "the object is not tagged" in caplog.text and code in caplog.text
    assert aborts == []


def test_a_retry_after_completion_finds_the_file_gone_and_still_completes(
    registered, s3, store, monkeypatch, aborts
):
    """The completion's record fails on a Redis blip (finalize is retried), and the
    file is deleted meanwhile: the retry records the object S3 holds."""
    data = payload(11 * MIB + 7, seed=98)
    src = Path(registered.watch_dir) / "retried.mp4"
    src.write_bytes(data)
    _after_completion(monkeypatch, src.unlink)
    set_status, blips = Streams.set_status, []

    def blip_once(self, sid, status, **values):
        if status == Status.COMPLETED and not blips:
            blips.append(sid)
            raise CheckpointUnavailable("connection reset")
        return set_status(self, sid, status, **values)

    monkeypatch.setattr(Streams, "set_status", blip_once)

    state = stream_ingest(path=str(src), return_state=True)

    assert blips and state.is_completed(), state.message
    result = state.result()
    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == data
    record = store.streams.require(result["stream_id"])
    assert record.status == Status.COMPLETED and int(record.total_bytes) == len(data)
    assert aborts == []


@pytest.mark.parametrize(
    "change", [Path.unlink, lambda src: src.write_bytes(b"cut")], ids=["deleted", "cut-short"]
)
def test_a_rerun_confirming_a_completed_object_ignores_what_became_of_the_file(
    registered, s3, store, monkeypatch, aborts, change
):
    """A run died between S3's completion and the record; its rerun finds the object
    complete and records it, while the file is deleted or cut short."""
    data = payload(11 * MIB + 7, seed=99)
    src = Path(registered.watch_dir) / "confirmed.mp4"
    src.write_bytes(data)
    _die_after_completion(monkeypatch, src)
    [first] = store.streams.list()
    assert first.status == Status.FINALIZING
    confirm = ingest_module.confirm_completed

    def confirm_after_change(ctx):
        change(src)
        return confirm(ctx)

    monkeypatch.setattr(ingest_module, "confirm_completed", confirm_after_change)

    state = stream_ingest(path=str(src), stream_id=first.stream_id, return_state=True)

    assert state.is_completed(), state.message
    record = store.streams.require(first.stream_id)
    assert record.status == Status.COMPLETED and int(record.total_bytes) == len(data)
    assert record.sha256 == ""  # never the digest of bytes the object does not hold
    assert object_bytes(s3, registered.s3_bucket, record.s3_key) == data
    assert aborts == []


def _kept(src: Path) -> None:
    pass


@pytest.mark.parametrize(
    ("change", "marked_failed"),
    [(Path.unlink, False), (_swap, False), (_kept, True), (Path.unlink, True)],
    ids=["deleted", "replaced", "failed-by-the-janitor", "deleted-and-failed"],
)
def test_a_rerun_after_a_completion_the_run_did_not_record(
    registered, s3, store, monkeypatch, aborts, change, marked_failed
):
    """A run died between S3's completion and the record; the file was deleted or
    replaced before the rerun, or the janitor marked the stream failed: the object is
    the recording, so the stream ends completed with it (not salvaged, not failed)."""
    data = payload(11 * MIB + 7, seed=98)
    src = Path(registered.watch_dir) / "gone before rerun.mp4"
    src.write_bytes(data)
    _die_after_completion(monkeypatch, src)
    [first] = store.streams.list()
    change(src)
    if marked_failed:  # what the janitor does to a stream whose run died
        store.streams.set_status(first.stream_id, Status.FAILED, error="its run crashed")

    state = stream_ingest(stream_id=first.stream_id, return_state=True)

    assert state.is_completed(), state.message
    record = store.streams.require(first.stream_id)
    assert record.status == Status.COMPLETED and int(record.total_bytes) == len(data)
    assert object_bytes(s3, registered.s3_bucket, record.s3_key) == data
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=registered.s3_bucket)["Contents"]]
    assert keys == [record.s3_key]  # no salvage beside it
    assert aborts == []


@pytest.mark.parametrize("size", [7 * MIB + 1, 6 * MIB + 7], ids=["longer", "as-long"])
def test_a_take_written_over_a_completion_the_run_did_not_record_gets_its_own_object(
    registered, s3, store, monkeypatch, aborts, size
):
    """A run died between S3's completion and the record; before its rerun, `ffmpeg
    -y` wrote another take into the same file, longer or just as long. The rerun
    records the object without passing the new take's bytes off as its SHA-256, and
    starts the run that uploads the new take under a key of its own."""
    import stream_ingest.flows.follow_up as follow_up_module

    data = payload(6 * MIB + 7, seed=93)
    src = Path(registered.watch_dir) / "retake.mp4"
    src.write_bytes(data)
    _die_after_completion(monkeypatch, src)
    [first] = store.streams.list()
    retake = payload(size, seed=94)
    with open(src, "r+b") as fh:  # the same file: truncated and written again
        fh.truncate(0)
        fh.write(retake)
    requests = []
    for module in (ingest_module, follow_up_module):
        monkeypatch.setattr(module, "create_stream_run", requests.append)

    assert stream_ingest(stream_id=first.stream_id, path=str(src))["status"] == "completed"
    record = store.streams.require(first.stream_id)
    assert record.sha256 in ("", hashlib.sha256(data).hexdigest())
    while requests:  # the runs started for the file's change, as a deployment would
        request = requests.pop(0)
        stream_ingest(path=request.sent_path, stream_id=request.stream_id)

    bodies = {
        o["Key"]: object_bytes(s3, registered.s3_bucket, o["Key"])
        for o in s3.list_objects_v2(Bucket=registered.s3_bucket)["Contents"]
    }
    assert bodies == {"rec/retake.mp4": data, "rec/retake (2).mp4": retake}
