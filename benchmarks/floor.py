"""The floor beside `many`: plain boto3 tailing the same growing files on the same
machine, with no Prefect, no Redis, no end detection and no verification.

One process of its own (as the worker is) runs a thread per file: it creates the
multipart upload (CRC32, as ours), uploads each 8 MiB part once the file holds its
bytes (looking every 0.2 s, up to 8 parts at once, as ours), and completes the upload the moment it has
sent the file's final size, which it is told in advance: an uploader that knows when
the recording ends. What it cannot do faster than this, on this machine, with this
S3 server, no uploader can; close -> object and the aggregate rate are measured as in
`many`, so the two lines compare.

Run by `many` as worker "boto3": `python -m benchmarks.floor SPEC.json` prints
"ready" once every upload exists, then one JSON line per completed file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from benchmarks.common import (
    MIB,
    RssSampler,
    check_object,
    close_to_object,
    identical_count,
    log,
)
from benchmarks.writer import SteadyWriter

PART = 8 * MIB  # the product's default part size
POLL_S = 0.2  # the product's default poll
IN_FLIGHT = 8  # parts per stream at once: the product's default
_print_lock = threading.Lock()


def _tail(s3: Any, bucket: str, key: str, upload_id: str, path: str, size: int) -> None:
    """Send each part once the file holds it, up to IN_FLIGHT at once (a stream that
    fell behind catches up in parallel, as ours does); complete after the last."""

    def send(number: int, offset: int, need: int) -> dict[str, Any]:
        with open(path, "rb") as fh:
            fh.seek(offset)
            body = fh.read(need)
        out = s3.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=body,
            ChecksumAlgorithm="CRC32",
        )
        part = {"PartNumber": number, "ETag": out["ETag"]}
        if "ChecksumCRC32" in out:  # an S3 stand-in may not answer one
            part["ChecksumCRC32"] = out["ChecksumCRC32"]
        return part

    sent, offset, number = [], 0, 1
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        while offset < size:
            need = min(PART, size - offset)
            if os.stat(path).st_size < offset + need or _busy(sent):
                time.sleep(POLL_S)
                continue
            sent.append(pool.submit(send, number, offset, need))
            offset, number = offset + need, number + 1
        parts = [f.result() for f in sent]
    s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    done = json.dumps({"path": path, "done": time.time()})
    with _print_lock:  # one line per file: threads' prints would interleave
        print(done, flush=True)


def _busy(sent: list[Future[Any]]) -> bool:
    return sum(1 for f in sent if not f.done()) >= IN_FLIGHT


def main(spec_path: str) -> None:
    import boto3
    from botocore.config import Config

    with open(spec_path) as fh:
        spec = json.load(fh)
    files = spec["files"]
    s3 = boto3.client(
        "s3",
        endpoint_url=spec["endpoint"],
        region_name="us-east-1",
        config=Config(max_pool_connections=IN_FLIGHT * len(files)),
        **spec["credentials"],
    )
    uploads = [
        s3.create_multipart_upload(Bucket=spec["bucket"], Key=f["key"], ChecksumAlgorithm="CRC32")[
            "UploadId"
        ]
        for f in files
    ]
    threads = [
        threading.Thread(
            target=_tail, args=(s3, spec["bucket"], f["key"], uid, f["path"], spec["size"])
        )
        for f, uid in zip(files, uploads, strict=True)
    ]
    for t in threads:
        t.start()
    print("ready", flush=True)
    for t in threads:
        t.join()


def run(stack: Any, streams: int, size: int, rate: float, stagger: float) -> dict[str, Any]:
    paths = [os.path.join(stack.watch_dir, f"floor-{i:02d}.mkv") for i in range(streams)]
    writers = [SteadyWriter(p, size, rate) for p in paths]
    spec = {
        "endpoint": stack.s3_url,
        "bucket": stack.bucket,
        "credentials": stack.s3_keys,
        "size": size,
        "files": [{"path": p, "key": stack.key_for(p)} for p in paths],
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(spec, fh)
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.floor", fh.name],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    )
    assert proc.stdout is not None
    try:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the boto3 floor did not start its uploads")
        rss = RssSampler(proc.pid)
        rss.start()
        s3_before = stack.s3_cpu_seconds()
        for i, w in enumerate(writers):
            threading.Timer(stagger * i / max(1, streams - 1), w.start).start()
        done = {}
        for line in proc.stdout:
            got = json.loads(line)
            done[got["path"]] = got["done"]
        if proc.wait(60) != 0 or len(done) != streams:
            raise RuntimeError(f"the boto3 floor failed: {len(done)} of {streams} completed")
        rss.stop()
        s3_cpu = stack.s3_cpu_seconds() - s3_before
    finally:
        if proc.poll() is None:
            proc.kill()
        os.unlink(fh.name)
    for w in writers:
        w.join(60)
        if w.error:
            raise w.error
    for p in paths:
        check_object(stack, stack.key_for(p), size)
    same = identical_count(stack, paths)
    figures = close_to_object(writers, [done[w.path] for w in writers], size, rate)
    log(f"many: boto3 floor, {streams} streams done")
    stack.drop_objects()
    for p in paths:
        stack.remove_file(p)
    return {
        **figures,
        "peak_pss_mib_worker_tree": round(rss.peak_pss / MIB),
        "pss_per_stream_mib": round(rss.peak_pss / MIB / streams, 1),
        "byte_identical": same,
        "cpu_s_uploader": round(rss.cpu(), 1),
        "cpu_s_s3_server": round(s3_cpu, 1),
        "stagger_s": stagger,
    }


if __name__ == "__main__":
    main(sys.argv[1])
