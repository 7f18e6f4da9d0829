"""Every use of Prefect's private API, in one place.

Prefect's public API does not reach what the warm worker, the local stack's server and
the stop report need; what they use instead is named here, each use behind a function,
and each assumption it makes about the installed Prefect is written down in
`ASSUMPTIONS`. tests/test_prefect_private.py checks every one of them against the
installed release, so an upgrade that breaks one fails a test that names it instead
of a recording. Nothing else in the project imports an underscored Prefect name,
reads a private attribute of a Prefect object, or swaps a Prefect function.

The uses:
- the suspension observer: the warm worker shares one `FlowRunSuspendingObserver`
  among its runs instead of the engine's one per run (stream_ingest/workers/sharing.py);
- the run's API client: its owner write rides the engine's first update, reads are
  kept a while, no CSRF token is asked of a server that does not use one, and its
  TLS context is the worker's (`run_client_context`);
- `BaseWorker`'s private members the warm worker reads or overrides;
- why a run got SIGTERM (`control_listener.get_intent`, stream_ingest/flows/report.py);
- the local stack's SQLite server: write transactions begun IMMEDIATE, websockets
  outside the request limit (stream_ingest/devstack/prefect_server.py);
- the tests' in-process runs without the flow-run heartbeat thread (tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from prefect import flow_engine
from prefect._flow_run_suspension import FlowRunSuspensionRequest
from prefect._internal.observers import FlowRunSuspendingObserver
from prefect.client.orchestration import PrefectClient, SyncPrefectClient
from prefect.context import SyncClientContext
from prefect.workers.base import BaseWorker

__all__ = ["ASSUMPTIONS", "FlowRunSuspendingObserver", "FlowRunSuspensionRequest"]

# Private BaseWorker members the warm worker relies on (read, or overridden).
WORKER_ATTRIBUTES = ("_work_pool", "_work_pool_name", "_runs_task_group", "_logger")
WORKER_OVERRIDES = ("_propose_submitting_state", "_give_worker_labels_to_flow_run")


@contextlib.contextmanager
def suspension_observed_by(observe: Callable[..., Any]) -> Iterator[None]:
    """While inside, the engine in this process calls `observe(flow_run_id, request)`
    (a context manager) instead of starting a suspension observer per run."""
    original = flow_engine.observe_flow_run_suspension
    flow_engine.observe_flow_run_suspension = observe
    try:
        yield
    finally:
        flow_engine.observe_flow_run_suspension = original


def without_csrf(client: SyncPrefectClient) -> None:
    """The client stops asking for a CSRF token (the server does not use them)."""
    client._client.enable_csrf_support = False


def run_client_context(verify: Any) -> SyncClientContext:
    """A client context for one run whose client uses the TLS context `verify` (the
    process's, built once: Prefect builds one per client, 26 ms of CPU loading the CA
    bundle, on every run's start) and that every get_client(sync_client=True) and
    SyncClientContext.get_or_create() of the run finds, as its own would be."""
    context = SyncClientContext(httpx_settings={"verify": verify})
    context._httpx_settings = None  # what get_client compares its callers' settings with
    return context


def replace_method(client: Any, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    """Swap a public method of a Prefect client object at run time (the engine and the
    worker base call it by name); returns the original."""
    original = getattr(client, name)
    setattr(client, name, method)
    return original


def work_pool(worker: BaseWorker) -> Any:
    """The worker's work pool, None until the worker has read it."""
    return worker._work_pool


def work_pool_name(worker: BaseWorker) -> str:
    return worker._work_pool_name


def run_task_group(worker: BaseWorker) -> Any:
    """The task group the worker base runs its flow runs in (set by setup)."""
    group = worker._runs_task_group
    assert group is not None, "BaseWorker.setup() made no task group for runs"
    return group


def worker_logger(worker: BaseWorker) -> Any:
    return worker._logger


def termination_intent() -> str | None:
    """Why this process was told to stop (`cancel`, `reschedule`, `relinquish`), or
    None: the engine's own source of truth for the same decision."""
    try:
        from prefect._internal.control_listener import get_intent
    except ImportError:  # gone in this release: every SIGTERM is taken as a crash
        return None
    return get_intent()


def sqlite_transactions_immediate() -> None:
    """Every SQLite transaction of the Prefect server in this process takes the write
    lock at its start (stream_ingest/devstack/prefect_server.py says why)."""
    from prefect.server.database import configurations

    sqlite = configurations.AioSqliteConfiguration
    begin = sqlite.begin_transaction

    @contextlib.asynccontextmanager
    async def begin_immediate(
        self: Any, session: Any, with_for_update: bool = False
    ) -> AsyncIterator[Any]:
        async with begin(self, session, with_for_update=True) as transaction:
            yield transaction

    sqlite.begin_transaction = begin_immediate  # type: ignore[method-assign]


def websockets_unlimited() -> None:
    """The server's limit of concurrent requests counts HTTP requests only."""
    from prefect.server.api import server as api_server

    middleware = api_server.RequestLimitMiddleware
    limited = middleware.__call__

    async def call(self: Any, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await limited(self, scope, receive, send)
        else:
            await self.app(scope, receive, send)

    middleware.__call__ = call  # type: ignore[method-assign]


@contextlib.contextmanager
def without_flow_run_heartbeats() -> Iterator[None]:
    """Flow runs started in this process while inside send no heartbeats. The engine's
    heartbeat thread sleeps in one-second steps and each run joins it at its end, which
    is most of a short in-process run's wall time; heartbeats only let the server find
    crashed runs, which nothing in a test of one process asks. The setting cannot say
    "none" (it is an integer of at least 30), hence the swap."""
    engine = flow_engine.BaseFlowRunEngine
    original = engine.__dict__["heartbeat_seconds"]
    engine.heartbeat_seconds = property(lambda self: None)  # type: ignore[assignment]
    try:
        yield
    finally:
        engine.heartbeat_seconds = original  # type: ignore[method-assign]


# What each use assumes of the installed Prefect: name -> a check that raises
# AssertionError (with the name) when a release no longer holds to it.


def _params(func: Any) -> list[str]:
    return list(inspect.signature(func).parameters)


def _check_suspension() -> None:
    assert callable(getattr(flow_engine, "observe_flow_run_suspension", None))
    assert "on_suspended" in _params(FlowRunSuspendingObserver.__init__)
    for name in ("add_in_flight_flow_run_id", "remove_in_flight_flow_run_id", "__aenter__"):
        assert callable(getattr(FlowRunSuspendingObserver, name, None)), name
    assert callable(getattr(FlowRunSuspensionRequest, "mark_requested", None))


def _check_engine_calls_observer() -> None:
    source = inspect.getsource(flow_engine)
    assert "observe_flow_run_suspension(" in source, "the engine no longer calls it by name"


def _check_csrf() -> None:
    import httpx
    from prefect.client.base import PrefectHttpxSyncClient

    assert issubclass(PrefectHttpxSyncClient, httpx.Client)
    assert "enable_csrf_support" in _params(PrefectHttpxSyncClient.__init__)


def _check_client_methods() -> None:
    for cls in (PrefectClient, SyncPrefectClient):
        assert callable(getattr(cls, "update_flow_run", None)), f"{cls.__name__}.update_flow_run"
        assert "infrastructure_pid" in _params(cls.update_flow_run)
    for name in ("read_deployment", "read_flow"):
        assert inspect.iscoroutinefunction(getattr(PrefectClient, name)), name


def _check_run_client_context() -> None:
    from prefect.client import orchestration

    source = inspect.getsource(orchestration.get_client)
    assert '"_httpx_settings", None) == httpx_settings' in source, (
        "get_client no longer finds the context's client by its _httpx_settings"
    )
    assert "_httpx_settings" in SyncClientContext.__private_attributes__
    init = inspect.getsource(orchestration.SyncPrefectClient.__init__)
    assert 'httpx_settings.get("verify")' in init and "ssl.SSLContext" in init, (
        "SyncPrefectClient no longer takes its TLS context from httpx_settings['verify']"
    )


def _check_worker() -> None:
    source = inspect.getsource(BaseWorker)
    for name in WORKER_ATTRIBUTES:
        assert f"self.{name}" in source, f"BaseWorker.{name}"
    for name in WORKER_OVERRIDES:
        assert callable(getattr(BaseWorker, name, None)), f"BaseWorker.{name}"
        assert f"self.{name}(" in source, f"BaseWorker no longer calls {name}"


def _check_intent() -> None:
    from prefect._internal.control_listener import get_intent

    assert _params(get_intent) == []


def _check_sqlite() -> None:
    from prefect.server.database import configurations

    begin = configurations.AioSqliteConfiguration.begin_transaction
    assert _params(begin)[:3] == ["self", "session", "with_for_update"]


def _check_request_limit() -> None:
    from prefect.server.api import server as api_server

    middleware = api_server.RequestLimitMiddleware
    assert _params(middleware.__call__) == ["self", "scope", "receive", "send"]
    assert "self.app" in inspect.getsource(middleware)


def _check_heartbeats() -> None:
    engine = flow_engine.BaseFlowRunEngine
    assert isinstance(engine.__dict__.get("heartbeat_seconds"), property)
    source = inspect.getsource(flow_engine._send_heartbeats)
    assert "engine.heartbeat_seconds" in source and "is None" in source, (
        "_send_heartbeats no longer reads engine.heartbeat_seconds, or sends with None"
    )


ASSUMPTIONS: dict[str, Callable[[], None]] = {
    "flow_engine.observe_flow_run_suspension and FlowRunSuspendingObserver": _check_suspension,
    "the engine calls observe_flow_run_suspension by its module name": _check_engine_calls_observer,
    "PrefectHttpxSyncClient(enable_csrf_support=...)": _check_csrf,
    "client.update_flow_run(infrastructure_pid=...), read_deployment, read_flow": (
        _check_client_methods
    ),
    "BaseWorker's private members read and the methods overridden": (_check_worker),
    "SyncClientContext._httpx_settings, get_client's match, httpx_settings['verify']": (
        _check_run_client_context
    ),
    "prefect._internal.control_listener.get_intent()": _check_intent,
    "AioSqliteConfiguration.begin_transaction(self, session, with_for_update)": _check_sqlite,
    "RequestLimitMiddleware.__call__(self, scope, receive, send) and .app": _check_request_limit,
    "BaseFlowRunEngine.heartbeat_seconds, None meaning no heartbeat thread": _check_heartbeats,
}
