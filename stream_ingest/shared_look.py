"""One look serves many askers: a costly read of the machine's state (every process's
open files) taken once for every thread that asks within a short window, instead of
once per thread.

Each asker gets a result whose look began at most `window` seconds before it asked:
as fresh as if it had looked itself, give or take the window. Askers that arrive
while a look is under way wait for it and take it, so N streams asking at once cost
one look, not N. No I/O here: the look and the clock are given.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SharedLook(Generic[T]):
    """`get()` -> `look()`'s result, shared by every `get()` within `window` s of its
    start. A look that raises is not kept: the asker sees the error, the next asks
    again."""

    def __init__(
        self, look: Callable[[], T], window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._look, self.window, self._clock = look, window, clock
        self._lock = threading.Lock()
        self._began = float("-inf")
        self._result: T | None = None
        self.looks = 0  # how many looks were taken (what the sharing saves is visible)

    def get(self) -> T:
        asked = self._clock()
        with self._lock:  # a look under way: wait for it, then see if it is fresh enough
            if self._result is not None and self._began >= asked - self.window:
                return self._result
            began = self._clock()
            result = self._look()
            self._began, self._result = began, result
            self.looks += 1
            return result
