"""A burst of new recordings on an idle, warmed worker: what starting N streams at
once costs, apart from what streaming them costs (that is `many`).

N recordings start at once: each file holds a first part and stays open (a live
recording), and gets one run, created one after another as the sensor does. Once
every stream has its first byte the files close (with the sensor's hint). Reported:
trigger -> first byte (the run has opened the stream's upload; it reads the file
next) p50/p95/max, its stages from the runs' state history (as in `many`),
trigger -> every stream started, and per run, over that time: the Prefect API calls
by endpoint (worker and its runs alike: the proxy's "worker" channel) and the CPU
of the worker and of the Prefect server. The worker has run one stream before the
burst, so the flow is imported: the burst measures claiming and starting runs, not
the first import.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter
from typing import Any

from benchmarks.common import MIB, RssSampler, log, p95, ratio, tree_cpu_seconds
from benchmarks.many import (
    IDLE_TIMEOUT,
    WARM,
    burst_stages,
    lone_starts,
    wait_runs_final,
    worker_on_pool,
)
from benchmarks.sensing import SensorTrigger
from benchmarks.stack import Stack, configure, pid_of
from benchmarks.writer import identity_of
from stream_ingest.devstack.services import wait_for


def run(stack: Stack, streams: int, worker_type: str = WARM) -> dict[str, Any]:
    configure(idle_timeout_seconds=IDLE_TIMEOUT)  # the streams end by their close
    with worker_on_pool(stack, worker_type) as pid:
        lone_starts(stack, count=1, name="warm-up")  # the worker is up and has imported the flow
        return {"bench": "burst", "worker": worker_type, **_measure(stack, pid, streams)}


def _measure(stack: Stack, worker_pid: int, streams: int) -> dict[str, Any]:
    store = stack.store()
    paths = [os.path.join(stack.watch_dir, f"burst-{i:02d}.mkv") for i in range(streams)]
    # Live recordings: a first part written and the file kept open (a writer, as
    # /proc tells the stream), so every run stays up while the others start.
    files = [open(p, "wb") for p in paths]  # noqa: SIM115 - closed below
    for fh in files:
        fh.write(os.urandom(MIB))
        fh.flush()
    cpu = RssSampler(worker_pid)
    cpu.start()
    api_before, waited_before = stack.proxy.counts(), stack.proxy.waited()
    server_before = tree_cpu_seconds(pid_of(stack.prefect))
    time.sleep(0.5)  # a first sample of the worker's CPU
    sensor = SensorTrigger(stack)
    log(f"burst: {streams} new recordings")
    cpu_before, t0 = cpu.cpu(), time.monotonic()
    triggered, runs = {}, {}
    for p in paths:
        triggered[p] = time.time()
        runs[p] = sensor(p)
    created_s = time.monotonic() - t0

    def all_started() -> dict[str, float] | None:
        opened = {p: t for p in paths if (t := sensor.opened_at(p)) is not None}
        return opened if len(opened) == len(paths) else None

    started = wait_for(all_started, 900, "every stream's first byte", interval=0.2)
    all_started_s = time.monotonic() - t0
    time.sleep(2)  # the last log and event batches reach the proxy
    api, waited = stack.proxy.counts() - api_before, stack.proxy.waited() - waited_before
    server_cpu = tree_cpu_seconds(pid_of(stack.prefect)) - server_before
    worker_cpu = cpu.cpu() - cpu_before
    cpu.stop()
    for p, fh in zip(paths, files, strict=True):  # the recordings end
        fh.close()
        store.hints.note_closed(p, identity_of(p))
    states = wait_runs_final(list(runs.values()), timeout=900)
    first_byte = [started[p] - triggered[p] for p in paths]
    stages = burst_stages(runs, triggered, started)
    calls = {k: v for k, v in api.items() if not k.endswith(" log-records")}
    top = sorted(calls.items(), key=lambda kv: -kv[1])[:12]
    slowest = sorted(waited.items(), key=lambda kv: -kv[1])[:8]
    for p in paths:
        stack.remove_file(p)
    stack.drop_objects()
    return {
        "streams": streams,
        "run_states": dict(Counter(states)),
        "trigger_to_first_byte_s_p50_p95_max": [
            round(statistics.median(first_byte), 2),
            p95(first_byte),
            round(max(first_byte), 2),
        ],
        "burst_stages_s_p50_p95": stages,
        "creating_all_runs_s": round(created_s, 1),
        "trigger_to_all_started_s": round(all_started_s, 1),
        # Trigger -> every stream's first byte, per run: what starting a stream costs.
        "prefect_api_calls_per_run": ratio(sum(calls.values()), streams),
        "prefect_api_calls_per_run_top": {k: round(v / streams, 2) for k, v in top},
        # Seconds the calls of each kind waited for the server, in all (and 5xx answers).
        "prefect_api_waited_s_top": {k: round(v, 1) for k, v in slowest},
        "cpu_s_per_run_worker": round(worker_cpu / streams, 3),
        "cpu_s_per_run_prefect_server": round(server_cpu / streams, 3),
    }
