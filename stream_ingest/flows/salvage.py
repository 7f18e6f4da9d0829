"""End a stream whose source can no longer be read without losing what it uploaded.

Its parts become an object of their own at the partial key (stream_ingest/salvage.py
names it) and the stream ends `salvaged`; only an upload that holds nothing, or only
bytes already in the stream's completed object, is aborted (`aborted`, with the
reason). Used by the flow when its file goes away mid-recording, by the janitor for a
failed stream whose file is gone, and by `stream-ingest streams salvage|abort`.

S3 completes a multipart upload only at the key it was created for, so the parts are
completed there first, only if the key is free (If-None-Match), copied inside S3 to
the partial key (UploadPartCopy, part by part: any size), and the object at the
stream's key is deleted: that key never keeps a partial recording. The record names
the partial key before the completion, so a try that crashed on the way is finished
by the next one from the object (a rerun, or the janitor: the uploads registry names
the stream until its salvage ends). A revision's key holds the completed object of the
revision before, which must not be replaced: its parts are kept, for an operator.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from stream_ingest.blocks.bucket import STREAM_ID, StreamBucket, facts_of
from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.blocks.config import IngestConfig
from stream_ingest.errors import (
    CannotSalvage,
    KeyTaken,
    S3Rejected,
    SourceError,
    StreamError,
    UploadGone,
)
from stream_ingest.flows.creation import create_registered
from stream_ingest.flows.report import announce
from stream_ingest.flows.source import check_readable, snapshot
from stream_ingest.keys import printable
from stream_ingest.parts import final_plan
from stream_ingest.records import StreamRecord, UploadedPart
from stream_ingest.salvage import copy_ranges, endable, in_completed, partial_key, prefix_parts
from stream_ingest.states import Status
from stream_ingest.verify import holds_parts

SALVAGED, ABORTED = "salvaged", "aborted"
MAX_PARTIAL_KEYS = 100  # `name.partial (100).ext`: past that, an operator looks


@dataclass(frozen=True)
class Plan:
    """What ending the stream does. `parts`: to complete at the stream's key (none
    when an earlier try did); `copied`: an earlier try copied the object already."""

    record: StreamRecord
    action: Literal["salvage", "abort"]
    reason: str
    parts: tuple[UploadedPart, ...] = ()
    size: int = 0
    key: str = ""
    copied: bool = False
    left_out: int = 0  # parts S3 holds past the file's prefix (a gap before them)

    def describe(self) -> str:
        rec = self.record
        if self.action == "abort":
            return f"abort stream {rec.stream_id} ({self.reason})"
        out = f"salvage stream {rec.stream_id}: {self.size:,} bytes into s3://{rec.s3_bucket}/"
        out += printable(self.key)
        return out + (f" ({self.left_out} parts after a gap left out)" if self.left_out else "")


@dataclass(frozen=True)
class Ended:
    """The stream as stored now, how it ended and what its event says."""

    record: StreamRecord
    how: str
    summary: str
    payload: dict[str, Any] = field(default_factory=dict)


def source_lost(record: StreamRecord) -> str | None:
    """Why the stream's file can no longer be read as its own (gone, replaced, not a
    file, unreadable); None if it can, or if this host cannot tell (the watch folder
    is not here: another host records into it)."""
    if record.watch_dir and not os.path.isdir(record.watch_dir):
        return None
    try:
        snapshot(record.original_path, record.identity or None)
        check_readable(record.original_path)
    except SourceError as exc:
        return str(exc)
    return None


def plan_end(bucket: StreamBucket, store: CheckpointStore, record: StreamRecord) -> Plan:
    """Read S3 (ListParts is the truth) and decide: salvage or abort. Raises
    CannotSalvage where neither is safe (the upload is then left as it is)."""
    rec = record
    if not rec.s3_upload_id:
        return Plan(rec, "abort", "no upload was opened")
    try:
        in_s3 = bucket.list_parts(rec.s3_key, rec.s3_upload_id)
    except UploadGone:
        return _resumed(bucket, rec)
    if not in_s3:
        return Plan(rec, "abort", "no part was uploaded")
    if rec.revision > 1 and in_completed(in_s3, store.revisions.prior_parts(rec.stream_id)):
        head = bucket.head_object(rec.s3_key) or {}
        if rec.object_etag and head.get("ETag") == rec.object_etag:
            why = f"every uploaded byte is in the object of revision {rec.revision - 1}"
            return Plan(rec, "abort", why)
    keep = prefix_parts(in_s3, rec.part_plan)
    if not keep:
        raise CannotSalvage(rec.stream_id, "part 1 is not uploaded; the upload is kept")
    size = sum(p.size for p in keep)
    key, copied = _partial_key(bucket, rec, size)
    left = len(in_s3) - len(keep)
    return Plan(rec, "salvage", "", tuple(keep), size, key, copied, left)


def plan_abort(bucket: StreamBucket, record: StreamRecord) -> Plan:
    """An operator's abort: what it discards (ListParts)."""
    if not record.s3_upload_id:
        return Plan(record, "abort", "no upload was opened")
    try:
        in_s3 = bucket.list_parts(record.s3_key, record.s3_upload_id)
    except UploadGone:
        return Plan(record, "abort", "its upload is gone already")
    size = sum(p.size for p in in_s3)
    return Plan(record, "abort", f"{len(in_s3)} parts, {size:,} bytes, discarded", size=size)


def end_unheld(
    config: IngestConfig,
    stream_id: str,
    action: Literal["salvage", "abort"],
    why: str,
    config_name: str,
    log: Any,
) -> Ended:
    """Salvage (or abort) a failed stream that no run holds, under its lease so that
    no rerun starts meanwhile; announce it and log it. Raises CannotSalvage, or
    StreamError when a run holds the stream or it is not failed."""
    store, bucket, ttl = config.checkpoints, config.bucket, config.lease_ttl_seconds
    token = f"{action}-{uuid.uuid4()}"
    if not store.leases.acquire(stream_id, token, ttl):
        raise StreamError(f"stream {stream_id} is held by a run; not touching it")
    try:
        record = store.streams.require(stream_id)
        refusal = endable(record, action)
        if refusal:
            raise StreamError(refusal)
        plan = (
            plan_end(bucket, store, record) if action == "salvage" else plan_abort(bucket, record)
        )
        beat = lambda: store.leases.renew(stream_id, token, ttl)  # noqa: E731
        ended = carry_out(bucket, store, plan, why, beat)
    finally:
        store.leases.release(stream_id, token)
    announce(ended.record, ended.how, ended.record.error, config_name, log, **ended.payload)
    log.info("stream %s %s: %s (%s)", stream_id, ended.how, ended.summary, ended.record.error)
    return ended


def _resumed(bucket: StreamBucket, rec: StreamRecord) -> Plan:
    """The upload is gone: an earlier salvage completed it (the record names its key)
    and may have copied it too; go on from the object. Otherwise nothing is left."""
    if not rec.salvage_key or rec.revision > 1:
        raise CannotSalvage(rec.stream_id, "its multipart upload is gone")
    head = bucket.head_object(rec.s3_key)
    if head is not None and head.get("Metadata", {}).get(STREAM_ID) == rec.stream_id:
        size = int(head["ContentLength"])
        return Plan(rec, "salvage", "", (), size, *_partial_key(bucket, rec, size))
    done = bucket.head_object(rec.salvage_key)
    if done is not None and done.get("Metadata", {}).get(STREAM_ID) == rec.stream_id:
        return Plan(rec, "salvage", "", (), int(done["ContentLength"]), rec.salvage_key, True)
    raise CannotSalvage(rec.stream_id, "its multipart upload is gone")


def _partial_key(bucket: StreamBucket, rec: StreamRecord, size: int) -> tuple[str, bool]:
    """The first partial key that is free, or that holds this stream's salvage of
    `size` bytes already (True): never another object's."""
    for n in range(1, MAX_PARTIAL_KEYS + 1):
        key = partial_key(rec.s3_key, n)
        head = bucket.head_object(key)
        if head is None:
            return key, False
        mine = head.get("Metadata", {}).get(STREAM_ID) == rec.stream_id
        if mine and head.get("ContentLength") == size:
            return key, True
    raise CannotSalvage(rec.stream_id, f"{partial_key(rec.s3_key)} and its numbered keys are taken")


def carry_out(
    bucket: StreamBucket,
    store: CheckpointStore,
    plan: Plan,
    why: str,
    beat: Callable[[], None] = lambda: None,
) -> Ended:
    """Do what `plan` says; the stream ends `salvaged` or `aborted`, `why` its error.
    `beat` is called between S3 calls of a long copy (to renew a lease)."""
    rec, sid = plan.record, plan.record.stream_id
    if plan.action == "abort":
        if rec.s3_upload_id:
            bucket.abort_multipart_upload(rec.s3_key, rec.s3_upload_id)
            store.parts.forget_upload(rec.s3_upload_id)
        store.streams.set_status(
            sid, Status.ABORTED, error=f"{why}; {plan.reason}" if plan.reason else why
        )
        return Ended(store.streams.require(sid), ABORTED, f"upload aborted: {plan.reason}")
    store.streams.update(sid, salvage_key=plan.key)  # from here a crashed try is resumed
    if plan.parts:
        try:
            bucket.complete_multipart_upload(
                rec.s3_key, rec.s3_upload_id, plan.parts, if_absent=True
            )
        except KeyTaken:
            store.streams.update(sid, salvage_key="")
            raise CannotSalvage(sid, f"an object holds its key {rec.s3_key}; upload kept") from None
        except S3Rejected as exc:
            if exc.code != "InvalidPart" or not plan.left_out:
                raise
            # Ceph's gateway (16.2) completes an upload only from all of its parts; the
            # parts after the gap cannot be deleted, and no object holds the bytes to
            # copy them from: only an operator can decide (streams abort).
            store.streams.update(sid, salvage_key="")
            raise CannotSalvage(
                sid,
                f"the store refuses to complete the upload without the {plan.left_out} "
                f"parts after its gap (InvalidPart); upload kept",
            ) from None
    head = bucket.head_object(rec.s3_key)
    if head is not None and _ours(head, plan):
        if not plan.copied:
            _copy(bucket, store, plan, head["ETag"], beat)
        bucket.delete_object(rec.s3_key, head["ETag"])
    elif not plan.copied:
        raise CannotSalvage(sid, f"the object at {rec.s3_key} is not this stream's")
    store.streams.set_status(
        sid, Status.SALVAGED, salvage_key=plan.key, salvaged_bytes=plan.size, error=why
    )
    # Only now: until the stream says salvaged, its entry is how the janitor finds a
    # salvage cut short once S3 no longer lists the upload (stream_ingest/janitor_plan.py).
    store.parts.forget_upload(rec.s3_upload_id)
    payload = {"salvage_key": plan.key, "bytes": plan.size, "left_out_parts": plan.left_out}
    summary = f"{plan.size:,} bytes kept in s3://{rec.s3_bucket}/{printable(plan.key)}"
    return Ended(store.streams.require(sid), SALVAGED, summary, payload)


def _ours(head: dict[str, Any], plan: Plan) -> bool:
    """Whether the object at the stream's key is the one its parts make (when this try
    completed it: stream_ingest/verify.py) or the stream's own upload's."""
    parts = plan.parts
    if parts and holds_parts(
        facts_of(head),
        [p.etag for p in parts],
        [p.crc32 for p in parts],
        plan.record.upload_mark,
        sum(p.size for p in parts),
    ):
        return True
    return head.get("Metadata", {}).get(STREAM_ID) == plan.record.stream_id


def _copy(
    bucket: StreamBucket, store: CheckpointStore, plan: Plan, etag: str, beat: Callable[[], None]
) -> None:
    """Copy the object at the stream's key (still `etag`) to the partial key, part by
    part with the stream's part sizes, only to a free key. The copy's upload is
    registered: the janitor aborts it if this is cut short."""
    rec = plan.record
    sizes = [p.size for p in plan.parts] or [r.size for r in final_plan(plan.size, rec.part_plan)]
    upload_id = create_registered(
        bucket,
        store,
        rec.stream_id,
        plan.key,
        lambda: bucket.create_multipart_upload(plan.key, rec.stream_id, checksum=False),
    )
    parts = []
    try:
        for r in copy_ranges(sizes):
            held = bucket.copy_part(
                plan.key, upload_id, r.number, etag, r.offset, r.size, rec.s3_key
            )
            parts.append(UploadedPart(r.number, held.etag, r.size))  # no checksums asked
            beat()
        bucket.complete_multipart_upload(plan.key, upload_id, parts, if_absent=True)
    except BaseException:
        with contextlib.suppress(Exception):  # else the registry keeps it for the janitor
            bucket.abort_multipart_upload(plan.key, upload_id)
            store.parts.forget_upload(upload_id)
        raise
    store.parts.forget_upload(upload_id)
    if bucket.extra_tags:  # as a take's object has them; the copy is kept untagged else
        with contextlib.suppress(StreamError):
            bucket.tag_object(plan.key, {})
