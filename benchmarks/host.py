"""A process that runs stream-ingest flows for the benchmarks, one command at a time.

Why a separate, long-lived process: the flow must not share a GIL with the writer
threads and the boto3 baseline in the benchmark process, and its interpreter and
imports (what a worker pays once per flow-run process) should not be inside the
timed window, just as boto3's imports are not. Each command is one JSON line on
stdin; each reply is one JSON line on the original stdout (Prefect's own output
goes to stderr).

Every ingest reply carries `completed`: time.monotonic() when the flow's
CompleteMultipartUpload returned, i.e. when the object exists.

Commands:
  {"cmd": "ingest", "path": P, "options": {...}, "instrument": bool}
      run the flow on P (options: IngestConfig fields to change for this run, saved
      as a block of their own); with `instrument`, also time each part's pieces.
  {"cmd": "raw_parts", "path": P, "part_size": N, "count": K, "in_flight": 1}
      upload K parts of P with plain boto3 upload_part calls (same client config
      as the StreamBucket block), no Prefect, no Redis: the floor for the flow.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_reply = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)  # anything printed by libraries lands on stderr, not in our replies

import stream_ingest.flows.upload as upload_mod  # noqa: E402
from benchmarks.stack import configure  # noqa: E402
from stream_ingest.blocks.bucket import StreamBucket  # noqa: E402
from stream_ingest.blocks.store_parts import Parts  # noqa: E402
from stream_ingest.flows import finalize as finalize_mod  # noqa: E402
from stream_ingest.flows.ingest import stream_ingest  # noqa: E402

# What the probe times, by the attribute it wraps: (where, attribute, span name).
TIMED: tuple[tuple[Any, str, str], ...] = (
    (StreamBucket, "upload_part", "s3_upload_part"),
    (StreamBucket, "complete_multipart_upload", "s3_complete"),
    (Parts, "record", "redis_record_part"),
    (upload_mod, "read_into", "read"),
    (upload_mod, "part_digest", "digest"),
    (finalize_mod, "_verify", "verify"),
)


def peak_rss_reset() -> None:
    """Reset VmHWM so each command reports its own peak (Linux clear_refs 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


class Probe:
    """Wraps the pieces of a part's path to time them: the task body, the S3
    UploadPart call, the checkpoint write, the read and the part digest, plus when each
    task was submitted and when its future completed. Installed once; `reset`
    starts a new measurement."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self.installed = False

    def reset(self) -> None:
        with self.lock:
            self.spans.clear()

    def _add(self, name: str, start: float, end: float) -> None:
        with self.lock:
            self.spans[name].append((start, end))

    def timed(self, name: str, fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            try:
                return fn(*args, **kwargs)
            finally:
                self._add(name, start, time.monotonic())

        return wrapper

    def install(self) -> None:
        if self.installed:
            return
        self.installed = True
        for owner, attr, name in TIMED:
            setattr(owner, attr, self.timed(name, getattr(owner, attr)))
        finalize_mod.finalize.fn = self.timed("finalize", finalize_mod.finalize.fn)
        for task in (upload_mod.upload_part, upload_mod.upload_parts):
            task.fn = self.timed("task_body", task.fn)
            task.submit = self._timed_submit(task.submit)  # type: ignore[method-assign]

    def _timed_submit(self, submit: Any) -> Any:
        def timed_submit(*args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            fut = submit(*args, **kwargs)
            fut.wrapped_future.add_done_callback(
                lambda _f: self._add("task_submit_to_done", start, time.monotonic())
            )
            return fut

        return timed_submit

    def summary(self) -> dict[str, Any]:
        """Per-piece totals over the tail loop only (calls that started before
        finalize did), and the tail loop's span."""
        with self.lock:
            spans = {k: list(v) for k, v in self.spans.items()}
        fin = spans.get("finalize", [])
        cut = min((s for s, _ in fin), default=float("inf"))
        out: dict[str, Any] = {}
        for name, items in spans.items():
            if name == "finalize":
                out["finalize_s"] = sum(e - s for s, e in items)
                out["finalize_at"] = [items[-1][0], items[-1][1]]  # the one that completed
                continue
            tail = [(s, e) for s, e in items if s < cut]
            out[name] = {
                "n": len(tail),
                "total_s": sum(e - s for s, e in tail),
                "all_total_s": sum(e - s for s, e in items),  # finalize's calls too
            }
        verify = [(s, e) for s, e in spans.get("verify", []) if s >= out.get("finalize_at", [0])[0]]
        if verify:  # the last finalize's pass: from its first read to its last answer
            out["verify_at"] = [min(s for s, _ in verify), max(e for _, e in verify)]
        submits = spans.get("task_submit_to_done", [])
        if submits:
            first = min(s for s, _ in submits)
            last = max(e for s, e in submits if s < cut)
            out["tail_loop_s"] = last - first
            out["tail_loop_at"] = [first, last]
        return out


PROBE = Probe()
# When CompleteMultipartUpload returned: the moment the object exists. Recorded
# here (time.monotonic() is one clock for all processes of the machine) instead of
# polling S3 with HEAD, which would load moto while the flow uploads.
_completed: list[float] = []
_complete = StreamBucket.complete_multipart_upload


def _recording_complete(self: StreamBucket, *args: Any, **kwargs: Any) -> str:
    etag = _complete(self, *args, **kwargs)
    _completed.append(time.monotonic())
    return etag


StreamBucket.complete_multipart_upload = _recording_complete  # type: ignore[method-assign]


def ingest(cmd: dict[str, Any]) -> dict[str, Any]:
    config = None
    if cmd.get("options"):
        config = "bench-" + "-".join(f"{k}-{v}" for k, v in sorted(cmd["options"].items()))
        config = config.replace("_", "-").replace(".", "-").lower()
        configure(config, **cmd["options"])
    if cmd.get("instrument"):
        PROBE.install()
    PROBE.reset()
    _completed.clear()
    started = time.monotonic()
    result = stream_ingest(path=cmd["path"], config=config)
    ended = time.monotonic()
    if result.get("status") != "completed" or result.get("message"):
        # e.g. "already completed": the run did not upload, so its timing is void.
        raise RuntimeError(f"flow did not upload: {result.get('message') or result['status']}")
    out = {"started": started, "ended": ended, "completed": _completed[-1], "result": result}
    if cmd.get("instrument"):
        out["probe"] = PROBE.summary()
    return out


def raw_parts(cmd: dict[str, Any]) -> dict[str, Any]:
    """The floor: read + UploadPart per part with a plain boto3 client configured
    like the block's, `in_flight` at a time, in this same process."""
    import boto3
    from botocore.config import Config

    from stream_ingest.blocks.registration import BOTO_CONFIG

    s3 = boto3.client(
        "s3",
        endpoint_url=os.environ["STREAM_INGEST_S3_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id=os.environ["STREAM_INGEST_AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["STREAM_INGEST_AWS_SECRET_ACCESS_KEY"],
        config=Config(**BOTO_CONFIG),
    )
    bucket, key, size, count = cmd["bucket"], cmd["key"], cmd["part_size"], cmd["count"]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    reads: list[float] = []
    uploads: list[float] = []

    def one(k: int) -> None:
        t0 = time.monotonic()
        with open(cmd["path"], "rb") as fh:
            data = os.pread(fh.fileno(), size, (k - 1) * size)
        t1 = time.monotonic()
        s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=k, Body=data)
        reads.append(t1 - t0)
        uploads.append(time.monotonic() - t1)

    started = time.monotonic()
    with ThreadPoolExecutor(cmd.get("in_flight", 1)) as pool:
        list(pool.map(one, range(1, count + 1)))
    ended = time.monotonic()
    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    return {"started": started, "ended": ended, "read_s": sum(reads), "upload_s": sum(uploads)}


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        peak_rss_reset()
        try:
            out = {"ok": True, **{"ingest": ingest, "raw_parts": raw_parts}[cmd["cmd"]](cmd)}
        except Exception as exc:
            out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        out["peak_rss_bytes"] = peak_rss_bytes()
        _reply.write(json.dumps(out, default=str) + "\n")


if __name__ == "__main__":
    main()
