"""The product as an operator runs it, for end-to-end tests: `prefect server start`,
the work pool, `stream-ingest blocks register`, `prefect deploy --all`, a worker and
the sensor, each a real process started with the README's commands. The test talks
to them over HTTP only (Prefect's REST API, the way the UI does)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from stream_ingest.devstack.services import PrefectServer, Service, T, wait_for

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WARM = "stream-ingest-warm"  # the default work pool type (stream_ingest/workers/warm.py)
PROCESS = "process"


def run_cli(args: list[str], env: dict[str, str], timeout: float = 120) -> str:
    result = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def run_cli_status(args: list[str], env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    """Exit code and output (stdout and stderr) of a command of the product."""
    result = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    return result.returncode, result.stdout + result.stderr


def until(check: Callable[[], T], timeout: float, what: str) -> T:
    """Wait on a real process over HTTP: an error (still starting) is "not yet"."""
    return wait_for(check, timeout, what, interval=0.2, errors=(Exception,))


def new_bucket(s3_url: str, prefix: str) -> tuple[Any, str, str]:
    """A boto3 client on `s3_url`, a new bucket in it, and a namespace to go with it."""
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=s3_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    bucket, namespace = f"{prefix}-{uuid.uuid4().hex[:8]}", f"{prefix}-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    return s3, bucket, namespace


def product_env(
    workdir: Path, redis_url: str, s3_url: str, bucket: str, namespace: str
) -> dict[str, str]:
    """Environment for the product's processes: fresh Prefect home, the test's bucket,
    namespace and watch folder, fast worker polling, small parts."""
    watch = workdir / "watch"
    watch.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "STREAM_INGEST_"))}
    env.update(
        PATH=f"{BIN}:{env.get('PATH', '')}",
        PREFECT_HOME=str(workdir / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_WORKER_QUERY_SECONDS="1",
        STREAM_INGEST_WATCH_DIR=str(watch),
        STREAM_INGEST_REDIS_URL=redis_url,
        STREAM_INGEST_REDIS_NAMESPACE=namespace,
        STREAM_INGEST_S3_BUCKET=bucket,
        STREAM_INGEST_S3_PREFIX="e2e",
        STREAM_INGEST_S3_ENDPOINT_URL=s3_url,
        STREAM_INGEST_AWS_ACCESS_KEY_ID="testing",
        STREAM_INGEST_AWS_SECRET_ACCESS_KEY="testing",
        STREAM_INGEST_PART_SIZE_MIB="5",
        STREAM_INGEST_IDLE_TIMEOUT_SECONDS="5",
        STREAM_INGEST_SETTLE_SECONDS="0.5",
    )
    return env


class Proc(Service):
    """A long-running command of the product (worker, sensor) with its own env."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], workdir: str) -> None:
        self.name, self._cmd, self._env = name, cmd, env
        super().__init__(port=0, workdir=workdir)

    def command(self) -> list[str]:
        return self._cmd

    def env(self) -> dict[str, str]:
        return self._env

    def ready(self) -> bool:
        return True


class Stack:
    """Server, pool, blocks, deployments, worker and sensor, started in README order."""

    def __init__(self, env: dict[str, str], workdir: Path, pool_type: str = WARM) -> None:
        self.env = dict(env)
        self.workdir = workdir
        self.pool_type = pool_type
        self.server = PrefectServer(workdir=str(workdir / "server"))
        self.worker: Proc | None = None
        self.sensor: Proc | None = None

    @property
    def api(self) -> str:
        return self.server.api_url

    @property
    def watch_dir(self) -> Path:
        return Path(self.env["STREAM_INGEST_WATCH_DIR"])

    def __enter__(self) -> Stack:
        Path(self.server.workdir).mkdir(parents=True, exist_ok=True)
        self.server.start()
        try:
            self.env["PREFECT_API_URL"] = self.api
            prefect = str(BIN / "prefect")
            run_cli(
                [prefect, "work-pool", "create", "video-ingest", "--type", self.pool_type], self.env
            )
            run_cli([str(BIN / "stream-ingest"), "blocks", "register"], self.env)
            run_cli([prefect, "--no-prompt", "deploy", "--all"], self.env)
            workdir = str(self.workdir)
            self.worker = Proc(
                "worker", [prefect, "worker", "start", "--pool", "video-ingest"], self.env, workdir
            )
            self.worker.start()
            self.sensor = Proc("sensor", [str(BIN / "stream-ingest"), "sensor"], self.env, workdir)
            self.sensor.start()
            time.sleep(1)  # let the sensor's observer start before files appear
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in (self.sensor, self.worker, self.server):
            if proc is not None:
                proc.stop()

    # -- Prefect REST API, as the UI uses it ----------------------------------------
    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One API call, retried like Prefect's own client does when the server answers
        503 or 429 (Prefect on SQLite says 503 while its database is locked)."""
        for attempt in range(6):
            resp = httpx.request(method, f"{self.api}{path}", json=body, timeout=15)
            if resp.status_code not in (429, 503) or attempt == 5:
                break
            time.sleep(0.25 * 2**attempt)
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._request("POST", path, body)

    def patch(self, path: str, body: dict[str, Any]) -> None:
        self._request("PATCH", path, body)

    @property
    def config(self) -> str:
        return self.env.get("STREAM_INGEST_CONFIG_BLOCK", "stream-ingest")

    def get(self, path: str) -> Any:
        return self._request("GET", path)

    def flow_runs(self, deployment: str = "stream-ingest") -> list[dict[str, Any]]:
        body = {"deployments": {"name": {"any_": [deployment]}}, "sort": "EXPECTED_START_TIME_ASC"}
        return self.post("/flow_runs/filter", body)

    def run_for(self, file_name: str) -> dict[str, Any] | None:
        """The stream-ingest run of a file, by the name the flow gives its runs."""
        runs = [r for r in self.flow_runs() if r["name"] == f"ingest-{file_name}"]
        return runs[-1] if runs else None

    def wait_for_state(self, run_id: str, state: str, timeout: float = 120) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            run = self.get(f"/flow_runs/{run_id}")
            return run if run["state_type"] == state else None

        return until(reached, timeout, f"flow run {run_id} to be {state}")
