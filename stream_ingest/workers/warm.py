"""The `stream-ingest-warm` worker type: flow runs as threads of one warm process.

A process worker starts a Python process per flow run, which pays the Prefect and
boto3 imports (seconds of CPU) before the run reads its first byte, and keeps a
couple of hundred MiB per stream. This worker runs each flow run of its pool with
Prefect's own engine (`run_flow`) on a thread of its own, the flow imported once.
Every run is still a flow run of the deployment, with its task runs, states, logs
and the Retry button.

What a thread cannot have, and what stands in for it:
- killing: a cancel (Cancelling in the UI, heard as the pool's event) or a shutdown
  asks the stream to stop (stream_ingest/flows/stopping.py); it stops at its next poll, resumable,
  and the worker ends the run Cancelled, or schedules it again for the next worker
  (shutdown);
- stuck streams: a stream whose thread stops beating for `stuck_timeout_seconds`
  (stream_ingest/flows/stopping.py) lets its lease expire; the worker crashes its run, saying where
  it waits, and frees its slot (the thread itself cannot be stopped);
- crash isolation: an exception escaping a run's engine crashes that run only; if
  the whole process dies, the next warm worker on the host finds its runs by their
  `infrastructure_pid` (stream_ingest/owners.py) and marks them Crashed, and the
  janitor fails their streams, resumable; a run it had claimed but not started is
  scheduled again once it has been Pending for 2 minutes;
- per-run environment: job variables' `env` cannot apply to one thread, so the
  worker's environment is every run's.

Start it with `prefect worker start --pool video-ingest --type stream-ingest-warm`
(or a pool created with that type); `--limit` caps concurrent streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import anyio
import anyio.abc
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventAnyResourceFilter, EventFilter, EventNameFilter
from prefect.exceptions import PrefectHTTPStatusError
from prefect.flow_engine import run_flow
from prefect.settings import get_current_settings
from prefect.states import AwaitingRetry, Cancelled, Crashed, Scheduled, State
from prefect.workers.base import (
    BaseJobConfiguration,
    BaseVariables,
    BaseWorker,
    BaseWorkerResult,
)

from stream_ingest.flows import logs, stopping, telemetry
from stream_ingest.flows.prefect_private import (
    run_task_group,
    work_pool,
    work_pool_name,
    worker_logger,
)
from stream_ingest.flows.runtime import early_config_read, forget_early_read
from stream_ingest.flows.stopping import CANCELLED, SHUTDOWN
from stream_ingest.owners import Owner, orphaned, stale_claim
from stream_ingest.workers.loading import FlowCache, working_directory
from stream_ingest.workers.sharing import (
    SharedSuspension,
    cache_reads,
    owner_written_by_runs,
    run_client,
)

DEFAULT_LIMIT = 64  # streams at once; more wait Scheduled (--limit to change)
WATCH_SECONDS = 2.0  # stuck streams (no API call); orphans every ORPHAN_POLL_SECONDS
ORPHAN_POLL_SECONDS = 60.0
RECONNECT_SECONDS = 5.0
SHUTDOWN_GRACE_SECONDS = 30.0  # parts in flight finish and checkpoint meanwhile
BUSY_RETRIES = 5  # 0.5 + 1 + 2 + 4 s of waiting for a busy server
T = TypeVar("T")
LIVE = [StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]
SCHEDULED, CANCELLING = "prefect.flow-run.Scheduled", "prefect.flow-run.Cancelling"


async def _busy_retried(call: Callable[[], Awaitable[T]], what: str) -> T:
    """`call`, tried again while the server answers 5xx: Prefect on SQLite answers
    500/503 "database is locked" in bursts of new runs, and the worker base crashes a
    run whose submission step fails (3 of 50 in the `many` benchmark)."""
    for attempt in range(BUSY_RETRIES):
        try:
            return await call()
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code < 500 or attempt == BUSY_RETRIES - 1:
                raise
        await anyio.sleep(0.5 * 2**attempt)
    raise AssertionError(f"unreachable: {what}")


class WarmJobConfiguration(BaseJobConfiguration):
    """Nothing to configure per run: runs share the worker's process."""

    @classmethod
    def _base_environment(cls) -> dict[str, str]:
        """Nothing: a run is a thread of this process, with its environment. Prefect's
        base renders every setting (secrets too) into variables for each run, CPU on
        the worker's event loop that every start of a burst would wait behind."""
        return {}

    @classmethod
    async def resolve_for_flow_run(cls, flow_run: FlowRun, **kwargs: Any) -> Any:
        parent = super().resolve_for_flow_run
        return await _busy_retried(lambda: parent(flow_run, **kwargs), "resolve the job")


class WarmVariables(BaseVariables):
    """The base variables (env, labels, name, command) are accepted and unused."""


class WarmWorkerResult(BaseWorkerResult):
    """The run's thread ended. `status_code` is always 0: where the engine could not
    set the run's final state, the worker sets it itself, with the reason."""


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: fields after the last ")".
    return int(stat.rsplit(b")", 1)[1].split()[19])


def process_alive(pid: int, start: int) -> bool:
    return process_start(pid) == start


class Execution:
    """One flow run on its own thread; `finished()` awaits it from the worker's loop."""

    def __init__(
        self,
        flow: Any,
        flow_run: FlowRun,
        client: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    ) -> None:
        self.run_id = str(flow_run.id)
        self.flow_run = flow_run
        self._client = client  # entered in the thread, around the engine
        self.state: State | None = None
        self.error: BaseException | None = None
        self._flow = flow
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[None] = self._loop.create_future()
        self.abandoned = False  # stuck: crashed by the worker, its thread left behind
        # Daemon: a stream that ignores a stop must not hold the process at exit.
        self.thread = threading.Thread(target=self._main, name=f"run-{flow_run.name}", daemon=True)

    def _main(self) -> None:
        try:
            with self._client():
                self.state = run_flow(self._flow, flow_run=self.flow_run, return_type="state")
        except BaseException as exc:  # the thread's whole life: a crash of this run only
            self.error = exc
        finally:
            self._loop.call_soon_threadsafe(self._finish)

    def _finish(self) -> None:
        if not self._done.done():
            self._done.set_result(None)

    def abandon(self) -> None:
        """Stop waiting for a stuck run's thread (it cannot be killed; it is a daemon)."""
        self.abandoned = True
        self._finish()

    @property
    def ended(self) -> bool:
        """The run's engine has returned (its thread may still be unwinding)."""
        return self._done.done()

    async def finished(self, timeout: float | None = None) -> bool:
        with anyio.move_on_after(timeout):
            await asyncio.shield(self._done)
        return self.ended


class WarmWorker(BaseWorker[WarmJobConfiguration, WarmVariables, WarmWorkerResult]):
    type = "stream-ingest-warm"
    job_configuration = WarmJobConfiguration
    job_configuration_variables = WarmVariables
    _description = (
        "Runs stream-ingest flow runs as threads of one long-lived process: no process "
        "start or imports per run, memory shared by all streams."
    )
    _display_name = "Stream-ingest warm threads"
    _documentation_url = "https://docs.prefect.io/v3/deploy/infrastructure-concepts/workers"

    def __init__(self, *args: Any, limit: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, limit=limit or DEFAULT_LIMIT, **kwargs)
        self.owner = Owner(socket.gethostname(), os.getpid(), process_start(os.getpid()) or 0)
        self._flows = FlowCache()
        self._executions: dict[str, Execution] = {}
        self._watch_scope = anyio.CancelScope()
        self._wake = anyio.Event()
        self._suspension = SharedSuspension()
        self._owned_by_engine: set[UUID] = set()  # runs whose engine writes our owner

    async def setup(self) -> None:
        await super().setup()
        await anyio.to_thread.run_sync(telemetry.start_from_block, "worker")
        cache_reads(self.client)
        owner_written_by_runs(self.client, str(self.owner), self._owned_by_engine)
        await self._suspension.__aenter__()
        run_task_group(self).start_soon(self._background)

    async def _background(self) -> None:
        with self._watch_scope:
            async with anyio.create_task_group() as group:
                group.start_soon(self._watch)
                group.start_soon(self._listen)
                group.start_soon(self._poll_when_woken)

    async def teardown(self, *exc_info: Any) -> None:
        self._watch_scope.cancel()
        try:
            await super().teardown(*exc_info)  # the runs have ended
        finally:
            await self._suspension.__aexit__(*exc_info)

    async def _propose_submitting_state(self, flow_run: FlowRun) -> None:
        """Skipped: Pending -> Running is enough here (no infrastructure to wait for),
        and every state is a write the server serialises with the burst's others."""

    async def run(
        self,
        flow_run: FlowRun,
        configuration: WarmJobConfiguration,
        task_status: anyio.abc.TaskStatus[str] | None = None,
    ) -> WarmWorkerResult:
        if flow_run.deployment_id is None:
            raise ValueError("the warm worker runs deployments' flow runs only")
        deployment_id = flow_run.deployment_id
        deployment = await _busy_retried(
            lambda: self.client.read_deployment(deployment_id), "read the deployment"
        )
        directory = working_directory(deployment.pull_steps, deployment.path)
        entrypoint = deployment.entrypoint or ""
        flow = await anyio.to_thread.run_sync(self._flows.load, directory, entrypoint)
        # The run as polled (Scheduled): the engine sends back only its retry policy,
        # which claiming it left unchanged, proposes Running by id, then reads it.
        client: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
        sync = not getattr(flow, "isasync", False)  # an async engine makes its own client
        if sync:
            # getattr: a stand-in client in tests has no httpx client.
            csrf = getattr(getattr(self.client, "_client", None), "enable_csrf_support", True)
            early = early_config_read(str(flow_run.id), flow_run.parameters)
            client = functools.partial(
                run_client, str(flow_run.id), str(self.owner), csrf, prepare=early
            )
        execution = Execution(flow, flow_run, client)
        self._executions[execution.run_id] = execution
        if sync:  # the engine writes the owner: the base's own write is skipped
            self._owned_by_engine.add(flow_run.id)
        try:
            execution.thread.start()
            if task_status is not None:
                task_status.started(str(self.owner))
            try:
                await execution.finished()
            except anyio.get_cancelled_exc_class():
                with anyio.CancelScope(shield=True):
                    stopping.request(execution.run_id, SHUTDOWN)
                    await execution.finished(SHUTDOWN_GRACE_SECONDS)
                    if not execution.abandoned:
                        await self._settle(execution)
                raise
            if not execution.abandoned:  # a stuck run's state is set already
                await self._settle(execution)
        finally:
            self._executions.pop(execution.run_id, None)
            self._owned_by_engine.discard(flow_run.id)
            stopping.withdraw(execution.run_id)
            forget_early_read(execution.run_id)
            logs.unbind_stream(execution.run_id)
        return WarmWorkerResult(status_code=0, identifier=str(self.owner))

    async def _give_worker_labels_to_flow_run(self, flow_run_id: UUID) -> None:
        """The labels only tell the UI which worker ran it: written beside the run's
        start instead of before it (in a burst each write waits its turn on the
        server), a busy server retried, a failure logged, never a reason to crash it.
        (With OpenTelemetry configured the engine adds a `traceparent` label at the
        same time; the server merges labels by read and write, so on Postgres one of
        the two may be lost: tracing then lacks the worker's labels or the reverse.)"""
        run_task_group(self).start_soon(self._label, flow_run_id)

    async def _label(self, flow_run_id: UUID) -> None:
        parent = super()._give_worker_labels_to_flow_run
        try:
            await _busy_retried(lambda: parent(flow_run_id), "label the run")
        except Exception as exc:
            worker_logger(self).warning("could not label flow run %s: %s", flow_run_id, exc)

    async def _settle(self, execution: Execution) -> None:
        """The run's final word where its engine could not say it: a cancel, a
        shutdown, or an engine that raised."""
        run_id, logger = UUID(execution.run_id), self.get_flow_run_logger(execution.flow_run)
        reason = stopping.requested(execution.run_id)
        completed = execution.state is not None and execution.state.is_completed()
        state: State | None = None
        if not execution.ended:
            state = Crashed(message=f"did not stop within {SHUTDOWN_GRACE_SECONDS:.0f} s")
        elif execution.error is not None:
            error = execution.error
            state = Crashed(message=f"engine error: {type(error).__name__}: {error}")
        elif reason == CANCELLED and not completed:
            state = Cancelled(message=f"stream stopped, resumable: {CANCELLED}")
        elif reason == SHUTDOWN and not completed:
            state = AwaitingRetry(message=f"stream stopped, resumable: {SHUTDOWN}")
        if state is None:
            return
        logger.warning("run %s: %s", state.name, state.message)
        await self.client.set_flow_run_state(run_id, state, force=True)

    async def _watch(self) -> None:
        """Stuck streams, cancels of running streams (Prefect's own watch only covers
        runs that have not started) and runs orphaned by a dead worker of this host.
        Cancels come as the pool's events (_listen); they are also read every
        PREFECT_WORKER_CANCELLATION_POLL_SECONDS (Prefect's fallback, 120 s), for events
        lost while the socket reconnects (at 50 streams a read every 2 s had been 5 %
        of the API calls per part)."""
        every = get_current_settings().worker.cancellation_poll_seconds
        next_cancels, next_orphans = anyio.current_time() + every, 0.0
        while True:
            await anyio.sleep(WATCH_SECONDS)
            try:
                await self._crash_stuck()
                if anyio.current_time() >= next_cancels:
                    next_cancels = anyio.current_time() + every
                    await self._stop_cancelled()
                if anyio.current_time() >= next_orphans and work_pool(self) is not None:
                    await self._crash_orphans()
                    next_orphans = anyio.current_time() + ORPHAN_POLL_SECONDS
            except Exception as exc:  # the API is down: try again next round
                worker_logger(self).warning("could not check for cancels or orphans: %s", exc)

    async def _listen(self) -> None:
        """A new run in the pool (the sensor's, a rerun, the UI's Retry) wakes the poll
        at once: without it a run waits up to PREFECT_WORKER_QUERY_SECONDS. A run of the
        pool set Cancelling (the UI's Cancel) is asked to stop. The regular poll and
        read of cancels (_watch) stay, for events lost while the socket reconnects."""
        while (pool := work_pool(self)) is None:
            await anyio.sleep(0.5)
        where = EventFilter(
            event=EventNameFilter(name=[SCHEDULED, CANCELLING]),
            any_resource=EventAnyResourceFilter(id=[f"prefect.work-pool.{pool.id}"]),
        )
        while True:
            try:
                async with get_events_subscriber(filter=where) as events:
                    async for event in events:
                        if event.event == CANCELLING:
                            self._cancel(event.resource.id.removeprefix("prefect.flow-run."))
                        else:
                            self._wake.set()
            except Exception as exc:  # server restarting: the poll covers meanwhile
                worker_logger(self).debug("event subscription lost (%s); reconnecting", exc)
                await anyio.sleep(RECONNECT_SECONDS)

    async def _poll_when_woken(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()  # events during this poll wake the next one
            try:
                await self.get_and_submit_flow_runs()
            except Exception as exc:
                worker_logger(self).warning("could not poll for runs: %s", exc)

    async def _crash_stuck(self) -> None:
        """Runs whose stream stopped beating (stream_ingest/flows/stopping.py): Crashed with where
        they wait, their slot freed; their lease expires by itself, for a rerun."""
        for run_id, where in stopping.stuck().items():
            execution = self._executions.get(run_id)
            if execution is None or execution.abandoned:
                continue
            execution.abandon()
            message = f"stream stuck: {where}; rerun to resume from the checkpoint"
            self.get_flow_run_logger(execution.flow_run).error("run crashed: %s", message)
            await self.client.set_flow_run_state(UUID(run_id), Crashed(message=message), force=True)

    async def _stop_cancelled(self) -> None:
        if not self._executions:
            return
        ids = [UUID(i) for i in self._executions]
        runs = await self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=ids),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.CANCELLING])),
            )
        )
        for run in runs:
            self._cancel(str(run.id))

    def _cancel(self, run_id: str) -> None:
        """Ask a stream of ours to stop for an operator's cancel (once)."""
        execution = self._executions.get(run_id)
        if execution is None or stopping.requested(run_id) is not None:
            return
        self.get_flow_run_logger(execution.flow_run).info("cancelling: asking the stream to stop")
        stopping.request(run_id, CANCELLED)

    async def _crash_orphans(self) -> None:
        runs = await self.client.read_flow_runs(
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[work_pool_name(self)])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=LIVE))
            ),
        )
        for run in runs:
            if str(run.id) in self._executions:
                continue
            if orphaned(run.infrastructure_pid, self.owner.host, process_alive):
                message = (
                    f"its worker process ({run.infrastructure_pid}) is gone; "
                    "rerun to resume from the checkpoint"
                )
                self.get_flow_run_logger(run).error("run crashed: %s", message)
                await self.client.set_flow_run_state(run.id, Crashed(message=message), force=True)
            elif run.state is not None and run.state.type == StateType.PENDING:
                pending_for = (datetime.now(UTC) - run.state.timestamp).total_seconds()
                if stale_claim(run.infrastructure_pid, pending_for):
                    message = f"claimed {pending_for:.0f} s ago by a worker that never started it"
                    self.get_flow_run_logger(run).warning("scheduled again: %s", message)
                    state = Scheduled(message=f"{message}; scheduled again")
                    await self.client.set_flow_run_state(run.id, state, force=True)
