"""`stream-ingest dev`: the whole product on one machine, in one command.

Starts only what is not configured: a Prefect server (SQLite) with its UI unless
PREFECT_API_URL is set, a private Redis unless STREAM_INGEST_REDIS_URL is set, a moto
S3 server (in memory) unless STREAM_INGEST_S3_ENDPOINT_URL or AWS credentials are
set. Then it registers the blocks, deploys prefect.yaml to the `video-ingest` pool,
starts a worker and the sensor, and on Ctrl-C or SIGTERM stops everything it started.

While it runs, `prefect.toml` in the folder it was started from points Prefect's
settings at its API, so `stream-ingest streams list` and `prefect flow-run ls` in a
second terminal find the stack by themselves (stream_ingest/devstack/pointer.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from stream_ingest.devstack.pointer import SECOND_SHELL, StackPointer
from stream_ingest.devstack.services import (
    MotoServer,
    PrefectServer,
    RedisServer,
    Service,
    free_port,
)
from stream_ingest.errors import StreamError


class DevStackError(StreamError):
    """A step of the local stack failed; the message says which and how."""


def _project_root() -> Path:
    """The checkout `prefect deploy` runs in: the first folder above this module that
    holds prefect.yaml (the package sits inside the checkout), else the current one."""
    for folder in Path(__file__).resolve().parents:
        if (folder / "prefect.yaml").is_file() and (folder / "pyproject.toml").is_file():
            return folder
    return Path.cwd()


PROJECT_ROOT = _project_root()
WORK_POOL = "video-ingest"
WORKER_TYPE = (
    "stream-ingest-warm"  # streams as threads of one process (stream_ingest/workers/warm.py)
)


class Child(Service):
    """A long-running command of ours (worker, sensor) in its own process group."""

    def __init__(self, name: str, command: list[str], workdir: str) -> None:
        self.name = name
        self._command = command
        super().__init__(port=0, workdir=workdir)

    def command(self) -> list[str]:
        return self._command

    def ready(self) -> bool:
        return True


def _say(message: str) -> None:
    print(f"[stream-ingest dev] {message}", flush=True)


def _run(cmd: list[str]) -> None:
    if not (PROJECT_ROOT / "prefect.yaml").is_file():
        raise DevStackError(
            f"no prefect.yaml in {PROJECT_ROOT}: run `stream-ingest dev` (./dev.sh) from a "
            "checkout of stream-ingest"
        )
    result = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise DevStackError(
            f"{' '.join(cmd[2:])} failed:\n{result.stdout[-1500:]}{result.stderr[-1500:]}"
        )


def _ensure_work_pool() -> None:
    """The pool, of the warm worker's type; one left by an older dev of another type
    (process) is replaced, its deployments with it (`prefect deploy` follows)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            if client.read_work_pool(WORK_POOL).type == WORKER_TYPE:
                return
            client.delete_work_pool(WORK_POOL)
        except ObjectNotFound:
            pass
        client.create_work_pool(WorkPoolCreate(name=WORK_POOL, type=WORKER_TYPE))


def _create_bucket(settings: object) -> None:
    import boto3

    s = settings  # type: ignore[assignment]
    client = boto3.client(
        "s3",
        endpoint_url=s.s3_endpoint_url,
        region_name=s.aws_region,
        aws_access_key_id=s.aws_access_key_id.get_secret_value(),
        aws_secret_access_key=s.aws_secret_access_key.get_secret_value(),
    )
    client.create_bucket(Bucket=s.s3_bucket)


def run_dev(
    watch: str | None,
    state_dir: str,
    prefect_port: int,
    config: str,
    stop: threading.Event | None = None,
) -> int:
    """Start the stack, wait for a signal (or `stop`), stop what we started."""
    stop = stop or threading.Event()
    state = Path(state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    pointer = StackPointer(Path.cwd())
    pointer.check_free()
    if watch:
        os.environ["STREAM_INGEST_WATCH_DIR"] = str(Path(watch).resolve())
    os.environ.setdefault("STREAM_INGEST_WATCH_DIR", str(Path("recordings").resolve()))
    Path(os.environ["STREAM_INGEST_WATCH_DIR"]).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_HOME", str(state / "prefect-home"))
    # Runs should start within a second of a new file, not after the default 10 s poll.
    os.environ.setdefault("PREFECT_WORKER_QUERY_SECONDS", "1")
    started: list[Service] = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    try:
        _start_services(prefect_port, state, started)
        pointer.write(os.environ["PREFECT_API_URL"])
        from stream_ingest.blocks.registration import register_blocks
        from stream_ingest.settings import load_settings

        settings = load_settings(config_block=config)
        if os.environ.get("STREAM_INGEST_DEV_MOTO") == "1":
            _create_bucket(settings)
        for line in register_blocks(settings):
            _say(f"block {line}")
        _ensure_work_pool()
        _run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"])
        _say(f"deployed prefect.yaml to work pool {WORK_POOL}")
        worker = Child(
            "worker",
            [
                sys.executable,
                "-m",
                "prefect",
                "worker",
                "start",
                "--pool",
                WORK_POOL,
                "--type",
                WORKER_TYPE,
            ],
            str(state),
        )
        started.append(worker.start())
        sensor = Child(
            "sensor",
            [sys.executable, "-m", "stream_ingest.cli.main", "--config", config, "sensor"],
            str(state),
        )
        started.append(sensor.start())
        _say(f"watching {settings.watch_dir}")
        _say(f"Prefect UI: {os.environ['PREFECT_API_URL'].removesuffix('/api')}")
        _say(
            f"S3: s3://{settings.s3_bucket}/{settings.s3_prefix} at "
            f"{settings.s3_endpoint_url or 'AWS'}"
        )
        _say(f"logs: {state}; press Ctrl-C to stop")
        _say(f"in another terminal here: {SECOND_SHELL}")
        while not stop.wait(1):
            dead = [c for c in started if c.proc and c.proc.poll() is not None]
            if dead:
                _say(f"{dead[0].name} exited (see {dead[0].log_path}); stopping")
                return 1
        return 0
    finally:
        pointer.remove()
        for service in reversed(started):
            service.stop()
        _say("stopped everything it started")


def _start_services(prefect_port: int, state: Path, started: list[Service]) -> None:
    if not os.environ.get("PREFECT_API_URL"):
        port = prefect_port or free_port()
        prefect = PrefectServer(port=port, workdir=str(state / "prefect"))
        Path(prefect.workdir).mkdir(exist_ok=True)
        _say(f"starting Prefect server (SQLite in {prefect.workdir}) on port {port}")
        started.append(prefect.start())
        os.environ["PREFECT_API_URL"] = prefect.api_url
    if not os.environ.get("STREAM_INGEST_REDIS_URL"):
        redis = RedisServer(workdir=str(state / "redis"), persist=True)
        Path(redis.workdir).mkdir(exist_ok=True)
        started.append(redis.start())
        os.environ["STREAM_INGEST_REDIS_URL"] = redis.url
        _say(f"started private Redis at {redis.url} (data in {redis.workdir})")
    configured_s3 = os.environ.get("STREAM_INGEST_S3_ENDPOINT_URL") or os.environ.get(
        "STREAM_INGEST_AWS_ACCESS_KEY_ID"
    )
    if not configured_s3:
        moto = MotoServer(workdir=str(state / "moto"))
        Path(moto.workdir).mkdir(exist_ok=True)
        started.append(moto.start())
        os.environ.update(
            STREAM_INGEST_S3_ENDPOINT_URL=moto.url,
            STREAM_INGEST_AWS_ACCESS_KEY_ID="dev",
            STREAM_INGEST_AWS_SECRET_ACCESS_KEY="dev",
            STREAM_INGEST_DEV_MOTO="1",
        )
        _say(
            f"started moto S3 at {moto.url}: IN MEMORY, objects vanish when dev stops "
            "(keys dev/dev)"
        )
