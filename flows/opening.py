"""Opening a stream: find or create its checkpoint, take its lease, then create or
resume the multipart upload. Each step is a retried Prefect task."""

from __future__ import annotations

import dataclasses
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePath

from prefect import get_run_logger, task

from blocks.checkpoints import CheckpointStore
from blocks.config import IngestConfig
from flows.retry import RETRIED
from flows.runs import run_is_over
from flows.runtime import StreamContext
from flows.source import check_inside, check_readable, snapshot
from stream_ingest.errors import StreamError, UploadGone
from stream_ingest.keys import object_key
from stream_ingest.reconcile import multipart_etag, reconcile
from stream_ingest.records import PartRecord, StreamRecord
from stream_ingest.states import TERMINAL, Status


@dataclass(frozen=True)
class Opened:
    """The stream's record with its upload, and the parts S3 holds for it (None: a
    crashed run had completed the object already)."""

    record: StreamRecord
    parts: dict[int, PartRecord] | None


def record_failure(store: CheckpointStore, path: str, error: StreamError) -> str:
    """A stream record for a file that could not even be opened, so that the
    operator finds the failure in `streams list` as well as in the UI."""
    record = StreamRecord(
        stream_id=str(uuid.uuid4()), original_path=path, status=Status.FAILED, error=str(error)
    )
    store.put(record)
    return record.stream_id


@task(name="find-stream", task_run_name="find-stream", **RETRIED)
def find_stream(
    config: IngestConfig, path: str, stream_id: str | None, token: str
) -> tuple[StreamRecord, bool]:
    """Look the stream up (by id, or by the file's identity), creating its checkpoint
    for a new file, and take its lease. Returns (record, whether we hold the lease):
    False means another live run is uploading it."""
    store = config.checkpoints
    record = store.get(stream_id) if stream_id else None
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
        )
        sid, _created = store.claim_identity(fresh.identity, fresh)
        record = store.require(sid)
    if not record.original_path:
        store.update(record.stream_id, original_path=path)
        record = dataclasses.replace(record, original_path=path)
    if record.status in TERMINAL:
        return record, False
    ttl = config.lease_ttl_seconds
    if store.acquire_lease(record.stream_id, token, ttl):
        return record, True
    holder = store.lease_holder(record.stream_id)
    if holder and run_is_over(holder):
        # A crashed run's lease would block a rerun until its TTL ran out.
        return record, store.take_over_lease(record.stream_id, holder, token, ttl)
    return record, False


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
    key = rec.s3_key or object_key(
        config.s3_key_template,
        prefix=config.s3_prefix,
        path=PurePath(rec.original_path),
        watch_dir=PurePath(watch_dir),
        stream_id=rec.stream_id,
        started=started,
    )
    bucket.check_bucket()
    upload_id = bucket.create_multipart_upload(key)
    fields = {
        "s3_bucket": bucket.bucket_name,
        "s3_key": key,
        "s3_upload_id": upload_id,
        "watch_dir": watch_dir,
        "identity": rec.identity or str(snap.identity),
        "part_base_bytes": rec.part_base_bytes or config.part_size_bytes,
        "total_bytes": -1,
        "error": "",
    }
    try:
        store.register_upload(upload_id, rec.stream_id, key)
        store.replace_parts(rec.stream_id, [])
        store.update(rec.stream_id, **fields)
        store.set_status(rec.stream_id, Status.UPLOADING, flow_run_id=flow_run_id)
    except Exception:
        bucket.abort_multipart_upload(key, upload_id)
        raise
    return dataclasses.replace(
        rec, **fields, status=Status.UPLOADING, flow_run_id=flow_run_id, bytes_uploaded=0
    )


def _finished_meanwhile(ctx: StreamContext) -> bool:
    """After UploadGone: did a crashed run complete the object before it could mark
    the stream completed? Proved by size and the multipart ETag of our parts."""
    rec = ctx.record
    head = ctx.bucket.head_object(rec.s3_key)
    parts = ctx.store.parts(rec.stream_id)
    if head is None or not parts:
        return False
    expected = multipart_etag([parts[k].etag for k in sorted(parts)])
    size = sum(p.size for p in parts.values())
    return head.get("ETag") == expected and head.get("ContentLength") == size


@task(name="open-upload", task_run_name="open-upload", **RETRIED)
def open_upload(ctx: StreamContext, flow_run_id: str) -> Opened:
    """Create the stream's multipart upload, or resume it: reconcile the checkpoint
    with ListParts and keep every part both agree on."""
    log = get_run_logger()
    rec, store = ctx.record, ctx.store
    folder = rec.watch_dir or ctx.config.watch_dir
    check_inside(rec.original_path, folder, ctx.config.follow_symlinks)
    check_readable(rec.original_path)
    if not rec.s3_upload_id:
        log.info("stream %s: new multipart upload for %s", rec.stream_id, rec.original_path)
        return Opened(_new_upload(ctx, flow_run_id), {})
    snapshot(rec.original_path, rec.identity or None)
    try:
        in_s3 = ctx.bucket.list_parts(rec.s3_key, rec.s3_upload_id)
    except UploadGone:
        if _finished_meanwhile(ctx):
            log.info("stream %s: object was completed by an earlier run", rec.stream_id)
            return Opened(rec, None)
        log.warning("stream %s: multipart upload is gone; starting a new one", rec.stream_id)
        store.forget_upload(rec.s3_upload_id)
        fresh = ctx.with_record(dataclasses.replace(rec, s3_upload_id=""))
        return Opened(_new_upload(fresh, flow_run_id), {})
    kept = reconcile(store.parts(rec.stream_id), in_s3, rec.part_base_bytes)
    store.replace_parts(rec.stream_id, kept)
    store.set_status(rec.stream_id, Status.UPLOADING, flow_run_id=flow_run_id, error="")
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
    return Opened(resumed, {p.number: p for p in kept})
