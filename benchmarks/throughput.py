"""A finished file dropped into the folder: stream-ingest's flow against the tools a
user would pick instead (benchmarks.peers), same file, same moto, same run.

The file is finished, so the closed hint is written at once (a copy into the folder
ends with CLOSE_WRITE). The flow runs in a warm host process (one small ingest
first), so the figure is the upload path, not interpreter start-up; the clock runs
from the flow call to the return of its CompleteMultipartUpload. The order of the
uploaders rotates between repeats so none always gets the warmer cache. One JSON
line per uploader: the median of the repeats, its client CPU per GiB, and the S3
server's CompleteMultipartUpload time where the client can tell it apart.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

from benchmarks import peers
from benchmarks.common import (
    MB,
    MIB,
    CpuTimeline,
    HostProcess,
    check_object,
    cpu_seconds,
    log,
    ratio,
)
from benchmarks.stack import Stack, pid_of
from benchmarks.writer import fill, identity_of
from stream_ingest.settings import load_settings

GIB = 1024 * MIB


def ingest_finished(
    stack: Stack, host: HostProcess, path: str, size: int, cpu_of: CpuTimeline | None = None
) -> dict[str, Any]:
    """Seconds from the flow call to its CompleteMultipartUpload, the flow process's
    CPU seconds meanwhile, and the reply."""
    stack.store().hints.note_closed(path, identity_of(path))
    cpu0, start = cpu_seconds(host.pid), time.monotonic()
    reply = host.call({"cmd": "ingest", "path": path, "instrument": True})
    cpu = cpu_seconds(host.pid) - cpu0
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
    during = {}
    if cpu_of is not None:  # who else ran while the S3 server completed the upload
        during = cpu_of.between(reply["completed"] - complete, reply["completed"])
    return {
        "seconds": reply["completed"] - start,
        "cpu": cpu,
        "cpu_during_complete": during,
        "complete": complete,
        "reply": reply,
        "phases": phases,
    }


def warm_up(stack: Stack, host: HostProcess) -> None:
    path = os.path.join(stack.watch_dir, "warm-up.mp4")
    fill(path, 6 * MIB)
    ingest_finished(stack, host, path, 6 * MIB)
    stack.drop_objects()
    stack.remove_file(path)


def run(stack: Stack, size_mib: int, repeat: int) -> list[dict[str, Any]]:
    settings = load_settings()
    size = size_mib * MIB
    who_all = ("stream-ingest", *peers.PEERS)
    seconds: dict[str, list[float]] = {w: [] for w in who_all}
    cpu: dict[str, list[float]] = {w: [] for w in who_all}
    complete: dict[str, list[float]] = {w: [] for w in who_all}
    skipped: dict[str, str] = {}
    phases: dict[str, list[float]] = {}
    peak_rss = 0
    during: dict[str, list[float]] = {}
    with HostProcess(stack) as host:
        warm_up(stack, host)
        pids = {"flow": host.pid, "moto": pid_of(stack.moto), "prefect": pid_of(stack.prefect)}
        timeline = CpuTimeline(pids, interval=0.1)
        timeline.start()
        for i in range(repeat):
            path = os.path.join(stack.watch_dir, f"dropped-{i}.mp4")
            fill(path, size)
            order = who_all[i % len(who_all) :] + who_all[: i % len(who_all)]
            for who in order:
                # Each uploader starts with no dirty pages to write back (the file's
                # own, or moto's spilled parts): the first after fill() paid for them.
                os.sync()
                if who == "stream-ingest":
                    out = ingest_finished(stack, host, path, size, timeline)
                    for k, v in out["cpu_during_complete"].items():
                        during.setdefault(k, []).append(v)
                    seconds[who].append(out["seconds"])
                    cpu[who].append(out["cpu"])
                    complete[who].append(out["complete"])
                    for k, v in out["phases"].items():
                        phases.setdefault(k, []).append(v)
                    peak_rss = max(peak_rss, out["reply"]["peak_rss_bytes"])
                elif who not in skipped:
                    done = peers.upload(who, stack, path, f"{who}/dropped-{i}.mp4")
                    if isinstance(done, str):
                        skipped[who] = done
                    else:
                        check_object(stack, f"{who}/dropped-{i}.mp4", size)
                        seconds[who].append(done.seconds)
                        cpu[who].append(done.cpu_seconds)
                        if done.server_complete_seconds is not None:
                            complete[who].append(done.server_complete_seconds)
                stack.drop_objects()
            log(
                f"throughput {size_mib} MiB #{i}: "
                + ", ".join(f"{w} {v[-1]:.2f} s" for w, v in seconds.items() if v)
            )
            stack.remove_file(path)
        timeline.stop()
    boto_s = statistics.median(seconds["boto3"])
    lines = []
    for who in who_all:
        line: dict[str, Any] = {
            "bench": "dropped_in",
            "peer": who,
            "size_mib": size_mib,
            "repeat": repeat,
        }
        if who in skipped:
            lines.append({**line, "skipped": skipped[who]})
            continue
        med = statistics.median(seconds[who])
        line |= {
            "seconds": round(med, 3),
            "mb_s": round(size / med / MB, 1),
            "speed_vs_boto3": ratio(boto_s, med),
            "client_cpu_s_per_gib": round(statistics.median(cpu[who]) / (size / GIB), 3),
            "server_complete_s": (
                round(statistics.median(complete[who]), 3) if complete[who] else None
            ),
            "all_seconds": [round(x, 3) for x in seconds[who]],
        }
        if who == "stream-ingest":
            line |= {
                "phases_s_median": {k: round(statistics.median(v), 3) for k, v in phases.items()},
                # CPU seconds each process used while moto completed our upload
                "cpu_s_during_complete": {
                    k: round(statistics.median(v), 2) for k, v in during.items()
                },
                "part_size_mib": settings.part_size_mib,
                "max_parts_in_flight": settings.max_parts_in_flight,
                "flow_host_peak_rss_mib": round(peak_rss / MIB),
            }
        lines.append(line)
    return lines
