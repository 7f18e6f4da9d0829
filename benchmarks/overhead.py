"""Per-part overhead: time a part spends outside the S3 UploadPart call.

The flow runs on a finished file of whole parts in an instrumented host (see
benchmarks.host.Probe), once with one part in flight (so per-part times add up
without overlap) and once with the product default. The same host then uploads the
same parts with plain boto3 `upload_part` calls at the same concurrency: the floor.
Only the tail loop is counted (every part before finalize starts).
"""

from __future__ import annotations

import os
from typing import Any

from benchmarks.common import MIB, CpuTimeline, HostProcess, log
from benchmarks.stack import Stack, pid_of
from benchmarks.throughput import warm_up
from benchmarks.writer import fill, identity_of
from stream_ingest.settings import load_settings


def _ms(seconds: float, n: int) -> float:
    return round(1000 * seconds / max(n, 1), 1)


def _cpu_ms(cpu: dict[str, float], n: int) -> dict[str, float]:
    return {k: _ms(v, n) for k, v in cpu.items()}


def one_mode(
    stack: Stack, host: HostProcess, cpu: CpuTimeline, path: str, parts: int, in_flight: int
) -> dict:
    part = load_settings().part_size_bytes
    stack.store().hints.note_closed(path, identity_of(path))
    options = {"max_parts_in_flight": in_flight}
    flow = host.call({"cmd": "ingest", "path": path, "options": options, "instrument": True})
    probe = flow["probe"]
    stack.drop_objects()
    raw = host.call(
        {
            "cmd": "raw_parts",
            "path": path,
            "bucket": stack.bucket,
            "key": f"raw/{os.path.basename(path)}",
            "part_size": part,
            "count": parts,
            "in_flight": in_flight,
        }
    )
    n = probe["s3_upload_part"]["n"]
    tail = probe["tail_loop_s"]
    s3_s = probe["s3_upload_part"]["total_s"]
    body = probe["task_body"]["total_s"]
    task = probe["task_submit_to_done"]["total_s"]
    raw_wall = raw["ended"] - raw["started"]
    flow_cpu = cpu.between(*probe["tail_loop_at"])
    raw_cpu = cpu.between(raw["started"], raw["ended"])
    out = {
        "parts_in_flight": in_flight,
        "parts_timed": n,
        "flow_wall_ms_per_part": _ms(tail, n),
        "raw_boto3_wall_ms_per_part": _ms(raw_wall, parts),
        "overhead_wall_ms_per_part": round(_ms(tail, n) - _ms(raw_wall, parts), 1),
        "flow_vs_raw_wall_ratio": round(tail / n / (raw_wall / parts), 3),
        # Sums over all parts of each piece, per part (with parts in flight these
        # overlap, so they can add up to more than the wall time per part).
        "flow_s3_upload_part_ms": _ms(s3_s, n),
        "raw_s3_upload_part_ms": _ms(raw["upload_s"], parts),
        "flow_read_ms": _ms(probe["read"]["total_s"], n),
        "raw_read_ms": _ms(raw["read_s"], parts),
        "flow_digest_ms": _ms(probe["digest"]["total_s"], n),
        "flow_redis_checkpoint_ms": _ms(probe["redis_record_part"]["total_s"], n),
        "flow_task_machinery_ms": _ms(task - body, n),
        "flow_outside_upload_part_ms": _ms(task - s3_s, n),
        # CPU per part of each process while the parts went up: on a 2-core machine
        # the Prefect server's work for each task run competes with moto's.
        "flow_cpu_ms_per_part": _cpu_ms(flow_cpu, n),
        "raw_cpu_ms_per_part": _cpu_ms(raw_cpu, parts),
    }
    if in_flight == 1:  # sequential: the loop's own gap between parts is meaningful
        out["flow_loop_gap_ms"] = _ms(tail - task, n)
    return out


def run(stack: Stack, parts: int) -> dict[str, Any]:
    settings = load_settings()
    results = []
    with HostProcess(stack) as host:
        warm_up(stack, host)
        pids = {
            "flow_process": host.pid,
            "moto": pid_of(stack.moto),
            "prefect_server": pid_of(stack.prefect),
        }
        cpu = CpuTimeline(pids)
        cpu.start()
        for in_flight in (1, settings.max_parts_in_flight):
            path = os.path.join(stack.watch_dir, f"overhead-{in_flight}.mp4")
            fill(path, parts * settings.part_size_bytes)
            log(f"overhead: {parts} parts, {in_flight} in flight")
            results.append(one_mode(stack, host, cpu, path, parts, in_flight))
            stack.drop_objects()
            stack.remove_file(path)
        cpu.stop()
    return {
        "bench": "part_overhead",
        "unit": "milliseconds per part",
        "part_size_mib": settings.part_size_bytes // MIB,
        "parts": parts,
        "results": results,
    }
