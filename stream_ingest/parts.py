"""Part planning for an S3 multipart upload of a file of unknown final length.

S3 rules (https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html): parts are
5 MiB to 5 GiB except the last, numbered 1 to 10,000. Parts have deterministic
boundaries: part k always covers the same byte range, so any worker, after any
crash, agrees on what part k is. The size doubles every `DOUBLING_INTERVAL` parts so
that a stream of unknown length never runs out of part numbers: with the smallest
base (5 MiB), 10,000 parts still cover more than 5 TiB.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024
MIN_PART = 5 * MIB
MAX_PART = 5 * 1024 * MIB
MAX_PARTS = 10_000
MAX_OBJECT = 5 * 1024 * 1024 * MIB  # 5 TiB
DOUBLING_INTERVAL = 900


@dataclass(frozen=True)
class PartRange:
    number: int
    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.offset + self.size


def _check(k: int, base: int) -> None:
    if not MIN_PART <= base <= MAX_PART:
        raise ValueError(f"base part size {base} outside S3's 5 MiB..5 GiB")
    if not 1 <= k <= MAX_PARTS:
        raise ValueError(f"part number {k} outside 1..{MAX_PARTS}")


def part_size(k: int, base: int = 8 * MIB) -> int:
    """Size of full part k (1-based): base doubled every DOUBLING_INTERVAL parts,
    capped at S3's 5 GiB maximum."""
    _check(k, base)
    return min(MAX_PART, base << ((k - 1) // DOUBLING_INTERVAL))


def part_offset(k: int, base: int = 8 * MIB) -> int:
    """Byte offset where part k starts: the sum of the sizes of parts 1..k-1."""
    _check(k, base)
    offset, j = 0, 1
    while j < k:  # whole doubling groups at a time: at most ~12 iterations
        group_end = min(k, (j - 1) // DOUBLING_INTERVAL * DOUBLING_INTERVAL + DOUBLING_INTERVAL + 1)
        offset += (group_end - j) * part_size(j, base)
        j = group_end
    return offset


def full_parts(size: int, base: int = 8 * MIB) -> list[PartRange]:
    """Every full part that lies entirely within the first `size` bytes."""
    out: list[PartRange] = []
    k, offset = 1, 0
    while k <= MAX_PARTS:
        n = part_size(k, base)
        if offset + n > size:
            break
        out.append(PartRange(k, offset, n))
        offset += n
        k += 1
    return out


def final_plan(size: int, base: int = 8 * MIB) -> list[PartRange]:
    """Every part of a finished file of `size` bytes: the full parts, then one short
    last part for the remainder (one empty part for an empty file, which S3 accepts
    as the only part). Raises ValueError past S3's 5 TiB object limit."""
    if size > MAX_OBJECT:
        raise ValueError(f"{size} bytes is larger than S3's 5 TiB object limit")
    plan = full_parts(size, base)
    covered = plan[-1].end if plan else 0
    if covered < size or not plan:
        k = len(plan) + 1
        if k > MAX_PARTS:
            raise ValueError(f"{size} bytes need more than {MAX_PARTS} parts")
        plan.append(PartRange(k, covered, size - covered))
    return plan
