"""What a warm worker's runs share (stream_ingest/workers/sharing.py): recent deployment and flow
reads, one suspension observer that still delivers an operator's Suspend, and the
run's client that writes its owner with the engine's first update and runs the
flow's early reads beside the engine's start."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from typing import Any

import httpx
import pytest
from prefect import flow, flow_engine
from prefect._flow_run_suspension import FlowRunSuspensionRequest
from prefect.client.orchestration import get_client
from prefect.context import SyncClientContext
from prefect.flow_engine import run_flow
from prefect.states import Running, Suspended
from pydantic import BaseModel

from stream_ingest.workers import sharing
from stream_ingest.workers.sharing import (
    RecentReads,
    SharedSuspension,
    owner_written_by_runs,
    run_client,
)


class Deployment(BaseModel):
    id: int
    job_variables: dict[str, Any]


class Reader:
    def __init__(self, fail_first: int = 0) -> None:
        self.calls = 0
        self.fail_first = fail_first

    async def __call__(self, key: int) -> Deployment:
        self.calls += 1
        await asyncio.sleep(0.05)  # concurrent callers arrive while it is on the wire
        if self.calls <= self.fail_first:
            raise ConnectionError("server restarting")
        return Deployment(id=key, job_variables={"env": {"A": "1"}})


def test_concurrent_reads_of_one_id_make_one_call_and_each_gets_its_own_copy():
    reader = Reader()
    reads = RecentReads(reader)

    async def main() -> list[Deployment]:
        return list(await asyncio.gather(*(reads(7) for _ in range(20))))

    got = asyncio.run(main())
    assert reader.calls == 1
    assert all(d.id == 7 for d in got)
    # Prefect's job resolution updates the env in place: no caller sees another's.
    got[0].job_variables["env"]["RUN"] = "x"
    assert "RUN" not in got[1].job_variables["env"]


def test_a_read_is_made_again_after_its_ttl_and_a_failed_one_is_not_kept():
    reader = Reader(fail_first=1)
    reads = RecentReads(reader, ttl=0.2)

    async def main() -> None:
        with pytest.raises(ConnectionError):
            await reads(1)
        await reads(1)  # the failure was not kept: asked again
        await reads(1)  # fresh: kept
        assert reader.calls == 2
        await asyncio.sleep(0.25)
        await reads(1)
        assert reader.calls == 3

    asyncio.run(main())


@flow(name="sharing-test")
def _nothing() -> None:
    pass


def test_an_operator_s_suspend_reaches_the_run_through_the_shared_observer(prefect_harness):
    original = flow_engine.observe_flow_run_suspension

    async def main() -> None:
        async with get_client() as client:
            runs = [await client.create_flow_run(_nothing) for _ in range(3)]
            for run in runs:
                await client.set_flow_run_state(run.id, Running(), force=True)
            async with SharedSuspension():
                # The engine's name for it now gives the shared observer.
                observe = flow_engine.observe_flow_run_suspension
                assert observe is not original
                requests = [FlowRunSuspensionRequest() for _ in runs]
                with observe(runs[0].id, requests[0]), observe(runs[1].id, requests[1]):
                    await asyncio.sleep(0.5)  # the watches are added on the loop
                    # What the UI's Suspend does: only that run is asked to stop.
                    await client.set_flow_run_state(runs[1].id, Suspended(), force=True)
                    deadline = time.monotonic() + 20
                    while not requests[1].is_requested() and time.monotonic() < deadline:
                        await asyncio.sleep(0.1)
                assert requests[1].is_requested()
                assert not requests[0].is_requested()
                assert not requests[2].is_requested()
        assert flow_engine.observe_flow_run_suspension is original

    asyncio.run(main())


@pytest.mark.parametrize("csrf", [True, False])
def test_the_run_s_owner_goes_with_the_engine_s_first_update(prefect_harness, csrf):
    """One PATCH of the run (the engine's), carrying the owner; no token asked for
    where the worker learned the server has CSRF protection off (the harness has)."""
    owner = "warm:host-a:123:456"
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(_nothing)
    sent: list[str] = []
    with run_client(str(run.id), owner, csrf=csrf):
        http = SyncClientContext.get().client._client
        http.event_hooks["request"].append(lambda r: sent.append(f"{r.method} {r.url.path}"))
        state = run_flow(_nothing, flow_run=run, return_type="state")
    assert state.is_completed()
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(run.id).infrastructure_pid == owner
    assert [s for s in sent if s.startswith("PATCH")] == [f"PATCH /api/flow_runs/{run.id}"]
    assert any("/csrf-token" in s for s in sent) is csrf


def test_the_worker_s_own_owner_write_is_left_to_runs_whose_engine_writes_it():
    calls: list[dict[str, Any]] = []

    class Client:
        async def update_flow_run(self, flow_run_id: Any, **fields: Any) -> None:
            calls.append({"run": flow_run_id, **fields})

    client = Client()
    owner_written_by_runs(client, "warm:h:1:2", by_engine={1})

    async def main() -> None:
        await client.update_flow_run(flow_run_id=1, infrastructure_pid="warm:h:1:2")
        await client.update_flow_run(flow_run_id=2, infrastructure_pid="warm:h:1:2")
        await client.update_flow_run(flow_run_id=1, infrastructure_pid="warm:h:9:9")
        await client.update_flow_run(flow_run_id=1, name="x")

    asyncio.run(main())
    assert calls == [
        {"run": 2, "infrastructure_pid": "warm:h:1:2"},  # an async flow's run
        {"run": 1, "infrastructure_pid": "warm:h:9:9"},
        {"run": 1, "name": "x"},
    ]


def test_prepare_runs_beside_the_engine_s_start_in_the_run_s_client(prefect_harness):
    """`prepare` (the flow's early reads) is on its own thread while the engine
    starts the run (it waits here until Running is asked for: run before the
    engine, it would wait its whole timeout), with the run's client."""
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(_nothing)
    running_asked, prepared = threading.Event(), threading.Event()
    seen: list[Any] = []  # (Running asked meanwhile?, the client prepare had)

    def see_running(request: httpx.Request) -> None:
        if request.url.path.endswith("/set_state"):
            running_asked.set()

    def prepare() -> None:
        seen.append((running_asked.wait(10), SyncClientContext.get().client))
        prepared.set()

    with run_client(str(run.id), "warm:h:1:2", csrf=False, prepare=prepare):
        run_s_client = SyncClientContext.get().client
        run_s_client._client.event_hooks["request"].append(see_running)
        state = run_flow(_nothing, flow_run=run, return_type="state")
    assert state.is_completed()
    assert prepared.wait(10)
    assert seen == [(True, run_s_client)]


def test_runs_clients_share_one_tls_context_and_the_run_finds_its_client(
    prefect_harness, monkeypatch: pytest.MonkeyPatch
):
    """Prefect builds a TLS context per client (its CA bundle loaded: 26 ms of CPU,
    on every run's start); the warm worker's runs share the process's. Inside the
    run, Prefect's own lookups find the run's client, not a new one."""
    built: list[Any] = []
    create = ssl.create_default_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        built.append(kwargs.get("cafile"))
        return create(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counted)
    monkeypatch.setattr(sharing, "_tls", {})
    clients = []
    for _ in range(3):
        with run_client("run-id", "warm:h:1:2"):
            context = SyncClientContext.get()
            assert get_client(sync_client=True) is context.client
            with SyncClientContext.get_or_create() as found:
                assert found is context
            clients.append(context.client)
    assert len(built) == 1
    assert len({id(c) for c in clients}) == 3  # a client each, one TLS context
