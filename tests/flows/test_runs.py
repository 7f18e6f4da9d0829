"""The Prefect calls about stream runs, against the test server: what a run of the
deployment is created with, the idempotency that dedupes the sensor's triggers, the
fresh key of a rerun, and which runs count as over."""

from __future__ import annotations

import uuid

import httpx
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.states import Failed

from stream_ingest.flows.runs import (
    RunCreator,
    RunRequest,
    create_stream_run,
    ended_runs,
    run_is_over,
    run_name,
)
from stream_ingest.sensors.prefect_calls import describe_prefect_error, run_deployment_trigger


@flow(name="runs-test-flow")
def _target(path: str = "", stream_id: str | None = None, config: str | None = None) -> None:
    """Stands in for the stream-ingest flow: only its deployment is used."""


@pytest.fixture
def deployment(prefect_harness, namespace: str) -> str:
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow(_target)
        client.create_deployment(flow_id=flow_id, name=namespace)
    return f"runs-test-flow/{namespace}"


def _read(run_id: str):
    with get_client(sync_client=True) as client:
        return client.read_flow_run(uuid.UUID(run_id))


def test_the_sensors_request_creates_one_run_per_stream(deployment: str) -> None:
    request = RunRequest.first(deployment, "/rec/a.mp4", "s-1", "cfg-x")
    first = run_deployment_trigger(request)
    again = run_deployment_trigger(RunRequest.first(deployment, "/rec/a.mp4", "s-1", "cfg-x"))

    assert again == first  # the same key: Prefect returns the run it made
    run = _read(first)
    assert run.parameters == {"path": "/rec/a.mp4", "stream_id": "s-1", "config": "cfg-x"}
    assert "stream:s-1" in run.tags
    assert run.name == "ingest-a.mp4"  # named at creation: the engine need not rename it
    assert run.state is not None and run.state.is_scheduled()  # not waited for
    assert run.parent_task_run_id is None  # never nested as a subflow


def test_a_rerun_is_a_new_run_each_time_even_after_a_failure(deployment: str) -> None:
    first = run_deployment_trigger(RunRequest.first(deployment, "/rec/b.mp4", "s-2", "c"))
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(uuid.UUID(first), Failed(), force=True)
    reruns = [
        create_stream_run(RunRequest.rerun(deployment, "/rec/b.mp4", "s-2", "c")) for _ in "ab"
    ]

    assert len({first, *(r.id for r in reruns)}) == 3
    for rerun in reruns:
        run = _read(rerun.id)
        assert {"rerun", "stream:s-2"} <= set(run.tags) and run.name == rerun.name
        assert run.parameters["stream_id"] == "s-2"


def test_a_run_is_named_after_its_file_or_else_its_stream() -> None:
    assert run_name("/rec/cam 1/take.mkv", "s-1") == "ingest-take.mkv"
    assert run_name("", "s-1") == "ingest-s-1"  # a path that could not travel in JSON
    assert run_name("", None) == "ingest-stream"
    assert RunRequest.rerun("d/x", "/rec/a.mp4", "s-1", "c").name == "ingest-a.mp4"
    # A name that is not UTF-8 cannot travel in JSON: the run reads it from the record.
    odd = RunRequest.rerun("d/x", "/rec/caf\udce9.mp4", "s-1", "c")
    assert odd.parameters["path"] == "" and odd.name == "ingest-s-1"


def test_which_runs_are_over(deployment: str) -> None:
    failed = run_deployment_trigger(RunRequest.first(deployment, "/rec/c.mp4", "s-3", "c"))
    waiting = run_deployment_trigger(RunRequest.first(deployment, "/rec/d.mp4", "s-4", "c"))
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(uuid.UUID(failed), Failed(), force=True)

    assert ended_runs([failed, waiting, "not-a-run-id", str(uuid.uuid4())]) == {failed}
    assert run_is_over(failed)
    assert not run_is_over(waiting)
    assert not run_is_over("not-a-run-id")  # a lease token that is no run id


def test_errors_are_described_in_one_line() -> None:
    refused = httpx.ConnectError("[Errno 111] Connection refused\nmore detail")
    assert describe_prefect_error(refused) == (
        "Prefect API unreachable (ConnectError: [Errno 111] Connection refused)"
    )
    assert describe_prefect_error(ValueError("Deployment not found")) == (
        "Prefect API call failed (ValueError: Deployment not found)"
    )


def test_the_sensors_runs_share_one_client(deployment: str, monkeypatch) -> None:
    import prefect.client.orchestration as orchestration

    opened: list[object] = []

    def counting(*args, **kwargs):
        client = get_client(*args, **kwargs)
        opened.append(client)
        return client

    monkeypatch.setattr(orchestration, "get_client", counting)
    creator = RunCreator()
    try:
        ids = [
            creator(RunRequest.first(deployment, f"/rec/{i}.ts", f"s1-{i}", "c")).id for i in "abc"
        ]
    finally:
        creator.close()

    assert len(set(ids)) == 3 and len(opened) == 1
    assert {_read(i).parameters["stream_id"] for i in ids} == {"s1-a", "s1-b", "s1-c"}


def test_a_deployment_made_again_under_its_name_gets_the_next_run(
    deployment: str, namespace: str
) -> None:
    creator = RunCreator()
    try:
        creator(RunRequest.first(deployment, "/rec/e.ts", "s-5", "c"))  # the id is kept
        with get_client(sync_client=True) as client:
            client.delete_deployment(client.read_deployment_by_name(deployment).id)
            again = client.create_deployment(flow_id=client.create_flow(_target), name=namespace)
        after = creator(RunRequest.first(deployment, "/rec/f.ts", "s-6", "c"))
    finally:
        creator.close()

    assert _read(after.id).deployment_id == again
