"""Opening a stream: find or create its checkpoint, take its lease, then create or
resume the multipart upload. Each step is a retried Prefect task.

A completed stream whose file grew or was patched since is opened as its next
revision (same key, unchanged parts copied server-side). A new take's key that another
stream's object already has is resolved by `on_existing`: keep-both numbers the key
(`cam1 (2).mp4`), skip ends the stream `skipped`, overwrite takes it. A key another
unfinished stream's upload holds is never taken (free_key)."""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePath

from prefect import get_run_logger, task

from stream_ingest.blocks.bucket import StreamBucket
from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.blocks.config import IngestConfig
from stream_ingest.errors import SalvageUnfinished, SourceError, StreamError, UploadGone
from stream_ingest.flows.completed import holds_the_parts
from stream_ingest.flows.creation import create_registered
from stream_ingest.flows.digest import unchanged
from stream_ingest.flows.retry import RETRIED
from stream_ingest.flows.runs import run_is_over
from stream_ingest.flows.runtime import StreamContext
from stream_ingest.flows.source import check_inside, check_readable, read_range, snapshot
from stream_ingest.flows.stored import check_stored, file_sha256
from stream_ingest.identity import legacy
from stream_ingest.keys import numbered, object_key
from stream_ingest.reconcile import reconcile
from stream_ingest.records import PartRecord, StreamRecord, utc_now
from stream_ingest.states import TERMINAL, Status
from stream_ingest.takes import (
    Change,
    after_completion,
    by_content,
    is_new_take,
    shares_a_block,
)


class TakeSkipped(StreamError):
    """on_existing=skip and another stream's object has the key: not uploaded."""

    def __init__(self, key: str) -> None:
        super().__init__(f"s3 key {key} belongs to another recording; skipped (on_existing=skip)")
        self.key = key


@dataclass(frozen=True)
class Opened:
    """The stream's record with its upload, and the parts S3 holds for it (None: a
    crashed run had completed the object already)."""

    record: StreamRecord
    parts: dict[int, PartRecord] | None
    prior: dict[int, PartRecord] = dataclasses.field(default_factory=dict)


def record_failure(store: CheckpointStore, path: str, error: StreamError) -> str:
    """A stream record for a file that could not even be opened, so that the
    operator finds the failure in `streams list` as well as in the UI."""
    record = StreamRecord(
        stream_id=str(uuid.uuid4()), original_path=path, status=Status.FAILED, error=str(error)
    )
    store.streams.put(record)
    return record.stream_id


@dataclass(frozen=True)
class Found:
    """find-stream's answer: the stream, and whether this run holds its lease (False:
    another live run uploads it, or there is nothing to do). `new_take` is a stream
    this run made for a file that turned out to be a new take of a completed one."""

    record: StreamRecord
    leased: bool
    new_take: StreamRecord | None = None


@task(name="find-stream", task_run_name="find-stream", **RETRIED)
def find_stream(
    config: IngestConfig, path: str, stream_id: str | None, token: str, run_id: str = ""
) -> Found:
    """Look the stream up (by id, or by the file's identity), creating its checkpoint
    for a new file, and take its lease. A completed stream whose file has grown or
    changed since comes back as its next revision. A checkpoint this run creates names
    it (`run_id`, Prefect's flow run id)."""
    store = config.checkpoints
    record = store.streams.get(stream_id) if stream_id else None
    path = os.path.abspath(path) if path else (record.original_path if record else "")
    if record is None:
        # A known stream's source is checked once its lease is held (open-upload),
        # so that a missing file aborts the upload under the lease.
        check_inside(path, config.watch_dir, config.follow_symlinks)
        check_readable(path)
        snap = snapshot(path)
        fresh = StreamRecord(
            stream_id=stream_id or str(uuid.uuid4()),
            original_path=str(path),
            watch_dir=os.path.abspath(config.watch_dir),
            identity=str(snap.identity),
            # The run is named from the start: a run that dies before open-upload names
            # it must leave a record the janitor fails once Prefect says the run is over.
            flow_run_id=run_id,
        )
        sid, created = store.identities.claim(fresh.identity, fresh)
        record = store.streams.require(sid)
        if not created and is_new_take(record, snap.size, snap.mtime_ns):
            sid, _ = store.identities.rebind(fresh.identity, record.stream_id, fresh)
            record = store.streams.require(sid)
    if not record.original_path:
        store.streams.update(record.stream_id, original_path=path)
        record = dataclasses.replace(record, original_path=path)
    if record.status in TERMINAL and change_since(store, record) != Change.REVISION:
        return Found(record, False)
    ttl = config.lease_ttl_seconds
    leased = store.leases.acquire(record.stream_id, token, ttl)
    if not leased:
        holder = store.leases.holder(record.stream_id)
        # A crashed run's lease would block a rerun until its TTL ran out.
        leased = bool(holder and run_is_over(holder)) and store.leases.take_over(
            record.stream_id, holder or "", token, ttl
        )
    if not leased:
        # The holder may be past its last look at the file (completing it): ask it to
        # look again when it lets go, then try once more, so that a holder that let go
        # meanwhile cannot miss the request (it asks after its release).
        store.leases.ask_again(record.stream_id)
        leased = store.leases.acquire(record.stream_id, token, ttl)
    if leased:
        store.leases.take_ask_again(record.stream_id)  # this run looks at the file itself
    if not leased or record.status != Status.COMPLETED:
        return Found(record, leased)
    # Under the lease, ask again: another run may have uploaded this very change.
    record = store.streams.require(record.stream_id)
    change = change_since(store, record)
    if change == Change.REVISION:
        change = _by_content(store, config.bucket, record)
    if change == Change.NEW_TAKE:
        # Nothing of the completed object is in the file any more: `ffmpeg -y` wrote
        # another take before anyone looked. A new stream, never a revision over take 1.
        store.leases.release(record.stream_id, token)
        return Found(record, False, _hand_over(store, record))
    if change != Change.REVISION:
        store.leases.release(record.stream_id, token)
        return Found(record, False)
    store.hints.clear(record.original_path)  # a close of the earlier take is not news
    return Found(store.revisions.begin(record.stream_id, token), True)


def change_since(store: CheckpointStore, record: StreamRecord) -> Change:
    """What happened to a completed stream's file since: nothing if it is gone, is
    another file, or its identity now belongs to another stream (a new take)."""
    try:
        snap = snapshot(record.original_path, record.identity or None)
    except StreamError:  # gone, replaced, unreadable
        return Change.NONE
    bound = store.identities.stream_for(str(snap.identity))
    if bound is None and (old := legacy(str(snap.identity))):
        bound = store.identities.stream_for(old)
    if bound not in (None, record.stream_id):
        return Change.NONE
    return after_completion(record, snap.size, snap.mtime_ns)


def _by_content(store: CheckpointStore, bucket: StreamBucket, record: StreamRecord) -> Change:
    """A completed take's file whose size or mtime changed, judged by its bytes: the
    completed parts' digests against what the file holds at their offsets
    (stream_ingest.takes.by_content). Bytes unchanged (a touch): the record takes the
    new mtime, so the next look is a stat again, and no revision is opened. No part
    unchanged (a one-part take has no other): the last part's bytes in S3 against the
    file's, block by block, tell a patched head from another recording."""
    parts = store.parts.get(record.stream_id)
    path = record.original_path
    try:
        before = snapshot(path, record.identity or None)
    except StreamError:
        return Change.NONE  # gone or replaced since: the sensor sees to what is there now

    def matches() -> Iterator[bool]:
        for number in sorted(parts):
            part = parts[number]
            yield unchanged(part, read_range(path, part.offset, part.size))

    try:
        if not parts and record.sha256 and before.size == record.total_bytes:
            # A take completed without parts of its own (stream_ingest.flows.stored):
            # its SHA-256 is the comparison.
            change = Change.NONE if _same_digest(path, record) else Change.REVISION
        else:
            change = by_content(matches(), grown=before.size > record.total_bytes)
    except StreamError:
        return Change.REVISION  # it changed under us: the revision run will find out
    if change == Change.NEW_TAKE and parts and _patched(bucket, record, parts[max(parts)]):
        return Change.REVISION
    if change == Change.NONE:
        after = snapshot(path, record.identity or None)
        if (after.size, after.mtime_ns) != (before.size, before.mtime_ns):
            return Change.REVISION  # written while we read: a revision run looks again
        store.streams.update(record.stream_id, completed_mtime_ns=before.mtime_ns)
        get_run_logger().info(
            "stream %s: %s was touched but its bytes are the object's; nothing to upload",
            record.stream_id,
            path,
        )
    return change


# At most this much of the last part is fetched back from S3 to compare: enough blocks
# to see a patched head in a one-part take, little for a take with grown parts.
PATCH_WINDOW = 8 * 1024 * 1024


def _patched(bucket: StreamBucket, record: StreamRecord, part: PartRecord) -> bool:
    """Whether the file still holds some block of `part` as the object has it (the
    part's digest differs): a patch, not another recording over it."""
    size = min(part.size, PATCH_WINDOW)
    old = bucket.read_range(record.s3_key, part.offset, size)
    if not old:
        return False  # the object is gone: nothing says it is the same take; keep both
    try:
        new = read_range(record.original_path, part.offset, len(old), None)
    except StreamError:
        return False
    return shares_a_block(old, new)


def _hand_over(store: CheckpointStore, old: StreamRecord) -> StreamRecord:
    """Bind the file to a new stream (the new take); its run is started by the flow or,
    failing that, by the sensor's next look at the file."""
    snap = snapshot(old.original_path)
    fresh = StreamRecord(
        stream_id=str(uuid.uuid4()),
        original_path=old.original_path,
        watch_dir=old.watch_dir,
        identity=str(snap.identity),
    )
    sid, _created = store.identities.rebind(fresh.identity, old.stream_id, fresh)
    return store.streams.require(sid)


def _new_upload(ctx: StreamContext, flow_run_id: str) -> StreamRecord:
    """Create the multipart upload and its checkpoint; abort the upload again if the
    checkpoint cannot be written, so no upload is ever left without a record.
    Returns the record with its new upload."""
    rec, bucket, store, config = ctx.record, ctx.bucket, ctx.store, ctx.config
    snap = snapshot(rec.original_path, rec.identity or None)
    started = (
        datetime.fromisoformat(rec.started_at_utc) if rec.started_at_utc else datetime.now(UTC)
    )
    watch_dir = rec.watch_dir or os.path.abspath(config.watch_dir)
    bucket.check_bucket()
    key = rec.s3_key or free_key(
        ctx,
        object_key(
            config.s3_key_template,
            prefix=config.s3_prefix,
            path=PurePath(rec.original_path),
            watch_dir=PurePath(watch_dir),
            stream_id=rec.stream_id,
            started=started,
        ),
    )
    # Found out here, off the end of the recording, where a completion relies on it;
    # the first stream on a store probes it, the rest read Redis.
    bucket.capabilities(key, store.hints)
    mark = uuid.uuid4().hex
    upload_id = create_registered(
        bucket,
        store,
        rec.stream_id,
        key,
        lambda: bucket.create_multipart_upload(key, rec.stream_id, mark),
    )
    fields = {
        "upload_mark": mark,
        "s3_bucket": bucket.bucket_name,
        "s3_key": key,
        "s3_upload_id": upload_id,
        "watch_dir": watch_dir,
        "identity": rec.identity or str(snap.identity),
        # A stream keeps the plan it started with: a revision's unchanged parts are
        # copied from the object at the same numbers and offsets ("" reads as growing).
        "part_base_bytes": rec.part_base_bytes or config.part_size_bytes,
        "part_size_policy": (
            rec.part_size_policy if rec.part_base_bytes else config.part_size_policy
        ),
        "total_bytes": -1,
        "error": "",
        "opened_at_utc": utc_now(),
    }
    try:
        store.parts.replace(rec.stream_id, [])
        store.streams.update(rec.stream_id, **fields)
        store.streams.set_status(rec.stream_id, Status.UPLOADING, flow_run_id=flow_run_id)
    except Exception:
        bucket.abort_multipart_upload(key, upload_id)
        raise
    return dataclasses.replace(
        rec, **fields, status=Status.UPLOADING, flow_run_id=flow_run_id, bytes_uploaded=0
    )


def _same_digest(path: str, record: StreamRecord) -> bool:
    return file_sha256(path, record.total_bytes) == record.sha256


def free_key(ctx: StreamContext, wanted: str) -> str:
    """The key this take gets: `wanted`, unless an object has it (on_existing:
    keep-both -> the first free `name (n).ext`, skip -> TakeSkipped, overwrite ->
    `wanted`). An object made of these very bytes ends the stream (AlreadyStored).
    An object of this very stream is no exception: a stream chooses its key once, so
    its own object at a key not yet chosen is what a take of it left before Redis lost
    its record, maybe another take of the same file (`ffmpeg -y`) that only a new key
    keeps.

    A key that another unfinished stream's open upload is to complete at is taken
    under every policy, and the take gets the next free key (under skip too: there
    is no object to skip for, and the key may end up empty once that take is
    salvaged to its `.partial`): that take is not an object yet, and S3 can complete
    its upload nowhere else, so a take completed there would leave its bytes beyond
    salvage. The registry is read once per choice; the records only of
    a key's holders."""
    policy, sid = ctx.config.on_existing, ctx.record.stream_id
    holders = ctx.store.parts.holders()
    key, n = wanted, 1
    while True:
        owner = None if policy == "overwrite" else ctx.bucket.owner(key)
        if owner is not None:
            if owner:  # a take of ours: maybe this very one, its checkpoint lost
                check_stored(ctx, key)
            if policy == "skip":
                raise TakeSkipped(wanted)
        elif not _held(ctx.store, holders.get(key, set()) - {sid}):
            return key
        n += 1
        key = numbered(wanted, n)


def _held(store: CheckpointStore, holders: set[str]) -> bool:
    """Whether one of `holders` (streams with an upload registered at a key) is
    unfinished: it may still complete there, or be salvaged from there."""
    return bool(holders) and any(r.status not in TERMINAL for r in store.streams.many(holders))


def _confirming(ctx: StreamContext, flow_run_id: str, prior: dict[int, PartRecord]) -> Opened:
    """An earlier run completed the object but not the record: confirm-completed records
    it. The stream goes through finalizing as every completion does (a failed stream's
    rerun resumes first: the janitor marks a stream failed when its run died)."""
    rec, store = ctx.record, ctx.store
    if rec.status == Status.FAILED:
        store.streams.set_status(rec.stream_id, Status.UPLOADING, flow_run_id=flow_run_id, error="")
    store.streams.set_status(rec.stream_id, Status.FINALIZING)
    return Opened(store.streams.require(rec.stream_id), None, prior)


@task(name="open-upload", task_run_name="open-upload", **RETRIED)
def open_upload(ctx: StreamContext, flow_run_id: str) -> Opened:
    """Create the stream's multipart upload, or resume it: reconcile the checkpoint
    with ListParts and keep every part both agree on."""
    log = get_run_logger()
    rec, store = ctx.record, ctx.store
    if rec.salvage_key and rec.s3_upload_id:
        # The object at the key may be the salvage's completion of a prefix: finishing
        # the salvage (record_end) moves it to the partial key; confirming it below
        # would pass the prefix off as the whole take.
        raise SalvageUnfinished(rec.stream_id, rec.salvage_key)
    folder = rec.watch_dir or ctx.config.watch_dir
    # A revision copies unchanged parts from the completed object (see upload.put_part).
    prior = store.revisions.prior_parts(rec.stream_id) if rec.revision > 1 else {}
    try:
        check_inside(rec.original_path, folder, ctx.config.follow_symlinks)
        check_readable(rec.original_path)
        if rec.s3_upload_id:
            snapshot(rec.original_path, rec.identity or None)
    except SourceError:
        # A run that died between S3's completion and its record: the object is the
        # recording, whatever became of the file since (confirm_completed records it).
        if rec.s3_upload_id and holds_the_parts(ctx):
            log.info("stream %s: object was completed by an earlier run", rec.stream_id)
            return _confirming(ctx, flow_run_id, prior)
        raise
    if not rec.s3_upload_id:
        what = f"revision {rec.revision} of" if rec.revision > 1 else "new multipart upload for"
        log.info("stream %s: %s %s", rec.stream_id, what, rec.original_path)
        return Opened(_new_upload(ctx, flow_run_id), {}, prior)
    try:
        in_s3 = ctx.bucket.list_parts(rec.s3_key, rec.s3_upload_id)
    except UploadGone:
        if holds_the_parts(ctx):
            log.info("stream %s: object was completed by an earlier run", rec.stream_id)
            return _confirming(ctx, flow_run_id, prior)
        log.warning("stream %s: multipart upload is gone; starting a new one", rec.stream_id)
        store.parts.forget_upload(rec.s3_upload_id)
        fresh = ctx.with_record(dataclasses.replace(rec, s3_upload_id=""))
        return Opened(_new_upload(fresh, flow_run_id), {}, prior)
    kept = reconcile(store.parts.get(rec.stream_id), in_s3, rec.part_plan)
    store.parts.replace(rec.stream_id, kept)
    store.streams.set_status(rec.stream_id, Status.UPLOADING, flow_run_id=flow_run_id, error="")
    log.info(
        "stream %s: resuming upload with %d checkpointed parts (%d in S3)",
        rec.stream_id,
        len(kept),
        len(in_s3),
    )
    resumed = dataclasses.replace(
        rec,
        status=Status.UPLOADING,
        flow_run_id=flow_run_id,
        error="",
        bytes_uploaded=sum(p.size for p in kept),
        parts_count=len(kept),
    )
    return Opened(resumed, {p.number: p for p in kept}, prior)
