"""flows/buffers.py: the process holds at most N part buffers, whatever the number
of streams asking, and reuses them."""

from __future__ import annotations

import threading
import time

from flows.buffers import PartBuffers


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
