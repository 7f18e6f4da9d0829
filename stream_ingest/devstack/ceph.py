"""Ceph's RADOS Gateway for the tests and the benchmarks: a one-node cluster that
scripts/ceph-s3.sh starts under a temp dir and stops, one per test session
(tests/conftest.py `ceph_server`) or benchmark run (`./bench.sh --s3 ceph`).

A production S3 implementation next to moto: it differs where real stores differ
(conditional completion ignored, checksums ignored, tags on create dropped, an empty
ETag in the completion's answer), which is what the capability probe
(stream_ingest/blocks/capabilities.py) finds out and the tests that run on both stores check.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ceph-s3.sh"
PROGRAMS = ("ceph-mon", "ceph-osd", "ceph", "monmaptool", "radosgw", "radosgw-admin")
PACKAGES = "ceph-mon ceph-osd ceph-common radosgw"


@dataclass(frozen=True)
class S3Server:
    """An S3 endpoint the tests use: which store it is, where, and its keys.
    `log_path`: where the store logs each request line ("PUT /bucket/key?... HTTP")."""

    name: str
    url: str
    access_key: str
    secret_key: str
    log_path: str


class CephGateway:
    """The cluster scripts/ceph-s3.sh starts. It stops with the test session, or by
    itself (the script's watchdog) if this process dies without stopping it."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        """`env`: the script's settings (NICE, MEMSTORE_BYTES) over this process's."""
        self.dir = tempfile.mkdtemp(prefix="si-ceph-")
        self.info: dict[str, str] = {}
        self.env = {**os.environ, **(env or {})}

    def start(self) -> CephGateway:
        missing = [p for p in PROGRAMS if shutil.which(p) is None]
        if missing:
            raise RuntimeError(
                f"Ceph is not installed (no {' '.join(missing)}): run "
                f"scripts/ensure-test-tools.sh, or apt-get install {PACKAGES}"
            )
        done = subprocess.run(
            [str(SCRIPT), "start", self.dir, "--owner", str(os.getpid())],
            capture_output=True,
            text=True,
            timeout=180,
            env=self.env,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{SCRIPT.name} start failed: {done.stderr.strip()[-2000:]}")
        self.info = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
        return self

    def stop(self) -> None:
        subprocess.run([str(SCRIPT), "stop", self.dir], timeout=60, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> CephGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def server(self) -> S3Server:
        return S3Server(
            "ceph",
            self.info["S3_ENDPOINT"],
            self.info["S3_ACCESS_KEY"],
            self.info["S3_SECRET_KEY"],
            os.path.join(self.dir, "log", "rgw.log"),
        )

    def pids(self) -> list[int]:
        """The cluster's daemons (monitor, OSD, gateway), as the script recorded them."""
        path = os.path.join(self.dir, "pids")
        if not os.path.exists(path):
            return []
        with open(path) as fh:
            rows = [line.split() for line in fh if line.strip()]
        return [int(pid) for name, pid in rows if name != "watchdog"]

    @property
    def version(self) -> str:
        return self.info.get("CEPH_VERSION", "")

    @property
    def startup_seconds(self) -> float:
        return float(self.info.get("STARTUP_SECONDS", "nan"))
