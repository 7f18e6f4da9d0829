"""One look shared by every asker within its window: concurrent askers wait for the
look under way, a later asker looks again, a failed look is not kept."""

from __future__ import annotations

import threading
import time

import pytest

from stream_ingest.shared_look import SharedLook


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_askers_at_once_share_one_look() -> None:
    started = threading.Event()

    def look() -> int:
        started.set()
        time.sleep(0.05)  # the others arrive while it is under way
        return 7

    shared = SharedLook(look, window=10.0)
    barrier = threading.Barrier(20)
    answers: list[int] = []

    def ask() -> None:
        barrier.wait()
        answers.append(shared.get())

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert answers == [7] * 20
    assert shared.looks == 1


def test_a_look_serves_askers_within_its_window_only() -> None:
    clock, results = Clock(), iter(["first", "second", "third"])
    shared = SharedLook(lambda: next(results), window=0.1, clock=clock)
    assert shared.get() == "first"
    clock.now += 0.1  # at the window's edge: still the same look
    assert shared.get() == "first"
    clock.now += 0.01  # past it: a look of its own
    assert shared.get() == "second"
    assert shared.looks == 2


def test_an_asker_that_waited_for_an_older_look_looks_again() -> None:
    """A look that began before the window of an asker is not served to it, even if
    it finished after the asker arrived."""
    clock = Clock()
    calls = []

    def look() -> int:
        calls.append(clock.now)
        clock.now += 1.0  # a slow look: it ends a second after it began
        return len(calls)

    shared = SharedLook(look, window=0.1, clock=clock)
    assert shared.get() == 1
    assert shared.get() == 2  # asked at 101.0, the last look began at 100.0
    assert calls == [100.0, 101.0]


def test_a_failed_look_is_not_kept() -> None:
    clock, outcomes = Clock(), iter([OSError("busy"), "ok"])

    def look() -> str:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    shared = SharedLook(look, window=10.0, clock=clock)
    with pytest.raises(OSError, match="busy"):
        shared.get()
    assert shared.get() == "ok"
    assert shared.looks == 1
