"""A finished recording renamed into place, as OBS and most recorders finish a take:
written as `x.mp4.part`, renamed to `x.mp4` once closed.

The local stack as a user runs it: the real sensor (`stream-ingest sensor`, its
watchdog observer) and the warm worker, whose flow has run once before. The clock
runs from the rename to the object in S3 (the stream record's `object_at_utc`: the
object completed and checked). Beside it, in the same run on the same moto, boto3's
`upload_file` of the same file, its clock started at a rename of its own (in a
folder the sensor does not watch): what a user's script that uploads each finished
take would do. The two take turns, one after the other (never at once), the order
alternating from one repeat to the next; medians are reported, with each repeat's
figures and our side split into stages: rename -> the run created (the sensor),
-> Running (the worker's claim and the engine's start), -> the upload opened (first
byte), -> the object.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import datetime
from typing import Any

from benchmarks.common import MIB, identical, log, ratio
from benchmarks.many import IDLE_TIMEOUT, WARM, worker_on_pool
from benchmarks.sensing import SensorProcess
from benchmarks.stack import Stack, configure
from benchmarks.writer import fill, identity_of
from stream_ingest.devstack.services import wait_for

SIZE_MIB = 256
TIMEOUT = 600.0
OURS, BOTO3 = "stream-ingest", "boto3"


def run(stack: Stack, size_mib: int = SIZE_MIB, repeat: int = 3) -> dict[str, Any]:
    configure(idle_timeout_seconds=IDLE_TIMEOUT)  # a take ends by its writers, never the timeout
    staging = os.path.join(stack.workdir, "rename-staging")
    os.makedirs(staging, exist_ok=True)
    size = size_mib * MIB
    seconds: dict[str, list[float]] = {OURS: [], BOTO3: []}
    stages: dict[str, list[float]] = {}
    same: list[bool] = []
    with worker_on_pool(stack, WARM), SensorProcess(stack):
        _ours(stack, "warm-up", 1 * MIB)  # the sensor watches, the flow is imported
        for i in range(repeat):
            name = f"take-{i}"
            order = (OURS, BOTO3) if i % 2 == 0 else (BOTO3, OURS)
            for who in order:
                if who == OURS:
                    took, split, identical_ = _ours(stack, name, size)
                    same.append(identical_)
                    for k, v in split.items():
                        stages.setdefault(k, []).append(v)
                else:
                    took = _boto3(stack, staging, name, size)
                seconds[who].append(took)
                log(f"rename: {name} {who} {took:.2f} s")
    stack.drop_objects()
    ours, theirs = statistics.median(seconds[OURS]), statistics.median(seconds[BOTO3])
    return {
        "bench": "rename",
        "worker": WARM,
        "size_mib": size_mib,
        "repeat": repeat,
        "rename_to_object_s": round(ours, 2),
        "boto3_upload_file_s": round(theirs, 2),
        "ratio_ours_boto3": ratio(ours, theirs),
        "ours_s_each": [round(x, 2) for x in seconds[OURS]],
        "boto3_s_each": [round(x, 2) for x in seconds[BOTO3]],
        "ours_stages_s_median": {k: round(statistics.median(v), 2) for k, v in stages.items()},
        "byte_identical": f"{sum(same)}/{len(same)}",
    }


def _ours(stack: Stack, name: str, size: int) -> tuple[float, dict[str, float], bool]:
    """Write `name`.mp4.part in the watched folder, rename it to `name`.mp4; seconds
    from the rename to the object, the stages, and whether it is byte-identical."""
    part = os.path.join(stack.watch_dir, f"{name}.mp4.part")
    path = part.removesuffix(".part")
    fill(part, size)
    os.sync()  # neither uploader pays for the other's dirty pages
    store = stack.store()
    renamed = time.time()
    os.rename(part, path)
    identity = identity_of(path)

    def done() -> Any:
        sid = store.identities.stream_for(identity)
        record = store.streams.get(sid) if sid else None
        return record if record is not None and record.object_at_utc else None

    record = wait_for(done, TIMEOUT, f"{name}: the object", interval=0.05)
    at = {
        "opened": _stamp(record.opened_at_utc),
        "object": _stamp(record.object_at_utc),
    }
    split = {**_run_marks(record.flow_run_id, renamed), **_split(renamed, at)}
    same = identical(stack, stack.key_for(path), path)
    stack.remove_file(path)
    return at["object"] - renamed, split, same


def _split(renamed: float, at: dict[str, float]) -> dict[str, float]:
    return {
        "opened_to_object": at["object"] - at["opened"],
        "rename_to_opened": at["opened"] - renamed,
    }


def _run_marks(run_id: str, renamed: float) -> dict[str, float]:
    """rename -> the run created, -> its first Running state (the server's clock)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
        states = sorted(client.read_flow_run_states(UUID(run_id)), key=lambda s: s.timestamp)
    running = next((s.timestamp.timestamp() for s in states if s.type == StateType.RUNNING), None)
    out = {}
    if run.created is not None:
        out["rename_to_created"] = run.created.timestamp() - renamed
        if running is not None:
            out["created_to_running"] = running - run.created.timestamp()
    return out


def _stamp(utc: str) -> float:
    return datetime.fromisoformat(utc).timestamp()


def _boto3(stack: Stack, staging: str, name: str, size: int) -> float:
    """The same size through boto3 `upload_file` (its defaults), from a rename of its
    own outside the watched folder."""
    part = os.path.join(staging, f"{name}.mp4.part")
    path = part.removesuffix(".part")
    fill(part, size)
    os.sync()
    s3, key = stack.s3(), f"boto3/{name}.mp4"
    started = time.time()
    os.rename(part, path)
    s3.upload_file(path, stack.bucket, key)
    took = time.time() - started
    if not identical(stack, key, path):
        raise RuntimeError(f"boto3's s3://{stack.bucket}/{key} differs from {path}")
    os.unlink(path)
    return took
