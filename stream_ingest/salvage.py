"""What is kept of a stream whose source can no longer be read (pure).

When the recording host is gone, the parts uploaded so far are the only copy of the
footage. They become an object of their own, never under the stream's key (that one
is for the whole recording): `<stem>.partial<ext>` beside it (`cam1/take.partial.mkv`),
or the first free numbered one (`cam1/take.partial (2).mkv`). Only parts that make a
prefix of the file go in: part 1, 2, ... up to the first one missing or short, so the
object holds exactly the file's first bytes. (S3 would also refuse a short part that
is not the last: EntityTooSmall.)

An upload is redundant, and only then aborted without an operator, when it holds
nothing, or when every part of it is a part of the stream's completed object (same
number, so the same bytes of the file, same size and ETag).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from stream_ingest.errors import KeyTooLong
from stream_ingest.keys import MAX_KEY_BYTES
from stream_ingest.parts import MIN_PART, PartPlan, as_plan, part_size
from stream_ingest.records import PartRecord, StreamRecord, UploadedPart
from stream_ingest.states import TERMINAL, Status


def partial_key(key: str, n: int = 1) -> str:
    """The key of a stream's salvaged object; `n` > 1 for the next ones if taken.

    >>> partial_key("rec/cam1/take.mkv"), partial_key("rec/take.mkv", 2)
    ('rec/cam1/take.partial.mkv', 'rec/take.partial (2).mkv')
    >>> partial_key("rec/notes"), partial_key("rec/.hidden")
    ('rec/notes.partial', 'rec/.hidden.partial')
    """
    folder, slash, name = key.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not stem:  # no extension, or a name that only starts with a dot
        stem, dot, ext = name, "", ""
    if n >= 2:
        stem = f"{stem}.partial ({n})"
        return _checked(f"{folder}{slash}{stem}{dot}{ext}")
    return _checked(f"{folder}{slash}{stem}.partial{dot}{ext}")


def _checked(key: str) -> str:
    if len(key.encode()) > MAX_KEY_BYTES:
        raise KeyTooLong(key, len(key.encode()))
    return key


def prefix_parts(parts: Iterable[UploadedPart], plan: PartPlan | int) -> list[UploadedPart]:
    """The parts that make the file's first bytes, in order: part 1, 2, ... each of its
    planned size (stream_ingest/parts.py), up to the first one missing, and including
    the first short one (the last of the prefix). `plan` is the stream's part plan."""
    if as_plan(plan).base < MIN_PART:
        return []  # no upload was ever opened with this record
    by_number = {p.number: p for p in parts}
    out: list[UploadedPart] = []
    k = 1
    while (part := by_number.get(k)) is not None and part.size > 0:
        full = part_size(k, plan)
        if part.size > full:  # not a part of this plan
            break
        out.append(part)
        if part.size < full:
            break
        k += 1
    return out


def in_completed(parts: Iterable[UploadedPart], completed: Mapping[int, PartRecord]) -> bool:
    """Whether every part is a part of the completed object (`completed`: the parts
    it was made of): the same number, size and ETag (the MD5 of its bytes)."""
    return all(
        (held := completed.get(p.number)) is not None
        and held.size == p.size
        and held.etag.strip('"') == p.etag.strip('"')
        for p in parts
    )


@dataclass(frozen=True)
class CopyRange:
    """One part of the copy into the salvaged object: bytes [offset, offset + size)."""

    number: int
    offset: int
    size: int


def copy_ranges(sizes: Iterable[int]) -> list[CopyRange]:
    """The salvaged object's parts, copied server-side with the sizes the stream's
    parts had (each within S3's 5 MiB..5 GiB but the last).

    >>> copy_ranges([5, 5, 2])
    [CopyRange(number=1, offset=0, size=5), CopyRange(number=2, offset=5, size=5), \
CopyRange(number=3, offset=10, size=2)]
    """
    out, offset = [], 0
    for number, size in enumerate(sizes, start=1):
        out.append(CopyRange(number, offset, size))
        offset += size
    return out


def endable(record: StreamRecord, action: str) -> str | None:
    """Why the stream cannot be salvaged or aborted (`action`) now; None if it can:
    only a failed stream, whose run is over (the janitor fails an active stream once
    its run is gone)."""
    sid, status = record.stream_id, record.status
    if status == Status.FAILED:
        return None
    if status in TERMINAL:
        return f"stream {sid} is {status}: nothing to {action}"
    done = {"salvage": "salvaged", "abort": "aborted"}.get(action, action)
    return f"stream {sid} is {status}: only a failed stream is {done} (its run is over)"
