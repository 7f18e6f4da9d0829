"""The sensor's metrics endpoint: on when the block says so, at its port, with the
events it handled and the streams of the store it triggers into."""

from __future__ import annotations

import threading
from pathlib import Path

from stream_ingest.blocks.registration import build_config
from stream_ingest.devstack.services import free_port
from stream_ingest.flows import telemetry
from stream_ingest.sensors.run import run_sensor
from stream_ingest.settings import Settings
from tests.flows.helpers import scrape
from tests.sensors.helpers import FakeEvents, FakePrefect, wait_until, write


def test_the_sensor_serves_its_events_and_the_stores_streams(
    watch: Path, settings: Settings, prefect: FakePrefect, events: FakeEvents
) -> None:
    port = free_port()
    config = build_config(
        settings.model_copy(update={"metrics_enabled": True, "metrics_sensor_port": port})
    )
    stop = threading.Event()
    thread = threading.Thread(
        target=run_sensor,
        kwargs={"stop_event": stop, "trigger": prefect, "emit": events, "load": lambda n: config},
        name="sensor-test-metrics",
    )
    thread.start()
    try:
        video = write(watch / "a.mp4")
        wait_until(lambda: prefect.calls_for(video), "the run")
        got = scrape(port)
    finally:
        stop.set()
        thread.join(5)
        telemetry.stop(port)
    assert got[("stream_ingest_sensor_events_total", (("event", "FileAppeared"),))] >= 1
    # The test's namespace holds the one stream the sensor created.
    assert got[("stream_ingest_streams", (("state", "detected"),))] == 1
