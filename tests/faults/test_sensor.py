"""Duplicate and replayed file events and sensor restarts while a file grows: the real
sensor (inotify) triggers the real deployment trigger (`run_deployment` with its
idempotency key) on the test's Prefect API, and a stand-in worker executes each
scheduled run. Exactly one flow run and one stream per file, each part uploaded once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from uuid import UUID

import pytest

from stream_ingest.flows.ingest import stream_ingest
from stream_ingest.flows.runs import RunRequest
from stream_ingest.sensors.events import FileAppeared, FileClosed
from stream_ingest.sensors.prefect_calls import run_deployment_trigger
from tests.faults.conftest import check_object, report, reuploads
from tests.flows.helpers import MIB, GrowingWriter, payload, until, wait_for_parts
from tests.sensors.helpers import FakeEvents, running

pytestmark = pytest.mark.usefixtures("registered")


class Worker(threading.Thread):
    """Plays a process worker: runs every scheduled run of the deployment, once."""

    def __init__(self, deployment_id: UUID) -> None:
        super().__init__(name="test-worker", daemon=True)
        self.deployment_id = deployment_id
        self.stop = threading.Event()
        self.started: list[UUID] = []

    def run(self) -> None:
        from prefect.client.orchestration import get_client
        from prefect.flow_engine import run_flow

        while not self.stop.wait(0.2):
            with get_client(sync_client=True) as client:
                for fr in client.read_flow_runs():
                    if fr.deployment_id != self.deployment_id or fr.id in self.started:
                        continue
                    if fr.state is None or not fr.state.is_scheduled():
                        continue
                    self.started.append(fr.id)
                    threading.Thread(
                        target=run_flow,
                        kwargs={"flow": stream_ingest, "flow_run": fr, "parameters": fr.parameters},
                        name="flow-under-test",
                        daemon=True,
                    ).start()


@pytest.fixture
def worker(registered) -> Iterator[Worker]:
    deployment_id = stream_ingest.to_deployment(name="stream-ingest").apply()
    w = Worker(deployment_id)
    w.start()
    yield w
    w.stop.set()
    w.join(10)


def _runs(deployment_id: UUID) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )


def test_replayed_events_and_sensor_restarts_give_one_run(
    registered, s3, store, proxy, watch, worker, request
):
    calls: list[RunRequest] = []

    def trigger(req: RunRequest) -> str:
        calls.append(req)
        return run_deployment_trigger(req)

    def sensor():
        from stream_ingest.sensors.run import Sensor

        return Sensor(
            registered,
            store,
            config=registered.config_block,
            trigger=trigger,
            emit=FakeEvents(),
            backoff_initial=0.1,
        )

    data = payload(5 * 5 * MIB + 4242, seed=81)
    src = watch / "replayed.mp4"
    path = str(src)
    writer = GrowingWriter(src, data, steps=24, pause=0.25)
    with running(sensor(), timeout=30) as first:
        writer.start()  # created (inotify) -> claim -> one run
        sid = wait_for_parts(store, 1, timeout=180)
        for cause in ("created", "moved", "scan", "created"):  # duplicates and replays
            first.events.put(FileAppeared(path, cause))  # type: ignore[arg-type]
    with running(sensor(), timeout=30):  # restart mid-stream: fresh memory, catch-up scan
        wait_for_parts(store, 2, timeout=180)
    with running(sensor(), timeout=30) as last:  # sees the real close (IN_CLOSE_WRITE)
        writer.join(60)
        assert writer.done.is_set()
        until(
            lambda: store.streams.require(sid).status == "completed", 180, "the stream to complete"
        )
        last.events.put(FileClosed(path))  # a late duplicate close
        last.events.put(FileAppeared(path, "created"))  # and an appear after completion
        until(lambda: last.events.empty(), 30, "the sensor to handle the replays")
    with running(sensor(), timeout=30):  # one more restart after completion
        pass

    [run] = _runs(worker.deployment_id)
    assert worker.started == [run.id]
    until(lambda: _runs(worker.deployment_id)[0].state.is_completed(), 60, "the run's state")
    assert {c.idempotency_key for c in calls} == {f"stream-ingest:{sid}"}
    [record] = store.streams.list()
    assert record.stream_id == sid and record.flow_run_id == str(run.id)
    check_object(s3, registered.s3_bucket, record.s3_key, data)
    parts = proxy.parts_reached_s3(record.s3_upload_id)
    assert sorted(parts) == [1, 2, 3, 4, 5, 6]
    report(request, reuploads(parts))
