"""The bandwidth limit of one host (`bandwidth_limit_mbps`): a token bucket, and the
order in which waiting streams get its bytes. Pure: no I/O, no threads, the clock is
passed in (stream_ingest/flows/pacing.py runs them; the bucket can also live in Redis,
stream_ingest/blocks/bandwidth.py, with the same arithmetic).

Bytes are granted in turns of at most GRANT_BYTES, one turn at a time, so a stream
that asks for a 64 MiB part does not hold the link for 8 s while a live one waits:

- live streams (a recording still growing, or its end being sent) go before a
  backlog (a finished file dropped in, nothing growing): a backlog gets what the live
  ones leave, so it never slows them, and uses the whole limit when they are caught up;
- among streams of one kind, the one served least goes first (start-time fair
  queueing): equal shares whatever the number of parts each has in flight or their
  size; a stream that was idle comes back at most CREDIT_BYTES behind the others, so
  it cannot save up credit to burst with;
- within a stream, its parts one after the other, in the order they asked: a part
  is sent once it has all its grants, so the bytes granted and not yet sent are at
  most one part per stream, and what the bucket lets through goes out at its rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

MIB = 1024 * 1024
GRANT_BYTES = MIB
# The bucket holds at most this long of the rate (and at least one grant): a link
# that was idle sends a short burst, not a minute's worth; and the moments when every
# stream is sending its granted part and none is asking (a busy S3 takes a second for
# a part) do not lose their bytes.
BURST_SECONDS = 1.0
# How far behind its kind's clock a stream that stopped waiting may come back: the
# moment it spent sending its part is not lost to its share, but no stream saves up
# more than about one part to burst with.
CREDIT_BYTES = 8 * GRANT_BYTES


def bytes_per_second(mbps: float) -> float:
    """The option's megabits per second (10^6 bits, as links are sold) in bytes/s;
    0 is no limit."""
    return max(0.0, mbps) * 1_000_000 / 8


def grants(size: int, grant: int = GRANT_BYTES) -> list[int]:
    """The turns a part of `size` bytes takes: full grants, then the rest."""
    whole, rest = divmod(max(0, size), grant)
    return [grant] * whole + ([rest] if rest else [])


def capacity(rate: float, grant: int = GRANT_BYTES) -> float:
    return max(float(grant), rate * BURST_SECONDS)


@dataclass
class TokenBucket:
    """Bytes that may be sent now. `reserve` always grants and says how long the caller
    must wait first (the bucket may go below zero): one call per grant, whatever the
    wait, which is what lets the same arithmetic run as one Redis script call."""

    rate: float
    tokens: float = -1.0  # below zero after a reservation; -1 at start means full
    at: float | None = None

    def reserve(self, size: int, now: float) -> float:
        """Take `size` bytes at `now`; the seconds to wait before sending them."""
        cap = capacity(self.rate)
        if self.at is None:
            self.tokens = cap
        else:
            self.tokens = min(cap, self.tokens + max(0.0, now - self.at) * self.rate)
        self.at = now
        self.tokens -= size
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def set_rate(self, rate: float, now: float) -> None:
        """A new limit from `now` on: what was earned so far at the old rate stays."""
        if self.at is not None:
            self.tokens = min(capacity(rate), self.tokens + max(0.0, now - self.at) * self.rate)
            self.at = now
        self.rate = rate


class Kind(IntEnum):
    """A stream's class, in the order of service."""

    LIVE = 0
    BACKLOG = 1


@dataclass
class _Taker:
    kind: Kind
    tag: float  # bytes served, counted from the kind's clock when it began waiting
    # Its waiting parts, ticket -> grants still to take, in the order they asked.
    parts: dict[int, int] = field(default_factory=dict)
    order: int = 0  # when it began waiting: ties go to the earlier


@dataclass
class FairQueue:
    """Who gets the next grant among the streams waiting for one. A stream may wait
    with several parts at once (one `wait` each); it counts once, and its grants go to
    its parts in the order they asked: a part's bytes are all granted before the next
    part of its stream takes any. Spread over all of them instead, the granted bytes
    would sit in parts still short of their last grant, unsent, while the bucket
    counts them as gone: the link would carry less than the limit."""

    _takers: dict[str, _Taker] = field(default_factory=dict)
    # Per kind, the tag of the last stream served: where a stream starting to wait
    # begins, so it neither jumps the queue nor waits behind all the served bytes
    # of those that have been waiting long.
    _clock: dict[Kind, float] = field(default_factory=dict)
    # Where a stream that stopped waiting left off, while that is ahead of its kind's
    # clock: a stream that sends one part at a time stops waiting after every part
    # and must not come back at the clock, ahead of those that kept waiting.
    _finish: dict[str, tuple[Kind, float]] = field(default_factory=dict)
    _owner: dict[int, str] = field(default_factory=dict)  # ticket -> stream
    _arrivals: int = 0
    _tickets: int = 0

    def wait(self, key: str, kind: Kind, grants: int = 1) -> int:
        """A part of `key`'s waiting for `grants` grants; its ticket (see `turn`)."""
        taker = self._takers.get(key)
        if taker is None:
            self._arrivals += 1
            tag = self._clock.get(kind, 0.0) - CREDIT_BYTES
            left = self._finish.pop(key, None)
            if left is not None and left[0] == kind:
                tag = max(tag, left[1])
            taker = _Taker(kind, tag, order=self._arrivals)
            self._takers[key] = taker
        elif kind < taker.kind:  # it became live while waiting: it is served as such
            taker.kind = kind
            taker.tag = max(taker.tag, self._clock.get(kind, 0.0) - CREDIT_BYTES)
        self._tickets += 1
        taker.parts[self._tickets] = max(1, grants)
        self._owner[self._tickets] = key
        return self._tickets

    def cancel(self, ticket: int) -> None:
        """A part gives up the grants it has not taken (it failed or was cancelled)."""
        key = self._owner.pop(ticket, None)
        taker = self._takers.get(key) if key is not None else None
        if taker is None:
            return
        taker.parts.pop(ticket, None)
        self._leave(key, taker)

    def next(self) -> str | None:
        """The stream whose turn it is: live first, then the least served."""
        if not self._takers:
            return None
        return min(self._takers, key=lambda k: self._rank(self._takers[k]))

    def turn(self) -> int | None:
        """The ticket of the part whose turn it is: the first of `next()`'s parts."""
        key = self.next()
        return None if key is None else next(iter(self._takers[key].parts))

    def granted(self, key: str, size: int) -> None:
        """`key` got `size` bytes: one grant of its first part."""
        taker = self._takers[key]
        self._clock[taker.kind] = clock = taker.tag
        taker.tag += size
        ticket = next(iter(taker.parts))
        taker.parts[ticket] -= 1
        if taker.parts[ticket] <= 0:
            del taker.parts[ticket]
            del self._owner[ticket]
        self._leave(key, taker)
        for other, (kind, tag) in list(self._finish.items()):
            if kind == taker.kind and tag <= clock - CREDIT_BYTES:
                del self._finish[other]  # the clock says as much now

    def waiting(self) -> dict[str, Kind]:
        return {k: t.kind for k, t in self._takers.items()}

    @staticmethod
    def _rank(taker: _Taker) -> tuple[int, float, int]:
        return (taker.kind, taker.tag, taker.order)

    def _leave(self, key: str, taker: _Taker) -> None:
        if not taker.parts:  # not waiting any more: no credit kept (see the module)
            del self._takers[key]
            self._finish[key] = (taker.kind, taker.tag)
