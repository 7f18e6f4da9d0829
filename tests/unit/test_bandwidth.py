"""The bandwidth limit's arithmetic and order of service, as plain functions: the
token bucket against an injected clock, and which waiting stream gets the next grant."""

from __future__ import annotations

from collections import Counter

import pytest

from stream_ingest.bandwidth import (
    CREDIT_BYTES,
    GRANT_BYTES,
    MIB,
    FairQueue,
    Kind,
    TokenBucket,
    bytes_per_second,
    capacity,
    grants,
)

RATE = 8_000_000.0  # bytes/s


def test_megabits_are_bytes_over_eight():
    assert bytes_per_second(64) == 8_000_000
    assert bytes_per_second(0) == 0


def test_a_part_is_taken_in_whole_grants_and_a_rest():
    assert grants(8 * MIB) == [GRANT_BYTES] * 8
    assert grants(2 * MIB + 5) == [GRANT_BYTES, GRANT_BYTES, 5]
    assert grants(0) == []


def test_the_bucket_grants_no_more_than_the_rate_plus_its_burst():
    """Grants taken back to back, each sent when the bucket says: over a minute the
    bytes sent are the rate's, plus the one burst a full bucket allows."""
    bucket, now, sent = TokenBucket(RATE), 0.0, 0
    while True:
        now += bucket.reserve(GRANT_BYTES, now)
        if now > 60:
            break
        sent += GRANT_BYTES
    assert sent <= RATE * 60 + capacity(RATE)
    assert sent >= RATE * 60 - GRANT_BYTES


def test_a_bucket_idle_for_long_saves_up_one_burst_only():
    bucket = TokenBucket(RATE)
    assert bucket.reserve(GRANT_BYTES, 0.0) == 0.0
    free = 0
    while bucket.reserve(GRANT_BYTES, 3600.0) == 0.0:  # an hour later
        free += GRANT_BYTES
    assert free <= capacity(RATE)


def test_a_new_rate_applies_from_its_change_on():
    """Bytes earned before the change at the old rate, after it at the new one."""
    bucket = TokenBucket(RATE)
    while bucket.reserve(GRANT_BYTES, 0.0) == 0.0:
        pass  # empty it: it owes the last grant's bytes
    owed = bucket.tokens
    bucket.set_rate(RATE / 4, 0.1)
    at_change = owed + 0.1 * RATE
    wait = bucket.reserve(GRANT_BYTES, 0.2)
    expected = (GRANT_BYTES - (at_change + 0.1 * RATE / 4)) / (RATE / 4)
    assert wait == pytest.approx(expected)


def _serve(queue: FairQueue, rounds: int, size: int = GRANT_BYTES) -> Counter[str]:
    """Serve `rounds` grants; every served request comes back (streams always busy)."""
    got: Counter[str] = Counter()
    kinds = queue.waiting()
    for _ in range(rounds):
        key = queue.next()
        assert key is not None
        queue.granted(key, size)
        got[key] += size
        queue.wait(key, kinds[key])
    return got


def test_streams_of_one_kind_get_equal_shares_whatever_their_parts_in_flight():
    queue = FairQueue()
    for _ in range(8):  # one stream with 8 parts waiting at once
        queue.wait("wide", Kind.LIVE)
    for key in ("a", "b", "c"):
        queue.wait(key, Kind.LIVE)
    got = _serve(queue, 400)
    assert max(got.values()) - min(got.values()) <= GRANT_BYTES
    assert set(got) == {"wide", "a", "b", "c"}


def test_a_stream_sending_one_part_at_a_time_keeps_its_place():
    """It stops waiting after each grant: back in the queue, it must come after those
    that waited all along (not at the kind's clock, ahead of them)."""
    queue = FairQueue()
    for _ in range(4):
        queue.wait("busy", Kind.LIVE)
    queue.wait("single", Kind.LIVE)
    got: Counter[str] = Counter()
    for _ in range(100):
        key = queue.next()
        assert key is not None
        queue.granted(key, GRANT_BYTES)
        got[key] += 1
        queue.wait(key, Kind.LIVE)  # each comes back with its next grant
    assert abs(got["busy"] - got["single"]) <= 1


def test_live_streams_go_before_a_backlog():
    queue = FairQueue()
    for _ in range(8):
        queue.wait("dropped-in", Kind.BACKLOG)
    queue.wait("camera-1", Kind.LIVE)
    queue.wait("camera-2", Kind.LIVE)
    got = _serve(queue, 100)
    assert got["dropped-in"] == 0
    assert got["camera-1"] == got["camera-2"] == 50 * GRANT_BYTES


def test_a_backlog_gets_what_live_streams_leave():
    queue = FairQueue()
    queue.wait("dropped-in", Kind.BACKLOG)
    assert queue.next() == "dropped-in"
    queue.wait("camera", Kind.LIVE)
    assert queue.next() == "camera"  # arrives later, served first
    queue.granted("camera", GRANT_BYTES)  # its one request served: it waits no more
    assert queue.next() == "dropped-in"


def test_a_stream_idle_for_long_comes_back_level_not_with_credit():
    """b waits only now: it gets at most CREDIT_BYTES ahead of a, not as long as it
    takes to catch up with the 50 grants a got meanwhile."""
    queue = FairQueue()
    queue.wait("a", Kind.LIVE)
    _serve(queue, 50)
    queue.wait("b", Kind.LIVE)
    got = _serve(queue, 40)
    assert got["b"] - got["a"] == CREDIT_BYTES


def test_a_stream_that_turns_live_while_waiting_is_served_as_live():
    queue = FairQueue()
    queue.wait("x", Kind.BACKLOG)
    queue.wait("cam", Kind.LIVE)
    queue.wait("x", Kind.LIVE)
    assert queue.waiting() == {"x": Kind.LIVE, "cam": Kind.LIVE}


def test_a_cancelled_request_leaves_the_queue():
    queue = FairQueue()
    queue.wait("a", Kind.LIVE)
    queue.cancel("a")
    assert queue.next() is None
    with pytest.raises(KeyError):
        queue.granted("a", 1)
