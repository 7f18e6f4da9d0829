"""Lag, the recovery point of a live stream (pure): the bytes written to its file but
not yet in S3, and the age of the oldest of them, i.e. what would be lost, and since
when, if its host died now.

A running flow observes its file's size every poll and learns of each part S3 holds
(`Stored`); it records when the file was first seen holding each byte (`Sightings`), so
that the age of the oldest byte not in S3 (the first byte of the first missing part)
is a lookup. Every LAG_WRITE_EVERY_SECONDS it writes the figures to the stream's
record (records.py: `host`, `observed_bytes`, `observed_at_utc`, `behind_bytes`,
`behind_since_utc`, `upload_rate_bps`); readers (the CLI, the metrics) call `lag_of`.

`LagAlarm` turns the age into transitions: lagging once it stays above a threshold for
a grace period, caught up once it is back at or under the threshold.

Time is passed in as seconds since the epoch (wall clock: the record's timestamps are
read on other hosts).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import NamedTuple, Protocol

from stream_ingest.states import Status

# Not per part: a 5 MB/s camera sends a part every 1.7 s, and a write per part would
# double the stream's Redis traffic.
LAG_WRITE_EVERY_SECONDS = 10.0
# A running stream whose figures are older than this has no run writing them (its
# host or run is gone): its lag keeps growing, and `streams watch` says so.
STALE_AFTER_SECONDS = 3 * LAG_WRITE_EVERY_SECONDS
# Streams whose bytes are all where they will stay: no lag to speak of.
_SETTLED = frozenset({Status.COMPLETED, Status.SALVAGED, Status.ABORTED, Status.SKIPPED})


class Lag(NamedTuple):
    """Bytes of the file not in S3, and the age in seconds of the oldest of them."""

    bytes: int
    seconds: float


class LagFields(Protocol):
    """What `lag_of` reads of a stream record (records.StreamRecord)."""

    @property
    def status(self) -> Status: ...
    @property
    def behind_bytes(self) -> int: ...
    @property
    def behind_since_utc(self) -> str: ...


def lag_at(observed: int, stored: int, oldest_seen_at: float | None, now: float) -> Lag:
    """The lag of a file of `observed` bytes of which S3 holds `stored`, its oldest
    byte not in S3 first seen at `oldest_seen_at` (None: none is missing)."""
    behind = max(0, observed - stored)
    if behind == 0 or oldest_seen_at is None:
        return Lag(behind, 0.0)
    return Lag(behind, max(0.0, now - oldest_seen_at))


def lag_of(record: LagFields, now: datetime | float) -> Lag:
    """The lag of a stream as its record holds it, at `now` (a datetime, or seconds
    since the epoch). The bytes are those of the last write; the age keeps growing
    from when the oldest of them was first seen, whether or not a run is still
    writing (a host that died stops writing, and its bytes get no safer). Completed,
    salvaged, aborted and skipped streams have none."""
    if record.status in _SETTLED or record.behind_bytes <= 0:
        return Lag(0, 0.0)
    since = parse_utc(record.behind_since_utc)
    at = now.timestamp() if isinstance(now, datetime) else now
    return Lag(record.behind_bytes, 0.0 if since is None else max(0.0, at - since))


def parse_utc(text: str) -> float | None:
    """Seconds since the epoch of a record's ISO timestamp; None for "" or garbage."""
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def utc_text(at: float) -> str:
    """A record's ISO timestamp (as records.utc_now writes them) of epoch seconds."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")


class Sightings:
    """When the file was first seen holding each byte: the sizes it grew to, with the
    time each was first observed. A file only grows during a take (a shrink ends it)."""

    def __init__(self) -> None:
        self._sizes: list[int] = []
        self._times: list[float] = []

    def see(self, size: int, at: float) -> None:
        if not self._sizes or size > self._sizes[-1]:
            self._sizes.append(size)
            self._times.append(at)

    def first_holding(self, offset: int) -> float | None:
        """When the file was first seen holding byte `offset`; None if never."""
        i = bisect.bisect_right(self._sizes, offset)
        return self._times[i] if i < len(self._sizes) else None

    def forget_below(self, offset: int) -> None:
        """Drop what no byte at or past `offset` needs (those below are in S3)."""
        i = bisect.bisect_right(self._sizes, offset)
        del self._sizes[:i], self._times[:i]

    def __len__(self) -> int:
        return len(self._sizes)


class Stored:
    """The parts S3 holds for this run's upload: their total, and where the first
    missing byte is (the end of the parts that run on from byte 0). Upload threads add
    parts while the flow's loop reads: a lock keeps the two figures in step."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parts: dict[int, tuple[int, int]] = {}  # number -> (offset, size)
        self._ends: dict[int, int] = {}  # offset -> end
        self._total = 0
        self._hole = 0

    def reset(self, parts: Iterable[tuple[int, int, int]]) -> None:
        """Hold exactly `parts` (number, offset, size): the checkpoint's, at a start."""
        with self._lock:
            self._parts, self._ends, self._total, self._hole = {}, {}, 0, 0
            for number, offset, size in parts:
                self._add(number, offset, size)

    def add(self, number: int, offset: int, size: int) -> None:
        with self._lock:
            self._add(number, offset, size)

    def _add(self, number: int, offset: int, size: int) -> None:
        old = self._parts.get(number)
        if old is not None:  # sent again (changed bytes, or a retry)
            self._total -= old[1]
            self._ends.pop(old[0], None)
            if old != (offset, size):
                self._hole = 0  # recount the run of parts from byte 0
        self._parts[number] = (offset, size)
        self._ends[offset] = offset + size
        self._total += size
        while (end := self._ends.get(self._hole)) is not None and end > self._hole:
            self._hole = end

    def figures(self) -> tuple[int, int]:
        """(bytes held, offset of the first byte missing)."""
        with self._lock:
            return self._total, self._hole


class Transition(StrEnum):
    """The events a stream's lag emits (stream-ingest.stream.<value>)."""

    LAGGING = "lagging"
    CAUGHT_UP = "caught-up"


@dataclass
class LagAlarm:
    """Lagging once the lag stays above `threshold` seconds for `grace` seconds;
    caught up once it is at or under `threshold` again. A transition is reported once."""

    threshold: float
    grace: float
    lagging: bool = False
    over_since: float | None = None

    def step(self, lag_seconds: float, now: float) -> Transition | None:
        if lag_seconds <= self.threshold:
            self.over_since = None
            if self.lagging:
                self.lagging = False
                return Transition.CAUGHT_UP
            return None
        if self.over_since is None:
            self.over_since = now
        if not self.lagging and now - self.over_since >= self.grace:
            self.lagging = True
            return Transition.LAGGING
        return None


def rate(bytes_then: int, at_then: float, bytes_now: int, at_now: float) -> int:
    """Bytes per second between two counts of bytes uploaded (0 without time between)."""
    if at_now <= at_then:
        return 0
    return max(0, round((bytes_now - bytes_then) / (at_now - at_then)))


def human_bytes(n: int) -> str:
    """Decimal units, as network rates are: 0 B, 950 kB, 12.3 MB, 4.10 GB."""
    value, unit = float(n), "B"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            break
        value /= 1000
    if unit == "B":
        return f"{int(value)} B"
    return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"


def describe(lag: Lag) -> str:
    """One phrase for logs and the progress artifact."""
    if lag.bytes == 0:
        return "every byte in S3"
    return f"{human_bytes(lag.bytes)} not in S3, the oldest for {lag.seconds:.0f} s"
