"""Finalize latency: close of a growing file -> complete S3 object.

stream-ingest: the flow runs (in its own process) while a writer grows the file at
a steady rate; at close the writer records the sensor's "closed" hint; the clock
runs from close() to the return of the flow's CompleteMultipartUpload. The flow then
waits SETTLE_SECONDS without growth (the hint is only a hint), re-reads every part
to verify it and to hash the file, uploads the tail and completes.

boto3: `upload_file` (default TransferConfig) of the same file, started at close:
what a user would do without stream-ingest. Same moto server, same run.
"""

from __future__ import annotations

import os
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
from benchmarks.writer import SteadyWriter, identity_of
from stream_ingest.settings import load_settings


def wait_uploading(stack: Stack, path: str, timeout: float = 120) -> str:
    """Block until the flow has opened the stream for `path` (its multipart upload
    exists): only then does the writer start, so the flow tails from byte 0."""
    store, identity = stack.store(), identity_of(path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sid = store.stream_for_identity(identity)
        record = store.get(sid) if sid else None
        if record is not None and record.status == "uploading":
            return record.stream_id
        time.sleep(0.05)
    raise TimeoutError(f"flow did not open {path} within {timeout:.0f} s")


def one_size(stack: Stack, host: HostProcess, size: int, rate: float) -> dict[str, Any]:
    path = os.path.join(stack.watch_dir, f"latency-{size // MIB}MiB.mp4")
    store = stack.store()
    writer = SteadyWriter(path, size, rate, on_close=store.hint_closed)
    flow = host.submit({"cmd": "ingest", "path": path, "instrument": True})
    sid = wait_uploading(stack, path)
    writer.start()
    writer.ready.wait()
    if writer.error:
        raise writer.error
    reply = flow.result(timeout=1800)
    check_object(stack, stack.key_for(path), size)
    si_s = reply["completed"] - writer.closed_at
    probe = reply["probe"]
    fin_start, _fin_end = probe["finalize_at"]
    complete_s = probe["s3_complete"]["all_total_s"]
    record = store.require(sid)
    stack.drop_objects()

    log(f"latency {size // MIB} MiB: stream-ingest {si_s:.2f} s; now boto3 upload_file")
    boto_s = boto3_upload_file(stack, path, f"baseline/latency-{size // MIB}MiB.mp4")
    stack.drop_objects()
    stack.remove_file(path)
    return {
        "size_mib": size // MIB,
        "write_rate_mb_s": round(writer.achieved_rate / MB, 1),
        "stream_ingest_s": round(si_s, 3),
        "boto3_upload_file_s": round(boto_s, 3),
        "latency_ratio_si_to_boto3": ratio(si_s, boto_s),
        # close -> finalize starts: the settle (no growth for SETTLE_SECONDS after
        # the hint) plus catching up with parts still in flight at close.
        "si_close_to_finalize_s": round(fin_start - writer.closed_at, 3),
        # finalize -> complete returned: re-read and verify every part, hash the
        # file, upload the tail, CompleteMultipartUpload (its own time separately).
        "si_finalize_to_complete_s": round(reply["completed"] - fin_start, 3),
        "si_complete_call_s": round(complete_s, 3),
        "stream_ingest_run_returned_s": round(reply["ended"] - writer.closed_at, 3),
        "parts": record.parts_count,
        "flow_host_peak_rss_mib": round(reply["peak_rss_bytes"] / MIB),
    }


def run(stack: Stack, sizes_mib: list[int], rate_mb_s: float) -> dict[str, Any]:
    settings = load_settings()
    results = []
    with HostProcess(stack) as host:
        for size_mib in sizes_mib:
            log(f"latency {size_mib} MiB at {rate_mb_s} MB/s")
            results.append(one_size(stack, host, size_mib * MIB, rate_mb_s * MB))
    return {
        "bench": "finalize_latency",
        "unit": "seconds from close() to complete object (lower is better)",
        "settle_seconds": settings.settle_seconds,
        "poll_interval_seconds": settings.poll_interval_seconds,
        "part_size_mib": settings.part_size_mib,
        "max_parts_in_flight": settings.max_parts_in_flight,
        "results": results,
    }
