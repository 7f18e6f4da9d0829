"""Part buffers over a long recording: what a process holds as the part size grows.

No S3, no file: the part plan of stream_ingest/parts.py is driven through a pool of
stream_ingest/flows/buffers.py the way the upload path borrows. A stream that has fallen behind
keeps `max_parts_in_flight` parts in flight, each of `part_size(k)` bytes, borrowed
and returned by its own upload threads (each part's thread returns its buffer as it
borrows the part `max_parts_in_flight` later); time is simulated, the recording
written at `--rate` MB/s, so hours of recording take seconds. Then a new stream
starts from part 1 in the same process, then the streams go quiet. The buffers are
not filled: making one touches all of its pages, which a read would only write
again.

One JSON line: the peak and settled bytes held, against `max_parts_in_flight` x the
part size in use, and the process's RSS and PSS. Run it alone with
`uv run python -m benchmarks.buffers`, or with the others (`--only buffers`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager

from benchmarks.common import emit
from stream_ingest.flows.buffers import IDLE_SECONDS, PARTS_IN_MEMORY, PartBuffers
from stream_ingest.options import IngestOptions
from stream_ingest.parts import MAX_PART, MAX_PARTS, MIB, MIN_PART, part_offset, part_size

MB = 1_000_000
NEW_STREAM_SECONDS = 2 * IDLE_SECONDS  # long enough for the old stream's buffers to go


class SimulatedTime:
    """The pool's clock and timer: time moves only by `advance`, which runs the
    timers that have come due (as their threads would have)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, Callable[[], None]]] = []

    def clock(self) -> float:
        return self.now

    def schedule(self, seconds: float, action: Callable[[], None]) -> None:
        self.timers.append((self.now + seconds, action))

    def advance_to(self, when: float) -> None:
        self.now = max(self.now, when)
        while due := sorted(t for t in self.timers if t[0] <= self.now):
            self.timers.remove(due[0])
            due[0][1]()


def _proc_kib(path: str, field: str) -> int:
    with open(path) as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field))


def memory_mib() -> tuple[float, float]:
    """This process's RSS and PSS, in MiB."""
    rss = _proc_kib("/proc/self/status", "VmRSS:")
    pss = _proc_kib("/proc/self/smaps_rollup", "Pss:")
    return round(rss / 1024, 1), round(pss / 1024, 1)


class Recording:
    """One stream's upload threads over its part plan, `window` parts in flight."""

    def __init__(self, pool: PartBuffers, window: int, base: int, scale: int) -> None:
        self.pool, self.window, self.base, self.scale = pool, window, base, scale
        self.threads = [ThreadPoolExecutor(1, f"upload-{i}") for i in range(window)]
        self.lent: dict[int, AbstractContextManager[bytearray]] = {}

    def size(self, k: int) -> int:
        return part_size(k, self.base) // self.scale

    def written_at(self, k: int, rate: float) -> float:
        """Seconds from the recording's start to when part k is all in the file (of
        its full size: `scale` saves memory, not time)."""
        return (part_offset(k, self.base) + part_size(k, self.base)) / rate

    def send(self, k: int) -> None:
        """Part k borrowed on its thread, which first returns its previous part's."""
        self.threads[k % self.window].submit(self._step, k).result()

    def _step(self, k: int) -> None:
        previous = self.lent.pop(k - self.window, None)
        if previous is not None:
            previous.__exit__(None, None, None)
        borrow = self.pool.borrow(self.size(k))
        borrow.__enter__()
        self.lent[k] = borrow

    def end(self) -> None:
        for k in sorted(self.lent):
            self.threads[k % self.window].submit(self.lent.pop(k).__exit__, None, None, None)
        for thread in self.threads:
            thread.shutdown(wait=True)


class Watch:
    """The pool's held bytes after every borrow, against `window` x the part size in
    use, and the process's memory now and then (PSS walks every page: not per part)."""

    def __init__(self, pool: PartBuffers, window: int) -> None:
        self.pool, self.window = pool, window
        self.peak_held = self.peak_rss = self.peak_pss = 0.0
        self.peak_over_bound = 0.0
        self.seen = 0

    def __call__(self, in_use: int) -> None:
        held = self.pool.held().bytes
        self.peak_held = max(self.peak_held, held / MIB)
        self.peak_over_bound = max(self.peak_over_bound, held / (self.window * in_use))
        self.seen += 1
        if self.seen % 10 == 1:
            rss, pss = memory_mib()
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)


def run(parts: int, base_mib: int, scale: int, rate_mb_s: float) -> dict[str, object]:
    window = IngestOptions().max_parts_in_flight
    sim = SimulatedTime()
    pool = PartBuffers(PARTS_IN_MEMORY, clock=sim.clock, schedule=sim.schedule)
    pool.at_least(window)  # as stream_ingest/flows/ingest.py does for each stream
    rate = rate_mb_s * MB
    before = memory_mib()

    old, watch = Recording(pool, window, base_mib * MIB, scale), Watch(pool, window)
    for k in range(1, parts + 1):
        sim.advance_to(old.written_at(k, rate))
        old.send(k)
        watch(old.size(k))
    largest = old.size(parts)
    old.end()
    ended, held_at_end = sim.now, pool.held().bytes

    new, small = Recording(pool, window, base_mib * MIB, scale), Watch(pool, window)
    old_gone_after = None
    k = 1
    while k == 1 or (new.written_at(k, rate) <= NEW_STREAM_SECONDS and k <= MAX_PARTS):
        sim.advance_to(ended + new.written_at(k, rate))
        new.send(k)
        small(new.size(k))
        if old_gone_after is None and pool.held().bytes <= window * new.size(k):
            old_gone_after = sim.now - ended
        k += 1
    new.end()
    held_new, memory_new = pool.held().bytes, memory_mib()

    sim.advance_to(sim.now + IDLE_SECONDS)  # quiet: only the pool's timer runs
    quiet, memory_quiet = pool.held(), memory_mib()
    return {
        "bench": "buffers",
        "parts": parts,
        "base_part_mib": base_mib,
        "scale": scale,
        "recording_rate_mb_s": rate_mb_s,
        "recording_hours_simulated": round(ended / 3600, 1),
        "max_parts_in_flight": window,
        "pool_limit": pool.limit,
        "idle_seconds": IDLE_SECONDS,
        "largest_part_mib": round(largest / MIB, 3),
        "bound_mib": round(window * largest / MIB, 1),
        "peak_held_mib": round(watch.peak_held, 1),
        "peak_held_over_bound_in_use": round(watch.peak_over_bound, 3),
        "held_at_end_mib": round(held_at_end / MIB, 1),
        "new_stream_parts": k - 1,
        "new_stream_bound_mib": round(window * new.size(1) / MIB, 1),
        "new_stream_peak_held_mib": round(small.peak_held, 1),
        "old_buffers_held_s": None if old_gone_after is None else round(old_gone_after, 1),
        "held_after_new_stream_mib": round(held_new / MIB, 1),
        "settled_held_mib": round(quiet.bytes / MIB, 1),
        "buffers_made": quiet.made,
        "buffers_dropped": quiet.dropped,
        "rss_mib": {
            "before": before[0],
            "peak": max(watch.peak_rss, small.peak_rss),
            "after_new_stream": memory_new[0],
            "quiet": memory_quiet[0],
        },
        "pss_mib": {
            "before": before[1],
            "peak": max(watch.peak_pss, small.peak_pss),
            "after_new_stream": memory_new[1],
            "quiet": memory_quiet[1],
        },
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
    }


def in_child() -> dict[str, object]:
    """`run` with its defaults in a process of its own, so that RSS and PSS are its
    own (python -m benchmarks runs it beside the servers' clients)."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.buffers"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.buffers", description=__doc__)
    parser.add_argument("--parts", type=int, default=3000, help="the long recording's parts")
    parser.add_argument(
        "--base-mib", type=int, default=IngestOptions().part_size_mib, help="base part size"
    )
    parser.add_argument("--scale", type=int, default=1, help="divide every part size by this")
    parser.add_argument("--rate", type=float, default=5.0, help="recording rate, MB/s")
    args = parser.parse_args(argv)
    if not 1 <= args.parts <= MAX_PARTS:
        parser.error(f"--parts must be 1..{MAX_PARTS}")
    if not MIN_PART <= args.base_mib * MIB <= MAX_PART:
        parser.error(f"--base-mib must be {MIN_PART // MIB}..{MAX_PART // MIB} (S3's part sizes)")
    if args.scale < 1 or args.rate <= 0:
        parser.error("--scale must be at least 1 and --rate above 0")
    emit(run(args.parts, args.base_mib, args.scale, args.rate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
