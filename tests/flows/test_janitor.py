"""The janitor aborts orphaned uploads of ours, never a live stream's and never
another application's, and fails streams whose run ended without finishing."""

from __future__ import annotations

import json
import time

import pytest

from flows.janitor import janitor
from stream_ingest.records import StreamRecord
from stream_ingest.states import Status
from tests.conftest import edit_config

pytestmark = pytest.mark.usefixtures("registered")


def _pending(s3, bucket: str) -> set[str]:
    return {u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])}


def test_janitor_aborts_orphans_only(registered, s3, store):
    """Only uploads of ours (in the registry), older than the TTL, that no live stream
    owns. Ages come from our registry: moto reports every upload as 2010."""
    edit_config(upload_ttl_hours=1.0)
    bucket = registered.s3_bucket

    def upload(key: str) -> str:
        return s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]

    def registered_at(upload_id: str, stream_id: str, key: str, age_hours: float) -> None:
        entry = {"stream_id": stream_id, "key": key, "created": time.time() - age_hours * 3600}
        store.redis_client.hset(store.uploads_key, upload_id, json.dumps(entry))

    orphan = upload("rec/orphan.mp4")
    registered_at(orphan, "stream-that-never-was", "rec/orphan.mp4", age_hours=2)
    young = upload("rec/young-orphan.mp4")
    store.register_upload(young, "stream-just-started", "rec/young-orphan.mp4")
    live_id = "live-stream"
    live = upload("rec/live.mp4")
    store.put(
        StreamRecord(
            stream_id=live_id, status=Status.UPLOADING, s3_upload_id=live, s3_key="rec/live.mp4"
        )
    )
    registered_at(live, live_id, "rec/live.mp4", age_hours=2)
    assert store.acquire_lease(live_id, "some-run", 60)
    foreign = upload("rec/someone-elses.mp4")  # same prefix, not ours

    actions = janitor()

    assert _pending(s3, bucket) == {young, live, foreign}
    assert [a["target"] for a in actions if a["kind"] == "abort-upload"] == [orphan]
    assert orphan not in store.uploads() and young in store.uploads()


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
