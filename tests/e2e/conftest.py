"""End-to-end fixtures: everything runs as real processes, driven by the same
commands the README gives; the test process only talks HTTP to them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run_cli(args: list[str], env: dict[str, str], timeout: float = 120) -> str:
    result = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def until(check: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # server still starting, object not there yet
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def flow_runs(api_url: str, deployment_name: str = "stream-ingest") -> list[dict]:
    body = {"deployments": {"name": {"any_": [deployment_name]}}, "sort": "EXPECTED_START_TIME_ASC"}
    resp = httpx.post(f"{api_url}/flow_runs/filter", json=body, timeout=10)
    resp.raise_for_status()
    return resp.json()


@pytest.fixture
def e2e_env(tmp_path: Path, redis_server, moto_server, bucket_name, namespace) -> dict[str, str]:
    """Environment for the product's processes: fresh Prefect home, this test's
    bucket, namespace and watch folder, fast worker polling."""
    watch = tmp_path / "watch"
    watch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "STREAM_INGEST_"))}
    env.update(
        PATH=f"{BIN}:{env.get('PATH', '')}",
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_WORKER_QUERY_SECONDS="1",
        STREAM_INGEST_WATCH_DIR=str(watch),
        STREAM_INGEST_REDIS_URL=redis_server.url,
        STREAM_INGEST_REDIS_NAMESPACE=namespace,
        STREAM_INGEST_S3_BUCKET=bucket_name,
        STREAM_INGEST_S3_PREFIX="e2e",
        STREAM_INGEST_S3_ENDPOINT_URL=moto_server.url,
        STREAM_INGEST_AWS_ACCESS_KEY_ID="testing",
        STREAM_INGEST_AWS_SECRET_ACCESS_KEY="testing",
        STREAM_INGEST_PART_SIZE_MIB="5",
        STREAM_INGEST_IDLE_TIMEOUT_SECONDS="5",
        STREAM_INGEST_SETTLE_SECONDS="0.5",
    )
    return env
