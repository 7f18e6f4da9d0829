"""Many streams on one worker: N recordings growing at once, for each worker model.

This runs the product the way the README deploys it: `prefect deploy` of
prefect.yaml's stream-ingest deployment to a work pool and one `prefect worker
start`. The warm worker (`stream-ingest-warm`, the default) runs every flow run as a
thread of its own process; the process worker starts one flow-run process per
recording. Each model gets its own pool. The worker and the flow runs talk to
Prefect through the counting proxy (separate channels; a warm worker's runs share
its channel), so API calls are counted, websocket events included.

Phases: trigger N runs at once, as a burst of new files makes the sensor do (with
the sensor's own handler: benchmarks/sensing.py), and wait until every stream is
open (cold start, with its counters per stream; trigger -> the run's upload opened,
after which it reads the file, is "trigger to first byte"); then N writers grow the files at once; the aggregate rate is
all bytes over writers' start -> last object in S3 (its stream's object_at_utc).
Redis round trips, Prefect API calls and CPU from the writers' start to the end of
the last run are divided by all parts; those from the writers' start to the first
close by the parts recorded by then (while streaming). A burst's trigger -> first byte
is also split into stages, from the runs' state history, after the measurement.
After the measurement every object is read back and compared with its file. With
the boto3 floor in the same run (benchmarks/floor.py), a `many_vs_floor` line sets
the two side by side at each stream count (`versus`).
The benchmark itself polls S3 and the Prefect API directly, never Redis or the
proxy, so it adds nothing to those counts except what the sensor does: its claim of
each new stream and record of its run (in the opening's Redis counts) and the
writers' close hints (one HSET per stream).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from benchmarks import floor
from benchmarks.common import (
    MB,
    MIB,
    RssSampler,
    _children,
    check_object,
    close_to_object,
    identical_count,
    log,
    p95,
    ratio,
    tree_cpu_seconds,
)
from benchmarks.sensing import SensorTrigger
from benchmarks.stack import Stack, configure, pid_of
from benchmarks.writer import SteadyWriter, identity_of
from stream_ingest.devstack.services import wait_for

BIN = os.path.dirname(sys.executable)
WARM, PROCESS, FLOOR = "stream-ingest-warm", "process", "boto3"
STAGGER_S = 5.0
IDLE_TIMEOUT = 3600
OPEN_TIMEOUT = 900  # trigger -> every stream open; past it the line says how far it got


class NeverOpened(Exception):
    """Not every stream opened within OPEN_TIMEOUT: how far the burst got."""

    def __init__(self, opened: int, streams: int, again: int, seconds: float) -> None:
        super().__init__(f"{streams - opened} of {streams} streams never opened")
        self.opened, self.streams, self.again, self.seconds = opened, streams, again, seconds


def _cli(args: list[str], env: dict[str, str]) -> None:
    subprocess.run(
        [os.path.join(BIN, "prefect"), *args], env=env, check=True, capture_output=True, timeout=300
    )


def wait_runs_final(run_ids: list[Any], timeout: float) -> list[str]:
    """Every run's final state type, polling one filtered read a second."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flt = FlowRunFilter(id=FlowRunFilterId(any_=run_ids))

    def final() -> list[str] | None:
        states = [r.state for r in client.read_flow_runs(flow_run_filter=flt)]
        if len(states) == len(run_ids) and all(s and s.is_final() for s in states):
            return [s.type.value for s in states if s is not None]
        return None

    with get_client(sync_client=True) as client:
        return wait_for(final, timeout, "the flow runs to finish", interval=1)


def lone_starts(stack: Stack, count: int = 5, name: str = "lone") -> list[float]:
    """Trigger -> first byte for new recordings one at a time, on an idle worker: the
    everyday case of a camera starting. Each file holds one part and is closed."""
    sensor, out = SensorTrigger(stack), []
    for i in range(count):
        path = os.path.join(stack.watch_dir, f"{name}-{i}.mkv")
        with open(path, "wb") as fh:
            fh.write(os.urandom(MIB))
        at = time.time()
        run_id = sensor(path)
        sensor.store.hints.note_closed(path, identity_of(path))  # the close, as the sensor hears it
        opened = wait_for(
            lambda p=path: sensor.opened_at(p), 120, "the lone stream's upload", interval=0.05
        )
        out.append(opened - at)
        wait_runs_final([run_id], timeout=120)
        stack.remove_file(path)
    return out


def _open_all(stack: Stack, paths: list[str]) -> tuple[dict, int, dict[str, float]]:
    """Trigger one run per path (as the sensor does) and wait until every stream's
    multipart upload exists (polled in S3, so that the benchmark adds nothing to
    the Redis counts). A run that ends before that (the worker could not submit it,
    e.g. SQLite "database is locked" under the burst) is triggered again, as an
    operator's `streams rerun` would, and counted. Returns (run id by path, runs
    triggered again, wall-clock trigger time by path); raises NeverOpened."""
    from prefect.client.orchestration import get_client

    sensor = SensorTrigger(stack)
    triggered: dict[str, float] = {}
    runs = {}
    for p in paths:
        triggered[p] = time.time()
        runs[p] = sensor(p)
    s3, again = stack.s3(), 0
    began = time.monotonic()
    deadline = began + OPEN_TIMEOUT
    with get_client(sync_client=True) as client:
        while True:
            uploads = s3.list_multipart_uploads(Bucket=stack.bucket).get("Uploads", [])
            keys = {u["Key"] for u in uploads}
            waiting = [p for p in paths if stack.key_for(p) not in keys]
            if not waiting:
                return runs, again, triggered
            if time.monotonic() > deadline:
                opened = len(paths) - len(waiting)
                raise NeverOpened(opened, len(paths), again, time.monotonic() - began)
            for p in waiting:
                state = client.read_flow_run(runs[p]).state
                if state is not None and state.is_final():
                    log(
                        f"many: run for {p} ended {state.type.value} before opening ({state.message}); again"
                    )
                    runs[p], again = sensor.again(p), again + 1
            time.sleep(1)


def burst_stages(
    runs: dict[str, Any], triggered: dict[str, float], first_byte: dict[str, float]
) -> dict[str, list[float]]:
    """Where a burst's trigger -> first byte went, p50 and p95 of each stage over the
    streams: the server creating the run (`create`), the run waiting to be claimed
    (created -> Pending), the claim -> the engine's Running, and Running -> the
    stream's first byte. Read from each run's state history after the measurement.
    (A run triggered again counts from its first trigger.)"""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    stages: dict[str, list[float]] = {
        "create": [],
        "created_to_claimed": [],
        "claimed_to_running": [],
        "running_to_first_byte": [],
    }
    with get_client(sync_client=True) as client:
        for path, run_id in runs.items():
            created = client.read_flow_run(run_id).created
            first: dict[StateType, float] = {}
            for state in sorted(client.read_flow_run_states(run_id), key=lambda s: s.timestamp):
                first.setdefault(state.type, state.timestamp.timestamp())
            pending, running = first.get(StateType.PENDING), first.get(StateType.RUNNING)
            if created is None or pending is None or running is None:
                continue
            marks = [triggered[path], created.timestamp(), pending, running, first_byte[path]]
            for name, (a, b) in zip(stages, itertools.pairwise(marks), strict=True):
                stages[name].append(b - a)
    return {k: [round(statistics.median(v), 2), p95(v)] for k, v in stages.items() if len(v) > 1}


ENDED = "recording ended"  # the run's log line when it decides the take is over


def ending_stages(
    runs: dict[str, Any], closed: dict[str, float], objects: dict[str, float]
) -> dict[str, list[float]]:
    """Where close -> object went, p50 and p95 of each stage over the streams: the
    close -> the run's "recording ended" log line (`close_to_end_seen`), that -> the
    finalize task run's start (the windows drained: `end_seen_to_finalize`), that ->
    the object (`finalize_to_object`: verify, the tail part, the completion), and the
    object -> the finalize task's end (its SHA-256 and record, off the path). Wall
    clock, read from each run's logs and task runs after the measurement."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
        TaskRunFilter,
        TaskRunFilterName,
    )

    stages: dict[str, list[float]] = {
        "close_to_end_seen": [],
        "end_seen_to_finalize": [],
        "finalize_to_object": [],
        "object_to_finalize_end": [],
    }
    with get_client(sync_client=True) as client:
        for path, run_id in runs.items():
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
            )
            seen = [entry.timestamp.timestamp() for entry in logs if ENDED in entry.message]
            tasks = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])),
                task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=["finalize"])),
            )
            began = [t.start_time.timestamp() for t in tasks if t.start_time]
            ended = [t.end_time.timestamp() for t in tasks if t.end_time]
            if not (seen and began and ended):
                continue
            # The last of each: a take that grew again during a finalize ends twice.
            marks = [closed[path], max(seen), max(began), objects[path], max(ended)]
            for name, (a, b) in zip(stages, itertools.pairwise(marks), strict=True):
                stages[name].append(b - a)
    return {k: [round(statistics.median(v), 2), p95(v)] for k, v in stages.items() if len(v) > 1}


def run_all(
    stack: Stack,
    counts: list[int],
    size_mib: int,
    rate_mb_s: float,
    workers: list[str],
    profile_dir: str | None = None,
    rounds: int = 1,
) -> Iterator[dict[str, Any]]:
    """Every worker model at each stream count, the order rotated from one count (and
    round) to the next (none always runs on the fresher server), each line as it is
    measured; after each round, the warm worker against the floor (`versus`) where
    both ran, and after `rounds` > 1 of a count, the median of each figure and ratio
    over the rounds (`versus_median`): on 2 shared cores one round's floor moves by
    several times between runs. `profile_dir`: the warm worker runs under py-spy, its
    samples in DIR/many-<streams>.txt (py-spy takes CPU of its own: not for the
    figures)."""
    turn = 0
    for streams in counts:
        pairs: list[dict[str, Any]] = []
        for _ in range(max(1, rounds)):
            lines: dict[str, dict[str, Any]] = {}
            for worker in workers[turn % len(workers) :] + workers[: turn % len(workers)]:
                profile = None
                if profile_dir and worker == WARM:
                    profile = os.path.join(profile_dir, f"many-{streams}.txt")
                lines[worker] = run(stack, streams, size_mib, rate_mb_s, worker, profile)
                yield lines[worker]
            turn += 1
            if WARM in lines and FLOOR in lines:
                pairs.append(versus(lines[WARM], lines[FLOOR]))
                yield pairs[-1]
        if len(pairs) > 1:
            yield versus_median(pairs)


def versus_median(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median over rounds of each `many_vs_floor` figure, ratio and gap, and each
    round's p95 ratio."""
    out: dict[str, Any] = {
        "bench": "many_vs_floor_median",
        "streams": pairs[0].get("streams"),
        "rounds": len(pairs),
    }
    for key, value in pairs[0].items():
        if key.startswith(("ours_", "floor_", "ratio_", "gap_")) and isinstance(value, int | float):
            values = [p[key] for p in pairs if isinstance(p.get(key), int | float)]
            out[key] = round(statistics.median(values), 3)
    out["ratio_close_to_object_s_p95_each"] = [p.get("ratio_close_to_object_s_p95") for p in pairs]
    out["byte_identical"] = [p.get("byte_identical") for p in pairs]
    return out


# The figures set side by side in `versus`, each as ours, the floor's and ours/floor.
VERSUS = (
    "close_to_object_s_p50",
    "close_to_object_s_p95",
    "close_to_object_s_max",
    "aggregate_mb_s",
    "peak_pss_mib_worker_tree",
    "pss_per_stream_mib",
    "cpu_s_s3_server",
)


def versus(ours: dict[str, Any], floor_line: dict[str, Any]) -> dict[str, Any]:
    """One line: the warm worker's figures beside the boto3 floor's at one stream
    count, with ratio_* = ours / floor (1.0: as cheap as plain boto3)."""
    out: dict[str, Any] = {"bench": "many_vs_floor", "streams": ours.get("streams")}
    for name in VERSUS:
        a, b = ours.get(name), floor_line.get(name)
        out[f"ours_{name}"], out[f"floor_{name}"] = a, b
        if not (isinstance(a, int | float) and isinstance(b, int | float)):
            continue
        if name.startswith("close_to_object"):
            # On a store that completes at once (Ceph) the floor, told each file's size,
            # can be done before the writer's close returns: a ratio to a floor at or
            # below zero says nothing, the seconds ours adds do.
            out[f"gap_{name}"] = round(a - b, 2)
            if b <= 0:
                continue
        out[f"ratio_{name}"] = ratio(a, b)
    out["ours_trigger_to_first_byte_s_p50"] = ours.get("trigger_to_first_byte_s_p50")
    out["ours_trigger_to_first_byte_s_p95"] = ours.get("trigger_to_first_byte_s_p95")
    out["ours_lone_trigger_to_first_byte_s"] = ours.get("lone_trigger_to_first_byte_s")
    out["byte_identical"] = {
        "ours": ours.get("byte_identical"),
        "floor": floor_line.get("byte_identical"),
    }
    return out


def run(
    stack: Stack,
    streams: int,
    size_mib: int,
    rate_mb_s: float,
    worker_type: str = WARM,
    profile_to: str | None = None,
) -> dict[str, Any]:
    if worker_type == FLOOR:  # no worker: plain boto3 on the same writers (floor.py)
        result = floor.run(stack, streams, size_mib * MIB, rate_mb_s * MB, STAGGER_S)
        return {"bench": "many_streams", "worker": FLOOR, **result}
    # The writers start only once every stream is open, and opening 20 flow-run
    # processes takes minutes on 2 cores: streams opened first would otherwise end by
    # idle timeout before their file grows. Every file gets a close hint.
    configure(idle_timeout_seconds=IDLE_TIMEOUT)
    with worker_on_pool(stack, worker_type, profile_to) as pid:
        # A deployed worker is long-lived: the burst finds it up, its flow imported
        # (the worker's own start, 6-9 s here, is no part of a burst).
        lone_starts(stack, count=1, name="warm-up")
        result = _measure(stack, pid, streams, size_mib * MIB, rate_mb_s * MB)
    return {"bench": "many_streams", "worker": worker_type, **result}


@contextlib.contextmanager
def worker_on_pool(stack: Stack, worker_type: str, profile_to: str | None = None) -> Iterator[int]:
    """prefect.yaml's deployment on a pool of `worker_type` and one `prefect worker
    start` for it (its pid), as the README deploys them; the worker talks to Prefect
    through the proxy's "worker" channel, its runs through "flows". `profile_to`: the
    worker runs under py-spy, which writes its samples (raw folded stacks) there."""
    env = {**os.environ, **stack.env(), "PYTHONPATH": os.getcwd()}
    pool = f"video-ingest-{worker_type}"
    _cli(["work-pool", "create", pool, "--type", worker_type, "--overwrite"], env)
    _cli(["--no-prompt", "deploy", "--name", "stream-ingest", "--pool", pool], env)
    worker_env = {
        **env,
        **stack.env(stack.proxy.api_url("worker")),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }
    worker_log = open(os.path.join(stack.workdir, "worker.log"), "ab")  # noqa: SIM115
    command = [os.path.join(BIN, "prefect"), "worker", "start", "--pool", pool]
    spy = [] if profile_to is None else py_spy(profile_to)
    worker = subprocess.Popen(
        [*spy, *command, "--type", worker_type],
        env=worker_env,
        stdout=worker_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    pid = worker.pid
    if spy:  # the worker is py-spy's child: its pid is what the caller measures
        pid = wait_for(lambda: next(iter(_children(worker.pid)), None), 60, "the worker")
    try:
        yield pid
    finally:
        if spy:  # the worker first: py-spy writes its samples when its child exits
            os.kill(pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(120)
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        worker_log.close()


def py_spy(out: str) -> list[str]:
    """The command prefix that runs a program under py-spy, sampling it (and its
    threads, idle ones left out) 100 times a second into `out`."""
    spy = shutil.which("py-spy")
    if spy is None:
        raise FileNotFoundError("py-spy (uv tool install py-spy)")
    return [spy, "record", "--format", "raw", "--rate", "100", "--output", out, "--"]


class Snapshot:
    """Redis, Prefect API and CPU counters at one moment."""

    def __init__(self, stack: Stack, rss: RssSampler) -> None:
        self.redis = stack.redis_stats()
        # Every recorded part runs the record_part script once, the only HLEN there
        # is: an exact count of parts at this moment, with no call of the benchmark's
        # own. (S3's list of parts was not: on a busy moto listing 20 uploads takes
        # seconds, the uploads completed meanwhile drop out, and it counted about half
        # of the parts recorded: 1.85 record_part runs per listed part.)
        self.parts_recorded = self.redis.commands["hlen"]
        self.api = stack.proxy.counts()
        self.cpu_flows = rss.cpu()
        self.cpu_moto = stack.s3_cpu_seconds()  # moto's, or Ceph's
        self.cpu_prefect = tree_cpu_seconds(pid_of(stack.prefect))

    def since(self, before: Snapshot, per: int) -> dict[str, Any]:
        """Each counter's growth since `before`, divided by `per` (parts or streams)."""
        trips, cmds = self.redis.since(before.redis)
        api = self.api - before.api
        # Log records ride in batches (counted apart); the rest are calls, from the
        # worker and its flow runs alike: the whole ingest side.
        logs = sum(v for k, v in api.items() if k.endswith(" log-records"))
        calls = {k: v for k, v in api.items() if not k.endswith(" log-records")}
        top = sorted(calls.items(), key=lambda kv: -kv[1])[:10]
        return {
            "redis_round_trips": ratio(trips, per),
            "redis_commands": ratio(sum(cmds.values()), per),
            "redis_commands_top": {k: round(v / per, 2) for k, v in cmds.most_common(6)},
            "prefect_api_calls": ratio(sum(calls.values()), per),
            "prefect_api_calls_top": {k: round(v / per, 2) for k, v in top},
            "prefect_log_records": ratio(logs, per),
            "cpu_s_flow_runs": round((self.cpu_flows - before.cpu_flows) / per, 3),
            "cpu_s_moto": round((self.cpu_moto - before.cpu_moto) / per, 3),
            "cpu_s_prefect_server": round((self.cpu_prefect - before.cpu_prefect) / per, 3),
        }


def _measure(stack: Stack, worker_pid: int, streams: int, size: int, rate: float) -> dict:
    store = stack.store()
    paths = [os.path.join(stack.watch_dir, f"cam-{i:02d}.mkv") for i in range(streams)]
    writers = [SteadyWriter(p, size, rate, on_close=store.hints.note_closed) for p in paths]
    rss = RssSampler(worker_pid)
    rss.start()
    at_trigger = Snapshot(stack, rss)
    t_trigger = time.monotonic()
    try:
        runs, again, triggered = _open_all(stack, paths)
    except NeverOpened as exc:  # a figure too (the process worker at 50 streams here)
        rss.stop()
        for p in paths:  # the next measurement starts from an empty folder and bucket
            stack.remove_file(p)
        stack.drop_objects()
        log(f"many: {exc}; the worker's log: {stack.workdir}/worker.log")
        return {
            "streams": streams,
            "finished": False,
            "streams_open": exc.opened,
            "runs_triggered_again": exc.again,
            "gave_up_after_s": round(exc.seconds),
        }
    at_open = Snapshot(stack, rss)
    t_open = time.monotonic()
    log(f"many: {streams} streams open after {t_open - t_trigger:.1f} s; writing")
    # Cameras are not started in the same millisecond: starts spread over STAGGER_S,
    # so their closes spread too (and every stream is live at once in between).
    for i, w in enumerate(writers):
        threading.Timer(STAGGER_S * i / max(1, streams - 1), w.start).start()
    # While streaming: from the writers' start to the first close, counted per part
    # recorded by then.
    wait_for(lambda: any(w.closed_wall for w in writers), 1800, "a first recording to end")
    at_first_close = Snapshot(stack, rss)
    streamed = at_first_close.parts_recorded - at_open.parts_recorded
    states = wait_runs_final(list(runs.values()), timeout=1800)
    time.sleep(2)  # let the last runs' log and event batches reach the proxy
    at_end = Snapshot(stack, rss)
    rss.stop()
    for w in writers:
        if w.error:
            raise w.error
    records = [
        store.streams.require(store.identities.stream_for(identity_of(p)) or "?") for p in paths
    ]
    for p in paths:
        check_object(stack, stack.key_for(p), size)
    same = identical_count(stack, paths)
    parts = sum(r.parts_count for r in records)
    # The object = the stream's object_at_utc: completed and checked by a HEAD (the
    # floor stops at its complete), not completed_at_utc, which comes after the file's
    # SHA-256 and the tag too. Wall clock, like Redis's stamps.
    done = [datetime.fromisoformat(r.object_at_utc).timestamp() for r in records]
    started = {
        p: datetime.fromisoformat(r.opened_at_utc).timestamp()
        for r, p in zip(records, paths, strict=True)
    }
    first_byte = [started[p] - triggered[p] for p in paths]
    stages = burst_stages(runs, triggered, started)
    closed = {p: w.closed_wall for p, w in zip(paths, writers, strict=True)}
    ending = ending_stages(runs, closed, dict(zip(paths, done, strict=True)))
    lone = lone_starts(stack)
    stack.drop_objects()
    for p in paths:
        stack.remove_file(p)
    return {
        **close_to_object(writers, done, size, rate),
        "trigger_to_first_byte_s_p50": round(statistics.median(first_byte), 2),
        "trigger_to_first_byte_s_p95": p95(first_byte),
        "burst_stages_s_p50_p95": stages,
        "ending_stages_s_p50_p95": ending,
        # The same, for single new recordings on the idle worker afterwards.
        "lone_trigger_to_first_byte_s": [round(x, 2) for x in lone],
        "cold_start_trigger_to_all_open_s": round(t_open - t_trigger, 1),
        "run_states": dict(Counter(states)),
        "runs_triggered_again": again,
        "parts": parts,
        "peak_rss_mib_worker_tree": round(rss.peak / MIB),
        "peak_pss_mib_worker_tree": round(rss.peak_pss / MIB),
        "pss_per_stream_mib": round(rss.peak_pss / MIB / streams, 1),
        "byte_identical": same,
        "peak_rss_mib_one_process": round(rss.peak_one / MIB),
        "peak_processes": rss.peak_procs,
        "stagger_s": STAGGER_S,
        # Writers start -> every run final: the S3 server's share (the floor's alike).
        "cpu_s_s3_server": round(at_end.cpu_moto - at_open.cpu_moto, 1),
        # Writers start -> first close: what a part costs while recordings stream.
        "per_part_while_streaming": at_first_close.since(at_open, max(1, streamed)),
        "parts_while_streaming": streamed,
        # First close -> every run final: ending a stream (finalize, complete, report).
        "per_stream_ending": at_end.since(at_first_close, streams),
        # Writers start -> every run final, per part: the whole recording's average.
        "per_part_overall": at_end.since(at_open, parts),
        # Trigger -> every stream open: what starting a stream costs.
        "per_stream_opening": at_open.since(at_trigger, streams),
        "idle_timeout_seconds": IDLE_TIMEOUT,
    }
