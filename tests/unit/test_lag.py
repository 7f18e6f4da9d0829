"""Lag, the recovery point (stream_ingest/lag.py): the bytes not in S3, the age of the
oldest of them, and the lagging / caught-up transitions, with plain numbers for time."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_ingest.lag import (
    Lag,
    LagAlarm,
    Sightings,
    Stored,
    Transition,
    describe,
    human_bytes,
    lag_at,
    lag_of,
    parse_utc,
    rate,
    utc_text,
)
from stream_ingest.records import StreamRecord
from stream_ingest.states import Status

T0 = 1_800_000_000.0  # an epoch second


def _record(**values: object) -> StreamRecord:
    return dataclasses.replace(StreamRecord("s-1", status=Status.UPLOADING), **values)


def test_lag_is_the_bytes_not_stored_and_the_age_of_the_oldest() -> None:
    assert lag_at(observed=30, stored=20, oldest_seen_at=T0, now=T0 + 4.5) == Lag(10, 4.5)


def test_a_stream_with_every_byte_stored_has_no_age_whatever_was_seen() -> None:
    assert lag_at(observed=20, stored=20, oldest_seen_at=T0, now=T0 + 99) == Lag(0, 0.0)
    # More stored than observed (a part of bytes written after the look): no negative lag.
    assert lag_at(observed=20, stored=25, oldest_seen_at=None, now=T0) == Lag(0, 0.0)


def test_lag_of_a_record_ages_from_when_its_oldest_byte_was_first_seen() -> None:
    record = _record(behind_bytes=5_000_000, behind_since_utc=utc_text(T0))
    assert lag_of(record, T0 + 12.25) == Lag(5_000_000, 12.25)
    now = datetime.fromtimestamp(T0 + 3, UTC)
    assert lag_of(record, now) == (5_000_000, 3.0)  # a datetime, and a plain tuple


def test_lag_of_a_record_whose_writer_went_silent_keeps_growing() -> None:
    """A dead host writes no more: its bytes are no safer for that."""
    record = _record(
        behind_bytes=1000, behind_since_utc=utc_text(T0), observed_at_utc=utc_text(T0 + 1)
    )
    assert lag_of(record, T0 + 3600).seconds == 3600


@pytest.mark.parametrize("status", [Status.COMPLETED, Status.SALVAGED, Status.ABORTED])
def test_a_settled_stream_has_no_lag_whatever_its_last_figures(status: Status) -> None:
    record = _record(status=status, behind_bytes=1000, behind_since_utc=utc_text(T0))
    assert lag_of(record, T0 + 60) == Lag(0, 0.0)


def test_a_failed_stream_keeps_its_lag() -> None:
    record = _record(status=Status.FAILED, behind_bytes=1000, behind_since_utc=utc_text(T0))
    assert lag_of(record, T0 + 60) == Lag(1000, 60.0)


def test_a_record_without_figures_has_no_lag() -> None:
    assert lag_of(StreamRecord("old"), T0) == Lag(0, 0.0)
    assert lag_of(_record(behind_bytes=10, behind_since_utc="garbage"), T0) == Lag(10, 0.0)


def test_timestamps_round_trip_and_naive_ones_are_utc() -> None:
    assert parse_utc(utc_text(T0 + 0.5)) == T0 + 0.5
    assert parse_utc("2026-01-01T00:00:00") == datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert parse_utc("") is None


def test_sightings_say_when_a_byte_was_first_seen() -> None:
    seen = Sightings()
    seen.see(0, T0)
    seen.see(100, T0 + 1)
    seen.see(100, T0 + 2)  # no growth: nothing new was seen
    seen.see(250, T0 + 3)

    assert seen.first_holding(0) == T0 + 1  # the empty file held no byte
    assert seen.first_holding(99) == T0 + 1
    assert seen.first_holding(100) == T0 + 3
    assert seen.first_holding(250) is None  # not written yet


def test_sightings_forget_what_is_stored_but_not_what_is_not() -> None:
    seen = Sightings()
    for i, size in enumerate((10, 20, 30, 40)):
        seen.see(size, T0 + i)
    seen.forget_below(20)
    assert len(seen) == 2
    assert seen.first_holding(20) == T0 + 2
    assert seen.first_holding(35) == T0 + 3


def test_stored_counts_parts_and_finds_the_first_missing_byte() -> None:
    stored = Stored()
    stored.add(2, 10, 10)  # out of order: parallel parts end in any order
    assert stored.figures() == (10, 0)
    stored.add(1, 0, 10)
    assert stored.figures() == (20, 20)
    stored.add(4, 30, 5)
    assert stored.figures() == (25, 20)
    stored.add(3, 20, 10)
    assert stored.figures() == (35, 35)


def test_a_part_sent_again_is_counted_once() -> None:
    stored = Stored()
    stored.reset([(1, 0, 10), (2, 10, 10)])
    stored.add(2, 10, 10)  # a changed part re-uploaded at finalize
    assert stored.figures() == (20, 20)
    stored.add(2, 10, 4)  # the last part, shorter than first sent
    assert stored.figures() == (14, 14)
    stored.reset([(2, 10, 10)])  # a resumed checkpoint with a hole at the start
    assert stored.figures() == (10, 0)


@given(st.permutations(range(1, 9)), st.integers(min_value=0, max_value=8))
def test_the_first_missing_byte_is_the_end_of_the_run_from_zero(order, keep) -> None:
    """Whatever order the parts end in, the first missing byte is where the run of
    parts from byte 0 stops."""
    stored = Stored()
    added = sorted(order[:keep])
    for number in order[:keep]:
        stored.add(number, (number - 1) * 7, 7)
    run = 0
    while run + 1 in added:
        run += 1
    assert stored.figures() == (7 * keep, 7 * run)


def test_the_alarm_waits_the_grace_then_reports_each_transition_once() -> None:
    alarm = LagAlarm(threshold=60, grace=30)
    assert alarm.step(61, T0) is None  # over, the grace begins
    assert alarm.step(90, T0 + 29.9) is None
    assert alarm.step(91, T0 + 30) == Transition.LAGGING
    assert alarm.step(120, T0 + 60) is None  # still lagging: said once
    assert alarm.step(60, T0 + 61) == Transition.CAUGHT_UP  # at the threshold is under it
    assert alarm.step(10, T0 + 62) is None


def test_a_burst_shorter_than_the_grace_is_not_announced() -> None:
    alarm = LagAlarm(threshold=60, grace=30)
    assert alarm.step(70, T0) is None
    assert alarm.step(50, T0 + 20) is None  # back under: the grace starts again
    assert alarm.step(70, T0 + 25) is None
    assert alarm.step(80, T0 + 50) is None
    assert alarm.step(85, T0 + 55) == Transition.LAGGING


def test_no_grace_announces_at_once() -> None:
    assert LagAlarm(threshold=1, grace=0).step(1.5, T0) == Transition.LAGGING


def test_rate_is_bytes_per_second_between_two_counts() -> None:
    assert rate(1_000_000, T0, 6_000_000, T0 + 10) == 500_000
    assert rate(5, T0, 9, T0) == 0  # no time between


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (999, "999 B"), (1000, "1 kB"), (12_345_678, "12.3 MB"), (450_000_000, "450 MB")],
)
def test_bytes_read_as_people_write_them(n: int, text: str) -> None:
    assert human_bytes(n) == text


def test_the_phrase_says_all_is_in_s3_or_how_far_behind() -> None:
    assert describe(Lag(0, 0.0)) == "every byte in S3"
    assert describe(Lag(12_345_678, 4.4)) == "12.3 MB not in S3, the oldest for 4 s"
