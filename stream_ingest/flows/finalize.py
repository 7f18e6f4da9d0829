"""Finalize: make the object byte-identical to the file, even when the recorder
rewrote earlier bytes on close (MP4/MKV muxers patch the file's head).

One pass reads the parts of the final plan, in a bounded window of threads: a part
already uploaded is compared by its digest (xxh3), read a small slice at a time, and
uploaded again from a part buffer if it changed; a missing or short one is uploaded.
A part read after the file's last change cannot have changed and is not read again (a
finished file dropped in is not re-read at all). The pass overlaps the settle: the file must still be what it was
when the pass began, or the stream goes back to tailing; otherwise the upload is
completed; S3's answer must name the parts' multipart ETag (else the object's HEAD is
checked). Only then, with the object in S3, is the file's SHA-256 finished and
recorded in Redis and as an object tag (stream_ingest/flows/completed.py), off the close-to-object
path: the parts fed it as they went up in order (stream_ingest/flows/digest.py FileSha256), so only
the bytes they did not cover are read (none for a recording that only grew; all of
one whose head was patched at close).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from prefect import get_run_logger, task
from prefect.runtime import task_run

from stream_ingest.blocks.bucket import STREAM_ID, facts_of
from stream_ingest.errors import KeyTaken, SourceError, StreamNotFound, UploadGone
from stream_ingest.flows import stopping
from stream_ingest.flows.buffers import BUFFERS, aligned
from stream_ingest.flows.completed import (
    Completion,
    digest_as_completed,
    holds_the_parts,
    made_of,
    mark_completed,
    record_object,
)
from stream_ingest.flows.digest import unchanged_in_slices
from stream_ingest.flows.retry import RETRIED
from stream_ingest.flows.runtime import StreamContext
from stream_ingest.flows.source import read_into, snapshot
from stream_ingest.flows.upload import put_part
from stream_ingest.parts import PartRange, final_plan
from stream_ingest.records import PartRecord, UploadedPart, utc_now
from stream_ingest.states import Status
from stream_ingest.tail import FileState, trusted_parts
from stream_ingest.verify import multipart_etag

# What a part's check at the end reads at a time (see _verify): small, as every
# finalize thread of every ending stream holds one.
CHECK_SLICE = 128 * 1024
_SLICES = threading.local()


@dataclass(frozen=True)
class Finalized:
    """What finalize did. `uploaded` is every part S3 now holds for the upload (the
    caller's, plus what finalize uploaded), also when it went back to tailing."""

    completed: bool
    uploaded: dict[int, PartRecord] = field(default_factory=dict)
    size: int = 0
    parts: int = 0
    reuploaded: int = 0
    sha256: str = ""


def _verify(ctx: StreamContext, pr: PartRange, known: PartRecord | None) -> PartRecord | None:
    """Read one planned part; re-upload it unless S3 already holds exactly these bytes
    (then None). An uploaded part is first checked slice by slice in a small buffer of
    the thread's own: at the end of many recordings at once, a check that borrowed a
    part buffer (stream_ingest/flows/buffers.py) would wait behind every live stream's
    parts in flight, and most parts have not changed. A part that changed, or was never
    uploaded, is read into a part buffer and sent from it."""
    if known and known.size == pr.size:
        slice_buf = _check_slice()

        def read(offset: int, length: int) -> memoryview:
            return read_into(ctx.path, pr.offset + offset, length, slice_buf, ctx.owned)

        if unchanged_in_slices(known, read, CHECK_SLICE):
            return None
    with BUFFERS.borrow(pr.size) as buf:
        data = read_into(ctx.path, pr.offset, pr.size, buf, ctx.owned)
        # As a live part (upload.py): a part that fills its buffer goes from the
        # buffer itself, not a copy (a dropped-in file's every part comes this way).
        return put_part(ctx, pr.number, buf if len(buf) == pr.size else bytes(data), pr.offset)


def _check_slice() -> bytearray:
    """This thread's buffer for checking parts slice by slice."""
    buf = getattr(_SLICES, "buf", None)
    if buf is None:
        buf = _SLICES.buf = aligned(CHECK_SLICE)
    return buf


def _is_final(pr: PartRange, part: PartRecord | None, final: set[int]) -> bool:
    return pr.number in final and part is not None and part.size == pr.size


@task(name="finalize", task_run_name="finalize", **RETRIED)
def finalize(
    ctx: StreamContext,
    known: Mapping[int, PartRecord],
    read_at: Mapping[int, FileState] | None = None,
    settle_until: float = 0.0,
) -> Finalized:
    """Verify, upload the tail, complete. Returns completed=False if the file changed
    meanwhile (the caller resumes tailing). Never runs with a part in flight.

    `read_at`: for parts read by this run, the file's state when they were read (see
    stream_ingest.tail.FileState); `settle_until`: the time.monotonic() before which
    the file must not be completed (the settle, which the verification overlaps)."""
    log = get_run_logger()
    rec, store = ctx.record, ctx.store
    try:
        before = snapshot(ctx.path, ctx.owned)
    except SourceError:
        # A retry of a try that completed the object, then failed to record it (Redis
        # or S3 away): the object is the stream's, whatever became of the file since.
        if (task_run.run_count or 1) > 1 and holds_the_parts(ctx):
            return _confirmed(ctx)
        raise
    # Redis may have restarted empty since the last part was recorded: without its
    # record the stream could only start over, with a new upload and every part again.
    if store.parts.restore(rec):
        log.warning("stream %s: checkpoint was lost; rebuilt it from this run", rec.stream_id)
    try:
        store.streams.set_status(rec.stream_id, Status.FINALIZING)
    except StreamNotFound:  # lost again since the restore above
        store.parts.restore(dataclasses.replace(rec, status=Status.FINALIZING))
    # From here the run's copy says finalizing, so a record rebuilt after Redis lost it
    # (store.parts.record, store.parts.restore) can still move on to completed.
    ctx = ctx.with_record(dataclasses.replace(rec, status=Status.FINALIZING))
    rec = ctx.record
    plan = final_plan(before.size, rec.part_plan)
    parts = dict(known)
    if (task_run.run_count or 1) > 1:  # what an earlier try uploaded is checkpointed
        parts |= store.parts.get(rec.stream_id)
    reuploaded = 0
    final = trusted_parts(read_at or {}, (before.size, before.mtime_ns))
    todo = [pr for pr in plan if not _is_final(pr, parts.get(pr.number), final)]
    if len(todo) < len(plan):
        log.info(
            "stream %s: %d parts read after the file's last change are final",
            rec.stream_id,
            len(plan) - len(todo),
        )
    window = max(1, ctx.config.max_parts_in_flight)
    with ThreadPoolExecutor(window, thread_name_prefix="finalize") as pool:
        pending: deque[tuple[PartRange, Future[PartRecord | None]]] = deque()
        for pr in todo:
            pending.append((pr, pool.submit(_verify, ctx, pr, parts.get(pr.number))))
            while len(pending) >= window or (pr is todo[-1] and pending):
                done_pr, fut = pending.popleft()
                uploaded = fut.result()
                stopping.beat(ctx.token)  # a long verification is progress, not stuck
                if uploaded is not None:
                    earlier = parts.get(done_pr.number)
                    if earlier and earlier.size == done_pr.size:
                        reuploaded += 1
                        log.info(
                            "stream %s: part %d changed on disk; re-uploaded",
                            rec.stream_id,
                            done_pr.number,
                        )
                    parts[done_pr.number] = uploaded
    time.sleep(max(0.0, settle_until - time.monotonic()))
    after = snapshot(ctx.path, ctx.owned)
    if (after.size, after.mtime_ns) != (before.size, before.mtime_ns):
        log.info("stream %s: file changed while finalizing; tailing again", rec.stream_id)
        store.streams.set_status(rec.stream_id, Status.UPLOADING)
        return Finalized(completed=False, uploaded=parts)
    chosen = [parts[pr.number] for pr in plan]
    # A run frozen past its TTL must not complete what its successor now owns.
    store.leases.renew(rec.stream_id, ctx.token, ctx.config.lease_ttl_seconds)
    etag = _complete(ctx, chosen)
    # An answer naming our parts' multipart ETag is the object's proof (its size is
    # theirs); anything else (an opaque ETag, an earlier try's completion) is checked
    # by the object's HEAD.
    expected = multipart_etag([p.etag for p in chosen])
    if not expected or etag != expected or sum(p.size for p in chosen) != before.size:
        etag = _check_object(ctx, before.size, chosen)
    # The object exists from here: its SHA-256 is read off the close-to-object path.
    object_at = utc_now()
    digest = digest_as_completed(ctx, before)
    copied = sum(1 for p in chosen if p.copied)
    done = Completion(
        before.size, before.mtime_ns, len(plan), reuploaded, digest, copied, object_at
    )
    mark_completed(ctx, done, etag)
    return Finalized(True, parts, before.size, len(plan), reuploaded, digest)


def _complete(ctx: StreamContext, chosen: list[PartRecord]) -> str:
    """Complete the upload so that no take ever replaces another take's object; returns
    the ETag S3 answered ("" if the object already held these parts). A first
    take or an overwrite is one request: the If-None-Match condition itself tells a
    taken key, and only then does the object's HEAD decide (_completion). Each request
    on this path is a wait while a busy S3 API answers many streams' ends at once."""
    rec = ctx.record
    parts = [UploadedPart(p.number, p.etag, p.size, p.crc32) for p in chosen]

    def complete(how: str) -> str:
        return ctx.bucket.complete_multipart_upload(
            rec.s3_key, rec.s3_upload_id, parts, if_absent=how == "if-absent"
        )

    try:
        presumed = _presumed(ctx)
        if presumed is not None:
            try:
                return complete(presumed)
            except KeyTaken:
                pass  # an object holds the key: whose it is decides
        how = _completion(ctx, chosen)
        if how != "done":
            return complete(how)
    except (UploadGone, KeyTaken):
        # A retry after a completion whose answer was lost: the upload is gone (or the
        # key "taken") because the object exists. It is ours if our parts made it.
        head = ctx.bucket.head_object(rec.s3_key)
        if head is None or not made_of(facts_of(head), rec, chosen):
            raise
    # The object holds exactly these parts already: an earlier try of this run
    # completed them, or a revision found the bytes unchanged. An upload still open
    # is redundant, and S3 would bill its parts until it is aborted.
    ctx.bucket.abort_multipart_upload(rec.s3_key, rec.s3_upload_id)
    get_run_logger().info(
        "stream %s: the object already holds these parts; nothing to complete", rec.stream_id
    )
    return ""


def _presumed(ctx: StreamContext) -> Literal["if-absent", "replace"] | None:
    """How to complete without asking S3 first: `overwrite` replaces whatever is
    there; a first take only takes a free key. A revision replaces its own object,
    which only the object's HEAD can show (None)."""
    if ctx.config.on_existing == "overwrite":
        return "replace"
    return "if-absent" if ctx.record.revision == 1 else None


def _check_object(ctx: StreamContext, size: int, chosen: list[PartRecord]) -> str:
    """The completed object, by its HEAD, where S3's completion did not name our
    parts' multipart ETag: it must hold the file's size and be made of these parts
    (stream_ingest/verify.py). Returns its ETag."""
    key = ctx.record.s3_key
    head = ctx.bucket.head_object(key) or {}
    if head.get("ContentLength") != size:
        raise RuntimeError(f"object {key} has {head.get('ContentLength')} bytes, file has {size}")
    facts = facts_of(head)
    if not made_of(facts, ctx.record, chosen):
        raise RuntimeError(f"object {key} (ETag {facts.etag}) is not made of this upload's parts")
    return facts.etag


def _completion(
    ctx: StreamContext, chosen: list[PartRecord]
) -> Literal["if-absent", "replace", "done"]:
    """How to complete, decided just before it under the lease, so that no take ever
    replaces another take's object: only if the key is still free (If-None-Match), by
    replacing this stream's own object (a revision), or not at all (an earlier try of
    this run completed it). Raises KeyTaken when another object holds the key."""
    rec, policy = ctx.record, ctx.config.on_existing
    head = ctx.bucket.head_object(rec.s3_key)
    if head is None:
        return "replace" if policy == "overwrite" else "if-absent"
    etag, owner = head.get("ETag"), head.get("Metadata", {}).get(STREAM_ID)
    facts = facts_of(head)
    if made_of(facts, rec, chosen):
        return "done"
    if policy == "overwrite":
        return "replace"
    if rec.revision > 1 and (
        etag == rec.object_etag
        # completed before ETags were recorded: the object the prior parts made
        or (not rec.object_etag and etag == _etag_of(ctx.prior))
    ):
        return "replace"
    # This upload's own earlier completion, of fewer parts. The same stream's object
    # from another upload may hold another take (a record Redis lost and a run rebuilt).
    if rec.revision == 1 and owner == rec.stream_id and facts.mark == rec.upload_mark:
        return "replace"
    raise KeyTaken(rec.s3_key)


def _etag_of(parts: Mapping[int, PartRecord]) -> str:
    return multipart_etag([parts[n].etag for n in sorted(parts)]) if parts else ""


@task(name="confirm-completed", task_run_name="confirm-completed", **RETRIED)
def confirm_completed(ctx: StreamContext) -> Finalized:
    """A crashed run completed the object but not the checkpoint: finish the record
    with what the object holds. If the file has grown since, the record says the
    object's size, so the change is seen (and uploaded) as the next revision."""
    return _confirmed(ctx)


def _confirmed(ctx: StreamContext) -> Finalized:
    done, parts = record_object(ctx)
    return Finalized(True, parts, done.size, done.parts, 0, done.sha256)
