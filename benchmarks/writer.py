"""A recorder stand-in: grows a file at a steady rate through one open handle, and
at close writes the "closed" hint the way the sensor does on inotify CLOSE_WRITE."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from stream_ingest.flows.source import snapshot

MIB = 1024 * 1024
CHUNK = MIB
# Random bytes (incompressible, like video); cycled, since content does not matter
# to either uploader and generating gigabytes of randomness would dominate the run.
_POOL = os.urandom(16 * MIB)


def identity_of(path: str) -> str:
    """The identity the sensor and the flow give the file (dev:ino:birth)."""
    return str(snapshot(path).identity)


def fill(path: str, size: int) -> None:
    """Write a finished file of `size` bytes as fast as possible."""
    with open(path, "wb") as fh:
        _write(fh, size, rate=None)


def _write(fh: object, size: int, rate: float | None) -> None:
    start = time.monotonic()
    written = 0
    view = memoryview(_POOL)
    while written < size:
        n = min(CHUNK, size - written)
        pos = written % len(_POOL)  # the pool is a whole number of chunks
        fh.write(view[pos : pos + n])  # type: ignore[attr-defined]
        fh.flush()  # type: ignore[attr-defined]  # recorders flush: the uploader sees bytes at once
        written += n
        if rate:
            ahead = start + written / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)


class SteadyWriter(threading.Thread):
    """Writes `size` bytes at `rate` bytes/s, closes, then calls `on_close(path,
    identity)` (`store.hints.note_closed`). `closed_at` is time.monotonic() right
    after close(), before the hint: the latency clock starts at the close itself."""

    def __init__(
        self,
        path: str,
        size: int,
        rate: float,
        on_close: Callable[[str, str], None] | None = None,
    ) -> None:
        super().__init__(name=f"writer-{os.path.basename(path)}", daemon=True)
        self.path, self.size, self.rate, self.on_close = path, size, rate, on_close
        self.started_at = 0.0
        self.closed_at = 0.0
        self.closed_wall = 0.0  # time.time() at close, to compare with Redis timestamps
        self.error: BaseException | None = None
        self.ready = threading.Event()
        open(path, "wb").close()  # exists before the uploader starts, like a recording

    def run(self) -> None:
        try:
            with open(self.path, "r+b") as fh:
                self.started_at = time.monotonic()
                _write(fh, self.size, self.rate)
            self.closed_at, self.closed_wall = time.monotonic(), time.time()
            if self.on_close:
                self.on_close(self.path, identity_of(self.path))
        except BaseException as exc:  # reported by the benchmark, not lost in a thread
            self.error = exc
        finally:
            self.ready.set()

    @property
    def achieved_rate(self) -> float:
        return self.size / max(self.closed_at - self.started_at, 1e-9)


if __name__ == "__main__":  # a recorder process of its own: PATH SIZE RATE (bytes, bytes/s)
    import sys

    CHUNK = 64 * 1024  # a recorder's small, steady writes (the pool holds whole chunks)
    with open(sys.argv[1], "wb") as out:
        _write(out, int(sys.argv[2]), float(sys.argv[3]))
