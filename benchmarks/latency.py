"""Close to object: close() of a growing file -> complete S3 object.

stream-ingest: the flow runs (in its own process) while a writer grows the file at
a steady rate; at close the writer records the sensor's "closed" hint; the clock
runs from close() to the return of the flow's CompleteMultipartUpload. Of that,
the S3 server's CompleteMultipartUpload is reported apart (moto copies every byte
in Python: it is the server's cost, not ours); the rest is ours, against the target
of 1 s + 0.1 s per GiB. Our finalize re-reads the file to verify it: that pass is
compared with a plain `readinto` loop over the same file (the floor).

The peers (benchmarks.peers) upload the same file starting at close: what a user
would do without stream-ingest. One JSON line per uploader per size.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from benchmarks import peers
from benchmarks.common import MB, MIB, HostProcess, check_object, cpu_seconds, log, ratio
from benchmarks.stack import Stack
from benchmarks.writer import SteadyWriter, identity_of
from stream_ingest.settings import load_settings

GIB = 1024 * MIB


def wait_uploading(stack: Stack, path: str, timeout: float = 120) -> str:
    """Block until the flow has opened the stream for `path` (its multipart upload
    exists): only then does the writer start, so the flow tails from byte 0."""
    store, identity = stack.store(), identity_of(path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sid = store.identities.stream_for(identity)
        record = store.streams.get(sid) if sid else None
        if record is not None and record.status == "uploading":
            return record.stream_id
        time.sleep(0.05)
    raise TimeoutError(f"flow did not open {path} within {timeout:.0f} s")


def read_floor(path: str, chunk: int = 8 * MIB) -> float:
    """Seconds to read the whole file from the page cache into one reused buffer."""
    buf = bytearray(chunk)
    fd = os.open(path, os.O_RDONLY)
    try:
        start, offset = time.monotonic(), 0
        while n := os.preadv(fd, [buf], offset):
            offset += n
        return time.monotonic() - start
    finally:
        os.close(fd)


def ours(stack: Stack, host: HostProcess, path: str, size: int, rate: float) -> dict[str, Any]:
    store = stack.store()
    writer = SteadyWriter(path, size, rate, on_close=store.hints.note_closed)
    cpu0 = cpu_seconds(host.pid)
    flow = host.submit({"cmd": "ingest", "path": path, "instrument": True})
    sid = wait_uploading(stack, path)
    writer.start()
    writer.ready.wait()
    if writer.error:
        raise writer.error
    reply = flow.result(timeout=3600)
    cpu = cpu_seconds(host.pid) - cpu0  # the whole run, the SHA-256 after completion too
    check_object(stack, stack.key_for(path), size)
    closed = writer.closed_at
    total = reply["completed"] - closed
    probe = reply["probe"]
    fin_start = probe["finalize_at"][0]
    server = probe["s3_complete"]["all_total_s"]
    verify = probe.get("verify_at", [fin_start, fin_start])
    floor = read_floor(path)
    our_side = total - server
    budget = 1 + 0.1 * size / GIB
    return {
        "bench": "close_to_object",
        "peer": "stream-ingest",
        "size_mib": size // MIB,
        "write_rate_mb_s": round(writer.achieved_rate / MB, 1),
        "close_to_object_s": round(total, 3),
        "server_complete_s": round(server, 3),
        "ours_s": round(our_side, 3),
        "ours_budget_s": round(budget, 3),
        "ours_within_budget": our_side <= budget,
        # close -> finalize starts: the poll that sees the file quiet, the writers
        # looked up, parts still in flight at close caught up.
        "close_to_finalize_s": round(fin_start - closed, 3),
        # the verification pass (reads every part not known to be final) against
        # reading the file once from the page cache
        "verify_s": round(verify[1] - verify[0], 3),
        "read_floor_s": round(floor, 3),
        "verify_vs_floor": ratio(verify[1] - verify[0], floor),
        "run_returned_s": round(reply["ended"] - closed, 3),  # the SHA-256 comes after
        "client_cpu_s_per_gib": round(cpu / (size / GIB), 3),
        "parts": store.streams.require(sid).parts_count,
        "flow_host_peak_rss_mib": round(reply["peak_rss_bytes"] / MIB),
    }


def one_size(
    stack: Stack, host: HostProcess, size: int, rate: float, settings: Any
) -> Iterator[dict[str, Any]]:
    """Our line first (as soon as it is known), then one per peer."""
    path = os.path.join(stack.watch_dir, f"latency-{size // MIB}MiB.mp4")
    mine = ours(stack, host, path, size, rate)
    stack.drop_objects()
    log(f"close to object {size // MIB} MiB: stream-ingest {mine['close_to_object_s']} s")
    yield mine | {
        "settle_seconds": settings.settle_seconds,
        "poll_interval_seconds": settings.poll_interval_seconds,
        "part_size_mib": settings.part_size_mib,
    }
    for peer in peers.PEERS:
        os.sync()  # as throughput: no uploader pays for another's dirty pages
        done = peers.upload(peer, stack, path, f"{peer}/latency-{size // MIB}MiB.mp4")
        stack.drop_objects()
        line: dict[str, Any] = {"bench": "close_to_object", "peer": peer, "size_mib": size // MIB}
        if isinstance(done, str):
            log(f"close to object {size // MIB} MiB: {peer} {done}")
            yield line | {"skipped": done}
            continue
        log(f"close to object {size // MIB} MiB: {peer} uploading after close {done.seconds:.2f} s")
        server = done.server_complete_seconds
        yield line | {
            "close_to_object_s": round(done.seconds, 3),
            "server_complete_s": round(server, 3) if server is not None else None,
            "client_cpu_s_per_gib": round(done.cpu_seconds / (size / GIB), 3),
            # stream-ingest's side (its close to object without the server's
            # completion), and its whole close to object, against this upload
            "stream_ingest_ours_ratio": ratio(mine["ours_s"], done.seconds),
            "stream_ingest_close_to_object_ratio": ratio(mine["close_to_object_s"], done.seconds),
        }
    stack.remove_file(path)


def run(stack: Stack, sizes_mib: list[int], rate_mb_s: float) -> Iterator[dict[str, Any]]:
    """The lines of each uploader as soon as it is done (an 8 GiB size takes minutes)."""
    settings = load_settings()
    with HostProcess(stack) as host:
        for size_mib in sizes_mib:
            log(f"close to object {size_mib} MiB, written at {rate_mb_s} MB/s")
            yield from one_size(stack, host, size_mib * MIB, rate_mb_s * MB, settings)
