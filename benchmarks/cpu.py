"""Client CPU per GiB: what uploading costs the recording host, against boto3.

The local stack as a new user runs it: the real sensor (`stream-ingest sensor`) and
the warm worker, each in its own process, and the Prefect server. Two cases, one
after the other:

- live: a recording grows in the watched folder at a steady rate (LIVE_RATE) while
  the product uploads it, from the file's creation to its close;
- dropped: a finished file, written outside the folder, is renamed into it.

For each, the CPU seconds (user + system) of the worker, the sensor and the Prefect
server (each with its child processes) from just before the file appears until its
stream is completed (its object in S3 and its SHA-256 recorded), per GiB of the
file. Then, in the same run and against the same moto server, boto3's
`upload_file` (s3transfer's defaults) uploads the same file, its CPU per GiB beside
ours and the ratio. Every object, ours and boto3's, is compared with its file byte
for byte. The Prefect server's CPU while the live recording is written, per hour of
recording, says what a stream costs the server for as long as it lasts; beside it, what
each process spends per hour with nothing to do, measured for IDLE_SECONDS before the
live recording starts (SETTLE_SECONDS after the warm-up).

Both cases run twice: with the product's defaults, then with `s3_payload_signing`
false (moto is an http:// endpoint, where botocore otherwise hashes every request's
body for its signature). boto3 runs with the same botocore setting as ours each time,
and the unsigned lines also give the ratio to boto3 as a user writes it (signing).

Each case has a warm worker and a sensor of its own, warmed up by a small file
dropped in first. `profile_dir`: each case's worker runs under py-spy, which writes
its samples (raw folded stacks, the warm-up's too) to `<case>.txt` there.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

from benchmarks import peers
from benchmarks.common import MB, MIB, log, ratio, tree_cpu_seconds
from benchmarks.many import IDLE_TIMEOUT, WARM, worker_on_pool
from benchmarks.sensing import SensorProcess
from benchmarks.stack import Stack, configure, pid_of
from benchmarks.writer import SteadyWriter, fill, identity_of
from stream_ingest.blocks.registration import UNSIGNED_PAYLOAD, register_blocks
from stream_ingest.devstack.services import wait_for
from stream_ingest.settings import load_settings

GIB = 1024 * MIB
LIVE_RATE = 40 * MB
TIMEOUT = 1800.0
COMPARE_CHUNK = 8 * MIB
IDLE_SECONDS = 10.0  # the idle baseline, measured before the live recording
SETTLE_SECONDS = 10.0  # before it: 3 s still held the warm-up run's tail


def run(
    stack: Stack, live_mib: int, dropped_mib: int, profile_dir: str | None = None
) -> list[dict[str, Any]]:
    staging = os.path.join(stack.workdir, "cpu-staging")
    os.makedirs(staging, exist_ok=True)
    lines: list[dict[str, Any]] = []
    boto_signed: dict[str, float] = {}  # case -> boto3's CPU per GiB, signing as by default
    try:
        for signing in (True, False):
            register_blocks(load_settings(s3_payload_signing=signing))
            configure(idle_timeout_seconds=IDLE_TIMEOUT)  # recordings end by their close
            for case in ("live", "dropped"):
                line = _case(stack, case, signing, live_mib, dropped_mib, staging, profile_dir)
                boto_per_gib = line["boto3_upload_file"]["cpu_s_per_gib"]
                boto_signed.setdefault(case, boto_per_gib)
                if not signing:
                    line["ratio_total_client_vs_boto3_signing"] = ratio(
                        line["cpu_s_per_gib"]["total_client"], boto_signed[case]
                    )
                lines.append(line)
    finally:
        # The benchmarks after this one measure the blocks as the run's settings say.
        register_blocks(load_settings())
        shutil.rmtree(staging, ignore_errors=True)
    return lines


def _case(
    stack: Stack,
    case: str,
    signing: bool,
    live_mib: int,
    dropped_mib: int,
    staging: str,
    profile_dir: str | None,
) -> dict[str, Any]:
    path = os.path.join(stack.watch_dir, f"{case}.mp4")
    name = case if signing else f"{case}-unsigned"
    profile = os.path.join(profile_dir, f"{name}.txt") if profile_dir else None
    # A warm worker of its own per case, so that a profile holds one case.
    with worker_on_pool(stack, WARM, profile) as worker, SensorProcess(stack) as sensor:
        pids = {"worker": worker, "sensor": sensor, "prefect_server": pid_of(stack.prefect)}
        warm = os.path.join(staging, f"warm-up-{name}.mp4")
        fill(warm, 6 * MIB)
        _dropped(stack, warm, os.path.join(stack.watch_dir, f"warm-up-{name}.mp4"), pids)
        stack.drop_objects()
        if case == "live":
            ours = _live(stack, path, live_mib * MIB, pids)
        else:
            staged = os.path.join(staging, f"{case}.mp4")
            fill(staged, dropped_mib * MIB)
            ours = _dropped(stack, staged, path, pids)
        stack.drop_objects()
    config = {} if signing else {"s3": UNSIGNED_PAYLOAD}
    boto = _boto3(stack, path, f"boto3/{case}.mp4", config)
    stack.drop_objects()
    stack.remove_file(path)
    per_gib = ours["cpu_s_per_gib"]
    return {
        "bench": "cpu",
        "case": case,
        "payload_signing": signing,
        **ours,
        "boto3_upload_file": boto,
        "ratio_total_client_vs_boto3": ratio(per_gib["total_client"], boto["cpu_s_per_gib"]),
        "ratio_worker_vs_boto3": ratio(per_gib["worker"], boto["cpu_s_per_gib"]),
        "loadavg_1m": os.getloadavg()[0],
        "profiled": bool(profile_dir),
    }


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    return {k: tree_cpu_seconds(pid) for k, pid in pids.items()}


def _completed(stack: Stack, path: str, timeout: float = TIMEOUT) -> Any:
    """Wait until the stream of the file at `path` is completed; its record."""
    store, identity = stack.store(), identity_of(path)

    def done() -> Any:
        sid = store.identities.stream_for(identity)
        record = store.streams.get(sid) if sid else None
        return record if record is not None and record.status == "completed" else None

    return wait_for(done, timeout, f"{os.path.basename(path)}: stream completed", interval=0.1)


def _per_gib(cpu: dict[str, float], size: int) -> dict[str, float]:
    gib = size / GIB
    out = {k: round(v / gib, 3) for k, v in cpu.items()}
    out["total_client"] = round((cpu["worker"] + cpu["sensor"]) / gib, 3)
    return out


def _live(stack: Stack, path: str, size: int, pids: dict[str, int]) -> dict[str, Any]:
    idle = _idle_rates(pids)
    log(f"cpu: live, {size // MIB} MiB at {LIVE_RATE / MB:.0f} MB/s")
    cpu0, t0 = _cpu(pids), time.monotonic()
    writer = SteadyWriter(path, size, LIVE_RATE)  # creates the file: the sensor sees it
    writer.start()
    writer.join()
    if writer.error:
        raise writer.error
    closed = _cpu(pids)
    record = _completed(stack, path)
    cpu, t1 = _cpu(pids), time.monotonic()
    spent = {k: cpu[k] - cpu0[k] for k in pids}
    recording_h = (writer.closed_at - t0) / 3600
    server_live = closed["prefect_server"] - cpu0["prefect_server"]
    return {
        "size_mib": size // MIB,
        "write_rate_mb_s": round(writer.achieved_rate / MB, 1),
        "cpu_s": {k: round(v, 2) for k, v in spent.items()},
        "cpu_s_per_gib": _per_gib(spent, size),
        "server_cpu_s_per_stream_hour": round(server_live / recording_h, 1),
        # What the server spends with no stream at all (its own loops, the worker's
        # polls), per hour: the part of the figure above that one stream does not add.
        "server_idle_cpu_s_per_hour": round(idle["prefect_server"] * 3600, 1),
        "idle_cpu_s_per_hour": {k: round(v * 3600, 1) for k, v in idle.items()},
        "creation_to_completed_s": round(t1 - t0, 2),
        "close_to_completed_s": round(t1 - writer.closed_at, 2),
        "parts": record.parts_count,
        "byte_identical": _identical(stack, stack.key_for(path), path),
    }


def _idle_rates(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds per second of each process over IDLE_SECONDS with nothing to do."""
    time.sleep(SETTLE_SECONDS)  # the warm-up's run may still be ending
    before, t0 = _cpu(pids), time.monotonic()
    time.sleep(IDLE_SECONDS)
    after, seconds = _cpu(pids), time.monotonic() - t0
    return {k: (after[k] - before[k]) / seconds for k in pids}


def _dropped(stack: Stack, staged: str, path: str, pids: dict[str, int]) -> dict[str, Any]:
    size = os.path.getsize(staged)
    log(f"cpu: {size // MIB} MiB dropped in ({os.path.basename(path)})")
    os.sync()  # no uploader pays for the fill's dirty pages
    cpu0, t0 = _cpu(pids), time.monotonic()
    os.rename(staged, path)
    record = _completed(stack, path)
    cpu, t1 = _cpu(pids), time.monotonic()
    spent = {k: cpu[k] - cpu0[k] for k in pids}
    return {
        "size_mib": size // MIB,
        "cpu_s": {k: round(v, 2) for k, v in spent.items()},
        "cpu_s_per_gib": _per_gib(spent, size),
        "arrival_to_completed_s": round(t1 - t0, 2),
        "parts": record.parts_count,
        "byte_identical": _identical(stack, stack.key_for(path), path),
    }


def _boto3(stack: Stack, path: str, key: str, config: dict[str, Any]) -> dict[str, Any]:
    size = os.path.getsize(path)
    os.sync()
    done = peers.boto3_upload(stack, path, key, **config)
    return {
        "seconds": round(done.seconds, 2),
        "cpu_s": round(done.cpu_seconds, 2),
        "cpu_s_per_gib": round(done.cpu_seconds / (size / GIB), 3),
        "byte_identical": _identical(stack, key, path),
    }


def _identical(stack: Stack, key: str, path: str) -> bool:
    """The object at `key` holds exactly the file's bytes (read in chunks from both)."""
    body = stack.s3().get_object(Bucket=stack.bucket, Key=key)["Body"]
    with open(path, "rb") as fh:
        while True:
            mine = fh.read(COMPARE_CHUNK)
            theirs = b""
            while len(theirs) < len(mine) and (more := body.read(len(mine) - len(theirs))):
                theirs += more
            if mine != theirs:
                return False
            if not mine:
                return body.read(1) == b""
