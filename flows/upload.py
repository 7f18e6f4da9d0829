"""The upload-part task: read one byte range, upload it (or copy it server-side from
the previous revision when those bytes are unchanged), checkpoint it."""

from __future__ import annotations

import base64
import zlib

from prefect import task

from flows.retry import RETRIED
from flows.runtime import StreamContext
from flows.source import read_range, sha256_hex
from stream_ingest.errors import S3Rejected
from stream_ingest.records import PartRecord


def crc32_b64(data: bytes) -> str:
    """S3's form of a CRC32 checksum: base64 of the big-endian 4 bytes."""
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def put_part(ctx: StreamContext, number: int, data: bytes, offset: int) -> PartRecord:
    """Upload `data` as part `number` and record it with the stream's progress in
    one atomic, lease-fenced checkpoint write. In a revision, a part with exactly
    these bytes at this offset in the completed object is copied from it instead."""
    rec = ctx.record
    checksum = sha256_hex(data)
    before = ctx.prior.get(number)
    part = None
    if (
        before is not None
        and rec.object_etag
        and (before.offset, before.size, before.checksum) == (offset, len(data), checksum)
    ):
        part = _copy(ctx, number, data, offset, checksum)
    if part is None:
        held = ctx.bucket.upload_part(rec.s3_key, rec.s3_upload_id, number, data)
        part = PartRecord(number, held.etag, offset, len(data), checksum, held.crc32)
    ctx.store.record_part(rec, ctx.token, part, ctx.config.lease_ttl_seconds)
    return part


def _copy(
    ctx: StreamContext, number: int, data: bytes, offset: int, checksum: str
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
    return put_part(ctx, number, read_range(ctx.path, offset, size), offset)
