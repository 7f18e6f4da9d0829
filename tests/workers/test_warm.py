"""The warm worker's decisions about a run's final state, with the flow engine and
the Prefect client replaced: what it sets after a run's thread ended."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import anyio
import httpx
import pytest
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import PrefectHTTPStatusError
from prefect.states import Completed, Failed, Pending, Running

from stream_ingest.flows import runtime, stopping
from stream_ingest.owners import PENDING_STALE_SECONDS
from stream_ingest.workers import warm


class Client:
    def __init__(self) -> None:
        self.states: list[tuple[uuid.UUID, Any, bool]] = []

    async def set_flow_run_state(self, run_id: uuid.UUID, state: Any, force: bool) -> None:
        self.states.append((run_id, state, force))


def _settled(monkeypatch: pytest.MonkeyPatch, engine: Any, stop: str | None = None) -> list:
    """Run one flow run through Execution and _settle; the states the worker set."""
    monkeypatch.setattr(warm, "run_flow", engine)
    client = Client()
    flow_run = FlowRun(flow_id=uuid.uuid4(), name="ingest-x.mkv")

    async def main() -> None:
        worker = warm.WarmWorker(work_pool_name="p")
        worker._client = client  # type: ignore[assignment]
        # Not Prefect's API log handler: no server here.
        worker.get_flow_run_logger = lambda _run: logging.getLogger("warm-test")  # type: ignore[method-assign]
        execution = warm.Execution(object(), flow_run)
        if stop:
            stopping.request(execution.run_id, stop)
        execution.thread.start()
        assert await execution.finished(10)
        await worker._settle(execution)
        stopping.withdraw(execution.run_id)

    asyncio.run(main())
    return [(s.type.value, s.message) for _, s, force in client.states if force]


def completed(*_: Any, **__: Any) -> Any:
    time.sleep(0.05)  # the thread still unwinds when the worker looks
    return Completed()


def failed_by_stop(*_: Any, **__: Any) -> Any:
    return Failed(message="stopped")


def engine_error(*_: Any, **__: Any) -> Any:
    raise RuntimeError("engine broke")


def test_a_run_its_engine_finished_is_left_as_the_engine_left_it(monkeypatch):
    assert _settled(monkeypatch, completed) == []
    assert _settled(monkeypatch, failed_by_stop) == []


def test_a_completed_run_stays_completed_even_if_a_stop_came_late(monkeypatch):
    assert _settled(monkeypatch, completed, stop=warm.SHUTDOWN) == []


def test_a_cancelled_stream_ends_cancelled(monkeypatch):
    [(state, message)] = _settled(monkeypatch, failed_by_stop, stop=warm.CANCELLED)
    assert state == "CANCELLED" and "resumable" in message


def test_a_stream_stopped_by_shutdown_is_scheduled_for_the_next_worker(monkeypatch):
    [(state, message)] = _settled(monkeypatch, failed_by_stop, stop=warm.SHUTDOWN)
    assert state == "SCHEDULED" and "next worker" in message


def test_an_engine_that_raises_crashes_its_run_only(monkeypatch):
    [(state, message)] = _settled(monkeypatch, engine_error)
    assert state == "CRASHED" and "RuntimeError: engine broke" in message


def _status_error(code: int) -> PrefectHTTPStatusError:
    request = httpx.Request("PATCH", "http://prefect/api/flow_runs/x/labels")
    response = httpx.Response(code, request=request)
    return PrefectHTTPStatusError("busy", request=request, response=response)


def test_a_busy_server_is_asked_again_and_a_client_error_is_not(monkeypatch):
    async def no_wait(_seconds: float) -> None:
        return None

    monkeypatch.setattr(warm.anyio, "sleep", no_wait)
    answers = [_status_error(503), _status_error(500), "ok"]
    calls: list[int] = []

    async def call() -> str:
        calls.append(1)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert asyncio.run(warm._busy_retried(call, "label")) == "ok"
    assert len(calls) == 3

    async def missing() -> str:
        calls.append(1)
        raise _status_error(404)

    calls.clear()
    with pytest.raises(PrefectHTTPStatusError):
        asyncio.run(warm._busy_retried(missing, "read"))
    assert len(calls) == 1


def test_the_sweep_crashes_a_dead_worker_s_runs_and_schedules_stale_claims_again(monkeypatch):
    """Runs of the pool that no live worker of this host runs: a gone owner's are
    Crashed; a Pending run with no owner, claimed long ago, is Scheduled again; the
    rest (just claimed, another host's, a live owner's) are left alone."""
    now = datetime.now(UTC)

    def run(name: str, state: Any, owner: str | None, age: float) -> FlowRun:
        state.timestamp = now - timedelta(seconds=age)
        return FlowRun(flow_id=uuid.uuid4(), name=name, state=state, infrastructure_pid=owner)

    me = warm.Owner("here", 10, 100)
    runs = [
        run("dead-owner", Running(), "warm:here:11:100", 30),
        run("stale-claim", Pending(), None, PENDING_STALE_SECONDS + 5),
        run("fresh-claim", Pending(), None, 5),
        run("other-host", Running(), "warm:there:11:100", 30),
        run("live-owner", Running(), str(me), 30),
    ]

    class Listing(Client):
        async def read_flow_runs(self, **_: Any) -> list[FlowRun]:
            return runs

    monkeypatch.setattr(warm, "process_alive", lambda pid, start: (pid, start) == (10, 100))
    client = Listing()

    async def main() -> None:
        worker = warm.WarmWorker(work_pool_name="p")
        worker._client = client  # type: ignore[assignment]
        worker.owner = me
        worker.get_flow_run_logger = lambda _run: logging.getLogger("warm-test")  # type: ignore[method-assign]
        await worker._crash_orphans()

    asyncio.run(main())
    by_name = {r.id: r.name for r in runs}
    decided = {by_name[run_id]: (s.type.value, force) for run_id, s, force in client.states}
    assert decided == {"dead-owner": ("CRASHED", True), "stale-claim": ("SCHEDULED", True)}


def test_a_stuck_stream_s_run_is_crashed_with_where_it_waits_and_its_slot_freed():
    """The stream's lease keeper reported it stuck: the worker crashes the run with
    the place its thread waits in, and stops waiting for the thread."""
    client = Client()
    release = threading.Event()

    def hung(*_: Any, **__: Any) -> Any:
        release.wait(30)
        return Completed()

    async def main() -> tuple[bool, bool]:
        worker = warm.WarmWorker(work_pool_name="p")
        worker._client = client  # type: ignore[assignment]
        worker.get_flow_run_logger = lambda _run: logging.getLogger("warm-test")  # type: ignore[method-assign]
        stuck = warm.Execution(object(), FlowRun(flow_id=uuid.uuid4(), name="ingest-b.mkv"))
        healthy = warm.Execution(object(), FlowRun(flow_id=uuid.uuid4(), name="ingest-a.mkv"))
        for execution in (stuck, healthy):
            worker._executions[execution.run_id] = execution
            execution.thread.start()
        stopping.report_stuck(stuck.run_id, "no progress for 300 s, waiting in stat (source.py:41)")
        await worker._crash_stuck()
        await worker._crash_stuck()  # once only
        done = await stuck.finished(1), await healthy.finished(0.2)
        release.set()  # both threads end while the loop they report to still runs
        await healthy.finished(5)
        stuck.thread.join(5)
        stopping.withdraw(stuck.run_id)
        return done

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(warm, "run_flow", hung)
        stuck_done, healthy_done = asyncio.run(main())
    assert stuck_done and not healthy_done  # the slot is free; the other runs on
    [(_, state, force)] = client.states
    assert state.type.value == "CRASHED" and force
    assert "stream stuck" in state.message and "stat (source.py:41)" in state.message


@pytest.mark.parametrize("kind", ["sync", "sync, config not loaded", "async"])
def test_a_run_goes_to_the_engine_as_polled_and_a_label_failure_is_only_logged(monkeypatch, kind):
    """Claimed runs start without a read of the run (the engine makes its own) and
    without waiting for the worker's labels; labels that cannot be written leave the
    run and the worker alone. A sync flow's engine runs inside the run's client,
    which writes the worker as the run's owner (stream_ingest/workers/sharing.py: run_client), so
    the worker's own owner write is skipped for it; an async flow's engine makes its
    own client, so its run keeps the worker's write. The run's config block (its
    `config` parameter) is read beside the engine's start and the flow takes that
    read (stream_ingest/flows/runtime.py: early_config_read); a run that does not take it (another
    flow) leaves nothing behind."""
    isasync, takes = kind == "async", kind != "sync, config not loaded"
    engine_got: list[Any] = []
    labelled: list[bool] = []  # per label write: had the run started before it ended?
    clients: list[tuple[str, str, bool]] = []
    inside: list[bool] = []  # per engine call: inside the run's client?
    skipped: list[bool] = []  # per engine call: the worker's owner write skipped?

    @contextlib.contextmanager
    def run_client(run_id: str, owner: str, csrf: bool, prepare: Any) -> Any:
        clients.append((run_id, owner, csrf))
        prepare()  # in run_client: beside the engine's start
        inside.append(True)
        yield
        inside.append(False)

    def engine(_flow: Any, flow_run: Any, return_type: str) -> Any:
        engine_got.append(flow_run)
        inside.append(bool(inside) and inside[-1])
        skipped.append(flow_run.id in worker_seen[0]._owned_by_engine)
        if takes:
            configs.append(runtime.config_of_run(str(flow_run.id), "cams"))  # the flow's load
        return Completed()

    class RunClient(Client):
        async def read_deployment(self, _id: uuid.UUID) -> Any:
            return SimpleNamespace(pull_steps=None, path=None, entrypoint="f.py:flow")

        async def update_flow_run_labels(self, _run_id: uuid.UUID, _labels: Any) -> None:
            with anyio.move_on_after(5):
                while not engine_got:
                    await anyio.sleep(0.01)
            labelled.append(bool(engine_got))
            raise httpx.ConnectError("server down")

    loads: list[tuple[str, bool]] = []  # the config block's reads: (name, engine started?)
    configs: list[Any] = []  # what the flow's load got
    monkeypatch.setattr(
        runtime, "read_config", lambda name: loads.append((name, bool(engine_got))) or name
    )
    monkeypatch.setattr(runtime, "_read_early", {})  # this test's own
    monkeypatch.setattr(warm, "run_flow", engine)
    monkeypatch.setattr(warm, "run_client", run_client)
    monkeypatch.setattr(warm, "working_directory", lambda _steps, _path: ".")
    flow_run = FlowRun(
        flow_id=uuid.uuid4(),
        name="ingest-x.mkv",
        deployment_id=uuid.uuid4(),
        parameters={"path": "x.mkv", "config": "cams"},
    )
    client = RunClient()  # no read_flow_run: a read of the run would raise
    worker_seen: list[Any] = []
    loaded = SimpleNamespace(isasync=isasync)

    async def main() -> Any:
        worker = warm.WarmWorker(work_pool_name="p")
        worker_seen.append(worker)
        worker._client = client  # type: ignore[assignment]
        worker._flows = SimpleNamespace(load=lambda _dir, _entry: loaded)  # type: ignore[assignment]
        worker.get_flow_run_logger = lambda _run: logging.getLogger("warm-test")  # type: ignore[method-assign]
        async with anyio.create_task_group() as group:
            worker._runs_task_group = group
            await worker._give_worker_labels_to_flow_run(flow_run.id)
            return await worker.run(flow_run, warm.WarmJobConfiguration())

    result = asyncio.run(main())
    assert engine_got == [flow_run] and engine_got[0] is flow_run
    if isasync:
        assert clients == [] and skipped == [False]
        assert loads == [("cams", True)] and configs == ["cams"]  # the flow read it itself
    else:
        assert clients == [(str(flow_run.id), result.identifier, True)]
        assert inside == [True, True, False] and skipped == [True]
        assert loads == [("cams", False)]  # read early, once
        assert configs == (["cams"] if takes else [])
    assert not runtime._read_early  # an early read not taken is dropped with its run
    assert not worker_seen[0]._owned_by_engine  # forgotten once the run ended
    assert labelled == [True]
    assert result.status_code == 0 and client.states == []


def test_preparing_a_run_renders_no_settings_into_an_environment(monkeypatch):
    """A thread has no environment of its own: the worker does not render every
    Prefect setting into variables per run (its event loop's CPU in a burst)."""
    from prefect.settings.base import PrefectBaseSettings

    def rendered(*_args: Any, **_kwargs: Any) -> dict[str, str]:
        raise AssertionError("settings rendered for a thread")

    monkeypatch.setattr(PrefectBaseSettings, "to_environment_variables", rendered)
    flow_run = FlowRun(flow_id=uuid.uuid4(), name="ingest-x.mkv")
    configuration = warm.WarmJobConfiguration()
    configuration.prepare_for_flow_run(flow_run=flow_run)
    assert configuration.env["PREFECT__FLOW_RUN_ID"] == str(flow_run.id)
    assert configuration.name == "ingest-x.mkv"
