"""Throughput on a finished file dropped into the folder: stream-ingest's flow vs
boto3 `upload_file` (default TransferConfig), same file, same moto, same run.

The file is finished, so the closed hint is written at once (a copy into the folder
ends with CLOSE_WRITE). The flow runs in a warm host process (one small ingest
first), so the figure is the upload path, not interpreter start-up; the clock runs
from the flow call to the return of its CompleteMultipartUpload. The order of the two
uploaders alternates between repeats so neither always gets the warmer cache.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

from benchmarks.common import (
    MB,
    MIB,
    HostProcess,
    boto3_upload_file,
    check_object,
    log,
    ratio,
)
from benchmarks.stack import Stack
from benchmarks.writer import fill, identity_of
from stream_ingest.settings import load_settings


def ingest_finished(stack: Stack, host: HostProcess, path: str, size: int) -> dict[str, Any]:
    """Seconds from the flow call to its CompleteMultipartUpload, and the reply."""
    stack.store().hint_closed(path, identity_of(path))
    start = time.monotonic()
    reply = host.call({"cmd": "ingest", "path": path, "instrument": True})
    check_object(stack, stack.key_for(path), size)
    probe = reply["probe"]
    fin_start = probe["finalize_at"][0]
    first, last = probe.get("tail_loop_at", [fin_start, fin_start])  # none if < 1 part
    complete = probe["s3_complete"]["all_total_s"]
    phases = {
        "start_to_first_part": first - start,  # flow run, find-stream, open-upload
        "tail_loop": last - first,  # every full part
        "loop_to_finalize": fin_start - last,
        "finalize_before_complete": reply["completed"] - fin_start - complete,
        "complete_call": complete,
    }
    return {"seconds": reply["completed"] - start, "reply": reply, "phases": phases}


def warm_up(stack: Stack, host: HostProcess) -> None:
    path = os.path.join(stack.watch_dir, "warm-up.mp4")
    fill(path, 6 * MIB)
    ingest_finished(stack, host, path, 6 * MIB)
    stack.drop_objects()
    stack.remove_file(path)


def run(stack: Stack, size_mib: int, repeat: int) -> dict[str, Any]:
    settings = load_settings()
    size = size_mib * MIB
    si: list[float] = []
    boto: list[float] = []
    peak_rss = 0
    phases: dict[str, list[float]] = {}
    with HostProcess(stack) as host:
        warm_up(stack, host)
        for i in range(repeat):
            path = os.path.join(stack.watch_dir, f"dropped-{i}.mp4")
            fill(path, size)
            order = ["si", "boto3"] if i % 2 == 0 else ["boto3", "si"]
            for who in order:
                if who == "si":
                    out = ingest_finished(stack, host, path, size)
                    si.append(out["seconds"])
                    for k, v in out["phases"].items():
                        phases.setdefault(k, []).append(v)
                    peak_rss = max(peak_rss, out["reply"]["peak_rss_bytes"])
                else:
                    boto.append(boto3_upload_file(stack, path, f"baseline/dropped-{i}.mp4"))
                stack.drop_objects()
            log(
                f"throughput {size_mib} MiB #{i}: stream-ingest {si[-1]:.2f} s, boto3 {boto[-1]:.2f} s"
            )
            stack.remove_file(path)
    si_s, boto_s = statistics.median(si), statistics.median(boto)
    return {
        "bench": "throughput_finished_file",
        "size_mib": size_mib,
        "repeat": repeat,
        "stream_ingest_mb_s": round(size / si_s / MB, 1),
        "boto3_upload_file_mb_s": round(size / boto_s / MB, 1),
        "throughput_ratio_si_to_boto3": ratio(boto_s, si_s),
        "stream_ingest_s": [round(x, 3) for x in si],
        "stream_ingest_phases_s_median": {
            k: round(statistics.median(v), 3) for k, v in phases.items()
        },
        "boto3_upload_file_s": [round(x, 3) for x in boto],
        "part_size_mib": settings.part_size_mib,
        "max_parts_in_flight": settings.max_parts_in_flight,
        "boto3_config": "default TransferConfig: 8 MiB parts, max_concurrency 10",
        "flow_host_peak_rss_mib": round(peak_rss / MIB),
    }
