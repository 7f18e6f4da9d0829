"""What a change to a completed recording's file means (pure).

A file that is smaller than its completed object was truncated and written again
(`ffmpeg -y` keeps the inode): a new take, which becomes a new stream and never
replaces the old object. A file that is as large or larger and changed (it grew, or a
tool patched bytes in place) is a new revision of the same take: the same object is
replaced, with the unchanged parts copied server-side.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from stream_ingest.records import StreamRecord
from stream_ingest.states import Status


class Change(StrEnum):
    NONE = "unchanged"
    REVISION = "revision"
    NEW_TAKE = "new take"


# A completed record's mtime that no file has: any look at the file is a change, for
# a revision run to judge by content (the bytes were not shown to be the object's).
UNCONFIRMED_MTIME = -1


def after_completion(record: StreamRecord, size: int, mtime_ns: int) -> Change:
    """How the file (the same incarnation) stands against the completed stream.

    >>> rec = StreamRecord("s", status=Status.COMPLETED, total_bytes=100, completed_mtime_ns=7)
    >>> [str(after_completion(rec, *f)) for f in ((100, 7), (150, 9), (100, 9), (40, 9))]
    ['unchanged', 'revision', 'revision', 'new take']
    """
    if record.status != Status.COMPLETED or record.total_bytes < 0:
        return Change.NONE
    if size < record.total_bytes:
        return Change.NEW_TAKE
    if size == record.total_bytes and (
        mtime_ns == record.completed_mtime_ns or not record.completed_mtime_ns
    ):
        return Change.NONE  # (a record completed before mtimes were kept: size alone)
    return Change.REVISION


def is_new_take(record: StreamRecord, size: int, mtime_ns: int) -> bool:
    """Whether the file now bound to `record`'s identity is a new take that needs a
    stream of its own: the old stream was aborted or salvaged (the file vanished,
    shrank or was replaced, and is back: renamed while the sensor was down, written
    again), or the
    file is now smaller than what the stream uploaded or completed (truncated)."""
    if record.status in (Status.ABORTED, Status.SALVAGED):
        return True
    if record.status == Status.COMPLETED:
        return after_completion(record, size, mtime_ns) == Change.NEW_TAKE
    if record.status == Status.SKIPPED:
        return False
    return size < record.bytes_uploaded


def by_content(matches: Iterable[bool], grown: bool) -> Change:
    """What a completed take's file holds now, by its parts' bytes: `matches` says,
    part by part (read lazily: the answer stops the reading), whether the file still
    holds a part's bytes at its offset; `grown`, whether the file is larger than the
    object. A part still there makes it the same take (a revision), unless every part
    is and the size is too: the bytes did not change (a touch, a backup tool that
    opened it for writing). No part there: another recording was written over it.

    >>> [str(by_content(m, g)) for m, g in (([True, True], False), ([False, True], False),
    ...     ([True], True), ([False], True), ([], True), ([], False))]
    ['unchanged', 'revision', 'revision', 'new take', 'revision', 'unchanged']
    """
    matched = differed = False
    for match in matches:
        matched, differed = matched or match, differed or not match
        if matched and (grown or differed):
            return Change.REVISION
    if matched:
        return Change.NONE
    if differed:
        return Change.NEW_TAKE
    return Change.REVISION if grown else Change.NONE  # an empty object: nothing to compare


# Compared in blocks this large: a tool that patches a recording's head (a muxer's
# header at close, a tag editor) leaves the blocks past it as they were.
BLOCK = 64 * 1024


def shares_a_block(old: bytes, new: bytes, block: int = BLOCK) -> bool:
    """Whether `new` still holds one of `old`'s blocks at its offset: the evidence that
    a take whose one part changed was patched, not recorded over. A block of one byte
    value repeated (zeros, padding) is evidence of nothing.

    >>> import os
    >>> old = os.urandom(3 * BLOCK)
    >>> shares_a_block(old, b"PATCH" + old[5:] + b"more"), shares_a_block(old, os.urandom(4 * BLOCK))
    (True, False)
    >>> shares_a_block(bytes(2 * BLOCK), bytes(2 * BLOCK))
    False
    """
    for start in range(0, min(len(old), len(new)), block):
        chunk = old[start : start + block]
        uniform = chunk.count(chunk[:1]) == len(chunk)
        if len(chunk) == block and not uniform and chunk == new[start : start + block]:
            return True
    return False
