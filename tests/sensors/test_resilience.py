"""Redis and Prefect outages: the sensor waits, says so once per retry, and still
triggers exactly once when they come back."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.devstack.services import RedisServer
from stream_ingest.sensors.events import FileAppeared, SensorEvent
from stream_ingest.sensors.run import Sensor
from stream_ingest.settings import Settings
from tests.sensors.helpers import FakeEvents, FakePrefect, running, wait_until, write

MakeSensor = Callable[..., Sensor]


def retry_delays(caplog: pytest.LogCaptureFixture, reason: str) -> list[float]:
    pattern = re.compile(re.escape(reason) + r" \(.+\); retrying in ([0-9.]+) s$")
    found = (pattern.match(r.getMessage()) for r in caplog.records)
    return [float(m.group(1)) for m in found if m]


def test_redis_outage_keeps_the_event_and_triggers_once(
    watch: Path,
    settings: Settings,
    prefect: FakePrefect,
    events: FakeEvents,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = RedisServer()
    server.start()
    try:
        store = CheckpointStore.from_url(server.url, "outage")
        sensor = Sensor(
            settings, store, trigger=prefect, emit=events, backoff_initial=0.1, backoff_max=0.4
        )
        caplog.set_level(logging.INFO, logger="stream_ingest.sensor")
        with running(sensor):
            server.stop()
            video = write(watch / "during-outage.mp4")
            wait_until(lambda: retry_delays(caplog, "Redis unreachable"), "a retry log line")
            assert prefect.calls == []
            server = RedisServer(port=server.port, workdir=server.workdir)
            server.start()
            wait_until(lambda: prefect.calls_for(video), "the run after Redis is back")
            # A later file goes through after the retried one: nothing is still pending.
            after = write(watch / "after.mp4")
            wait_until(lambda: prefect.calls_for(after), "the next file's run")
        assert len(prefect.calls_for(video)) == 1
        record = store.streams.require(prefect.calls_for(video)[0].stream_id)
        assert record.flow_run_id == prefect.runs[record_key(record.stream_id)]
        delays = retry_delays(caplog, "Redis unreachable")
        assert delays[:3] == [0.1, 0.2, 0.4][: len(delays[:3])]
        assert max(delays) <= 0.4
        line = next(r.getMessage() for r in caplog.records if "Redis unreachable" in r.getMessage())
        assert line.startswith("Redis unreachable (ConnectionError: ")
    finally:
        server.stop()


def record_key(stream_id: str) -> str:
    return f"stream-ingest:{stream_id}"


def test_prefect_outage_is_retried_with_capped_backoff(
    watch: Path,
    store: CheckpointStore,
    prefect: FakePrefect,
    make_sensor: MakeSensor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    video = write(watch / "a.mp4")
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    prefect.failures = [refused] * 5
    sensor = make_sensor(backoff_initial=0.01, backoff_max=0.04)
    caplog.set_level(logging.WARNING, logger="stream_ingest.sensor")
    assert _handled(sensor, FileAppeared(str(video), "created"), threading.Event())
    assert retry_delays(caplog, "Prefect API unreachable") == [0.01, 0.02, 0.04, 0.04, 0.04]
    assert "Prefect API unreachable (ConnectError: [Errno 111] Connection refused)" in caplog.text
    # Six calls, one stream, one key: Prefect would have created one run.
    assert len(prefect.calls) == 6
    assert len({c.idempotency_key for c in prefect.calls}) == 1
    assert store.streams.require(prefect.calls[0].stream_id).flow_run_id


def test_stop_interrupts_a_retry_wait(
    watch: Path, prefect: FakePrefect, make_sensor: MakeSensor
) -> None:
    video = write(watch / "a.mp4")
    prefect.failures = [httpx.ConnectError("down")] * 100
    sensor = make_sensor(backoff_initial=30.0)
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    done = threading.Event()
    result: list[bool] = []

    def target() -> None:
        result.append(_handled(sensor, FileAppeared(str(video), "created"), stop))
        done.set()

    worker = threading.Thread(target=target, name="sensor-test-retry")
    worker.start()
    worker.join(5)
    assert done.is_set(), "a 30 s backoff wait did not end on stop"
    assert result == [False]


def test_unexpected_errors_drop_the_event_and_go_on(
    watch: Path,
    store: CheckpointStore,
    prefect: FakePrefect,
    make_sensor: MakeSensor,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sensor = make_sensor()
    broken = write(watch / "broken.mp4")
    fine = write(watch / "fine.mp4")
    real_claim = store.identities.claim

    def claim(identity: str, record):  # type: ignore[no-untyped-def]
        if record.original_path == str(broken):
            raise ValueError("WRONGTYPE something unexpected")
        return real_claim(identity, record)

    monkeypatch.setattr(store.identities, "claim", claim)
    stop = threading.Event()
    with caplog.at_level(logging.ERROR, logger="stream_ingest.sensor"):
        assert not _handled(sensor, FileAppeared(str(broken), "created"), stop)
    assert _handled(sensor, FileAppeared(str(fine), "created"), stop)
    assert [c.path for c in prefect.calls] == [str(fine)]
    assert "dropping FileAppeared" in caplog.text


def _handled(sensor: Sensor, event: SensorEvent, stop: threading.Event) -> bool:
    """The event handled and its run requested, as the run loop does once its queue
    is drained (a new stream's run may wait for the flush: a batch)."""
    return sensor.process(event, stop) and sensor.flush(stop)
