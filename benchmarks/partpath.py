"""The per-byte cost of the part path alone: `python -m benchmarks.partpath [MiB]`.

No Prefect, Redis, sensor or polling: in one process, against a moto server of its
own, a finished file goes up as boto3 `upload_file` (s3transfer's defaults) and as
the flow sends parts (8 threads, each part read into a pooled buffer with
`read_into`, its xxh3 digest and the file's SHA-256 fed, `upload_part` from the
buffer), three ways: the CRC32 computed by botocore (as before stream_ingest/checksums.py),
the CRC32 ours (as now), and as now without the SHA-256. CPU seconds (user + system
of the process) per GiB, each way REPS times in turn; one JSON line, each list
sorted. What the product spends beyond this is per part or per second, not per byte
(`cpu` measures it all).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3

from stream_ingest.checksums import crc32_b64
from stream_ingest.devstack.services import MotoServer
from stream_ingest.flows.buffers import PartBuffers
from stream_ingest.flows.digest import part_digest
from stream_ingest.flows.source import read_into

MIB = 1024 * 1024
GIB = 1024 * MIB
PART = 8 * MIB
BUCKET = "bench"
REPS = 3


def main(size_mib: int = 1024) -> dict[str, Any]:
    size = size_mib // 16 * 16 * MIB
    workdir = tempfile.mkdtemp(prefix="si-partpath-")
    moto = MotoServer(workdir=workdir)
    moto.start()
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=moto.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        path = os.path.join(workdir, "file.mp4")
        block = os.urandom(16 * MIB)
        with open(path, "wb") as fh:
            for _ in range(size // len(block)):
                fh.write(block)
        ways = {
            "boto3_upload_file": lambda: s3.upload_file(path, BUCKET, "boto3"),
            "ours_crc32_by_botocore": lambda: _ours(s3, path, size, own_crc=False, sha=True),
            "ours": lambda: _ours(s3, path, size, own_crc=True, sha=True),
            "ours_without_sha256": lambda: _ours(s3, path, size, own_crc=True, sha=False),
        }
        out: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(REPS):
            for name, upload in ways.items():
                _reset(s3, moto.url)
                os.sync()
                cpu0 = time.process_time()
                upload()
                out[name].append(round((time.process_time() - cpu0) / (size / GIB), 3))
        return {
            "bench": "part_path",
            "size_mib": size // MIB,
            "cpu_s_per_gib": {k: sorted(v) for k, v in out.items()},
            "loadavg_1m": os.getloadavg()[0],
        }
    finally:
        moto.stop()


def _reset(s3: Any, url: str) -> None:
    req = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(req, timeout=60):
        pass
    s3.create_bucket(Bucket=BUCKET)


def _ours(s3: Any, path: str, size: int, own_crc: bool, sha: bool) -> None:
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="ours", ChecksumAlgorithm="CRC32")
    buffers, digest = PartBuffers(16), hashlib.sha256()

    def send(k: int) -> dict[str, Any]:
        with buffers.borrow(PART) as buf:
            data = read_into(path, k * PART, PART, buf)
            part_digest(data)
            if sha:
                digest.update(data)  # the order does not change the cost
            crc = {"ChecksumCRC32": crc32_b64(buf)} if own_crc else {}
            resp = s3.upload_part(
                Bucket=BUCKET,
                Key="ours",
                UploadId=upload["UploadId"],
                PartNumber=k + 1,
                Body=buf,
                ChecksumAlgorithm="CRC32",
                **crc,
            )
        return {"PartNumber": k + 1, "ETag": resp["ETag"], "ChecksumCRC32": resp["ChecksumCRC32"]}

    with ThreadPoolExecutor(8) as pool:
        parts = list(pool.map(send, range(size // PART)))
    s3.complete_multipart_upload(
        Bucket=BUCKET, Key="ours", UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1024)), flush=True)
