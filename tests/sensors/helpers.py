"""Sensor test helpers: a fake Prefect (trigger and events), a polling wait, and a
sensor running in a named thread that is always joined."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.devstack.services import wait_for
from stream_ingest.flows.runs import RunRequest
from stream_ingest.flows.source import snapshot
from stream_ingest.sensors.run import Sensor


class FakePrefect:
    """Stands in for `run_deployment`: one run per idempotency key, like Prefect.
    Exceptions queued in `failures` are raised by the next calls."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[RunRequest] = []
        self.runs: dict[str, str] = {}  # idempotency key -> run id
        self.failures: list[BaseException] = []
        self.over: set[str] = set()  # runs Prefect reports in a final state
        self.batches = True  # whether the deployment's flow takes `stream_ids`
        self.gate: threading.Event | None = None  # calls wait for it, if set

    def takes(self, deployment: str) -> bool:
        return self.batches

    def __call__(self, request: RunRequest) -> str:
        with self.lock:
            self.calls.append(request)
        if self.gate is not None:
            self.gate.wait(10)
        with self.lock:
            if self.failures:
                raise self.failures.pop(0)
            return self.runs.setdefault(request.idempotency_key, str(uuid.uuid4()))

    def covered(self, store: CheckpointStore) -> list[str]:
        """The files the runs asked for upload: a batch's by its streams' records."""
        with self.lock:
            calls = list(self.calls)
        return [path for call in calls for path in self.covered_by(call, store)]

    @staticmethod
    def covered_by(call: RunRequest, store: CheckpointStore) -> list[str]:
        if not call.batch:
            return [call.path]
        records = [store.streams.get(sid) for sid in call.batch]
        return [r.original_path if r else sid for r, sid in zip(records, call.batch, strict=True)]

    def runs_for(self, path: str | Path) -> list[str]:
        """Distinct runs created for `path` (repeated keys count once)."""
        with self.lock:
            keys = {c.idempotency_key for c in self.calls if c.path == str(path)}
            return [self.runs[k] for k in keys if k in self.runs]

    def calls_for(self, path: str | Path) -> list[RunRequest]:
        with self.lock:
            return [c for c in self.calls if c.path == str(path)]


class FakeEvents:
    """Stands in for `emit_event`; records what would have been sent."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: list[dict[str, Any]] = []
        self.fail = False

    def __call__(self, **kwargs: Any) -> object:
        if self.fail:
            raise RuntimeError("events API down")
        with self.lock:
            self.sent.append(kwargs)
        return None

    def names(self, path: str | Path) -> list[str]:
        with self.lock:
            return [e["event"] for e in self.sent if e["resource"].get("path") == str(path)]

    def named(self, event: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.sent if e["event"] == event]


def wait_until(check: Callable[[], object], what: str, timeout: float = 5.0) -> None:
    """Wait for the sensor (a thread of this process) to have done `what`."""
    wait_for(check, timeout, what, interval=0.02)


@contextlib.contextmanager
def running(sensor: Sensor, timeout: float = 10.0) -> Iterator[Sensor]:
    """Run `sensor` in a non-daemon thread until the block ends; it must be caught
    up on entry and stopped (thread joined) on exit."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            sensor.run(stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="sensor-test-run")
    thread.start()
    try:
        wait_until(lambda: sensor.caught_up.is_set() or errors, "the catch-up scan", timeout)
        if errors:
            raise errors[0]
        yield sensor
    finally:
        stop.set()
        thread.join(timeout)
    assert not thread.is_alive(), "sensor did not stop"
    if errors:
        raise errors[0]


def identity(path: Path) -> str:
    """The identity the sensor and the flow give the file at `path` now."""
    return str(snapshot(str(path)).identity)


def write(path: Path, data: bytes = b"\0" * 1024) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
