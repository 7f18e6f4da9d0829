"""A batch: one flow run for finished small files the sensor saw together
(stream_ingest/sensors/batching.py), a row each in its table artifact.

Each file is still its own stream and take: its record, lease, multipart upload,
verification, conditional completion and SHA-256 are those of a run of its own, made
by the same functions (opening, finalize). Its media facts are not read: ffprobe costs
about 0.1 CPU-s per file here (mostly its start), as much as the rest of a small
file's upload; `batch_small_files: 0` gives every file a run of its own, with its
facts.

What the Prefect server is told is per batch, not per file: on SQLite a task run costs
it about 50 ms of CPU, a log line about 25 ms and an event about 10 ms, as much as the
upload of a small file here or more. So the files go up in threads of the run (no task
run each), their INFO lines stay on the worker's console (warnings and errors reach
the UI as ever), each file's outcome, object, size and SHA-256 are a row of the run's
table artifact, and the completed files are announced in one
`stream-ingest.batch.completed` event (stream_ingest/batch_events.py).

What a batch cannot judge it hands on: a file that is not finished when its task looks
(a writer has it open, it outgrew one part, its writers cannot be seen here), changed
while it was read, or whose key another take got meanwhile gets a run of its own,
which resumes its upload from the checkpoint. A file that fails is recorded failed
(resumable) and announced with its own events, as in a run of its own; the batch run
then ends Failed, naming them.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.events import emit_event

from stream_ingest.batch_events import BATCH_PREFIX, batch_events
from stream_ingest.blocks.config import IngestConfig
from stream_ingest.errors import KeyTaken
from stream_ingest.flows.ending import record_end, record_skipped
from stream_ingest.flows.finalize import Finalized, confirm_completed, finalize
from stream_ingest.flows.follow_up import look_again
from stream_ingest.flows.lease import LeaseKeeper
from stream_ingest.flows.opening import TakeSkipped, find_stream, open_upload
from stream_ingest.flows.report import FAILED, Reporter, record_failed, stream_resource
from stream_ingest.flows.runs import RunRequest, create_stream_run
from stream_ingest.flows.runtime import StreamContext
from stream_ingest.flows.source import reading, snapshot
from stream_ingest.flows.stopping import StopRequested
from stream_ingest.flows.stopping import check as check_stop
from stream_ingest.flows.stored import AlreadyStored, complete_as_stored
from stream_ingest.flows.writers import WriterWatch
from stream_ingest.keys import is_text
from stream_ingest.parts import part_size
from stream_ingest.states import ACTIVE, TERMINAL, Status
from stream_ingest.tail import WriterState


class BatchIncomplete(Exception):
    """Some files of the batch ended without completing (failed, resumable; or, their
    file gone, aborted or salvaged), each recorded and announced so."""


@dataclass(frozen=True)
class FileRow:
    """One file of the batch, as its table artifact shows it."""

    file: str
    stream_id: str
    outcome: str
    object: str = ""
    bytes: int = 0
    sha256: str = ""

    @property
    def failed(self) -> bool:
        return self.outcome.split(":", 1)[0] in _ENDED_BADLY


_ENDED_BADLY = {FAILED, Status.ABORTED, Status.SALVAGED}
# A small file's time goes to some ten round trips to S3 and Redis, not to its bytes:
# files/s follow the files in flight (100 files of 512 KiB here: 8 at once gave about
# 11 files/s, 24 about 19). Their bytes are in the process's part buffers, which bound
# its memory whatever the number of files (stream_ingest/flows/buffers.py).
FILES_AT_ONCE = 24
THREAD_PREFIX = "batch-file"


class _QuietInfo(logging.Filter):
    """A batch file's INFO lines stay on the console: each line the Prefect API
    receives costs its server more than the file's upload (see the module's
    docstring). Prefect's API handler skips a record whose `send_to_api` is false."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING and threading.current_thread().name.startswith(
            THREAD_PREFIX
        ):
            record.send_to_api = False
        return True


_QUIET = _QuietInfo()


def quiet_info_lines() -> None:
    """Install the filter on Prefect's run loggers, once per process."""
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        if _QUIET not in logger.filters:
            logger.addFilter(_QUIET)


class _HandOn(Exception):
    """The file needs a run of its own (why: the message)."""


def upload_batch(cfg: IngestConfig, config: str, stream_ids: list[str], flow_run_id: str) -> dict:
    """Upload each stream's file, FILES_AT_ONCE (or `max_parts_in_flight` if more) at
    a time; one table artifact with a row per file, one event per batch and outcome.
    Raises BatchIncomplete if any file failed."""
    log = get_run_logger()
    records = {r.stream_id: r for r in cfg.checkpoints.streams.many(set(stream_ids))}
    width = max(FILES_AT_ONCE, cfg.max_parts_in_flight)
    futures: list[Future[FileRow]] = []
    quiet_info_lines()
    with ThreadPoolExecutor(width, thread_name_prefix=THREAD_PREFIX) as pool:
        for sid in stream_ids:
            check_stop(flow_run_id)  # a warm worker's cancel or shutdown: the rest rerun
            name = _name(records[sid].original_path) if sid in records else sid
            while len(running := [f for f in futures if not f.done()]) >= width:
                wait(running, return_when=FIRST_COMPLETED)
            # Each file in a copy of the run's context: its lines are the run's.
            run = contextvars.copy_context().run
            futures.append(pool.submit(run, ingest_file, cfg, config, sid, name, flow_run_id))
        rows: list[FileRow] = [f.result() for f in futures]
    _announce_completed(cfg, config, flow_run_id, [r for r in rows if r.outcome == "completed"])
    create_table_artifact(
        table=[asdict(r) for r in rows],
        key=f"batch-{flow_run_id[:8]}" if flow_run_id else None,
        description=f"{len(rows)} finished files, one row each",
    )
    done = sum(r.outcome == "completed" for r in rows)
    failed = [r for r in rows if r.failed]
    log.info(
        "batch: %d of %d files completed here, %d failed (no media facts are read in a batch)",
        done,
        len(rows),
        len(failed),
    )
    if failed:
        names = ", ".join(f"{r.file} ({r.outcome.split(':', 1)[0]})" for r in failed[:5])
        raise BatchIncomplete(
            f"{len(failed)} of {len(rows)} files did not complete: {names}"
            + (" and more" if len(failed) > 5 else "")
        )
    return {"files": len(rows), "completed": done, "rows": [asdict(r) for r in rows]}


def ingest_file(
    cfg: IngestConfig, config: str, stream_id: str, name: str, flow_run_id: str
) -> FileRow:
    """One file of the batch, start to end (see the module's docstring). A file's
    failure is its own: its row says it, the other files go on."""
    try:
        return _ingest(cfg, config, stream_id, name, flow_run_id)
    except StopRequested:
        raise
    except Exception as exc:  # before its lease (its record unreadable, Redis away)
        get_run_logger().error("stream %s: %s", stream_id, exc)
        return FileRow(name, stream_id, f"{FAILED}: {_line(exc)}")


def _ingest(cfg: IngestConfig, config: str, sid: str, name: str, flow_run_id: str) -> FileRow:
    log, store = get_run_logger(), cfg.checkpoints
    token = flow_run_id or sid
    found = find_stream.fn(cfg, "", sid, token, flow_run_id)
    record = found.record
    if found.new_take is not None:
        return _hand_on(cfg, config, found.new_take, name, "a new take of a completed file")
    if record.status in TERMINAL:
        return FileRow(name, sid, f"already {record.status}")
    if not found.leased:
        return FileRow(name, sid, "being uploaded by another run")
    ctx = StreamContext(cfg, record, token)
    reporter = Reporter(record, flow_run_id, config)
    hand_on = ""
    keeper = LeaseKeeper(store, sid, token, cfg.lease_ttl_seconds, cfg.stuck_timeout_seconds, log)
    with keeper, reading(record.original_path):
        try:
            opened = open_upload.fn(ctx, flow_run_id)
            ctx = ctx.with_record(opened.record).with_prior(opened.prior)
            reporter.record = opened.record
            if opened.parts is None:
                result = confirm_completed.fn(ctx)
            else:
                settle_until = _finished(ctx)
                result = finalize.fn(ctx, opened.parts, {}, settle_until)
                if not result.completed:
                    raise _HandOn("it changed while it was read")
        except _HandOn as exc:
            hand_on = str(exc)
        except KeyTaken:
            hand_on = "another take got its key meanwhile"
        except TakeSkipped as exc:
            record_skipped(ctx, exc, reporter)
            return FileRow(name, sid, f"skipped: {exc}")
        except AlreadyStored as exc:
            ctx = complete_as_stored(ctx, exc)
            result = Finalized(True, {}, exc.head["ContentLength"], 0, 0, exc.sha256)
        except Exception as exc:
            record_end(ctx, exc, reporter)
            if isinstance(exc, StopRequested):
                raise
            ended = store.streams.get(sid)
            how = ended.status if ended and ended.status not in ACTIVE else FAILED
            return FileRow(name, sid, f"{how}: {_line(exc)}")
    if hand_on:
        return _hand_on(cfg, config, ctx.record, name, hand_on)
    look_again(cfg, config, sid)
    rec = ctx.record
    obj = f"s3://{rec.s3_bucket}/{rec.s3_key}"
    return FileRow(name, sid, "completed", obj, result.size, result.sha256)


def _announce_completed(
    cfg: IngestConfig, config: str, flow_run_id: str, rows: list[FileRow]
) -> None:
    """`stream-ingest.batch.completed` for the completed files, in place of a
    `stream-ingest.stream.completed` each (stream_ingest/batch_events.py); a file that
    ends otherwise sends its own event, as in a run of its own."""
    if not rows:
        return
    try:
        records = {
            r.stream_id: r for r in cfg.checkpoints.streams.many({r.stream_id for r in rows})
        }
    except Exception as exc:  # Redis away: the records say it all the same
        get_run_logger().warning("could not emit %s.completed: %s", BATCH_PREFIX, exc)
        return
    files, related = [], []
    for row in rows:
        rec = records.get(row.stream_id)
        if rec is None:
            continue
        files.append(
            {
                "path": rec.original_path,
                "stream_id": row.stream_id,
                "s3_key": rec.s3_key,
                "bytes": row.bytes,
                "sha256": row.sha256,
            }
        )
        related.append({**stream_resource(rec, config), "prefect.resource.role": "stream"})
    labels = {"stream-ingest.config": config}
    for event in batch_events("completed", flow_run_id, files, related, labels):
        try:
            emit_event(**event)
        except Exception as exc:
            get_run_logger().warning("could not emit %s: %s", event["event"], exc)


def _finished(ctx: StreamContext) -> float:
    """Raise _HandOn unless the file is one part that no process writes (or, where
    writers cannot be seen, that the sensor saw closed as it is now); return the
    time.monotonic() before which it must not be completed: the settle, counted from
    the file's last change."""
    cfg, rec = ctx.config, ctx.record
    snap = snapshot(ctx.path, ctx.owned)
    if snap.size == 0 or snap.size > part_size(1, rec.part_plan):
        raise _HandOn("empty" if snap.size == 0 else "larger than one part")
    seen = WriterWatch(ctx.path, cfg.detect_writers).look(time.monotonic())
    if seen.state == WriterState.WRITING:
        raise _HandOn(f"still written: {seen.reason}")
    if seen.state == WriterState.UNKNOWN and not (
        cfg.trust_close_hints
        and ctx.store.hints.take_closed(ctx.path, rec.identity, snap.size, snap.mtime_ns)
    ):
        raise _HandOn(f"its writers cannot be seen here ({seen.reason})")
    age = time.time() - snap.mtime_ns / 1e9
    return time.monotonic() + max(0.0, cfg.settle_seconds - age)


def _hand_on(cfg: IngestConfig, config: str, record: Any, name: str, why: str) -> FileRow:
    """Start the stream's own run (keyed as the sensor keys a first run: asking twice
    gives the same run); if that cannot be done, the stream fails, resumable."""
    log, store, sid = get_run_logger(), cfg.checkpoints, record.stream_id
    path = record.original_path if is_text(record.original_path) else ""
    try:
        run = create_stream_run(RunRequest.first(cfg.deployment, path, sid, config))
    except Exception as exc:  # no deployment here (a run outside one), Prefect down
        message = f"{why}; its own run could not be created ({type(exc).__name__}: {exc})"
        reporter = Reporter(record, "", config)
        reporter.record = record_failed(store, record, message, counted=True)
        reporter.ended(FAILED, message)
        log.error("stream %s: %s", sid, message)
        return FileRow(name, sid, f"{FAILED}: {message}")
    store.streams.update(sid, flow_run_id=run.id)
    log.info("stream %s: %s: its own flow run %s", sid, why, run.name)
    return FileRow(name, sid, f"own run {run.name}: {why}")


def _line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1] or path
