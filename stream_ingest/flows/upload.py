"""The upload tasks: read one byte range, upload it (or copy it server-side from the
previous revision when those bytes are unchanged), checkpoint it. A file far ahead of
its upload (dropped in finished, or a run catching up) goes up in batches: one task
run for many parts, several at a time, instead of one task run per part."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from prefect import get_run_logger, task
from prefect.runtime import task_run

from stream_ingest import metrics
from stream_ingest.checksums import crc32_b64
from stream_ingest.errors import S3Rejected
from stream_ingest.flows.buffers import BUFFERS
from stream_ingest.flows.digest import part_digest, same_digest
from stream_ingest.flows.pacing import LIMITER
from stream_ingest.flows.retry import RETRIED, with_retries
from stream_ingest.flows.runtime import StreamContext
from stream_ingest.flows.source import read_into
from stream_ingest.parts import PartPlan, part_offset, part_size
from stream_ingest.records import PartRecord


def put_part(ctx: StreamContext, number: int, data: bytes | bytearray, offset: int) -> PartRecord:
    """Upload `data` as part `number` and record it with the stream's progress in
    one atomic, lease-fenced checkpoint write. In a revision, a part with exactly
    these bytes at this offset in the completed object is copied from it instead."""
    rec = ctx.record
    checksum = part_digest(data)
    ctx.sha256.feed(
        offset, data, checksum, lambda at, n, buf: read_into(ctx.path, at, n, buf, ctx.owned)
    )
    before = ctx.prior.get(number)
    part, seconds = None, 0.0
    if (
        before is not None
        and rec.object_etag
        and (before.offset, before.size) == (offset, len(data))
        and same_digest(before.checksum, data)
    ):
        part = _copy(ctx, number, data, offset, checksum)
    if part is None:
        LIMITER.acquire(rec.stream_id, ctx.pace.kind, len(data))
        started = time.monotonic()
        held = ctx.bucket.upload_part(rec.s3_key, rec.s3_upload_id, number, data)
        seconds = time.monotonic() - started
        part = PartRecord(number, held.etag, offset, len(data), checksum, held.crc32)
    ctx.store.parts.record(rec, ctx.token, part, ctx.config.lease_ttl_seconds)
    metrics.part_done(part.size, part.copied, seconds)  # once checkpointed, counted once
    ctx.stored.add(part.number, part.offset, part.size)  # in S3 and checkpointed: safe
    return part


def _copy(
    ctx: StreamContext, number: int, data: bytes | bytearray, offset: int, checksum: str
) -> PartRecord | None:
    """The part copied from the completed object; None if that object is no longer
    the one the checkpoint knows (replaced outside stream-ingest): then it is sent."""
    rec = ctx.record
    try:
        held = ctx.bucket.copy_part(
            rec.s3_key, rec.s3_upload_id, number, rec.object_etag, offset, len(data)
        )
    except S3Rejected as exc:
        if exc.code not in ("PreconditionFailed", "412", "NoSuchKey", "404"):
            raise
        return None
    crc = held.crc32 or crc32_b64(data)
    return PartRecord(number, held.etag, offset, len(data), checksum, crc, copied=True)


@task(name="upload-part", task_run_name="upload-part-{number}", **RETRIED)
def upload_part(ctx: StreamContext, number: int, offset: int, size: int) -> PartRecord:
    """Upload part `number`: bytes [offset, offset+size) of the source."""
    return _read_and_put(ctx, number, offset, size)


def _read_and_put(ctx: StreamContext, number: int, offset: int, size: int) -> PartRecord:
    """One part from the file to S3, its bytes in a buffer of the process's
    (stream_ingest/flows/buffers.py)."""
    with BUFFERS.borrow(size) as buf:
        view = read_into(ctx.path, offset, size, buf, ctx.owned)
        # boto3 takes bytes or a bytearray, not a view: a part that fills its buffer
        # goes from the buffer itself, held once in memory instead of twice.
        return put_part(ctx, number, buf if len(buf) == size else bytes(view), offset)


@task(name="upload-parts", task_run_name="upload-parts-{first}-{last}", **RETRIED)
def upload_parts(ctx: StreamContext, first: int, last: int, width: int) -> list[PartRecord]:
    """Upload parts `first`..`last`, `width` at a time, each retried by itself on a
    transient error. A retry of the whole task run (a part out of retries) skips the
    parts that its earlier tries uploaded and checkpointed."""
    send = _PartSender(ctx)
    with ThreadPoolExecutor(max(1, width), thread_name_prefix="upload-parts") as pool:
        futures = [pool.submit(send, k) for k in range(first, last + 1)]
        try:
            return [f.result() for f in futures]
        except BaseException:
            pool.shutdown(cancel_futures=True)  # a retry sends what is left
            raise


class WindowEnd:
    """Set by the flow when it stops tailing (the recording ended, or the run is
    failing): its window task runs return the parts they sent."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)

    def __repr__(self) -> str:  # shown as the task run's input
        return "WindowEnd()"


@task(name="upload-window", task_run_name="upload-parts-{first}-{last}", **RETRIED)
def upload_window(
    ctx: StreamContext, first: int, last: int, end: WindowEnd, width: int = 1
) -> list[PartRecord]:
    """A live stream's parts `first`..`last`, each sent once the file holds all of its
    bytes: one at a time while the stream is caught up, up to `width` at once when it
    has fallen behind (a busy S3), so that a backlog does not grow part by part.
    Once `end` is set it sends no further part and returns those sent: the flow's
    finalize sends the rest, in parallel. A retry of the task run skips the parts its
    earlier tries checkpointed."""
    plan, width = ctx.record.part_plan, max(1, width)
    send = _PartSender(ctx)
    sent: list[Future[PartRecord]] = []
    with ThreadPoolExecutor(width, thread_name_prefix="upload-window") as pool:
        try:
            for number in range(first, last + 1):
                needed = part_offset(number, plan) + part_size(number, plan)
                if not _bytes_or_end(ctx, needed, end, sent):
                    break
                while len(in_flight := [f for f in sent if not f.done()]) >= width:
                    wait(in_flight, return_when=FIRST_COMPLETED)
                sent.append(pool.submit(send, number))
            return [f.result() for f in sent]
        except BaseException:
            pool.shutdown(cancel_futures=True)  # a retry sends what is left
            raise


def _bytes_or_end(
    ctx: StreamContext, needed: int, end: WindowEnd, sent: list[Future[PartRecord]]
) -> bool:
    """Wait until the file holds `needed` bytes (True), or the window is ended or the
    file gone (False: the flow's own checks say what happened). A part that failed
    meanwhile fails the window now, not after its last part."""
    while True:
        for f in sent:
            if f.done() and f.exception() is not None:
                f.result()
        if end.is_set():
            return False
        have = _size(ctx.path)
        if have >= needed:
            return True
        if have < 0 or end.wait(ctx.config.poll_interval_seconds):
            return False


class _PartSender:
    """One part of a multi-part task run: retried by itself on a transient error, and
    skipped when an earlier try of the task run (a Prefect retry) checkpointed it."""

    def __init__(self, ctx: StreamContext) -> None:
        self.ctx, self.plan = ctx, ctx.record.part_plan
        retried = (task_run.run_count or 1) > 1
        self.held = ctx.store.parts.get(ctx.record.stream_id) if retried else {}
        self.log = get_run_logger()

    def __call__(self, number: int) -> PartRecord:
        if _held(self.held.get(number), self.plan):
            return self.held[number]
        ctx = self.ctx
        offset, size = part_offset(number, self.plan), part_size(number, self.plan)
        return with_retries(
            lambda: _read_and_put(ctx, number, offset, size),
            f"part {number}",
            self.log,
        )


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def _held(part: PartRecord | None, plan: PartPlan) -> bool:
    return part is not None and (part.offset, part.size) == (
        part_offset(part.number, plan),
        part_size(part.number, plan),
    )
