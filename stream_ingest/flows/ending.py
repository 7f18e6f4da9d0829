"""How a take that did not complete ends, in one place for a stream's own run and a
batch (stream_ingest/flows/batch.py): a terminal source error salvages what was
uploaded; anything else leaves the stream failed and resumable."""

from __future__ import annotations

from prefect import get_run_logger

from stream_ingest import metrics
from stream_ingest.errors import LeaseLost, StreamError
from stream_ingest.flows.report import FAILED, Reporter, how_it_ended, record_failed
from stream_ingest.flows.runtime import StreamContext
from stream_ingest.flows.salvage import carry_out, plan_end
from stream_ingest.states import Status


def end_lost(ctx: StreamContext, message: str, reporter: Reporter) -> None:
    """The file is gone, shrank or was replaced: what was uploaded of it is salvaged
    (or the upload aborted, if it holds nothing to keep). Where that cannot be done
    now, the stream fails with its upload kept, for the janitor or an operator."""
    log, sid = get_run_logger(), ctx.record.stream_id
    record = ctx.store.streams.get(sid) or ctx.record
    try:
        ended = carry_out(ctx.bucket, ctx.store, plan_end(ctx.bucket, ctx.store, record), message)
    except StreamError as exc:
        why = f"{message}; {exc}"
        reporter.record = record_failed(ctx.store, record, why, counted=True)
        log.error("stream %s failed (upload kept): %s", sid, why)
        reporter.ended(FAILED, why)
        return
    reporter.record = ended.record
    log.error("stream %s %s: %s (%s)", sid, ended.how, ended.summary, message)
    reporter.event(ended.how, error=message, **ended.payload)


def record_end(ctx: StreamContext, exc: BaseException, reporter: Reporter) -> None:
    """Record the failure in the checkpoint: salvage what was uploaded for terminal
    source errors, keep the upload (resumable) for everything else; a cancel or a
    worker's shutdown is recorded so too, but not counted as a failure
    (stream_ingest/flows/report.py)."""
    log = get_run_logger()
    rec = ctx.record
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, LeaseLost):  # the stream is another live run's now: not ours to fail
        log.error("stream %s: %s", rec.stream_id, message)
        return
    if how_it_ended(exc) == FAILED:  # a terminal error too; a cancel or shutdown is none
        metrics.FAILURES.labels(metrics.error_name(exc)).inc()
    try:
        if isinstance(exc, StreamError) and exc.terminal:
            end_lost(ctx, message, reporter)
        else:
            # A cancel or a worker's shutdown is no failure: not counted, not rerun.
            how = how_it_ended(exc)
            reporter.record = record_failed(ctx.store, rec, message, counted=how == FAILED)
            (log.error if how == FAILED else log.warning)(
                "stream %s %s (resumable): %s", rec.stream_id, how, message
            )
            reporter.ended(how, message)
    except Exception as inner:  # Redis or S3 down too: the UI still has the reason
        log.error("stream %s: could not record failure (%s)", rec.stream_id, inner)


def record_skipped(ctx: StreamContext, skipped: StreamError, reporter: Reporter) -> None:
    """on_existing=skip: the stream ends `skipped`, its upload (if any) aborted, and
    says so (an alert that waits for a started stream to end hears of it)."""
    rec = ctx.record
    if rec.s3_upload_id:
        ctx.bucket.abort_multipart_upload(rec.s3_key, rec.s3_upload_id)
        ctx.store.parts.forget_upload(rec.s3_upload_id)
    ctx.store.streams.set_status(rec.stream_id, Status.SKIPPED, error=str(skipped))
    get_run_logger().warning("stream %s: %s", rec.stream_id, skipped)
    reporter.event("skipped", error=str(skipped))
