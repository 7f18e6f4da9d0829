"""The pure decisions of retention: which index entries dangle, what prune does with
a stream that ended, when a stream ended."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stream_ingest.records import StreamRecord
from stream_ingest.retention import (
    ACTIVE,
    ALL,
    BY_IDENTITY,
    UPLOADS,
    IndexEntry,
    Indexes,
    dangling,
    ended_at,
    plan_retirements,
    span,
    sweep_report,
)
from stream_ingest.states import Status

DAY = 86_400.0
NOW = datetime(2026, 3, 1, tzinfo=UTC).timestamp()


def stamp(days_ago: float) -> str:
    return datetime.fromtimestamp(NOW - days_ago * DAY, UTC).isoformat(timespec="milliseconds")


def ended(sid: str, status: Status, days_ago: float) -> StreamRecord:
    return StreamRecord(
        sid, status=status, started_at_utc=stamp(days_ago + 1), last_activity_at_utc=stamp(days_ago)
    )


def test_entries_of_streams_that_are_gone_dangle() -> None:
    indexes = Indexes(
        all_ids=frozenset({"alive", "gone"}),
        active_ids=frozenset({"alive", "lost"}),
        identities={"1:1:1": "alive", "2:2:2": "gone", "3:3:3": "never"},
        uploads={
            "up-alive": {"stream_id": "alive", "created": NOW - 40 * DAY},
            "up-old": {"stream_id": "gone", "created": NOW - 31 * DAY},
            "up-young": {"stream_id": "gone", "created": NOW - 1 * DAY},
        },
    )
    assert indexes.stream_ids() == {"alive", "gone", "lost", "never"}

    found = dangling(indexes, {"alive"}, NOW, 30 * DAY)

    assert found == [
        IndexEntry(ALL, "gone", "gone"),
        IndexEntry(ACTIVE, "lost", "lost"),
        IndexEntry(BY_IDENTITY, "2:2:2", "gone"),
        IndexEntry(BY_IDENTITY, "3:3:3", "never"),
        IndexEntry(UPLOADS, "up-old", "gone"),  # up-young: the janitor may need it
    ]
    assert found[2].describe() == "streams:by-identity 2:2:2 -> gone"
    assert found[0].describe() == "streams:all gone"


def test_prune_deletes_past_the_retention_and_gives_the_rest_what_is_left() -> None:
    records = [
        ended("old", Status.COMPLETED, 31),
        ended("aborted", Status.ABORTED, 30),  # exactly the retention: gone
        ended("skipped", Status.SKIPPED, 10),
        ended("expiring", Status.COMPLETED, 10),  # has an expiry already
        ended("failed", Status.FAILED, 90),  # resumable: never
        ended("live", Status.UPLOADING, 90),
    ]

    plan = plan_retirements(records, {"expiring"}, NOW, 30 * DAY)

    assert [(p.action, p.stream_id) for p in plan] == [
        ("delete", "old"),
        ("delete", "aborted"),
        ("expire", "skipped"),
    ]
    assert plan[2].ttl_seconds == pytest.approx(20 * DAY)
    assert plan[0].describe() == "delete stream old (completed 31.0 days ago)"
    assert plan[2].describe() == "expire stream skipped in 20.0 days (skipped 10.0 days ago)"


def test_a_stream_ended_at_its_latest_stamp() -> None:
    put_from_a_runs_copy = StreamRecord(
        "s",
        status=Status.COMPLETED,
        started_at_utc=stamp(5),
        last_activity_at_utc=stamp(4),
        completed_at_utc=stamp(1),
    )
    assert ended_at(put_from_a_runs_copy) == pytest.approx(NOW - DAY)
    by_hand = StreamRecord("s", status=Status.COMPLETED, started_at_utc=stamp(3))
    assert ended_at(by_hand) == pytest.approx(NOW - 3 * DAY)
    assert ended_at(StreamRecord("s", started_at_utc="garbage")) == 0.0


def test_the_janitor_reports_the_sweep_in_one_row() -> None:
    entries = [
        IndexEntry(ALL, "a", "a"),
        IndexEntry(BY_IDENTITY, "1:1:1", "a"),
        IndexEntry(ALL, "b", "b"),
    ]
    [row] = sweep_report(entries)
    assert (row.kind, row.target) == ("drop-index-entries", "3 entries")
    assert "2 streams" in row.reason
    assert sweep_report([]) == []


@pytest.mark.parametrize(
    ("seconds", "text"), [(12.4, "12 s"), (5400, "1.5 h"), (45 * DAY, "45.0 days")]
)
def test_spans_read_in_their_unit(seconds: float, text: str) -> None:
    assert span(seconds) == text
