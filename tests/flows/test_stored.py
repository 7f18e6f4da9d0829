"""A finished take whose object another stream made before Redis lost that stream's
checkpoint (stream_ingest/flows/stored.py): completed with that object, and judged by
its SHA-256 when the file changes later."""

from __future__ import annotations

import os
from pathlib import Path

from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.flows.ingest import stream_ingest
from stream_ingest.states import Status
from tests.flows.helpers import lose_redis_data


def _stored_again(registered, store: CheckpointStore, video: Path) -> str:
    assert stream_ingest(path=str(video))["status"] == "completed"
    lose_redis_data(store)
    out = stream_ingest(path=str(video))
    assert out["status"] == "completed"
    return out["stream_id"]


def _keys(s3, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_a_take_already_in_s3_is_completed_with_its_object(registered, s3, store) -> None:
    video = Path(registered.watch_dir) / "a.mp4"
    video.write_bytes(os.urandom(300_000))
    sid = _stored_again(registered, store, video)

    record = store.streams.require(sid)
    assert (record.status, record.s3_key, record.total_bytes) == (
        Status.COMPLETED,
        "rec/a.mp4",
        300_000,
    )
    assert _keys(s3, registered.s3_bucket) == ["rec/a.mp4"]
    assert not s3.list_multipart_uploads(Bucket=registered.s3_bucket).get("Uploads")


def test_another_take_of_the_same_size_is_uploaded_under_its_own_key(registered, s3, store) -> None:
    video = Path(registered.watch_dir) / "a.mp4"
    video.write_bytes(b"x" * 1000)
    assert stream_ingest(path=str(video))["status"] == "completed"
    lose_redis_data(store)
    video.write_bytes(b"y" * 1000)
    assert stream_ingest(path=str(video))["status"] == "completed"
    assert _keys(s3, registered.s3_bucket) == ["rec/a (2).mp4", "rec/a.mp4"]


def test_a_touch_of_a_take_completed_without_parts_uploads_nothing(registered, s3, store) -> None:
    video = Path(registered.watch_dir) / "a.mp4"
    video.write_bytes(os.urandom(300_000))
    sid = _stored_again(registered, store, video)
    st = video.stat()
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))

    assert stream_ingest(stream_id=sid)["status"] == "completed"
    assert store.streams.require(sid).completed_mtime_ns == video.stat().st_mtime_ns
    assert not s3.list_multipart_uploads(Bucket=registered.s3_bucket).get("Uploads")


def test_a_same_size_rewrite_of_a_take_completed_without_parts_is_a_revision(
    registered, s3, store
) -> None:
    video = Path(registered.watch_dir) / "a.mp4"
    video.write_bytes(os.urandom(300_000))
    sid = _stored_again(registered, store, video)
    changed = os.urandom(300_000)
    with open(video, "r+b") as fh:  # the same inode, other bytes, the same size
        fh.write(changed)
    st = video.stat()
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))

    assert stream_ingest(stream_id=sid)["status"] == "completed"
    body = s3.get_object(Bucket=registered.s3_bucket, Key="rec/a.mp4")["Body"].read()
    assert body == changed
