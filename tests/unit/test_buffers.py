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
