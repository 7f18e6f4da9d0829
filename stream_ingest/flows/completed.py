"""After the object exists: its SHA-256, its tags and the stream's completed record.

From the moment S3 completed the upload, the object is complete and correct whatever
becomes of the file: a file deleted, replaced or changed while its SHA-256 is read
leaves the digest unrecorded (with a warning saying why), and a store that does not
tag objects leaves it untagged; neither fails the stream, never mind aborts it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prefect import get_run_logger

from stream_ingest.blocks.bucket import facts_of
from stream_ingest.errors import SourceError, StreamError, StreamNotFound
from stream_ingest.flows import stopping
from stream_ingest.flows.digest import READ_CHUNK, Buffer, chunk_buffer, unchanged_in_slices
from stream_ingest.flows.retry import with_retries
from stream_ingest.flows.runtime import StreamContext
from stream_ingest.flows.source import Snapshot, read_into, snapshot
from stream_ingest.objects import our_tags
from stream_ingest.records import PartRecord, Revision, StreamRecord, utc_now
from stream_ingest.states import Status
from stream_ingest.takes import UNCONFIRMED_MTIME
from stream_ingest.verify import ObjectFacts, holds_parts


@dataclass(frozen=True)
class Completion:
    """What the completed object is: the figures a revision entry and the record keep."""

    size: int
    mtime_ns: int
    parts: int
    reuploaded: int
    sha256: str
    copied: int = 0
    object_at_utc: str = ""  # when the object was checked in S3 ("": now)


def mark_completed(ctx: StreamContext, done: Completion, etag: str) -> None:
    """Record the object as the stream's completed state (and tag it)."""
    rec, store = ctx.record, ctx.store
    _tag(ctx, done.sha256, done.size)
    completed_at = utc_now()
    fields: dict[str, Any] = {
        "object_at_utc": done.object_at_utc or completed_at,
        "sha256": done.sha256,
        "total_bytes": done.size,
        "bytes_uploaded": done.size,
        "parts_count": done.parts,
        "reuploaded_parts": rec.reuploaded_parts + done.reuploaded,
        "completed_at_utc": completed_at,
        "completed_mtime_ns": done.mtime_ns,
        "object_etag": etag,
        "error": "",
        "failures": 0,
        # The facts of the revision before are not this one's: read after this.
        "media": "",
    }
    try:
        store.streams.set_status(rec.stream_id, Status.COMPLETED, **fields)
    except StreamNotFound:
        # Redis lost the stream after the object was completed: the run's copy,
        # completed, is the record (the object exists; nothing is uploaded again).
        store.streams.put(dataclasses.replace(rec, status=Status.COMPLETED, **fields))
    store.revisions.add(
        rec.stream_id,
        Revision(
            rec.revision,
            done.size,
            done.sha256,
            completed_at,
            done.parts - done.copied,
            done.copied,
        ),
    )
    store.parts.forget_upload(rec.s3_upload_id)


def _tag(ctx: StreamContext, sha256: str, size: int) -> None:
    """Tag the object with what finds the recording again once its checkpoint has
    expired (its SHA-256, stream, size and revision; S3 allows 10 tags), transient
    errors retried. The tags are a convenience: a store without object tagging (NotImplemented), a policy
    without s3:PutObjectTagging (AccessDenied) or one that refuses the tags leaves the
    object untagged and the stream completed; the checkpoint keeps the SHA-256."""
    rec, log = ctx.record, get_run_logger()
    tags = our_tags(sha256, rec.stream_id, size, rec.revision)
    try:
        with_retries(
            lambda: ctx.bucket.tag_object(rec.s3_key, tags), f"stream {rec.stream_id}: tags", log
        )
    except StreamError as exc:
        log.warning(
            "stream %s: the object is not tagged (%s); its SHA-256 is in the checkpoint",
            rec.stream_id,
            exc,
        )


def digest_as_completed(ctx: StreamContext, completed: Snapshot) -> str:
    """The file's SHA-256, read after the object was completed from the same bytes; ""
    if the file changed meanwhile (that change becomes the next revision, with its
    own digest) or can no longer be read as the stream's (deleted, replaced): the
    object is complete and correct either way."""
    try:
        digest = ctx.sha256.finish(
            completed.size, _reader(ctx, completed.size), lambda: stopping.beat(ctx.token)
        )
        now = snapshot(ctx.path, ctx.owned)
    except SourceError as exc:
        return _no_digest(ctx, f"the file could not be read after completion ({exc})")
    if (now.size, now.mtime_ns) != (completed.size, completed.mtime_ns):
        return _no_digest(ctx, "the file changed right after completion")
    return digest


def _digest_of_parts(ctx: StreamContext, parts: dict[int, PartRecord], size: int) -> str:
    """The SHA-256 of the file's first `size` bytes, where they are still the object's:
    the checkpointed parts cover them and each part's bytes are unchanged. "" where
    they are not: the file may hold another take by now (`ffmpeg -y` wrote it again
    while the stream waited for its rerun), whose digest would pass for the object's."""
    ordered = [parts[n] for n in sorted(parts)]
    end = 0
    for part in ordered:
        end = end + part.size if part.offset == end else -1
    if end != size:
        return _no_digest(ctx, "the parts that made the object are not known")
    sha, read = hashlib.sha256(), _reader(ctx, size)
    for part in ordered:

        def fed(offset: int, n: int, at: int = part.offset) -> Buffer:
            data = read(at + offset, n)
            sha.update(data)
            return data

        if not unchanged_in_slices(part, fed, READ_CHUNK):
            return _no_digest(ctx, f"the file no longer holds the object's part {part.number}")
        stopping.beat(ctx.token)
    return sha.hexdigest()


def _reader(ctx: StreamContext, size: int) -> Callable[[int, int], Buffer]:
    """Reads of the run's file (`size` bytes) into one buffer, reused: the digest
    takes each read's bytes before the next (a new buffer per read is a page fault per
    4 KiB). No read is longer than READ_CHUNK (digest.chunk_buffer)."""
    buf = chunk_buffer(size)
    return lambda at, n: read_into(ctx.path, at, n, buf, ctx.owned)


def _no_digest(ctx: StreamContext, why: str) -> str:
    get_run_logger().warning(
        "stream %s: %s; its SHA-256 is not recorded", ctx.record.stream_id, why
    )
    return ""


def holds_the_parts(ctx: StreamContext) -> bool:
    """Whether the object is the one the stream's checkpointed parts make (by its
    multipart ETag, its checksum or its upload's mark, and its size: verify.py): an
    earlier try completed it."""
    parts = ctx.store.parts.get(ctx.record.stream_id)
    head = ctx.bucket.head_object(ctx.record.s3_key)
    if head is None or not parts:
        return False
    return made_of(facts_of(head), ctx.record, [parts[n] for n in sorted(parts)])


def made_of(facts: ObjectFacts, record: StreamRecord, parts: Sequence[PartRecord]) -> bool:
    """Whether the object `facts` describes was completed from `parts` of `record`'s
    upload."""
    return holds_parts(
        facts,
        [p.etag for p in parts],
        [p.crc32 for p in parts],
        record.upload_mark,
        sum(p.size for p in parts),
    )


def record_object(ctx: StreamContext) -> tuple[Completion, dict[int, PartRecord]]:
    """Record the completed object as the stream's, with the parts that made it: its
    size from its HEAD, its SHA-256 from the file where the file still holds the
    object's bytes ("" if the file is gone, replaced, shorter or written again: the
    object is complete either way)."""
    parts = ctx.store.parts.get(ctx.record.stream_id)
    head = ctx.bucket.head_object(ctx.record.s3_key) or {}
    digest, snap = "", None
    try:
        snap = snapshot(ctx.path, ctx.owned)
    except SourceError as exc:
        if "ContentLength" not in head:
            raise  # neither the object nor the file tells its size
        digest = _no_digest(ctx, f"the file could not be read ({exc})")
    size = int(head.get("ContentLength", snap.size if snap else 0))
    if snap is not None and snap.size < size:
        digest = _no_digest(ctx, "the file is shorter than the object")
    elif snap is not None:
        try:
            digest = _digest_of_parts(ctx, parts, size)
        except SourceError as exc:
            digest = _no_digest(ctx, f"the file could not be read ({exc})")
    # An mtime of 0 makes the size alone decide whether the file changed since; a
    # file of the object's size whose bytes could not be shown to be the object's
    # (another take of that size) changed, whatever its mtime.
    mtime = 0
    if snap is not None and size == snap.size:
        mtime = snap.mtime_ns if digest else UNCONFIRMED_MTIME
    copied = sum(1 for p in parts.values() if p.copied)
    done = Completion(size, mtime, len(parts), 0, digest, copied)
    mark_completed(ctx, done, head.get("ETag", ""))
    return done, parts
