"""Pure reconciliation of the Redis checkpoint with what S3 holds.

S3 is the truth for what was uploaded (ListParts); Redis adds what S3 does not know
(offsets, content checksums). A part survives only if both agree on it and it sits
where the part plan says it should.
"""

from __future__ import annotations

import dataclasses

from stream_ingest.parts import PartPlan, part_offset, part_size
from stream_ingest.records import PartRecord, UploadedPart


def reconcile(
    checkpoint: dict[int, PartRecord], in_s3: list[UploadedPart], plan: PartPlan | int
) -> list[PartRecord]:
    """The checkpointed parts S3 also holds with the same etag and size, at their
    planned offsets. Everything else gets uploaded again."""
    s3 = {p.number: p for p in in_s3}
    keep: list[PartRecord] = []
    for number, rec in sorted(checkpoint.items()):
        held = s3.get(number)
        if held is None or held.etag != rec.etag or held.size != rec.size:
            continue
        if rec.offset != part_offset(number, plan) or rec.size > part_size(number, plan):
            continue
        # S3's checksum wins (a checkpoint written before checksums were kept has none).
        keep.append(dataclasses.replace(rec, crc32=held.crc32) if held.crc32 else rec)
    return keep
