"""Failures end the run with a one-line reason, in the Prefect state and in the
checkpoint; terminal source errors salvage what was uploaded (or abort an empty upload)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prefect_redis import RedisDatabase

from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.blocks.config import load_config
from stream_ingest.devstack.services import free_port
from stream_ingest.flows.ingest import stream_ingest
from tests.flows.helpers import MIB, GrowingWriter, payload, run_in_thread, wait_for_parts

pytestmark = pytest.mark.usefixtures("registered")


def _uploads(s3, bucket: str) -> list[dict]:
    return s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def test_missing_file_fails_with_reason_in_state_and_checkpoint(registered, store):
    missing = Path(registered.watch_dir) / "nope.mp4"

    state = stream_ingest(path=str(missing), return_state=True)

    assert state.is_failed()
    assert "source file not found" in state.message
    [record] = store.streams.list()
    assert record.status == "failed"
    assert record.error == f"source file not found: {missing}"


def test_directory_instead_of_file_fails(registered, store):
    folder = Path(registered.watch_dir) / "folder.mp4"
    folder.mkdir()

    state = stream_ingest(path=str(folder), return_state=True)

    assert state.is_failed()
    assert "not a regular file" in state.message
    assert store.streams.list()[0].error.startswith("source is not a regular file")


def test_missing_bucket_fails_without_leaking_an_upload(registered, s3, store, monkeypatch):
    from stream_ingest.blocks.registration import register_blocks
    from stream_ingest.settings import load_settings

    monkeypatch.setenv("STREAM_INGEST_S3_BUCKET", "no-such-bucket-here")
    register_blocks(load_settings())
    src = Path(registered.watch_dir) / "a.mp4"
    src.write_bytes(b"x" * 100)

    started = time.monotonic()
    state = stream_ingest(path=str(src), return_state=True)

    assert state.is_failed()
    assert "S3 bucket does not exist: no-such-bucket-here" in state.message
    assert time.monotonic() - started < 20  # no retry storm
    [record] = store.streams.list()
    assert record.status == "failed" and "bucket does not exist" in record.error
    assert record.s3_upload_id == ""


def test_unreachable_redis_fails_with_clear_reason(registered):
    config = load_config()
    config.checkpoints = CheckpointStore(
        redis=RedisDatabase(host="127.0.0.1", port=free_port()), namespace="dead"
    )
    config.save("dead-redis", overwrite=True)
    src = Path(registered.watch_dir) / "a.mp4"
    src.write_bytes(b"x" * 100)

    started = time.monotonic()
    state = stream_ingest(path=str(src), config="dead-redis", return_state=True)

    assert state.is_failed()
    assert "Redis checkpoint store unavailable" in state.message
    assert time.monotonic() - started < 20  # the client's own retries, no task retries


def _salvaged(s3, bucket: str, record, data: bytes) -> None:
    """The stream kept its uploaded prefix as `<stem>.partial<ext>`, byte for byte,
    and left no upload open and nothing at its own key."""
    stem, ext = record.s3_key.rsplit(".", 1)
    assert record.salvage_key == f"{stem}.partial.{ext}"
    assert record.salvaged_bytes >= 5 * MIB
    held = s3.get_object(Bucket=bucket, Key=record.salvage_key)["Body"].read()
    assert held == data[: record.salvaged_bytes]
    assert _uploads(s3, bucket) == []
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == [record.salvage_key]


def test_shrinking_source_salvages_the_upload(registered, s3, store):
    src = Path(registered.watch_dir) / "shrink.mp4"
    src.touch()
    data = payload(12 * MIB)
    writer = GrowingWriter(src, data, steps=6, pause=0.2)
    writer.start()
    thread, out = run_in_thread(src)
    sid = wait_for_parts(store, 1)
    # The recorder still holds the file when it shrinks: the take has not ended (once
    # its object is complete, a later change would be a new revision, not a shrink).
    with open(src, "ab"):
        writer.join(10)
        with open(src, "r+b") as fh:
            fh.truncate(2 * MIB)
        thread.join(30)

    state = out["state"]
    assert state.is_failed() and "shrank" in state.message
    record = store.streams.get(sid)
    assert record.status == "salvaged" and "shrank" in record.error
    _salvaged(s3, registered.s3_bucket, record, data)


def test_deleted_source_salvages_the_upload(registered, s3, store):
    """The recording host's disk is gone: the parts in S3 are the only copy."""
    src = Path(registered.watch_dir) / "gone.mp4"
    src.touch()
    data = payload(8 * MIB)
    writer = GrowingWriter(src, data, steps=4, pause=0.2)
    writer.start()
    thread, out = run_in_thread(src)
    sid = wait_for_parts(store, 1)
    writer.join(10)

    src.unlink()
    thread.join(30)

    assert out["state"].is_failed() and "not found" in out["state"].message
    record = store.streams.get(sid)
    assert record.status == "salvaged" and "not found" in record.error
    _salvaged(s3, registered.s3_bucket, record, data)


def test_source_deleted_between_its_stat_and_the_writers_look_ends_it(
    registered, s3, store, monkeypatch
):
    """The file goes after the tail loop's stat, before the OS is asked who writes
    it: the same terminal "not found" as anywhere else, not an errno line."""
    import stream_ingest.flows.writers as writers_module

    src = Path(registered.watch_dir) / "gone-late.mp4"
    src.write_bytes(payload(3 * MIB, seed=6))
    look = writers_module.writers_of

    def delete_then_look(path: str, *args, **kwargs):
        Path(path).unlink(missing_ok=True)
        return look(path, *args, **kwargs)

    monkeypatch.setattr(writers_module, "writers_of", delete_then_look)

    state = stream_ingest(path=str(src), return_state=True)

    assert state.is_failed() and f"source file not found: {src}" in state.message
    [record] = store.streams.list()
    # Its one part is short, sent only at the end: nothing was uploaded to keep.
    assert record.status == "aborted"
    assert record.error == f"source file not found: {src}; no part was uploaded"
    assert _uploads(s3, registered.s3_bucket) == []


def test_two_runs_for_one_stream_one_uploads_the_other_ends_cleanly(registered, s3, store):
    src = Path(registered.watch_dir) / "race.mp4"
    data = payload(11 * MIB, seed=5)
    with open(src, "wb") as fh:  # held open for writing: the first run cannot end yet
        fh.write(data[: 6 * MIB])
        fh.flush()
        thread, out = run_in_thread(src)
        sid = wait_for_parts(store, 1)
        second = stream_ingest(path=str(src), return_state=True)
        fh.write(data[6 * MIB :])
    thread.join(60)

    assert second.is_completed()
    assert "being uploaded by another run" in second.result()["message"]
    assert out["state"].is_completed()
    assert store.streams.get(sid).status == "completed"
    body = s3.get_object(Bucket=registered.s3_bucket, Key=store.streams.get(sid).s3_key)[
        "Body"
    ].read()
    assert body == src.read_bytes()
