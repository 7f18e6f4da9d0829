"""The sensor reads its config block again only when the stored document changed
(stream_ingest/sensors/reload.py)."""

from __future__ import annotations

import pytest

from stream_ingest.blocks.bucket import StreamBucket
from stream_ingest.sensors.reload import DocumentDigest, Reloader
from tests.conftest import edit_config


class Loads:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, name: str) -> object:
        self.count += 1
        return (name, self.count)


def test_the_block_is_built_again_only_when_its_document_changed() -> None:
    digests = iter(["a", "a", "a", "b", "b"])
    loads = Loads()
    reload = Reloader("cfg", loads, digest=lambda name: next(digests))

    seen = [reload() for _ in range(5)]

    assert loads.count == 2
    assert seen == [("cfg", 1)] * 3 + [("cfg", 2)] * 2


def test_an_unreadable_document_is_loaded_as_at_the_start() -> None:
    """Where the document cannot be read, `load` runs and raises what to fix."""

    def unreadable(name: str) -> str:
        raise OSError("Prefect away")

    loads = Loads()
    reload = Reloader("cfg", loads, digest=unreadable)
    reload()
    reload()
    assert loads.count == 2


@pytest.mark.usefixtures("registered")
def test_the_digest_follows_the_stored_block_and_its_nested_blocks(registered) -> None:
    digest = DocumentDigest()
    try:
        name = registered.config_block
        first = digest(name)
        assert digest(name) == first
        edit_config(settle_seconds=0.75)
        changed = digest(name)
        assert changed != first
        bucket = StreamBucket.load(name)
        bucket.storage_class = "STANDARD_IA"
        bucket.save(name, overwrite=True)
        assert digest(name) != changed
    finally:
        digest.close()


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
