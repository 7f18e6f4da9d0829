"""run_sensor, the CLI's entry: stop_event in a thread, SIGTERM in a process, and
configuration errors at start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.blocks.registration import build_config
from stream_ingest.devstack.services import RedisServer
from stream_ingest.errors import ConfigurationError
from stream_ingest.sensors.run import run_sensor, stop_on_signals
from stream_ingest.settings import Settings, load_settings
from tests.sensors.helpers import FakeEvents, FakePrefect, wait_until, write

PROJECT = Path(__file__).resolve().parents[2]


def loader(settings: Settings):
    """A stand-in for loading the IngestConfig block: the same block, unsaved."""
    config = build_config(settings)
    return lambda name: config


def test_stop_event_stops_run_sensor_in_a_thread(
    watch: Path,
    settings: Settings,
    store: CheckpointStore,
    prefect: FakePrefect,
    events: FakeEvents,
) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run_sensor(stop_event=stop, trigger=prefect, emit=events, load=loader(settings))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="sensor-test-run-sensor")
    before = signal.getsignal(signal.SIGTERM)
    thread.start()
    try:
        video = write(watch / "a.mp4")
        wait_until(lambda: prefect.calls_for(video) or errors, "the run")
    finally:
        stop.set()
        started = time.monotonic()
        thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 2
    assert errors == []
    assert len(prefect.calls_for(video)) == 1
    # Off the main thread it must not touch signal handlers.
    assert signal.getsignal(signal.SIGTERM) is before


def test_the_loop_touches_its_heartbeat_file(
    watch: Path,
    settings: Settings,
    store: CheckpointStore,
    prefect: FakePrefect,
    events: FakeEvents,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`stream-ingest sensor --heartbeat FILE`: the compose health check reads the
    file's age, so the loop must keep it fresh while it runs."""
    monkeypatch.setattr("stream_ingest.sensors.run.HEARTBEAT_SECONDS", 0.1)
    beat = tmp_path / "alive"
    stop = threading.Event()
    thread = threading.Thread(
        target=run_sensor,
        kwargs={
            "stop_event": stop,
            "trigger": prefect,
            "emit": events,
            "load": loader(settings),
            "heartbeat": beat,
        },
        name="sensor-test-heartbeat",
    )
    thread.start()
    try:
        wait_until(beat.exists, "the first beat")
        os.utime(beat, (0, 0))
        wait_until(lambda: time.time() - beat.stat().st_mtime < 5, "a fresh beat")
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_the_cli_passes_the_heartbeat_file(monkeypatch: pytest.MonkeyPatch) -> None:
    from stream_ingest.cli.main import main

    seen: dict[str, object] = {}
    monkeypatch.setattr(
        "stream_ingest.sensors.run.run_sensor",
        lambda config, watch, heartbeat: seen.update(beat=heartbeat),
    )
    assert main(["sensor", "--heartbeat", "/tmp/sensor.alive"]) == 0
    assert seen == {"beat": Path("/tmp/sensor.alive")}


def test_missing_watch_folder_is_a_configuration_error(
    tmp_path: Path, store: CheckpointStore, prefect: FakePrefect, events: FakeEvents
) -> None:
    settings = load_settings(watch_dir=str(tmp_path / "nope"))
    with pytest.raises(ConfigurationError, match=r"watch folder .*nope does not exist"):
        run_sensor(
            stop_event=threading.Event(), trigger=prefect, emit=events, load=loader(settings)
        )


def test_default_trigger_needs_the_prefect_api_url(settings: Settings) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    stopped = threading.Event()
    stopped.set()  # if the check were missing, return at once instead of hanging
    with (
        temporary_settings(restore_defaults={PREFECT_API_URL}),
        pytest.raises(ConfigurationError, match="PREFECT_API_URL"),
    ):
        run_sensor(stop_event=stopped)


SCRIPT = textwrap.dedent(
    """
    import sys
    from stream_ingest.blocks.registration import build_config
    from stream_ingest.sensors.run import run_sensor, stop_on_signals
    from stream_ingest.settings import load_settings

    calls = open(sys.argv[1], "a")

    def trigger(request):
        calls.write(request.path + "\\n")
        calls.flush()
        return "run-" + request.stream_id

    config = build_config(load_settings())
    run_sensor(trigger=trigger, emit=lambda **_: None, load=lambda name: config)
    print("run_sensor returned", flush=True)
    """
)


@pytest.mark.slow  # a sensor process of its own, started and signalled: the full tier's
def test_sigterm_stops_the_sensor_process_cleanly(
    tmp_path: Path, watch: Path, redis_server: RedisServer, namespace: str
) -> None:
    write(watch / "present.mp4")
    calls = tmp_path / "calls.txt"
    env = dict(
        os.environ,
        STREAM_INGEST_WATCH_DIR=str(watch),
        STREAM_INGEST_REDIS_URL=redis_server.url,
        STREAM_INGEST_REDIS_NAMESPACE=namespace,
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(calls)],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The catch-up scan's run means the sensor is up (imports take seconds).
        wait_until(
            lambda: (calls.exists() and calls.read_text()) or proc.poll() is not None,
            "the sensor process to start",
            timeout=30,
        )
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "run_sensor returned" in out
    # run_sensor raises its logger to INFO (Prefect leaves the root at WARNING).
    assert "sensor watching" in err
    assert "sensor stopped" in err
    assert calls.read_text().splitlines() == [str(watch / "present.mp4")]


def test_sigint_sets_stop_and_a_second_one_gets_the_old_handler() -> None:
    signals = (signal.SIGINT, signal.SIGTERM)
    before = {sig: signal.getsignal(sig) for sig in signals}
    stop = threading.Event()
    try:
        with stop_on_signals(stop):
            assert all(signal.getsignal(sig) is not before[sig] for sig in signals)
            signal.raise_signal(signal.SIGINT)
            assert stop.is_set()
            # Ctrl-C twice: the second one is the interpreter's again.
            assert all(signal.getsignal(sig) is before[sig] for sig in signals)
    except KeyboardInterrupt:
        pytest.fail("SIGINT was not handled by run_sensor's handler")
    assert all(signal.getsignal(sig) is before[sig] for sig in signals)


def test_an_unchanged_block_is_not_compared_again(settings, make_sensor, monkeypatch) -> None:
    """Comparing options (the block's model_dump, its JSON schema) was the idle
    sensor's largest cost: the same block object is applied once."""
    from stream_ingest.blocks.config import IngestConfig
    from stream_ingest.blocks.registration import build_config
    from tests.sensors.helpers import running, wait_until

    config = build_config(settings)
    reloads = {"n": 0}

    def reload() -> IngestConfig:
        reloads["n"] += 1
        return config

    compared = {"n": 0}
    real = IngestConfig.options

    def options(self: IngestConfig) -> object:
        compared["n"] += 1
        return real(self)

    sensor = make_sensor(reload=reload, reload_seconds=0.05)
    monkeypatch.setattr(IngestConfig, "options", options)
    with running(sensor):
        wait_until(lambda: reloads["n"] >= 4, "four reloads")
    assert compared["n"] == 1
