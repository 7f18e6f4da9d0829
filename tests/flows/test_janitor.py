"""The janitor aborts orphaned uploads of ours, never a live stream's and never
another application's, and fails streams whose run ended without finishing."""

from __future__ import annotations

import time

import pytest

from blocks.records import StreamRecord
from flows.janitor import janitor
from stream_ingest.states import Status

pytestmark = pytest.mark.usefixtures("registered")


def _pending(s3, bucket: str) -> set[str]:
    return {u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])}


def test_janitor_aborts_orphans_only(registered, s3, store, monkeypatch):
    monkeypatch.setenv("STREAM_INGEST_UPLOAD_TTL_HOURS", str(0.5 / 3600))  # half a second
    bucket = registered.s3_bucket

    def upload(key: str) -> str:
        return s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]

    orphan = upload("rec/orphan.mp4")
    store.register_upload(orphan, "stream-that-never-was", "rec/orphan.mp4")
    live_id = "live-stream"
    live = upload("rec/live.mp4")
    store.put(
        StreamRecord(
            stream_id=live_id, status=Status.UPLOADING, s3_upload_id=live, s3_key="rec/live.mp4"
        )
    )
    store.register_upload(live, live_id, "rec/live.mp4")
    assert store.acquire_lease(live_id, "some-run", 60)
    foreign = upload("rec/someone-elses.mp4")  # same prefix, not ours
    time.sleep(1)

    actions = janitor()

    assert _pending(s3, bucket) == {live, foreign}
    assert [a["target"] for a in actions if a["kind"] == "abort-upload"] == [orphan]
    assert orphan not in store.uploads()


def test_janitor_marks_streams_without_a_run_failed(registered, store):
    old = "2020-01-01T00:00:00.000+00:00"
    store.put(StreamRecord(stream_id="lost", status=Status.UPLOADING, last_activity_at_utc=old))
    store.put(StreamRecord(stream_id="alive", status=Status.UPLOADING, last_activity_at_utc=old))
    assert store.acquire_lease("alive", "run", 60)

    janitor()

    assert store.get("lost").status == "failed"
    assert store.get("lost").error.startswith("janitor:")
    assert store.get("alive").status == "uploading"
    assert [r.stream_id for r in store.list_streams(Status.FAILED)] == ["lost"]
