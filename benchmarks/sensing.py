"""New recordings' runs, created as the sensor creates them.

The benchmarks hand each new file to the sensor's own handler (stream_ingest/sensors/trigger.py,
without watchdog): the stream is claimed in Redis, its run created named and tagged
with the stream, the `detected` event sent, over one Prefect client kept open as the
sensor's (stream_ingest.flows.runs.RunCreator). The runs then do what the sensor's
runs do.

"First byte" is the stream record's `opened_at_utc`: the run has opened the
multipart upload, and reads the file next.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

from benchmarks.common import log
from benchmarks.stack import Stack
from benchmarks.writer import identity_of

DEPLOYMENT = "stream-ingest/stream-ingest"
ATTEMPTS = 6  # as the sensor's loop does: a busy server is asked again


class SensorTrigger:
    """`sensor(path)` -> the new run's id; `sensor.again(path)` reruns its stream."""

    def __init__(self, stack: Stack) -> None:
        from prefect.exceptions import PrefectHTTPStatusError

        from stream_ingest.flows.runs import RunCreator
        from stream_ingest.sensors.prefect_calls import prefect_emit
        from stream_ingest.sensors.trigger import StreamTrigger
        from stream_ingest.settings import config_block_name

        self._busy = PrefectHTTPStatusError
        self.store = stack.store()
        self.config = config_block_name()
        # The flow runs talk to Prefect through the proxy's "flows" channel (the
        # process worker applies this; the warm worker's runs use the worker's).
        self._job = {"env": {"PREFECT_API_URL": stack.proxy.api_url("flows")}}
        self._created: str | None = None
        self._runs = RunCreator()
        self._sensor = StreamTrigger(
            self.store,
            deployment=DEPLOYMENT,
            config=self.config,
            watch_dir=stack.watch_dir,
            trigger=self._create,
            emit=prefect_emit,
        )

    def _create(self, request: Any) -> str:
        self._created = self._runs(request, self._job).id
        return self._created

    def __call__(self, path: str) -> str:
        from stream_ingest.sensors.trigger import TriggerFailed

        for attempt in range(ATTEMPTS):
            self._created = None
            try:
                self._sensor.appeared(path, "created")
            except TriggerFailed as exc:
                busy = isinstance(exc.cause, self._busy) and exc.cause.response.status_code >= 500
                if not busy or attempt == ATTEMPTS - 1:
                    raise
                log(f"sensor: creating the run for {path}: {exc.reason}; again")
                time.sleep(2**attempt)
                continue
            if self._created is None:
                raise RuntimeError(f"{path}: the sensor started no run (a file it knew?)")
            return self._created
        raise AssertionError("unreachable")

    def again(self, path: str) -> str:
        """A run that ended before it opened: rerun its stream, as `streams rerun` does."""
        from stream_ingest.flows.runs import RunRequest

        sid = self.store.identities.stream_for(identity_of(path))
        if sid is None:
            raise RuntimeError(f"{path}: no stream to rerun")
        request = RunRequest.rerun(DEPLOYMENT, path, sid, self.config)
        return self._runs(request, self._job).id

    def opened_at(self, path: str) -> float | None:
        """When the run opened the stream's upload (wall clock), None if not yet."""
        record = self.store.streams.get(self.store.identities.stream_for(identity_of(path)) or "?")
        if record is None or not record.opened_at_utc:
            return None
        return datetime.fromisoformat(record.opened_at_utc).timestamp()


class SensorProcess:
    """`stream-ingest sensor` in its own process, as ./dev.sh starts it; its API
    calls go through the proxy's "sensor" channel."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def __enter__(self) -> int:
        env = {**os.environ, **self.stack.env(self.stack.proxy.api_url("sensor"))}
        self.log = open(os.path.join(self.stack.workdir, "sensor.log"), "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream_ingest.cli.main", "sensor"],
            env={**env, "PYTHONPATH": os.getcwd()},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        time.sleep(3)  # the observer is watching
        if self.proc.poll() is not None:
            raise RuntimeError(f"the sensor exited; see {self.log.name}")
        return self.proc.pid

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
