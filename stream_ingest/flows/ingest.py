"""The stream-ingest flow: one growing video file -> one complete S3 object.

open (find-stream, open-upload) -> tail loop (upload-part-k whenever part k's bytes
exist, several in flight when the file is ahead) -> end of recording (close hint +
settle, or idle timeout) -> finalize (verify, tail, complete). A terminal source error
(deleted, shrank, replaced) salvages what was uploaded (stream_ingest/flows/salvage.py); anything
else leaves the stream `failed` and resumable: rerunning the flow picks up from the checkpoint. Once S3 has
completed the object, no source error fails the stream (stream_ingest/flows/completed.py).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time
import uuid
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.settings import get_current_settings
from prefect.utilities.annotations import quote

from stream_ingest import metrics
from stream_ingest.alerts import progress_every
from stream_ingest.blocks.config import IngestConfig
from stream_ingest.errors import (
    CheckpointUnavailable,
    KeyTaken,
    SourceMissing,
    SourceNotAFile,
    SourceOutsideFolder,
    SourceShrank,
    SourceUnreadable,
)
from stream_ingest.flows import logs
from stream_ingest.flows.batch import upload_batch
from stream_ingest.flows.buffers import BUFFERS
from stream_ingest.flows.ending import record_end, record_skipped
from stream_ingest.flows.finalize import Finalized, confirm_completed, finalize
from stream_ingest.flows.follow_up import look_again
from stream_ingest.flows.lagging import LagWatch
from stream_ingest.flows.lease import LeaseKeeper
from stream_ingest.flows.media import describe
from stream_ingest.flows.opening import TakeSkipped, find_stream, open_upload, record_failure
from stream_ingest.flows.pacing import LIMIT
from stream_ingest.flows.report import (
    Reporter,
    name_run,
)
from stream_ingest.flows.runs import RunRequest, create_stream_run, run_name
from stream_ingest.flows.runtime import StreamContext, config_of_run
from stream_ingest.flows.source import reading, snapshot
from stream_ingest.flows.stopping import check as check_stop
from stream_ingest.flows.stored import AlreadyStored, complete_as_stored
from stream_ingest.flows.upload import WindowEnd, upload_part, upload_parts, upload_window
from stream_ingest.flows.writers import Writers, WriterWatch
from stream_ingest.keys import is_text
from stream_ingest.parts import PartRange, check_fits
from stream_ingest.records import PartRecord, StreamRecord
from stream_ingest.settings import config_block_name
from stream_ingest.states import TERMINAL, Status
from stream_ingest.tail import (
    BATCH_PARTS,
    FileState,
    Growth,
    PartPlanner,
    WriterState,
    ask_writers,
    plan_tasks,
    settled_state,
    slots,
    stream_ended,
    window_for,
)

MAX_REKEYS = 3
RESULTS = Path(get_current_settings().results.local_storage_path)  # never written


def tail_and_finalize(
    ctx: StreamContext,
    parts: dict[int, PartRecord],
    lease: LeaseKeeper,
    reporter: Reporter,
) -> Finalized:
    """Upload parts while the file grows; finalize when the recording has ended."""
    log = get_run_logger()
    s, rec = ctx.config, ctx.record
    parts = dict(parts)
    BUFFERS.at_least(s.max_parts_in_flight)  # its window never waits for the pool
    planner = PartPlanner(rec.part_plan)
    planner.settle(parts)
    lag = LagWatch(ctx, reporter, log)
    lag.settle(parts)
    growth = Growth()
    writers = WriterWatch(ctx.path, s.detect_writers)
    stalled_logged = False
    eager = True  # verify during the settle, until that once proves premature
    tasks = _Uploads(ctx, planner, parts)
    width = max(1, s.max_parts_in_flight // 2)  # per batch: two batches overlap
    read_at: dict[int, FileState] = {}  # parts read while the file was in that state
    watched = False
    try:
        while True:
            LIMIT.tick()
            lease.check()
            check_stop(ctx.token)  # a warm worker's cancel or shutdown
            wall_ns = time.time_ns()  # before the stat: see settled_state
            snap = snapshot(ctx.path, ctx.owned)
            now = time.monotonic()
            lag.observe(snap.size)
            reporter.alive(lag.lag, progress_every(s.stuck_after_seconds), now)
            if growth.observe(snap.size, snap.mtime_ns, now) and watched:
                ctx.pace.live = True  # it grows as we watch: a recording (the limit's class)
            watched = True
            if snap.size < planner.covered():
                raise SourceShrank(ctx.path, planner.covered(), snap.size)
            check_fits(snap.size, planner.plan)  # fail before a part the plan has no room for
            state = settled_state(snap.size, snap.mtime_ns, wall_ns)
            free = max(0, s.max_parts_in_flight - tasks.slots())
            ready = planner.ready(snap.size, free * BATCH_PARTS)
            window = window_for(ready, len(tasks.running), planner.done, width)
            if window is not None:
                tasks.open_window(window, width)
                if state:  # its parts are read after this stat (see settled_state)
                    read_at.update((n, state) for n in window)
            for batch in [] if window else plan_tasks(ready, free, width):
                tasks.submit(batch, width)
                if state:
                    read_at.update((p.number, state) for p in batch)
            if tasks.running:
                collected = tasks.collect(s.poll_interval_seconds)
                reporter.progress(sum(p.size for p in parts.values()), snap.size, lag=lag.lag)
                if collected or not tasks.only_windows():
                    continue
            # Nothing in flight, or only windows waiting for bytes: has it ended?
            quiet = now - growth.changed_at
            look = ask_writers(quiet, eager, s.settle_seconds, writers.known)
            try:
                seen = writers.look(now, (snap.size, snap.mtime_ns)) if look else None
            except FileNotFoundError:  # deleted since the stat above
                raise SourceMissing(ctx.path) from None
            state = seen.state if seen else WriterState.UNKNOWN
            # Where the writers are unknown, the idle timeout ends a recording: any
            # program that opens it for writing (touch, a backup tool) sends a close,
            # and a paused recorder would be cut short. Only where the operator trusts
            # closes does the sensor's hint end it, and only a hint of this take that
            # no write followed; each is used once. Read after the settle, not on
            # every poll (a Redis round trip each).
            closed = False
            if state == WriterState.UNKNOWN and s.trust_close_hints and quiet >= s.settle_seconds:
                try:
                    closed = ctx.store.hints.take_closed(
                        ctx.path, rec.identity, snap.size, snap.mtime_ns
                    )
                except CheckpointUnavailable:  # a Redis blip is no reason to fail: the
                    closed = False  # tasks retry their writes; the idle timeout still ends it
            if seen and state == WriterState.WRITING and quiet >= s.idle_timeout_seconds:
                if not stalled_logged:
                    log.info(
                        "%s: no growth for %.0f s, but %s: waiting", ctx.path, quiet, seen.reason
                    )
                stalled_logged = True
            elif quiet < s.settle_seconds:
                stalled_logged = False
            if stream_ended(
                now=now,
                last_change=growth.changed_at,
                closed_hint=closed,
                writers=state,
                settle_seconds=s.settle_seconds,
                idle_timeout_seconds=s.idle_timeout_seconds,
                empty=snap.size == 0,
                eager=eager,
            ):
                log.info("%s: recording ended: %s", ctx.path, _why_ended(seen, closed, quiet, s))
                tasks.drain()  # windows send the parts they can and return
                result = finalize(ctx, parts, read_at, growth.changed_at + s.settle_seconds)
                if result.completed:
                    lag.finish(result.size)
                    return result
                eager = False
                parts.clear()
                parts.update(result.uploaded)
                planner.settle(parts)
                lag.settle(parts)
                continue
            if not tasks.running:
                time.sleep(s.poll_interval_seconds)
    finally:
        tasks.end.set()  # a failing run's windows stop waiting for bytes


@dataclasses.dataclass(frozen=True)
class _Running:
    """A submitted upload task run: one part, a batch, or a live stream's window."""

    future: Any
    slots: int
    numbers: tuple[int, ...]
    window: bool = False

    def done(self) -> bool:
        return self.future.wrapped_future.done()  # (not fut.state: an API read per call)

    def result(self) -> list[PartRecord]:
        out = self.future.result()
        return out if isinstance(out, list) else [out]


class _Uploads:
    """The stream's upload task runs in flight; collected parts go into `parts`."""

    def __init__(
        self, ctx: StreamContext, planner: PartPlanner, parts: dict[int, PartRecord]
    ) -> None:
        self.ctx, self.planner, self.parts = ctx, planner, parts
        self.running: list[_Running] = []
        self.end = WindowEnd()

    def slots(self) -> int:
        return sum(r.slots for r in self.running)

    def only_windows(self) -> bool:
        return all(r.window for r in self.running)

    def submit(self, batch: list[PartRange], width: int) -> None:
        numbers = tuple(p.number for p in batch)
        if len(batch) == 1:
            pr = batch[0]
            future = upload_part.submit(self.ctx, pr.number, pr.offset, pr.size)
        else:
            future = upload_parts.submit(self.ctx, numbers[0], numbers[-1], width)
        self.running.append(_Running(future, slots(batch, width), numbers))
        self.planner.in_flight.update(numbers)

    def open_window(self, window: range, width: int) -> None:
        future = upload_window.submit(self.ctx, window.start, window.stop - 1, self.end, width)
        self.running.append(_Running(future, width, tuple(window), window=True))
        self.planner.in_flight.add(window.start)  # ready now: the file must keep it
        self.planner.reserved.update(window[1:])

    def collect(self, timeout: float) -> bool:
        """Wait up to `timeout` for a task run to end; take the parts of those that
        did (raising a failed one's error: never lose a part). True if any ended."""
        concurrent.futures.wait(
            [r.future.wrapped_future for r in self.running],
            timeout=timeout,
            return_when=concurrent.futures.FIRST_COMPLETED,
        )
        finished = [r for r in self.running if r.done()]
        for running in finished:
            self._take(running)
        return bool(finished)

    def drain(self) -> None:
        """End the windows and take every task run's parts."""
        self.end.set()
        for running in list(self.running):
            self._take(running)
        self.end = WindowEnd()

    def _take(self, running: _Running) -> None:
        for part in running.result():
            self.parts[part.number] = part
            self.planner.done.add(part.number)
        self.planner.in_flight.difference_update(running.numbers)
        self.planner.reserved.difference_update(running.numbers)
        self.running.remove(running)


def _why_ended(seen: Writers | None, closed: bool, quiet: float, config: IngestConfig) -> str:
    """The log line's reason: what the OS said, or which guess applied and why."""
    if seen and seen.state == WriterState.CLOSED:
        return f"{seen.reason}, unchanged for {quiet:.1f} s"
    why = seen.reason if seen else "not looked up"
    if closed and quiet >= config.settle_seconds:
        return f"closed after writing and settled {quiet:.1f} s (writers unknown: {why})"
    return f"idle timeout, unchanged for {quiet:.0f} s (writers unknown: {why})"


def _start_new_take(
    cfg: IngestConfig, config: str, old: StreamRecord, fresh: StreamRecord
) -> dict[str, Any]:
    """The completed stream's file holds a new take now: it is `fresh`'s to upload.
    Start its run (the sensor's next look at the file does, if this cannot)."""
    log = get_run_logger()
    message = f"{old.original_path} holds a new take now: stream {fresh.stream_id}"
    try:
        path = fresh.original_path if is_text(fresh.original_path) else ""
        request = RunRequest.first(cfg.deployment, path, fresh.stream_id, config)
        run = create_stream_run(request)
        message += f", flow run {run.name}"
    except Exception as exc:  # no deployment here (a run outside one), Prefect down
        message += f" (its run is left to the sensor: {type(exc).__name__})"
    log.info("stream %s: %s", old.stream_id, message)
    return {**old.public(), "message": message}


def _rekey(
    ctx: StreamContext, taken: KeyTaken, flow_run_id: str
) -> tuple[StreamContext, dict[int, PartRecord]]:
    """Another take's object got the key while this one uploaded (the conditional
    completion failed): start again at the next free key (on_existing), or skip."""
    rec = ctx.record
    if ctx.config.on_existing == "skip":
        raise TakeSkipped(taken.key)
    get_run_logger().warning(
        "stream %s: %s; uploading it again under the next free key", rec.stream_id, taken
    )
    ctx.bucket.abort_multipart_upload(rec.s3_key, rec.s3_upload_id)
    ctx.store.parts.forget_upload(rec.s3_upload_id)
    ctx.store.streams.update(rec.stream_id, s3_key="", s3_upload_id="")
    fresh = ctx.with_record(dataclasses.replace(rec, s3_key="", s3_upload_id=""))
    opened = open_upload(fresh, flow_run_id)
    return fresh.with_record(opened.record), dict(opened.parts or {})


# Nothing reads a stream run's return value (a rerun resumes from the checkpoint):
# not persisting it, with a storage named, spares each run three reads of the
# server's default result storage.
@flow(
    name="stream-ingest",
    # No flow_run_name: Prefect's engine would rename every run as it starts (a write
    # the server queues in a burst). The sensor names runs at creation; name_run
    # renames the others (the UI's Run, `prefect deployment run`, automations).
    log_prints=False,
    persist_result=False,
    result_storage=RESULTS,
)
def stream_ingest(
    path: str = "",
    stream_id: str | None = None,
    config: str | None = None,
    stream_ids: list[str] | None = None,
) -> dict[str, Any]:
    """Upload one growing video file to S3 while it is written.

    Args:
        path: the recording's path (absolute, or relative to the worker's folder).
        stream_id: resume this stream (its checkpoint names the file when `path` is "").
        config: the IngestConfig block to use (default: STREAM_INGEST_CONFIG_BLOCK of
            the worker, else "stream-ingest"); the sensor passes its own.
        stream_ids: a batch of finished small files, a table row each (the sensor's;
            `path` and `stream_id` are then unused).
    """
    log = get_run_logger()
    if not stream_ids:
        name_run(run_name(path, stream_id))
    config = config or config_block_name()
    flow_run_id = str(flow_run.id or "")
    cfg = config_of_run(flow_run_id, config)
    logs.use_format(cfg.log_format)
    LIMIT.follow(cfg, config)
    store = cfg.checkpoints
    # Redis down at the start is configuration or an outage, not a hiccup: fail now
    # with the reason (the client already retried for a few seconds) instead of
    # letting every task's retries stretch it into a minute-long storm.
    store.ping()
    if stream_ids:
        return upload_batch(cfg, config, stream_ids, flow_run_id)
    token = flow_run_id or str(uuid.uuid4())
    try:
        # quote: Prefect would otherwise walk and rebuild the whole config block (S3
        # and Redis blocks inside) looking for futures: 6 % of a short run's CPU.
        found = find_stream(quote(cfg), path, stream_id, token, flow_run_id)
    except (SourceMissing, SourceNotAFile, SourceUnreadable, SourceOutsideFolder) as exc:
        sid = stream_id or record_failure(store, path, exc)
        metrics.FAILURES.labels(metrics.error_name(exc)).inc()
        if stream_id and store.streams.get(stream_id):
            store.streams.set_status(stream_id, Status.FAILED, error=str(exc))
        log.error("stream %s: %s", sid, exc)
        raise
    record, leased = found.record, found.leased
    logs.bind_stream(flow_run_id, record.stream_id, record.identity)
    if found.new_take is not None:
        return _start_new_take(cfg, config, record, found.new_take)
    if record.status in TERMINAL:
        log.info("stream %s is already %s; nothing to do", record.stream_id, record.status)
        return {**record.public(), "message": f"already {record.status}"}
    if not leased:
        message = f"stream {record.stream_id} is being uploaded by another run"
        log.info("%s; this run ends without touching the upload", message)
        return {**record.public(), "message": message}
    ctx = StreamContext(cfg, record, token)
    log.info("stream %s: ingesting %s", record.stream_id, record.original_path)
    reporter = Reporter(record, flow_run_id, config)
    keeper = LeaseKeeper(
        store, record.stream_id, token, cfg.lease_ttl_seconds, cfg.stuck_timeout_seconds, log
    )
    confirmed = False  # an earlier run's completion, recorded without looking at the file
    with keeper as lease, reading(record.original_path):
        try:
            opened = open_upload(ctx, flow_run_id)
            ctx = ctx.with_record(opened.record).with_prior(opened.prior)
            reporter.record = opened.record  # events name the object from here on
            reporter.start()
            if opened.parts is None:
                result = confirm_completed(ctx)
                confirmed = True
            else:
                parts, rekeys = opened.parts, 0
                while True:
                    try:
                        result = tail_and_finalize(ctx, parts, lease, reporter)
                        break
                    except KeyTaken as exc:
                        rekeys += 1
                        if rekeys > MAX_REKEYS:  # keys taken as fast as we pick them
                            raise
                        ctx, parts = _rekey(ctx, exc, flow_run_id)
                        reporter.record = ctx.record
        except TakeSkipped as exc:
            record_skipped(ctx, exc, reporter)
            return {**store.streams.require(record.stream_id).public(), "message": str(exc)}
        except AlreadyStored as exc:
            ctx = complete_as_stored(ctx, exc)
            reporter.record = ctx.record
            result = Finalized(True, {}, exc.head["ContentLength"], 0, 0, exc.sha256)
        except BaseException as exc:
            record_end(ctx, exc, reporter)
            raise
        # Completed: what the recording is, read while the lease keeps the next
        # revision from beginning (stream_ingest/flows/media.py).
        uploaded_at = time.monotonic()  # the summary's MB/s are the upload's
        try:
            media = describe(ctx)
        except Exception as exc:  # the facts are extra: the stream stays completed
            log.warning("stream %s: media facts not read: %s", record.stream_id, exc)
            media = None
    # The lease is released: a change it hid, or one made while the stream waited for
    # this run (its events were spent on a failed stream).
    look_again(cfg, config, record.stream_id, unasked=confirmed)
    reporter.completed(
        result.size, result.parts, result.reuploaded, result.sha256, media, uploaded_at
    )
    log.info(
        "stream %s completed: s3://%s/%s, %d bytes, %d parts (%d re-uploaded), sha256 %s",
        record.stream_id,
        ctx.record.s3_bucket,
        ctx.record.s3_key,
        result.size,
        result.parts,
        result.reuploaded,
        result.sha256,
    )
    return store.streams.require(record.stream_id).public()
