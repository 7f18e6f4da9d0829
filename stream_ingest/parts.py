"""Part planning for an S3 multipart upload of a file of unknown final length.

S3 rules (https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html): parts are
5 MiB to 5 GiB except the last, numbered 1 to 10,000. Parts have deterministic
boundaries: part k always covers the same byte range, so any worker, after any
crash, agrees on what part k is. Under the `growing` policy the size doubles every
`DOUBLING_INTERVAL` parts so that a stream of unknown length never runs out of part
numbers: with the smallest base (5 MiB), 10,000 parts still cover more than 5 TiB.
Under `fixed`, every part but the last has the base size (Cloudflare R2 completes
nothing else), so a recording can be at most 10,000 times that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stream_ingest.errors import StreamError

MIB = 1024 * 1024
GIB = 1024 * MIB
MIN_PART = 5 * MIB
MAX_PART = 5 * GIB
MAX_PARTS = 10_000
MAX_OBJECT = 5 * 1024 * GIB  # 5 TiB
DOUBLING_INTERVAL = 900

PartSizePolicy = Literal["growing", "fixed"]


@dataclass(frozen=True)
class PartPlan:
    """How a stream's file is cut into parts: `base` bytes each, doubled every
    DOUBLING_INTERVAL parts unless `fixed`. A stream keeps its plan for life (resume,
    revisions, salvage): part k means the same bytes to every run."""

    base: int = 8 * MIB
    fixed: bool = False

    @classmethod
    def of(cls, base: int, policy: str) -> PartPlan:
        return cls(base, policy == "fixed")

    @property
    def policy(self) -> PartSizePolicy:
        return "fixed" if self.fixed else "growing"

    @property
    def largest(self) -> int:
        """The largest recording the plan can upload (S3's 5 TiB at most)."""
        if self.fixed:
            return min(MAX_OBJECT, MAX_PARTS * self.base)
        return min(MAX_OBJECT, part_offset(MAX_PARTS, self) + part_size(MAX_PARTS, self))


class TooManyParts(StreamError, ValueError):
    """A recording larger than its part plan allows: failed before any part that S3
    (or, under `fixed`, a store such as R2) would refuse at completion."""

    def __init__(self, size: int, plan: PartPlan) -> None:
        if plan.largest >= MAX_OBJECT:
            why = f"past S3's 5 TiB object limit ({MAX_OBJECT:,} bytes)"
        else:
            why = (
                f"past the {MAX_PARTS:,} parts of {human(plan.base)} that part_size_policy "
                f"fixed allows: the largest recording is {human(plan.largest)} "
                f"({plan.largest:,} bytes); raise part_size_mib for longer ones"
            )
        super().__init__(f"recording is {size:,} bytes, {why}")
        self.size, self.largest = size, plan.largest


def as_plan(plan: PartPlan | int) -> PartPlan:
    """A bare base is the growing plan of that base (what records held before fixed)."""
    return plan if isinstance(plan, PartPlan) else PartPlan(plan)


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


def part_size(k: int, plan: PartPlan | int = 8 * MIB) -> int:
    """Size of full part k (1-based): the base, doubled every DOUBLING_INTERVAL parts
    under the growing policy, capped at S3's 5 GiB maximum."""
    p = as_plan(plan)
    _check(k, p.base)
    if p.fixed:
        return p.base
    return min(MAX_PART, p.base << ((k - 1) // DOUBLING_INTERVAL))


def part_offset(k: int, plan: PartPlan | int = 8 * MIB) -> int:
    """Byte offset where part k starts: the sum of the sizes of parts 1..k-1."""
    p = as_plan(plan)
    _check(k, p.base)
    if p.fixed:
        return (k - 1) * p.base
    offset, j = 0, 1
    while j < k:  # whole doubling groups at a time: at most ~12 iterations
        group_end = min(k, (j - 1) // DOUBLING_INTERVAL * DOUBLING_INTERVAL + DOUBLING_INTERVAL + 1)
        offset += (group_end - j) * part_size(j, p)
        j = group_end
    return offset


def full_parts(size: int, plan: PartPlan | int = 8 * MIB) -> list[PartRange]:
    """Every full part that lies entirely within the first `size` bytes."""
    p = as_plan(plan)
    out: list[PartRange] = []
    k, offset = 1, 0
    while k <= MAX_PARTS:
        n = part_size(k, p)
        if offset + n > size:
            break
        out.append(PartRange(k, offset, n))
        offset += n
        k += 1
    return out


def check_fits(size: int, plan: PartPlan | int) -> None:
    """Raise TooManyParts when a file of `size` bytes is larger than the plan allows:
    before any part past the limit, never an unequal part under `fixed`."""
    p = as_plan(plan)
    if size > p.largest:
        raise TooManyParts(size, p)


def final_plan(size: int, plan: PartPlan | int = 8 * MIB) -> list[PartRange]:
    """Every part of a finished file of `size` bytes: the full parts, then one short
    last part for the remainder (one empty part for an empty file, which S3 accepts
    as the only part). Raises TooManyParts past what the plan allows (at most S3's
    5 TiB object limit)."""
    p = as_plan(plan)
    check_fits(size, p)
    parts = full_parts(size, p)
    covered = parts[-1].end if parts else 0
    if covered < size or not parts:
        parts.append(PartRange(len(parts) + 1, covered, size - covered))
    return parts


def human(size: int) -> str:
    """`size` bytes in the largest binary unit that keeps it at least 1 (3 digits)."""
    value, unit = float(size), "bytes"
    for name in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, name
    return f"{size} bytes" if unit == "bytes" else f"{value:.3g} {unit}"
