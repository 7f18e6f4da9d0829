"""Real recorders starting together: N short live recordings begun at the same moment
on the warm worker, each ended by its recorder's exit, as a new user tries it.

Each recorder is its own process holding its file open for writing, so the flow's
end-of-take detection (/proc) sees it as it sees a camera: ffmpeg where installed
(a test pattern, 320x240 H.264 in MP4, real time, RECORD_S seconds), else
`python -m benchmarks.writer` growing the file at a modest rate for as long. Every
file gets its run as soon as it appears (the sensor's own handler), one after
another as the sensor creates them; its close hint is sent when its recorder
exits. Reported per stream count, in one run: close -> object (the recorder's exit
-> the stream's object_at_utc) p50 / p95 / max, trigger -> first byte, and whether
every object is byte-identical to its file. The worker has run one stream before,
so its flow is imported.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime
from typing import Any

from benchmarks.common import log, p95
from benchmarks.many import IDLE_TIMEOUT, WARM, lone_starts, wait_runs_final, worker_on_pool
from benchmarks.sensing import SensorTrigger
from benchmarks.stack import Stack, configure
from benchmarks.writer import identity_of

RECORD_S = 12.0
WRITER_RATE = 100_000  # bytes/s of the stand-in writer: about a small H.264 stream


def _command(path: str) -> list[str]:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:
        return [
            ffmpeg,
            *("-hide_banner", "-loglevel", "error", "-nostdin", "-re"),
            *("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"),
            # libx264's defaults, as a user's first try: about 0.07 CPU-s per second each.
            *("-t", str(RECORD_S), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-y", path),
        ]
    size = int(RECORD_S * WRITER_RATE)
    return [sys.executable, "-m", "benchmarks.writer", path, str(size), str(WRITER_RATE)]


class Recorder(threading.Thread):
    """One recorder process; at its exit, the sensor's close hint."""

    def __init__(self, path: str, on_close: Any) -> None:
        super().__init__(name=f"recorder-{os.path.basename(path)}", daemon=True)
        self.path, self.on_close = path, on_close
        self.proc = subprocess.Popen(
            _command(path),
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )

    def run(self) -> None:
        _, err = self.proc.communicate()
        if self.proc.returncode != 0:
            log(f"recorders: {self.path}: exit {self.proc.returncode}: {err.decode()[-300:]}")
        elif self.on_close:
            self.on_close(self.path, identity_of(self.path))


def run(stack: Stack, counts: list[int]) -> list[dict[str, Any]]:
    configure(idle_timeout_seconds=IDLE_TIMEOUT)  # the recordings end by their close
    with worker_on_pool(stack, WARM) as pid:
        lone_starts(stack, count=1, name="warm-up")
        log(f"recorders: the warm worker is pid {pid}")
        return [{"bench": "recorders", "worker": WARM, **_measure(stack, n)} for n in counts]


def _measure(stack: Stack, streams: int) -> dict[str, Any]:
    store = stack.store()
    recorder = "ffmpeg" if shutil.which("ffmpeg") else "benchmarks.writer"
    ext = "mp4" if recorder == "ffmpeg" else "mkv"
    paths = [os.path.join(stack.watch_dir, f"rec{streams}-{i:02d}.{ext}") for i in range(streams)]
    log(f"recorders: {streams} x {recorder} start")
    recorders = [Recorder(p, store.hints.note_closed) for p in paths]
    for r in recorders:
        r.start()
    sensor = SensorTrigger(stack)
    triggered, runs = {}, {}
    while len(runs) < len(paths):  # each run as soon as its file exists, as the sensor
        for p in paths:
            if p not in runs and os.path.exists(p):
                triggered[p] = time.time()
                runs[p] = sensor(p)
        time.sleep(0.01)
    for r in recorders:
        r.join(RECORD_S * 10)
    log(f"recorders: {streams} recordings ended")
    states = wait_runs_final(list(runs.values()), timeout=600)
    records = [
        store.streams.require(store.identities.stream_for(identity_of(p)) or "?") for p in paths
    ]
    # The close: the file's last write (the recorder's exit is seen later by this
    # process, and on a busy host later than by the flow).
    closed = [os.stat(p).st_mtime for p in paths]
    close = [
        datetime.fromisoformat(rec.object_at_utc).timestamp() - c if rec.object_at_utc else 99.0
        for rec, c in zip(records, closed, strict=True)
    ]
    ended: dict[str, float] = {}
    for _ in range(10):  # the runs' last log batches reach the server within seconds
        ended = _ended_at(list(runs.values()))
        if len(ended) == len(runs):
            break
        time.sleep(1)
    detect = [ended.get(str(runs[p]), 99.0) - c for p, c in zip(paths, closed, strict=True)]
    first_byte = [
        datetime.fromisoformat(rec.opened_at_utc).timestamp() - triggered[p]
        for rec, p in zip(records, paths, strict=True)
    ]
    s3 = stack.s3()
    identical = 0
    for p in paths:
        body = s3.get_object(Bucket=stack.bucket, Key=stack.key_for(p))["Body"].read()
        with open(p, "rb") as fh:
            identical += body == fh.read()
    sizes = [os.path.getsize(p) for p in paths]
    stack.drop_objects()
    for p in paths:
        stack.remove_file(p)
    return {
        "streams": streams,
        "recorder": recorder,
        "record_s": RECORD_S,
        "size_kib_p50": round(statistics.median(sizes) / 1024),
        "run_states": dict(Counter(states)),
        "byte_identical": f"{identical}/{streams}",
        "close_to_object_s_p50_p95_max": [
            round(statistics.median(close), 2),
            p95(close),
            round(max(close), 2),
        ],
        "close_to_object_s": sorted(round(x, 2) for x in close),
        # The close -> the flow's "recording ended" log line: end-of-take detection.
        "close_to_ended_s_p50_max": [round(statistics.median(detect), 2), round(max(detect), 2)],
        "trigger_to_first_byte_s_p50_max": [
            round(statistics.median(first_byte), 2),
            round(max(first_byte), 2),
        ],
    }


def _ended_at(run_ids: list[Any]) -> dict[str, float]:
    """When each run logged that its recording ended (wall clock), by run id."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterTextSearch

    out: dict[str, float] = {}
    with get_client(sync_client=True) as client:
        for run_id in run_ids:
            flt = LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[run_id]),
                text=LogFilterTextSearch(query="recording ended"),
            )
            for entry in client.read_logs(log_filter=flt, limit=5):
                if "recording ended" in entry.message:
                    out.setdefault(str(run_id), entry.timestamp.timestamp())
    return out
