"""The upload-part task: read one byte range, upload it, checkpoint it."""

from __future__ import annotations

from prefect import task

from flows.retry import RETRIED
from flows.runtime import StreamContext
from flows.source import read_range, sha256_hex
from stream_ingest.records import PartRecord


def put_part(ctx: StreamContext, number: int, data: bytes, offset: int) -> PartRecord:
    """Upload `data` as part `number` and record it with the stream's progress in
    one atomic, lease-fenced checkpoint write."""
    rec = ctx.record
    held = ctx.bucket.upload_part(rec.s3_key, rec.s3_upload_id, number, data)
    part = PartRecord(number, held.etag, offset, len(data), sha256_hex(data), held.crc32)
    ctx.store.record_part(rec, ctx.token, part, ctx.config.lease_ttl_seconds)
    return part


@task(name="upload-part", task_run_name="upload-part-{number}", **RETRIED)
def upload_part(ctx: StreamContext, number: int, offset: int, size: int) -> PartRecord:
    """Upload part `number`: bytes [offset, offset+size) of the source."""
    return put_part(ctx, number, read_range(ctx.path, offset, size), offset)
