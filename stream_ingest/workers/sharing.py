"""What the flow runs of one warm worker share instead of setting up each their own.

Starting a run costs the Prefect server more than running it: in a burst of new
recordings every claimed run reads its deployment three times and its flow once,
and Prefect's engine gives each deployment run a suspension observer of its own (a
thread, an event loop, an API client and a websocket subscription, which the server
answers with a backfill query and then filters every event for). On Prefect on
SQLite these calls queue behind each other: a burst of 20 made creating a run take
2.3 s instead of 0.17. Here the worker's runs share one observer and recent reads,
and each run's client writes the worker's owner with the engine's first update of
the run and skips asking for a CSRF token the server does not use.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Container, Iterator
from typing import Any, Generic, TypeVar
from uuid import UUID

import certifi
from prefect.client.schemas.objects import State
from prefect.context import SyncClientContext
from prefect.settings import PREFECT_API_SSL_CERT_FILE, PREFECT_API_TLS_INSECURE_SKIP_VERIFY

from stream_ingest.flows.prefect_private import (
    FlowRunSuspendingObserver,
    FlowRunSuspensionRequest,
    replace_method,
    run_client_context,
    suspension_observed_by,
    without_csrf,
)

K = TypeVar("K")
V = TypeVar("V")
READ_TTL_SECONDS = 30.0  # a redeployment reaches new runs within this


class RecentReads(Generic[K, V]):
    """`read(key)`, kept `ttl` seconds; concurrent reads of one key share one call.
    Each caller gets its own deep copy (Prefect's job resolution updates the
    deployment's `env` in place). A failed read is not kept."""

    def __init__(self, read: Callable[[K], Awaitable[V]], ttl: float = READ_TTL_SECONDS) -> None:
        self._read, self._ttl = read, ttl
        self._kept: dict[K, tuple[float, asyncio.Future[V]]] = {}

    async def __call__(self, key: K) -> V:
        now = time.monotonic()
        kept = self._kept.get(key)
        if kept is None or now - kept[0] >= self._ttl:
            kept = (now, asyncio.ensure_future(self._read(key)))
            self._kept[key] = kept
        try:
            value = await asyncio.shield(kept[1])
        except Exception:
            if self._kept.get(key) is kept:
                del self._kept[key]
            raise
        return value.model_copy(deep=True) if hasattr(value, "model_copy") else value


def cache_reads(client: Any) -> None:
    """The worker's client reads deployments and flows through RecentReads: the base
    worker and the job configuration call these by name on the client."""
    for name in ("read_deployment", "read_flow"):
        replace_method(client, name, RecentReads(getattr(client, name)))


class SharedSuspension:
    """One FlowRunSuspendingObserver (it watches many runs) for every run of the
    worker, on the worker's event loop. While entered, Prefect's engine in this
    process asks it instead of starting an observer per run; an operator's Suspend
    reaches the run at its next orchestration step, as before."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._observer: FlowRunSuspendingObserver | None = None
        self._requests: dict[UUID, FlowRunSuspensionRequest] = {}
        self._swapped: contextlib.ExitStack | None = None

    async def __aenter__(self) -> SharedSuspension:
        self._loop = asyncio.get_running_loop()
        self._observer = FlowRunSuspendingObserver(on_suspended=self._suspended)
        await self._observer.__aenter__()
        self._swapped = contextlib.ExitStack()
        self._swapped.enter_context(suspension_observed_by(self.observe))
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._observer is None:  # never entered (the worker's setup failed)
            return
        if self._swapped is not None:
            self._swapped.close()
        observer, self._observer = self._observer, None
        await observer.__aexit__(*exc_info)

    def _suspended(self, flow_run_id: UUID, state: State) -> None:
        if request := self._requests.get(flow_run_id):
            request.mark_requested(state)

    @contextlib.contextmanager
    def observe(self, flow_run_id: UUID, request: FlowRunSuspensionRequest) -> Iterator[None]:
        """Called by the engine in the run's thread, as observe_flow_run_suspension."""
        assert self._loop is not None and self._observer is not None
        self._requests[flow_run_id] = request
        self._loop.call_soon_threadsafe(self._observer.add_in_flight_flow_run_id, flow_run_id)
        try:
            yield
        finally:
            self._requests.pop(flow_run_id, None)
            self._loop.call_soon_threadsafe(
                self._observer.remove_in_flight_flow_run_id, flow_run_id
            )


_tls: dict[tuple[bool, str], ssl.SSLContext] = {}
_tls_lock = threading.Lock()


def tls_context() -> ssl.SSLContext:
    """The TLS context of the runs' API clients, built once per process as Prefect's
    client builds its own (PREFECT_API_TLS_INSECURE_SKIP_VERIFY, else the CA file of
    PREFECT_API_SSL_CERT_FILE or certifi's): the settings are the worker's, every
    run's. A context is shared by any number of connections."""
    insecure = bool(PREFECT_API_TLS_INSECURE_SKIP_VERIFY.value())
    cafile = "" if insecure else (PREFECT_API_SSL_CERT_FILE.value() or certifi.where())
    with _tls_lock:
        if (insecure, cafile) not in _tls:
            if insecure:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            else:
                context = ssl.create_default_context(cafile=cafile)
            _tls[(insecure, cafile)] = context
        return _tls[(insecure, cafile)]


@contextlib.contextmanager
def run_client(
    run_id: str, owner: str, csrf: bool = True, prepare: Callable[[], None] | None = None
) -> Iterator[None]:
    """The client the run's engine finds (in the run's thread, around `run_flow`).

    The engine's first write of the run is an update (its version and retry policy);
    the run's owner (`infrastructure_pid`, which the worker base writes in a call of
    its own) goes with it (and with any later update of the run: the same value):
    one write fewer per run start, and the owner is on the run before it is Running.
    `prepare` (the flow's reads that do not wait for the run's state) runs on a
    thread of its own in this client's context, beside the engine's start.
    Sync flows only: an async flow's engine makes a client of its own. `csrf=False`
    where the worker's own client learned that the server has CSRF protection off:
    each new client would ask for a token again. The client's TLS context is the
    process's (`tls_context`), not one built anew for each run."""
    own = SyncClientContext.get() is None
    with run_client_context(tls_context()) if own else SyncClientContext.get_or_create() as context:
        client = context.client
        if not csrf:
            without_csrf(client)
        if prepare is not None:
            beside = contextvars.copy_context().run
            threading.Thread(target=beside, args=(prepare,), name="prepare", daemon=True).start()
        update = client.update_flow_run

        def update_with_owner(flow_run_id: UUID, **fields: Any) -> Any:
            if str(flow_run_id) == run_id and not fields.get("infrastructure_pid"):
                fields["infrastructure_pid"] = owner
            return update(flow_run_id, **fields)

        replace_method(client, "update_flow_run", update_with_owner)
        try:
            yield
        finally:
            replace_method(client, "update_flow_run", update)


def owner_written_by_runs(client: Any, owner: str, by_engine: Container[UUID]) -> None:
    """The worker base writes the owner of each run it submitted in a call of its own;
    for the runs in `by_engine` (sync flows: run_client sent it with the engine's
    first update) that call is skipped. An async flow's engine has a client of its
    own, so its run keeps the base's write."""
    update = client.update_flow_run

    async def update_flow_run(flow_run_id: UUID, **fields: Any) -> Any:
        if fields == {"infrastructure_pid": owner} and flow_run_id in by_engine:
            return None
        return await update(flow_run_id, **fields)

    replace_method(client, "update_flow_run", update_flow_run)
