"""Fixtures for the sensor tests: fake Prefect, settings on a private watch folder
(and the per-test Redis namespace from tests/conftest.py), sensor factories."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.sensors.run import Sensor
from stream_ingest.sensors.trigger import StreamTrigger
from stream_ingest.settings import Settings, load_settings
from tests.sensors.helpers import FakeEvents, FakePrefect


@pytest.fixture
def prefect() -> FakePrefect:
    return FakePrefect()


@pytest.fixture
def events() -> FakeEvents:
    return FakeEvents()


@pytest.fixture
def watch(tmp_path: Path) -> Path:
    folder = tmp_path / "watch"
    folder.mkdir()
    return folder


@pytest.fixture
def settings(watch: Path, namespace: str, redis_server) -> Settings:
    return load_settings(
        watch_dir=str(watch), redis_namespace=namespace, redis_url=redis_server.url
    )


@pytest.fixture
def make_trigger(
    store: CheckpointStore, settings: Settings, prefect: FakePrefect, events: FakeEvents
) -> Callable[[], StreamTrigger]:
    """A StreamTrigger with fresh memory, as after a sensor restart."""

    def make() -> StreamTrigger:
        return StreamTrigger(
            store,
            deployment=settings.deployment,
            config=settings.config_block,
            watch_dir=settings.watch_dir,
            trigger=prefect,
            emit=events,
            run_over=prefect.over.__contains__,
        )

    return make


@pytest.fixture
def make_sensor(
    store: CheckpointStore, settings: Settings, prefect: FakePrefect, events: FakeEvents
) -> Callable[..., Sensor]:
    def make(**kwargs: Any) -> Sensor:
        kwargs.setdefault("store", store)
        kwargs.setdefault("settings", settings)
        kwargs.setdefault("backoff_initial", 0.05)
        kwargs.setdefault("takes_batches", prefect.takes)
        return Sensor(
            kwargs.pop("settings"), kwargs.pop("store"), trigger=prefect, emit=events, **kwargs
        )

    return make
