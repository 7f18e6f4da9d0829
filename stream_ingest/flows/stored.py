"""A take that is already in S3: a new stream for a finished file whose object another
stream made, before Redis lost that stream's checkpoint (restarted without its data,
flushed, expired). The scan that follows finds the file unknown and starts a stream;
uploading it again would make a second object (`name (2).ext`) of the same bytes.

The object proves it holds this take by what our completion tagged it with: its size
and SHA-256 against the file's. Only a file of the object's exact size is read, so a
new recording that starts under a taken name costs one HEAD and one tag read."""

from __future__ import annotations

import dataclasses
from typing import Any

from prefect import get_run_logger

from stream_ingest.errors import StreamError
from stream_ingest.flows.completed import Completion, mark_completed
from stream_ingest.flows.digest import FileSha256, chunk_buffer
from stream_ingest.flows.runtime import StreamContext
from stream_ingest.flows.source import Owned, read_into, snapshot
from stream_ingest.states import Status


class AlreadyStored(StreamError):
    """The file's bytes are the object at `key` (another stream's completed take)."""

    def __init__(self, key: str, head: dict[str, Any], sha256: str, mtime_ns: int) -> None:
        super().__init__(f"{key} already holds this take")
        self.key, self.head, self.sha256, self.mtime_ns = key, head, sha256, mtime_ns


def check_stored(ctx: StreamContext, key: str) -> None:
    """Raise AlreadyStored if the finished file's bytes are the object at `key`."""
    head = ctx.bucket.head_object(key)
    if head is None:
        return
    snap = snapshot(ctx.path, ctx.owned)
    if head.get("ContentLength") != snap.size:
        return
    tags = ctx.bucket.object_tags(key)
    if not tags.get("sha256") or tags.get("size") != str(snap.size):
        return
    digest = file_sha256(ctx.path, snap.size, ctx.owned)
    after = snapshot(ctx.path, ctx.owned)
    if digest == tags["sha256"] and (after.size, after.mtime_ns) == (snap.size, snap.mtime_ns):
        raise AlreadyStored(key, head, digest, snap.mtime_ns)


def file_sha256(path: str, size: int, owned: Owned | None = None) -> str:
    """The SHA-256 of the file's first `size` bytes, read from the start into one
    reused buffer (no longer than the file)."""
    buf = chunk_buffer(size)
    return FileSha256().finish(size, lambda at, n: read_into(path, at, n, buf, owned))


def complete_as_stored(ctx: StreamContext, stored: AlreadyStored) -> StreamContext:
    """The stream ends completed with the object that holds its bytes; nothing is
    uploaded. No parts are recorded (the object's were another stream's): a later
    change of the file is judged by its SHA-256 and uploaded whole as a revision."""
    rec = dataclasses.replace(
        ctx.record, s3_key=stored.key, s3_bucket=ctx.bucket.bucket_name, s3_upload_id=""
    )
    # Through the states a completion takes (detected or failed -> uploading ->
    # finalizing -> completed), so the transitions stay the one lifecycle.
    ctx.store.streams.set_status(
        rec.stream_id, Status.UPLOADING, s3_key=rec.s3_key, s3_bucket=rec.s3_bucket
    )
    ctx.store.streams.set_status(rec.stream_id, Status.FINALIZING)
    ctx = ctx.with_record(rec)
    modified = stored.head.get("LastModified")
    size = int(stored.head["ContentLength"])
    done = Completion(
        size=size,
        mtime_ns=stored.mtime_ns,
        parts=0,
        reuploaded=0,
        sha256=stored.sha256,
        object_at_utc=modified.isoformat() if modified else "",
    )
    mark_completed(ctx, done, stored.head.get("ETag", ""))
    get_run_logger().info(
        "stream %s: s3://%s/%s already holds this file's %d bytes (SHA-256 %s); nothing uploaded",
        rec.stream_id,
        rec.s3_bucket,
        rec.s3_key,
        size,
        stored.sha256,
    )
    return ctx
