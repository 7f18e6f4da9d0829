"""Part-sized buffers shared by every stream of a process.

Each stream bounds its own parts in flight (`max_parts_in_flight`), but on the warm
worker fifty streams share one process: when they all fall behind and end together,
fifty finalizes with 8 parts each in memory took the worker to 2.1 GiB (PSS) where
the same recordings had needed 1.4. A part's bytes are held only while a buffer is
borrowed from here, so the process holds at most PARTS_IN_MEMORY of them (plus a
copy for a part smaller than its buffer), whatever the number of streams. A single
stream (and every stream on the process worker) never waits: the bound is 4x the
default window, and a stream configured for more parts in flight raises it to its
own (`at_least`).

A returned buffer is kept for the next part of its size, but the part size doubles
every 900 parts (stream_ingest/parts.py), so a multi-day recording's parts reach
64 MiB and more: a pool that kept every buffer it made would hold 32 of the largest
size for the life of the process. So what is kept follows what is borrowed now:

- a buffer is lent only for a part of its size, or a short last part of more than
  half of it: a new stream's 8 MiB parts never pin an old stream's 64 MiB buffers;
- a part that finds no buffer of its size takes the place of the least recently
  returned smaller one (a growing stream's old size goes as its new one comes), and
  of the least recently returned of any size once the pool is at its bound;
- a buffer not borrowed again for IDLE_SECONDS is released, by the next borrow or
  return, or by a timer when the streams are quiet; the last returned is lent
  first, so a burst's extra buffers are the ones that age out.

Held bytes thus follow the parts borrowed in the last IDLE_SECONDS: at most the
bound x the largest of them, and a stream's lent buffers at most its window x its
part size (a short part's buffer may be up to twice its length). `held()` says what
the pool holds (benchmarks/buffers.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

PARTS_IN_MEMORY = 32
IDLE_SECONDS = 30.0
# A quiet pool's timer waits at least this share of IDLE_SECONDS between two looks,
# so buffers returned a moment apart do not start a timer each.
TIMER_STEP = 0.1

Schedule = Callable[[float, Callable[[], None]], Any]

# Where a read lands decides what the kernel's copy costs. glibc maps a block of its
# own for a large malloc and starts it 16 bytes past a page, so an 8 MiB bytearray
# starts there (a smaller one wherever the heap has room), and reads into such a
# buffer took 0.38 CPU-s/GiB here (AMD EPYC) against 0.067 into one starting on a
# 64-byte boundary (benchmarks/reads.py). Every buffer the file is read into starts
# on one.
ALIGN = 64


def aligned(size: int) -> bytearray:
    """A zeroed bytearray of `size` bytes whose data starts on an ALIGN boundary
    (for `size` >= ALIGN; a smaller one may not, and needs none)."""
    buf = bytearray(size + ALIGN)
    # CPython deletes a bytearray's head by moving its start, and a tail of less than
    # half by shortening it: neither moves the bytes, so the start stays aligned.
    del buf[: -address(buf) % ALIGN]
    del buf[size:]
    return buf


def address(buf: bytearray) -> int:
    """Where `buf`'s bytes start in memory."""
    return ctypes.addressof(ctypes.c_char.from_buffer(buf))


def fits(capacity: int, size: int) -> bool:
    """Whether a buffer of `capacity` bytes may carry a part of `size`: its own size,
    or a short part of more than half of it (then sent as a copy of its length)."""
    return capacity == size or size < capacity < 2 * size


class Shelf:
    """The free buffers of a pool, oldest returned first, and which one a part takes.
    Pure: no lock (the pool holds its own) and no clock (`now` is passed in)."""

    def __init__(self, idle_seconds: float) -> None:
        self.idle_seconds = idle_seconds
        self.dropped = 0  # buffers let go so far
        self._free: list[tuple[float, bytearray]] = []

    def __len__(self) -> int:
        return len(self._free)

    @property
    def bytes(self) -> int:
        return sum(len(buf) for _, buf in self._free)

    def take(self, size: int, now: float, room: int) -> bytearray | None:
        """The smallest free buffer that fits a part of `size` (of those, the last
        returned), or None: then the caller makes one, and the shelf has made its
        place by dropping the oldest smaller buffer, and the oldest of any size
        beyond `room` (how many free buffers the pool's bound leaves)."""
        self.expire(now)
        best = -1
        for i in range(len(self._free) - 1, -1, -1):
            capacity = len(self._free[i][1])
            if fits(capacity, size) and (best < 0 or capacity < len(self._free[best][1])):
                best = i
        if best >= 0:
            return self._free.pop(best)[1]
        smaller = next((i for i, (_, buf) in enumerate(self._free) if len(buf) < size), -1)
        if smaller >= 0:
            self._drop(smaller, smaller + 1)
        if len(self._free) > room:
            self._drop(0, len(self._free) - room)
        return None

    def put(self, buf: bytearray, now: float) -> None:
        """A buffer returned at `now`."""
        self.expire(now)
        self._free.append((now, buf))

    def expire(self, now: float) -> None:
        """Drop the buffers not borrowed again for `idle_seconds`."""
        old = 0
        while old < len(self._free) and self._free[old][0] + self.idle_seconds <= now:
            old += 1
        if old:
            self._drop(0, old)

    def next_expiry(self) -> float | None:
        """When the oldest free buffer expires; None when there is none."""
        return self._free[0][0] + self.idle_seconds if self._free else None

    def _drop(self, start: int, stop: int) -> None:
        self.dropped += stop - start
        del self._free[start:stop]


@dataclass(frozen=True)
class Held:
    """What a pool holds: the buffers lent, and the free ones kept for reuse; and
    how many it has made and let go so far (few, for many parts, when reuse works)."""

    lent: int
    lent_bytes: int
    free: int
    free_bytes: int
    made: int
    dropped: int

    @property
    def bytes(self) -> int:
        return self.lent_bytes + self.free_bytes


def _timer(seconds: float, action: Callable[[], None]) -> None:
    timer = threading.Timer(seconds, action)
    timer.name, timer.daemon = "part-buffers-release", True
    timer.start()


class PartBuffers:
    """At most `limit` buffers lent at once; a returned buffer is lent again while
    parts of its size keep coming (see the module's docstring).

    Args:
        limit: buffers lent at once; more borrowers wait.
        idle_seconds: a free buffer not borrowed again for this long is released.
        clock: monotonic seconds (tests pass a fake one).
        schedule: `schedule(seconds, action)` runs `action` once, later, on a thread
            of its own (tests pass one they fire themselves).
    """

    def __init__(
        self,
        limit: int,
        idle_seconds: float = IDLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        schedule: Schedule = _timer,
    ) -> None:
        self._limit = limit
        self._lent = 0
        self._lent_bytes = 0
        self._turn = threading.Condition()
        self._shelf = Shelf(idle_seconds)
        self._clock = clock
        self._schedule = schedule
        self._armed = False
        self._made = 0

    @property
    def limit(self) -> int:
        return self._limit

    def at_least(self, limit: int) -> None:
        """Raise the bound to `limit` (never lowers it): one stream's own window."""
        with self._turn:
            if limit > self._limit:
                self._limit = limit
                self._turn.notify_all()

    @contextlib.contextmanager
    def borrow(self, size: int) -> Iterator[bytearray]:
        """A buffer of at least `size` bytes (exactly `size` unless a short part
        fits a free one), waiting while `limit` are lent."""
        with self._turn:
            self._turn.wait_for(lambda: self._lent < self._limit)
            self._lent += 1
            buf = self._shelf.take(size, self._clock(), self._limit - self._lent)
            if buf is not None:
                self._lent_bytes += len(buf)
        try:
            if buf is None:
                buf = aligned(size)  # outside the lock: zeroing 64 MiB takes a while
                with self._turn:
                    self._lent_bytes += size
                    self._made += 1
            yield buf
        finally:
            with self._turn:
                self._lent -= 1
                if buf is not None:
                    self._lent_bytes -= len(buf)
                    self._shelf.put(buf, self._clock())
                    self._arm()
                self._turn.notify()

    def held(self) -> Held:
        """What the pool holds now."""
        with self._turn:
            shelf = self._shelf
            return Held(
                self._lent, self._lent_bytes, len(shelf), shelf.bytes, self._made, shelf.dropped
            )

    def _on_timer(self) -> None:
        """Release the free buffers not borrowed for `idle_seconds` (borrows and
        returns do it too, but a quiet pool has none)."""
        with self._turn:
            self._armed = False
            self._shelf.expire(self._clock())
            self._arm()

    def _arm(self) -> None:
        """Under the lock: a timer for the oldest free buffer, if none is set, so that a
        pool nobody borrows from any more still lets its buffers go."""
        due = self._shelf.next_expiry()
        if self._armed or due is None:
            return
        self._armed = True
        step = self._shelf.idle_seconds * TIMER_STEP
        self._schedule(max(due - self._clock(), step), self._on_timer)


BUFFERS = PartBuffers(PARTS_IN_MEMORY)
