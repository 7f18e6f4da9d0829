"""stream_ingest/flows/buffers.py: the process holds at most N part buffers, whatever the number
of streams asking, and reuses them while parts of their size keep coming; bigger
ones than the parts in flight, and ones not borrowed for a while, are let go."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager

from stream_ingest.flows.buffers import PartBuffers, fits

IDLE = 30.0
KIB = 1024


class Quiet:
    """A fake clock and timer: time moves only by `advance`, which fires the timers
    that have come due (as a thread would have)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, Callable[[], None]]] = []

    def clock(self) -> float:
        return self.now

    def schedule(self, seconds: float, action: Callable[[], None]) -> None:
        self.timers.append((self.now + seconds, action))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        while due := [t for t in self.timers if t[0] <= self.now]:
            self.timers.remove(due[0])
            due[0][1]()

    def pool(self, limit: int) -> PartBuffers:
        return PartBuffers(limit, idle_seconds=IDLE, clock=self.clock, schedule=self.schedule)


def stream(
    pool: PartBuffers,
    quiet: Quiet,
    sizes: Iterable[int],
    window: int,
    each: Callable[[int, bytearray], None] = lambda size, buf: None,
) -> None:
    """One part a second, `window` in flight (the oldest returned as the next is
    borrowed), as a stream that has fallen behind sends them; `each(size, buf)`
    after every borrow."""
    lent: deque[AbstractContextManager[bytearray]] = deque()
    for size in sizes:
        quiet.advance(1)
        if len(lent) == window:
            lent.popleft().__exit__(None, None, None)
        borrow = pool.borrow(size)
        each(size, borrow.__enter__())
        lent.append(borrow)
    while lent:
        lent.popleft().__exit__(None, None, None)


def growing(*sizes: int, parts_each: int = 10) -> list[int]:
    """A recording's part sizes: `parts_each` parts of each size (stream_ingest/parts.py
    doubles the size every 900 parts)."""
    return [size for size in sizes for _ in range(parts_each)]


def test_no_more_than_count_buffers_are_lent_at_once_and_returned_ones_are_reused():
    buffers = PartBuffers(3)
    lock = threading.Lock()
    lent: set[int] = set()
    peak, seen = 0, set()

    def stream() -> None:
        nonlocal peak
        for _ in range(5):
            with buffers.borrow(1024) as buf:
                assert len(buf) >= 1024
                with lock:
                    lent.add(id(buf))
                    seen.add(id(buf))
                    peak = max(peak, len(lent))
                time.sleep(0.005)
                with lock:
                    lent.discard(id(buf))

    threads = [threading.Thread(target=stream) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert peak == 3  # 12 streams asked at once; 3 were lent
    assert len(seen) <= 3  # 60 borrows, 3 buffers


def test_a_larger_part_gets_a_buffer_big_enough_and_an_error_returns_the_buffer():
    buffers = PartBuffers(1)
    try:
        with buffers.borrow(10):
            raise ValueError("read failed")
    except ValueError:
        pass
    with buffers.borrow(100) as buf:  # the only slot was returned despite the error
        assert len(buf) >= 100


def test_a_stream_configured_for_more_parts_in_flight_raises_the_bound_to_its_own():
    buffers = PartBuffers(2)
    buffers.at_least(1)  # never lowered
    assert buffers.limit == 2
    held = threading.Barrier(4, timeout=10)
    done = threading.Event()

    def part() -> None:
        with buffers.borrow(16):
            held.wait()  # all four lent at once, or the barrier breaks
            done.wait(10)

    threads = [threading.Thread(target=part) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    assert held.n_waiting == 2  # the bound of 2 holds the other two back
    buffers.at_least(4)  # as a stream with max_parts_in_flight=4 does
    time.sleep(0.2)
    assert not held.broken and held.n_waiting == 0  # all four met
    done.set()
    for t in threads:
        t.join(10)


def test_a_part_that_fills_its_buffer_is_sent_from_it_and_a_short_one_as_a_copy(
    tmp_path, monkeypatch
):
    """boto3 takes the pool's bytearray itself for a full part (the part is held once,
    not twice); a part shorter than its buffer goes as bytes of its own length."""
    from types import SimpleNamespace

    from stream_ingest.blocks.bucket import UploadedPart
    from stream_ingest.flows import upload
    from stream_ingest.flows.digest import FileSha256
    from stream_ingest.flows.runtime import Pace
    from stream_ingest.flows.source import Owned
    from stream_ingest.lag import Stored
    from stream_ingest.records import StreamRecord

    data = bytes(range(256)) * 64  # 16 KiB: a full part of 8 KiB and a short one
    path = tmp_path / "rec.mkv"
    path.write_bytes(data[: 8192 + 5000])
    sent: list[tuple[object, bytes]] = []

    def upload_part(_key: str, _upload: str, number: int, body: object) -> UploadedPart:
        sent.append((body, bytes(body)))  # type: ignore[call-overload]
        return UploadedPart(number, f'"etag-{number}"', len(body), "")  # type: ignore[arg-type]

    ctx = SimpleNamespace(
        path=str(path),
        owned=Owned(str(tmp_path)),
        record=StreamRecord(stream_id="s", s3_key="k", s3_upload_id="u"),
        prior={},
        token="t",
        sha256=FileSha256(),
        pace=Pace(),
        stored=Stored(),
        bucket=SimpleNamespace(upload_part=upload_part),
        store=SimpleNamespace(parts=SimpleNamespace(record=lambda *_args: None)),
        config=SimpleNamespace(lease_ttl_seconds=30),
    )
    # One buffer: the short part borrows the full part's.
    monkeypatch.setattr(upload, "BUFFERS", PartBuffers(1))
    upload._read_and_put(ctx, 1, 0, 8192)  # type: ignore[arg-type]
    upload._read_and_put(ctx, 2, 8192, 5000)  # type: ignore[arg-type]
    (full, full_bytes), (short, short_bytes) = sent
    assert isinstance(full, bytearray) and len(full) == 8192  # the buffer itself
    assert isinstance(short, bytes) and len(short) == 5000  # a copy of the part only
    assert full_bytes == data[:8192] and short_bytes == data[8192 : 8192 + 5000]
    assert ctx.sha256.covered == 8192 + 5000  # both fed the file's digest, in order
    assert ctx.stored.figures() == (8192 + 5000, 8192 + 5000)  # both count as in S3 (lag)


def test_a_stream_holds_its_window_of_its_part_size_and_the_pool_its_bound_of_the_size_in_use():
    """As the part size doubles, a stream holds at most its window x its part size (its
    old size's buffers make way for the new ones); the pool holds at most its bound x
    the largest part borrowed in the last IDLE seconds, also once a new stream starts
    small beside the grown one's buffers."""
    quiet = Quiet()
    pool = quiet.pool(8)
    borrowed: list[tuple[float, int]] = []

    def within_window(size: int, buf: bytearray) -> None:
        borrowed.append((quiet.now, size))
        assert pool.held().bytes <= 4 * size, (quiet.now, pool.held())

    def within_bound(size: int, buf: bytearray) -> None:
        borrowed.append((quiet.now, size))
        lately = max(s for t, s in borrowed if t > quiet.now - IDLE)
        assert pool.held().bytes <= 8 * lately, (quiet.now, pool.held())

    stream(pool, quiet, growing(1 * KIB, 2 * KIB, 4 * KIB, 8 * KIB), 4, within_window)
    held = pool.held()
    assert held.bytes == 4 * 8 * KIB  # the last size's window, kept for reuse
    assert (held.made, held.dropped) == (16, 12)  # a window per size, for 40 parts
    stream(pool, quiet, [1 * KIB] * 60, 4, within_bound)  # a new stream: a minute of parts
    assert pool.held().bytes == 4 * 1 * KIB


def test_a_new_stream_after_a_grown_one_gets_buffers_of_its_own_size_and_the_big_ones_go():
    """A new stream's small parts never take the old stream's big buffers (each is sent
    from its buffer itself, not as a copy); the big ones go once not borrowed for
    IDLE seconds, while the new stream keeps the pool busy."""
    quiet = Quiet()
    pool = quiet.pool(8)  # room for both streams' windows: only time lets the big go
    stream(pool, quiet, growing(4 * KIB, 8 * KIB), 4)
    sizes: set[int] = set()
    stream(pool, quiet, [1 * KIB] * 20, 4, lambda size, buf: sizes.add(len(buf)))
    assert sizes == {1 * KIB}
    assert pool.held().free_bytes == 4 * 8 * KIB + 4 * 1 * KIB  # 20 s: not yet idle
    stream(pool, quiet, [1 * KIB] * 20, 4)
    held = pool.held()
    assert (held.free, held.free_bytes, held.lent) == (4, 4 * KIB, 0)


def test_a_part_takes_a_buffer_of_its_size_or_for_a_short_part_one_under_twice_its_size():
    quiet = Quiet()
    pool = quiet.pool(3)
    with pool.borrow(8 * KIB), pool.borrow(4 * KIB):
        pass
    with pool.borrow(4 * KIB) as buf:
        assert len(buf) == 4 * KIB  # the 8 KiB one, last returned, is twice too big
    with pool.borrow(5000) as buf:
        assert len(buf) == 8 * KIB  # a short last part: the 8 KiB one, sent as a copy
    with pool.borrow(2 * KIB) as buf:
        assert len(buf) == 2 * KIB  # the 4 KiB one is twice its size: one of its own
    assert pool.held().free_bytes == 8 * KIB + 4 * KIB + 2 * KIB
    with pool.borrow(1 * KIB):  # a fourth size: the least recently used (4 KiB) makes way
        pass
    held = pool.held()
    assert (held.free, held.free_bytes) == (3, 8 * KIB + 2 * KIB + 1 * KIB)


def test_a_buffer_fits_its_own_size_or_a_short_part_of_more_than_half_of_it():
    assert fits(8 * KIB, 8 * KIB) and fits(8 * KIB, 4 * KIB + 1) and fits(0, 0)
    assert not fits(8 * KIB, 4 * KIB)  # half: a buffer of its own
    assert not fits(8 * KIB, 8 * KIB + 1) and not fits(8 * KIB, 0)


def test_after_a_burst_one_part_at_a_time_keeps_one_buffer():
    """The last returned buffer is lent first: the burst's others are not borrowed
    again and go after IDLE seconds, though the pool never went quiet."""
    quiet = Quiet()
    pool = quiet.pool(8)
    stream(pool, quiet, [KIB] * 8, 8)  # eight at once
    assert pool.held().free == 8
    stream(pool, quiet, [KIB] * 40, 1)
    held = pool.held()
    assert (held.free, held.free_bytes) == (1, KIB)


def test_a_quiet_pool_releases_its_buffers_on_its_timer():
    quiet = Quiet()
    pool = quiet.pool(4)
    stream(pool, quiet, [8 * KIB] * 3, 3)  # three at once, returned at t=3
    quiet.advance(20)
    with pool.borrow(8 * KIB):  # one borrowed again, returned at t=23
        pass
    assert [due for due, _ in quiet.timers] == [3 + IDLE]  # one timer, however many returns
    quiet.advance(3 + IDLE - quiet.now - 0.5)
    assert pool.held().free == 3  # not yet
    quiet.advance(0.5)  # t=33: the two not borrowed since t=3 go; a timer for the third
    assert pool.held().free_bytes == 8 * KIB
    assert [due for due, _ in quiet.timers] == [23 + IDLE]
    quiet.advance(IDLE)
    assert pool.held().bytes == 0 and quiet.timers == []  # nothing left to watch
