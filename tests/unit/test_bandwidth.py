"""The bandwidth limit's arithmetic and order of service, as plain functions: the
token bucket against an injected clock, and which waiting stream gets the next grant."""

from __future__ import annotations

import heapq
import math
from collections import Counter
from dataclasses import dataclass

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


def test_a_caller_that_wakes_late_loses_no_rate():
    """Every sleep overshoots by 20 ms (a loaded host): the next grant's wait is that
    much shorter, so the minute still carries the rate's bytes."""
    bucket, now, sent = TokenBucket(RATE), 0.0, 0
    while True:
        now += bucket.reserve(GRANT_BYTES, now) + 0.02
        if now > 60:
            break
        sent += GRANT_BYTES
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


def test_a_cancelled_part_leaves_the_queue_with_its_grants():
    queue = FairQueue()
    ticket = queue.wait("a", Kind.LIVE, grants=3)
    queue.granted("a", GRANT_BYTES)
    queue.cancel(ticket)
    assert queue.next() is None
    with pytest.raises(KeyError):
        queue.granted("a", 1)


def test_a_streams_grants_go_to_its_parts_in_the_order_they_asked():
    """Each part gets all its grants before the next part of its stream gets any, while
    the streams still take turns grant by grant."""
    queue = FairQueue()
    cam = [queue.wait("cam", Kind.LIVE, grants=3) for _ in range(3)]
    other = queue.wait("other", Kind.LIVE, grants=9)
    served: list[int] = []
    while (ticket := queue.turn()) is not None:
        served.append(ticket)
        key = queue.next()
        assert key is not None
        queue.granted(key, GRANT_BYTES)
    assert [t for t in served if t != other] == [cam[0]] * 3 + [cam[1]] * 3 + [cam[2]] * 3
    assert served[:4].count(other) == 2  # taking turns, not one stream then the other


@dataclass(frozen=True)
class _Stream:
    kind: Kind
    part: int  # bytes
    width: int  # parts asking or being sent at once
    write_rate: float = math.inf  # bytes/s: a part asks once the file holds it


def _link(
    streams: dict[str, _Stream], seconds: float, send_s: float = 0.1
) -> dict[str, list[tuple[float, float]]]:
    """The limiter's loop (stream_ingest/flows/pacing.py) on a simulated clock: one
    grant at a time, in the queue's order, each reserved from the bucket and waited
    for; a part goes out once it has its last grant and takes `send_s`; its slot then
    takes the stream's next part, once written. Each stream's parts: (written, sent)."""
    bucket, queue, now = TokenBucket(RATE), FairQueue(), 0.0
    asks: list[tuple[float, str, int]] = []  # (when, stream, part index)
    owed: dict[int, tuple[str, int, list[int]]] = {}  # ticket -> stream, index, grants
    following = {key: s.width for key, s in streams.items()}
    sent: dict[str, list[tuple[float, float]]] = {key: [] for key in streams}

    def written(key: str, index: int) -> float:
        s = streams[key]
        return 0.0 if s.write_rate == math.inf else (index + 1) * s.part / s.write_rate

    for key, s in streams.items():
        for index in range(s.width):
            heapq.heappush(asks, (written(key, index), key, index))
    while now < seconds:
        while asks and asks[0][0] <= now:
            _, key, index = heapq.heappop(asks)
            sizes = grants(streams[key].part)
            owed[queue.wait(key, streams[key].kind, len(sizes))] = (key, index, sizes)
        ticket = queue.turn()
        if ticket is None:
            now = asks[0][0]
            continue
        key, index, sizes = owed[ticket]
        assert queue.next() == key
        queue.granted(key, sizes[0])
        now += bucket.reserve(sizes.pop(0), now)
        if not sizes:
            sent[key].append((written(key, index), now))
            heapq.heappush(
                asks, (max(now + send_s, written(key, following[key])), key, following[key])
            )
            following[key] += 1
    return sent


def _rate(sends: list[tuple[float, float]], part: int, t0: float, t1: float, send_s: float = 0.1):
    """Bytes/s sent in [t0, t1], each part's bytes spread over its send."""
    inside = sum(max(0.0, min(t + send_s, t1) - max(t, t0)) for _, t in sends)
    return inside / send_s * part / (t1 - t0)


def test_the_link_carries_the_limit_while_every_stream_has_parts_in_flight():
    """Four recordings written faster than the limit, each with up to 8 parts asking at
    once: over a minute the parts sent add up to the limit, equally per stream (no
    granted bytes left waiting in parts still short of their last grant)."""
    part = 5 * MIB
    streams = {k: _Stream(Kind.LIVE, part, 8, write_rate=5_000_000) for k in "abcd"}
    sent = _link(streams, 80.0)
    per = [_rate(sent[k], part, 10.0, 70.0) for k in streams]
    assert abs(sum(per) - RATE) * 60 <= part  # the window cuts at most one part short
    assert max(per) / min(per) <= 1.05


def test_a_backlog_gets_what_live_streams_leave_and_never_holds_them_up():
    """Two cameras at 3.5 MB/s each (more than an equal third of the limit) and a
    finished file with 8 parts in flight: each camera part goes out at most two parts'
    and one grant's time at the limit after it was written (it waits for the other
    camera's part and the grant being sent, never for the backlog's parts), the
    cameras keep their writers' rate, the backlog takes the rest, the link is full."""
    part = 5 * MIB
    streams = {
        "cam-1": _Stream(Kind.LIVE, part, 8, write_rate=3_500_000),
        "cam-2": _Stream(Kind.LIVE, part, 8, write_rate=3_500_000),
        "dropped-in": _Stream(Kind.BACKLOG, 8 * MIB, 8),
    }
    sent = _link(streams, 80.0)
    for cam in ("cam-1", "cam-2"):
        assert max(at - written for written, at in sent[cam]) <= (2 * part + GRANT_BYTES) / RATE
        assert _rate(sent[cam], part, 10.0, 70.0) == pytest.approx(3_500_000, rel=0.05)
    total = sum(_rate(sent[k], streams[k].part, 10.0, 70.0) for k in streams)
    assert abs(total - RATE) * 60 <= 8 * MIB
