"""What the Prefect UI shows about a stream: the run's tag, a progress artifact, a
summary table at the end, and events with the stream as their resource.

A stream that ends without completing is announced by how it ended: `aborted` or
`salvaged` (terminal), `failed` (counted: an automation reruns it a bounded number of times,
automations/), or, not counted and never rerun by it, `cancelled` (an operator
cancelled its run) and `rescheduled` (its worker shut down and runs it again).

Reporting never fails a stream: every call to the API is best-effort and logged.
"""

from __future__ import annotations

import contextvars
import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.context import FlowRunContext, TaskRunContext
from prefect.events import emit_event
from prefect.exceptions import TerminationSignal
from prefect.runtime import flow_run

from stream_ingest.flows import stopping
from stream_ingest.flows.prefect_private import termination_intent
from stream_ingest.flows.stopping import StopRequested
from stream_ingest.lag import Lag, describe
from stream_ingest.media import MediaReport
from stream_ingest.progress import progress_due
from stream_ingest.records import StreamRecord
from stream_ingest.states import Status

if TYPE_CHECKING:
    from stream_ingest.blocks.checkpoints import CheckpointStore

EVENT_PREFIX = "stream-ingest.stream"
FAILED, CANCELLED, RESCHEDULED, ABORTED = "failed", "cancelled", "rescheduled", "aborted"
# Stops someone asked for: the warm worker's reasons (stream_ingest/flows/stopping.py), and the
# intents Prefect's process supervisor sends over its control channel before SIGTERM.
_STOPS = {stopping.CANCELLED: CANCELLED, stopping.SHUTDOWN: RESCHEDULED}
_INTENTS = {"cancel": CANCELLED, "reschedule": RESCHEDULED, "relinquish": RESCHEDULED}


def stream_resource(record: StreamRecord, config: str) -> dict[str, str]:
    """The stream as an event resource. `stream-ingest.failures` lets an automation
    rerun a failed stream a bounded number of times, with the same config block
    (automations/)."""
    return {
        "stream-ingest.config": config,
        "prefect.resource.id": f"stream-ingest.stream.{record.stream_id}",
        "prefect.resource.name": record.original_path.rsplit("/", 1)[-1] or record.stream_id,
        "stream-ingest.path": record.original_path,
        "stream-ingest.stream-id": record.stream_id,
        "stream-ingest.failures": str(record.failures),
    }


def how_it_ended(exc: BaseException) -> str:
    """How a run that raised `exc` (not a terminal source error) ended: `cancelled`,
    `rescheduled` or `failed`.

    A warm worker asks its run's thread to stop and says why (stream_ingest/flows/stopping.py). A
    process worker's run gets SIGTERM, which Prefect raises as TerminationSignal,
    after telling the run why over its control channel: `cancel`, or `reschedule` /
    `relinquish` when `prefect flow-run execute` shuts down. A SIGTERM nobody
    explained (the process killed from outside) is a crash: a failure.
    """
    if isinstance(exc, StopRequested):
        return _STOPS.get(exc.reason, FAILED)
    if isinstance(exc, TerminationSignal):
        return _INTENTS.get(termination_intent() or "", FAILED)
    return FAILED


def record_failed(
    store: CheckpointStore, record: StreamRecord, message: str, counted: bool
) -> StreamRecord:
    """Mark the stream failed (resumable), the failure counted if `counted`. Every
    writer of a failure (the flow, the janitor) comes here: the count is what an
    automation bounds its reruns by, and a completion resets it (stream_ingest/flows/finalize.py).

    Returns:
        The stream as stored now: its events carry the new count.
    """
    # Counted on the stored record: a run's copy may predate other failures.
    stored = store.streams.get(record.stream_id) or record
    failures = stored.failures + 1 if counted else stored.failures
    store.streams.set_status(record.stream_id, Status.FAILED, error=message, failures=failures)
    return dataclasses.replace(stored, status=Status.FAILED, error=message, failures=failures)


class Reporter:
    def __init__(self, record: StreamRecord, flow_run_id: str, config: str) -> None:
        self.record = record
        self.config = config
        self.flow_run_id = flow_run_id
        self.started = time.monotonic()
        self._progress_id: UUID | None = None
        self._bar_asked = False  # the bar is created once, on the first progress
        self._last_progress: float | None = None
        self._last_uploaded = 0
        self._last_alive = self.started

    def _safely(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            get_run_logger().warning("could not %s: %s", what, exc)
            return None

    def event(self, name: str, **payload: Any) -> None:
        self._safely(
            f"emit {name}",
            emit_event,
            event=f"{EVENT_PREFIX}.{name}",
            resource=stream_resource(self.record, self.config),
            payload={"stream_id": self.record.stream_id, "s3_key": self.record.s3_key, **payload},
        )

    def start(self) -> None:
        """Tag the run with the stream id and announce the stream. The progress bar
        comes with the first progress, once parts are on their way: its creation is
        a write the server queues with every other run's, not to be waited for
        before the stream's first byte."""
        self._safely("tag the flow run", self._tag)
        self.event("started", flow_run_id=self.flow_run_id)

    def _tag(self) -> None:
        tag = f"stream:{self.record.stream_id}"
        # The sensor's runs are created tagged: the run's own copy says so, no API call.
        if self.flow_run_id and tag not in (flow_run.tags or []):
            add_tag(self.flow_run_id, tag)

    def progress(
        self, uploaded: int, size: int, force: bool = False, lag: Lag | None = None
    ) -> None:
        """Update the progress bar when it is due (stream_ingest.progress) or forced;
        its description says the stream's `lag` (stream_ingest/lag.py)."""
        now = time.monotonic()
        percent = 100.0 if size == 0 else min(100.0, 100.0 * uploaded / size)
        description = f"Bytes of {self.record.original_path} in S3"
        if lag is not None:
            description += f"; lag: {describe(lag)}"
        if not self._bar_asked:  # the first progress: the bar, where it stands now
            self._bar_asked = True
            self._last_progress, self._last_uploaded = now, uploaded
            self._progress_id = self._safely(
                "create the progress artifact",
                create_progress_artifact,
                progress=percent,
                description=description,
            )
            return
        due = progress_due(
            now, self._last_progress, uploaded, self._last_uploaded, self.record.part_base_bytes
        )
        if self._progress_id is None or not (force or due):
            return
        self._last_progress, self._last_uploaded = now, uploaded
        self._safely(
            "update progress",
            update_progress_artifact,
            self._progress_id,
            percent,
            description if lag is not None else None,
        )

    def alive(self, lag: Lag, every: float, now: float) -> None:
        """The `progress` event, at most every `every` seconds (monotonic `now`) while
        the run looks at its file, growing or not: the stuck alert waits for it
        (stream_ingest/alerts.py), and a stalled camera is not a stuck run."""
        if now - self._last_alive < every:
            return
        self._last_alive = now
        self.event("progress", lag_bytes=lag.bytes, lag_seconds=round(lag.seconds, 1))

    def completed(
        self,
        size: int,
        parts: int,
        reuploaded: int,
        sha256: str,
        media: MediaReport | None = None,
        ended: float | None = None,
    ) -> None:
        """The summary artifact and the `completed` event; `ended` (monotonic): when
        the upload ended, before the media facts were read (default: now)."""
        seconds = max((ended or time.monotonic()) - self.started, 1e-6)
        rec = self.record
        self.progress(size, size, force=True, lag=Lag(0, 0.0))
        row = {
            "object": f"s3://{rec.s3_bucket}/{rec.s3_key}",
            "bytes": size,
            "parts": parts,
            "re-uploaded parts": reuploaded,
            "sha256": sha256,
            "duration (s)": round(seconds, 2),
            "MB/s": round(size / seconds / 1e6, 2),
        }
        if media is not None:  # ffprobe was asked (stream_ingest/flows/media.py)
            row["media"] = media.summary()
        self._safely(
            "create the summary artifact",
            create_table_artifact,
            table=[row],
            key=f"stream-{rec.stream_id[:8]}",
            description=f"Summary of stream {rec.stream_id}",
        )
        # The completion reset the stored count (stream_ingest/flows/finalize.py): the event says so.
        self.record = dataclasses.replace(rec, failures=0)
        self.event("completed", bytes=size, parts=parts, reuploaded_parts=reuploaded, sha256=sha256)

    def ended(self, how: str, message: str) -> None:
        """Announce an end other than completed: `failed`, `cancelled`, `rescheduled`
        or `aborted`. Set `record` to the stored one first (record_failed)."""
        self.event(how, error=message)


def janitor_failed(
    store: CheckpointStore, record: StreamRecord, message: str, config: str
) -> StreamRecord:
    """Fail a stream for the janitor (its run ended without finishing, or lost its
    lease) and announce it as the flow would have: `failed` and counted, with the
    flow's resource, so that the automation reruns it; `cancelled` and not counted if
    an operator cancelled its run.

    The event is related to the stream's run and that run's deployment, never to the
    janitor's own run: an automation's `source: inferred` runs the first deployment
    it finds among them.

    Args:
        store: the checkpoints.
        record: the stream as the janitor read it.
        message: why, for the record and the event.
        config: the block to name when the run's is not known (given none, or
            unreadable): the janitor's.

    Returns:
        The stream as stored now.
    """
    run = _read_run(record.flow_run_id)
    cancel = (StateType.CANCELLING, StateType.CANCELLED)
    how = CANCELLED if run and run.state and run.state.type in cancel else FAILED
    failed = record_failed(store, record, message, counted=how == FAILED)
    config = str((run.parameters.get("config") if run else None) or config)
    try:
        _outside_any_run(
            emit_event,
            event=f"{EVENT_PREFIX}.{how}",
            resource=stream_resource(failed, config),
            related=_run_resources(run) if run else [],
            payload={"stream_id": failed.stream_id, "s3_key": failed.s3_key, "error": message},
        )
    except Exception as exc:
        get_run_logger().warning("could not emit %s: %s", how, exc)
    return failed


def announce(
    record: StreamRecord, how: str, message: str, config: str, log: Any, **payload: Any
) -> None:
    """Announce an end that no run of the stream announces (the janitor's, an
    operator's): the stream as the resource, no run's resources related to it."""
    body = {"stream_id": record.stream_id, "s3_key": record.s3_key, "error": message}
    try:
        _outside_any_run(
            emit_event,
            event=f"{EVENT_PREFIX}.{how}",
            resource=stream_resource(record, config),
            payload=body | payload,
        )
    except Exception as exc:
        log.warning("could not emit %s: %s", how, exc)


def _read_run(flow_run_id: str) -> FlowRun | None:
    """The stream's run as Prefect has it; None if there is none or it cannot be read."""
    try:
        run_id = UUID(flow_run_id)
    except ValueError:
        return None
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            return client.read_flow_run(run_id)
    except Exception as exc:
        get_run_logger().warning("could not read flow run %s: %s", flow_run_id, exc)
        return None


def _run_resources(run: FlowRun) -> list[dict[str, str]]:
    """The run and its deployment as related resources, as Prefect relates them to
    the events of the run itself (prefect.events.related)."""
    related = [
        {"prefect.resource.id": f"prefect.flow-run.{run.id}", "prefect.resource.role": "flow-run"}
    ]
    if run.deployment_id:
        deployment = f"prefect.deployment.{run.deployment_id}"
        related.append({"prefect.resource.id": deployment, "prefect.resource.role": "deployment"})
    return related


def _outside_any_run(fn: Callable[..., Any], **kwargs: Any) -> Any:
    """Call `fn` where Prefect sees no flow or task run: an event emitted there gets
    no related resources from the run context (Prefect appends them to every event
    a run emits, and the janitor's deployment must not be the one inferred)."""

    def call() -> Any:
        FlowRunContext.__var__.set(None)
        TaskRunContext.__var__.set(None)
        return fn(**kwargs)

    return contextvars.copy_context().run(call)


def name_run(wanted: str) -> None:
    """Name this run `wanted` unless it was created so (the sensor and `streams rerun`
    name their runs; one started from the UI is renamed here: one API call)."""
    if not flow_run.id or flow_run.name == wanted:
        return
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            client.set_flow_run_name(UUID(flow_run.id), wanted)
    except Exception as exc:
        get_run_logger().warning("could not name the flow run %r: %s", wanted, exc)
        return
    if (context := FlowRunContext.get()) is not None and context.flow_run is not None:
        context.flow_run.name = wanted  # the run's own copy, for its later log lines


def add_tag(flow_run_id: str, tag: str) -> None:
    """Add `tag` to the run's tags (a read and an update)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(flow_run_id))
        client.update_flow_run(UUID(flow_run_id), tags=sorted({*run.tags, tag}))
