"""The janitor aborts orphaned uploads of ours, never a live stream's and never
another application's, and fails streams whose run ended without finishing."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from stream_ingest.flows.janitor import janitor
from stream_ingest.records import StreamRecord
from stream_ingest.states import Status
from tests.conftest import edit_config
from tests.flows.automation import reruns
from tests.flows.helpers import janitor_runs_later, until

pytestmark = pytest.mark.usefixtures("registered")


def _pending(s3, bucket: str) -> set[str]:
    return {u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])}


@pytest.mark.on_ceph
def test_janitor_aborts_orphans_only(registered, s3, store, monkeypatch):
    """Only uploads of ours (in the registry), older than the TTL, that no live stream
    owns. The janitor runs two hours after the uploads were created."""
    edit_config(upload_ttl_hours=1.0)
    janitor_runs_later(monkeypatch, hours=2)
    bucket = registered.s3_bucket

    def upload(key: str) -> str:
        return s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]

    def registered_at(upload_id: str, stream_id: str, key: str, age_hours: float) -> None:
        entry = {"stream_id": stream_id, "key": key, "created": time.time() - age_hours * 3600}
        store.redis_client.hset(store.space.uploads_key, upload_id, json.dumps(entry))

    orphan = upload("rec/orphan.mp4")
    registered_at(orphan, "stream-that-never-was", "rec/orphan.mp4", age_hours=0)
    young = upload("rec/young-orphan.mp4")
    store.parts.register_upload(young, "stream-just-started", "rec/young-orphan.mp4")
    live_id = "live-stream"
    live = upload("rec/live.mp4")
    store.streams.put(
        StreamRecord(
            stream_id=live_id, status=Status.UPLOADING, s3_upload_id=live, s3_key="rec/live.mp4"
        )
    )
    registered_at(live, live_id, "rec/live.mp4", age_hours=2)
    assert store.leases.acquire(live_id, "some-run", 60)
    foreign = upload("rec/someone-elses.mp4")  # same prefix, not ours

    actions = janitor()

    assert _pending(s3, bucket) == {young, live, foreign}
    assert [a["target"] for a in actions if a["kind"] == "abort-upload"] == [orphan]
    assert orphan not in store.parts.uploads() and young in store.parts.uploads()


def test_janitor_marks_streams_without_a_run_failed(registered, store):
    old = "2020-01-01T00:00:00.000+00:00"
    store.streams.put(
        StreamRecord(stream_id="lost", status=Status.UPLOADING, last_activity_at_utc=old)
    )
    store.streams.put(
        StreamRecord(stream_id="alive", status=Status.UPLOADING, last_activity_at_utc=old)
    )
    assert store.leases.acquire("alive", "run", 60)

    janitor()

    assert store.streams.get("lost").status == "failed"
    assert store.streams.get("lost").error.startswith("janitor:")
    assert store.streams.get("alive").status == "uploading"
    assert [r.stream_id for r in store.streams.list(Status.FAILED)] == ["lost"]


def _ended_run(state, config: str | None) -> tuple[str, str]:
    """A run of a stream-ingest deployment, ended in `state`: (run id, deployment id)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("stream-ingest")
        deployment_id = client.create_deployment(flow_id, f"ingest-{uuid.uuid4().hex[:8]}")
        run = client.create_flow_run_from_deployment(
            deployment_id, parameters={"path": "", "stream_id": None, "config": config}
        )
        client.set_flow_run_state(run.id, state, force=True)
    return str(run.id), str(deployment_id)


def _stored_events(resource_id: str) -> list[dict]:
    """The events about `resource_id` that reached the Prefect server, as an
    automation sees them (with the related resources Prefect attaches on the way)."""
    from prefect.client.orchestration import get_client
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all()

    def stored() -> list[dict]:
        with get_client(sync_client=True) as client:
            body = {"filter": {"resource": {"id": [resource_id]}}, "limit": 10}
            return client._client.post("/events/filter", json=body).json()["events"]

    return until(stored, 30, f"events of {resource_id} in Prefect's")


def test_a_stream_whose_run_crashed_is_announced_failed_and_counted(registered, store):
    """As the flow would have announced it: the count incremented, the run's config
    block, related to that run and its deployment and to nothing of the janitor's (an
    automation reruns the first deployment it finds), so the example automation
    reruns it. Read back from Prefect's server."""
    from prefect.states import Crashed

    run_id, deployment_id = _ended_run(Crashed(message="worker lost"), "cfg-of-the-run")
    path = f"{registered.watch_dir}/crashed.mp4"
    sid = str(uuid.uuid4())  # the harness's server outlives the test: its own events
    store.streams.put(
        StreamRecord(
            stream_id=sid,
            original_path=path,
            status=Status.UPLOADING,
            flow_run_id=run_id,
            failures=1,
        )
    )

    janitor()

    [event] = _stored_events(f"stream-ingest.stream.{sid}")
    assert event["event"] == "stream-ingest.stream.failed"
    assert event["resource"]["stream-ingest.failures"] == "2"
    assert event["resource"]["stream-ingest.config"] == "cfg-of-the-run"
    assert event["resource"]["stream-ingest.path"] == path
    assert event["resource"]["stream-ingest.stream-id"] == sid
    related = [r["prefect.resource.id"] for r in event["related"]]
    assert related == [f"prefect.flow-run.{run_id}", f"prefect.deployment.{deployment_id}"]
    assert len(reruns([event])) == 1
    assert store.streams.get(sid).failures == 2 and store.streams.get(sid).status == "failed"


def test_a_stream_without_a_run_is_announced_with_the_janitor_s_config(
    registered, store, events, settings_env
):
    old = "2020-01-01T00:00:00.000+00:00"
    store.streams.put(
        StreamRecord(stream_id="lost", status=Status.UPLOADING, last_activity_at_utc=old)
    )

    janitor()

    [event] = events.sent
    assert event["event"] == "stream-ingest.stream.failed"
    assert event["resource"]["stream-ingest.failures"] == "1"
    assert event["resource"]["stream-ingest.config"] == settings_env["STREAM_INGEST_CONFIG_BLOCK"]
    assert event["related"] == [] and not event["in_a_run"]
    assert store.streams.get("lost").failures == 1


def test_a_stream_whose_run_was_cancelled_is_announced_cancelled_not_counted(
    registered, store, events
):
    """The run ended Cancelled before its stream could say so: not a failure to rerun."""
    from prefect.states import Cancelled

    run_id, _ = _ended_run(Cancelled(), None)
    store.streams.put(
        StreamRecord(stream_id="cancelled", status=Status.UPLOADING, flow_run_id=run_id, failures=1)
    )

    janitor()

    [event] = events.sent
    assert event["event"] == "stream-ingest.stream.cancelled"
    assert event["resource"]["stream-ingest.failures"] == "1"
    assert reruns(events.sent) == []
    assert (
        store.streams.get("cancelled").failures == 1
        and store.streams.get("cancelled").status == "failed"
    )
