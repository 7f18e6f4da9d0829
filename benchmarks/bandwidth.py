"""The bandwidth limit of a host (`bandwidth_limit_mbps`): N recordings growing faster
than the limit lets them go up, for a minute.

The flows run as threads of one process of their own (as on the warm worker: one
limiter, its bucket in Redis), started at the writers' start; that process times each
UploadPart call and spreads its bytes over the call (a part goes at the link's speed
once granted). Over the window [WARMUP_S, WARMUP_S + WINDOW_S] of the writers' clock,
every stream is live and behind its writer, so the limit is what holds them back:
the line reports the total rate against the limit, each stream's rate, and what the
limiter granted in the window (above the rate sent if granted bytes wait). Then the
limit is lifted in the config block, as an operator would, and the line says when
the streams' rate rose past it (the block is read again by the running flows).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

from benchmarks.common import MB, log
from benchmarks.stack import Stack, configure
from benchmarks.writer import SteadyWriter

STREAMS = 4
WRITE_RATE = 5 * MB
LIMIT_MBPS = 64.0  # 8 MB/s
WARMUP_S = 10.0
WINDOW_S = 60.0
WRITE_S = WARMUP_S + WINDOW_S + 5.0


def _rate(parts: list[dict[str, Any]], t0: float, t1: float) -> float:
    """Bytes/s sent in [t0, t1], each part's bytes spread evenly over its call."""
    sent = 0.0
    for p in parts:
        start, end, size = p["start"], p["end"], p["bytes"]
        overlap = min(end, t1) - max(start, t0)
        if overlap > 0:
            sent += size * overlap / max(end - start, 1e-9)
    return sent / (t1 - t0)


def _at(samples: list[list[float]], t: float) -> float:
    """The limiter's bytes granted at `t`, between the two samples around it."""
    before = max((s for s in samples if s[0] <= t), default=samples[0])
    after = min((s for s in samples if s[0] >= t), default=samples[-1])
    if after[0] == before[0]:
        return before[1]
    return before[1] + (after[1] - before[1]) * (t - before[0]) / (after[0] - before[0])


def run(stack: Stack, streams: int = STREAMS, limit_mbps: float = LIMIT_MBPS) -> dict[str, Any]:
    limit = limit_mbps * 1_000_000 / 8
    configure(bandwidth_limit_mbps=limit_mbps)
    paths = [os.path.join(stack.watch_dir, f"bw-{i}.mkv") for i in range(streams)]
    store = stack.store()
    writers = [
        SteadyWriter(p, int(WRITE_RATE * WRITE_S), WRITE_RATE, on_close=store.hints.note_closed)
        for p in paths
    ]
    out_path = os.path.join(stack.workdir, "bandwidth-parts.json")
    log_path = os.path.join(stack.workdir, "bandwidth-host.log")
    with open(log_path, "ab") as errors:
        host = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bandwidth", out_path, *paths],
            env={**os.environ, **stack.env(), "PYTHONPATH": os.getcwd()},
            stderr=errors,
        )
        began = time.monotonic()
        for w in writers:
            w.start()
        log(
            f"bandwidth: {streams} writers at {WRITE_RATE / MB:g} MB/s, limit {limit_mbps:g} Mbit/s"
        )
        for w in writers:
            w.join()
        lifted = time.monotonic()
        configure(bandwidth_limit_mbps=0.0)  # lifted in the block: no restart
        log("bandwidth: writers closed, limit lifted")
        if host.wait(600) != 0:
            raise RuntimeError(f"bandwidth host failed; see {log_path}")
    with open(out_path) as fh:
        recorded = json.load(fh)
    parts = recorded["parts"]
    t0, t1 = began + WARMUP_S, began + WARMUP_S + WINDOW_S
    total = _rate(parts, t0, t1)
    granted = (_at(recorded["granted"], t1) - _at(recorded["granted"], t0)) / (t1 - t0)
    per = [_rate([p for p in parts if p["path"] == path], t0, t1) for path in paths]
    # After the lift: the first second in which the streams sent faster than the limit.
    rose = next(
        (s for s in range(0, 60) if _rate(parts, lifted + s, lifted + s + 1) > 1.5 * limit),
        None,
    )
    return {
        "bench": "bandwidth",
        "streams": streams,
        "write_rate_mb_s": WRITE_RATE / MB,
        "limit_mbps": limit_mbps,
        "limit_mb_s": round(limit / MB, 3),
        "window_s": WINDOW_S,
        "measured_mb_s": round(total / MB, 3),
        # What the limiter let through in the window: the limit, if the link fell
        # short of it because granted bytes were not sent at once.
        "granted_mb_s": round(granted / MB, 3),
        "deviation_pct": round(100 * (total - limit) / limit, 2),
        "per_stream_mb_s": [round(r / MB, 3) for r in per],
        "max_stream_deviation_pct": round(
            100 * max(abs(r - total / streams) for r in per) / (total / streams), 2
        ),
        "max_min_ratio": round(max(per) / min(per), 3) if min(per) > 0 else None,
        "after_lift_faster_in_s": rose,
        "writers_achieved_mb_s": [round(w.achieved_rate / MB, 2) for w in writers],
    }


def _host(out_path: str, paths: list[str]) -> None:
    """The flows' process: one flow run per path, each a thread; each UploadPart timed,
    and the limiter's bytes granted so far sampled every 0.25 s."""
    from stream_ingest.blocks.bucket import StreamBucket
    from stream_ingest.flows.ingest import stream_ingest
    from stream_ingest.flows.pacing import LIMITER

    parts: list[dict[str, Any]] = []
    lock = threading.Lock()
    upload = StreamBucket.upload_part
    path_of: dict[str, str] = {}

    def timed(self: StreamBucket, key: str, upload_id: str, number: int, body: Any) -> Any:
        start = time.monotonic()
        held = upload(self, key, upload_id, number, body)
        with lock:
            parts.append(
                {
                    "path": path_of.get(key, key),
                    "start": start,
                    "end": time.monotonic(),
                    "bytes": len(body),
                }
            )
        return held

    StreamBucket.upload_part = timed  # type: ignore[method-assign]
    for p in paths:
        path_of["bench/" + os.path.basename(p)] = p
    errors: list[BaseException] = []

    def one(path: str) -> None:
        try:
            result = stream_ingest(path=path)
            if result.get("status") != "completed":
                raise RuntimeError(f"{path}: {result.get('status')}")
        except BaseException as exc:
            errors.append(exc)

    granted: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:
        while True:
            granted.append((time.monotonic(), LIMITER.granted))
            if done.wait(0.25):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    threads = [threading.Thread(target=one, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    sampler.join()
    with open(out_path, "w") as fh:
        json.dump({"parts": parts, "granted": granted}, fh)
    if errors:
        raise SystemExit(f"flows failed: {errors}")


if __name__ == "__main__":
    _host(sys.argv[1], sys.argv[2:])
