"""Pieces the benchmarks share: the flow host process, waiting for an object,
the boto3 baseline, process-tree RSS sampling and the JSON line."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from typing import Any

from benchmarks.stack import Stack, cpu_seconds

MIB = 1024 * 1024
MB = 1_000_000


def log(message: str) -> None:
    """Progress goes to stderr; stdout carries only the JSON lines."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record, sort_keys=False), flush=True)


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


class HostProcess:
    """benchmarks.host in its own process (see there). `call` is blocking;
    `submit` returns a Future so the caller can drive a writer meanwhile."""

    def __init__(self, stack: Stack, api_url: str | None = None) -> None:
        self.log_path = os.path.join(stack.workdir, f"host-{time.time_ns()}.log")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.host"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={**os.environ, **stack.env(api_url), "PYTHONPATH": os.getcwd()},
            text=True,
        )
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def call(self, cmd: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            assert self.proc.stdin and self.proc.stdout
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"flow host died; see {self.log_path}")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(f"flow host: {reply.get('error')} (log {self.log_path})")
        return reply

    def submit(self, cmd: dict[str, Any]) -> Future[dict[str, Any]]:
        fut: Future[dict[str, Any]] = Future()

        def run() -> None:
            try:
                fut.set_result(self.call(cmd))
            except BaseException as exc:
                fut.set_exception(exc)

        threading.Thread(target=run, name="host-call", daemon=True).start()
        return fut

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()

    def __enter__(self) -> HostProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_object(stack: Stack, key: str, size: int) -> None:
    """The object exists with the file's size (after the fact: no polling)."""
    length = stack.s3().head_object(Bucket=stack.bucket, Key=key)["ContentLength"]
    if length != size:
        raise RuntimeError(f"s3://{stack.bucket}/{key} has {length} bytes, not {size}")


def identical(stack: Stack, key: str, path: str, chunk: int = 8 * MIB) -> bool:
    """The object holds exactly the file's bytes (read after the fact, a chunk at a
    time: a many-stream run's objects together are gigabytes)."""
    body = stack.s3().get_object(Bucket=stack.bucket, Key=key)["Body"]
    with open(path, "rb") as fh:
        while want := fh.read(chunk):
            got = b""
            while len(got) < len(want) and (more := body.read(len(want) - len(got))):
                got += more
            if got != want:
                return False
    return body.read(1) == b""  # nothing past the file's end


def identical_count(stack: Stack, paths: list[str]) -> str:
    """ "n/N": how many of the files' objects (stack.key_for) are byte-identical."""
    same = sum(identical(stack, stack.key_for(p), p) for p in paths)
    return f"{same}/{len(paths)}"


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except OSError:
        return []


def _proc_bytes(path: str, field: str) -> int:
    """A "Field:  N kB" line of a /proc file, in bytes (0 if the process is gone)."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _rss(pid: int) -> int:
    return _proc_bytes(f"/proc/{pid}/status", "VmRSS:")


def _pss(pid: int) -> int:
    """Proportional set size: shared pages split between the processes sharing them
    (RSS counts them once per process, which overstates forked or warm workers)."""
    return _proc_bytes(f"/proc/{pid}/smaps_rollup", "Pss:")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its live descendants (a server's workers)."""
    todo, total = [pid], 0.0
    while todo:
        p = todo.pop()
        total += cpu_seconds(p)
        todo += _children(p)
    return total


class CpuTimeline(threading.Thread):
    """Samples the CPU time of named process trees every `interval` s, so that the
    CPU spent between two instants (reported by another process) can be looked up
    afterwards with `between`."""

    def __init__(self, pids: dict[str, int], interval: float = 0.05) -> None:
        super().__init__(name="cpu-timeline", daemon=True)
        self.pids, self.interval = pids, interval
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            now = time.monotonic()
            self.samples.append((now, {k: tree_cpu_seconds(p) for k, p in self.pids.items()}))
            self._halt.wait(self.interval)

    def between(self, t0: float, t1: float) -> dict[str, float]:
        """CPU seconds per name from the last sample at or before t0 to the first at
        or after t1 (so a little wider than [t0, t1], never narrower)."""
        before = [v for t, v in self.samples if t <= t0] or [self.samples[0][1]]
        after = [v for t, v in self.samples if t >= t1] or [self.samples[-1][1]]
        return {k: after[0][k] - before[-1][k] for k in self.pids}

    def stop(self) -> None:
        self._halt.set()
        self.join()


class RssSampler(threading.Thread):
    """Samples the summed VmRSS of a process and all its descendants every
    `interval` s; `peak` is the largest sum seen, `peak_one` the largest single
    process, `peak_procs` the most processes at once, `peak_pss` the largest summed
    PSS. `cpu(since)` is the CPU time
    the tree used (the last sample of each process, so short-lived children count)."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid, self.interval = pid, interval
        self.peak = self.peak_one = self.peak_procs = self.peak_pss = 0
        self.cpu_by_pid: dict[int, float] = {}
        self._halt = threading.Event()

    def cpu(self) -> float:
        return sum(self.cpu_by_pid.values())

    def tree(self) -> list[int]:
        out, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo += _children(pid)
        return out

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            tree = self.tree()
            for p in tree:
                self.cpu_by_pid[p] = max(self.cpu_by_pid.get(p, 0.0), cpu_seconds(p))
            rss = [_rss(p) for p in tree]
            self.peak = max(self.peak, sum(rss))
            self.peak_one = max(self.peak_one, max(rss, default=0))
            self.peak_procs = max(self.peak_procs, len(rss))
            self.peak_pss = max(self.peak_pss, sum(_pss(p) for p in tree))

    def stop(self) -> None:
        self._halt.set()
        self.join()


def p95(values: list[float]) -> float:
    return round(statistics.quantiles(values, n=20, method="inclusive")[-1], 2)


def close_to_object(writers: list[Any], done: list[float], size: int, rate: float) -> dict:
    """The figures of N SteadyWriters and the wall-clock times their objects were
    done (in the writers' order): rates offered and achieved, close -> object."""
    latencies = [d - w.closed_wall for d, w in zip(done, writers, strict=True)]
    t_write = min(w.closed_wall - (w.closed_at - w.started_at) for w in writers)
    total = len(writers) * size
    return {
        "streams": len(writers),
        "size_mib_each": size // MIB,
        "write_rate_mb_s_each": round(rate / MB, 1),
        "offered_mb_s": round(total / (max(w.closed_wall for w in writers) - t_write) / MB, 1),
        "aggregate_mb_s": round(total / (max(done) - t_write) / MB, 1),
        "close_to_object_s_p50": round(statistics.median(latencies), 2),
        "close_to_object_s_p95": p95(latencies),
        "close_to_object_s_max": round(max(latencies), 2),
    }
