"""What a change to a known file means: unchanged, a revision of its take, or a new
take (a new stream). The recorder habits behind each case are named."""

from __future__ import annotations

import pytest

from stream_ingest.records import StreamRecord
from stream_ingest.states import Status
from stream_ingest.takes import Change, after_completion, by_content, is_new_take

MTIME = 1_700_000_000_000_000_000


def completed(size: int = 1000, mtime_ns: int = MTIME) -> StreamRecord:
    return StreamRecord(
        "s1", status=Status.COMPLETED, total_bytes=size, completed_mtime_ns=mtime_ns
    )


@pytest.mark.parametrize(
    ("size", "mtime_ns", "change"),
    [
        (1000, MTIME, Change.NONE),  # untouched (a reader, a rescan)
        (1500, MTIME + 1, Change.REVISION),  # appended after completion
        (1000, MTIME + 1, Change.REVISION),  # head patched in place, same size
        (999, MTIME + 1, Change.NEW_TAKE),  # `ffmpeg -y`: truncated, rewritten
        (0, MTIME + 1, Change.NEW_TAKE),  # ...seen at the moment it was opened
    ],
)
def test_a_completed_files_change(size: int, mtime_ns: int, change: Change) -> None:
    assert after_completion(completed(), size, mtime_ns) is change


def test_a_record_completed_before_mtimes_were_kept_compares_sizes() -> None:
    old = completed(mtime_ns=0)
    assert after_completion(old, 1000, MTIME) is Change.NONE
    assert after_completion(old, 1001, MTIME) is Change.REVISION


@pytest.mark.parametrize(
    "status", [Status.UPLOADING, Status.FAILED, Status.ABORTED, Status.SALVAGED]
)
def test_only_a_completed_stream_has_revisions(status: Status) -> None:
    record = StreamRecord("s1", status=status, total_bytes=1000)
    assert after_completion(record, 5000, MTIME) is Change.NONE


@pytest.mark.parametrize(
    ("record", "size", "new"),
    [
        (completed(), 10, True),  # truncated after completion
        (completed(), 2000, False),  # grew: a revision, not a new stream
        (StreamRecord("s", status=Status.ABORTED), 2000, True),  # back after an abort
        (StreamRecord("s", status=Status.SALVAGED), 2000, True),  # ... after a salvage
        (StreamRecord("s", status=Status.UPLOADING, bytes_uploaded=800), 100, True),
        (StreamRecord("s", status=Status.UPLOADING, bytes_uploaded=800), 900, False),
        (StreamRecord("s", status=Status.FAILED, bytes_uploaded=800), 0, True),
        (StreamRecord("s", status=Status.SKIPPED, total_bytes=1000), 10, False),
    ],
)
def test_a_new_take_needs_a_stream_of_its_own(record: StreamRecord, size: int, new: bool) -> None:
    assert is_new_take(record, size, MTIME + 5) is new


@pytest.mark.parametrize(
    ("matches", "grown", "change"),
    [
        ([True, True, True], False, Change.NONE),  # touch: every part and the size as they were
        ([False, True, True], False, Change.REVISION),  # head patched in place
        ([True, True, False], True, Change.REVISION),  # the last part grew: appended
        ([True], True, Change.REVISION),  # a one-part take that grew
        ([False], True, Change.NEW_TAKE),  # a longer take recorded over a one-part take
        ([False, False], False, Change.NEW_TAKE),  # a same-size take over it
        ([], True, Change.REVISION),  # an empty object: nothing to lose
        ([], False, Change.NONE),
    ],
)
def test_by_content(matches: list[bool], grown: bool, change: Change) -> None:
    assert by_content(iter(matches), grown) is change


def test_by_content_stops_reading_at_the_answer() -> None:
    """Each match is a part read from disk: an append is known at its first part."""
    read: list[int] = []

    def parts():
        for n in range(1, 100):
            read.append(n)
            yield True

    assert by_content(parts(), grown=True) is Change.REVISION
    assert read == [1]
