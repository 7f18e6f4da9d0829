"""The sensor reads its config block again only when the stored document changed
(stream_ingest/blocks/reload.py)."""

from __future__ import annotations

import pytest

from stream_ingest.blocks.bucket import StreamBucket
from stream_ingest.blocks.reload import DocumentDigest, Reloader
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


def test_a_process_builds_each_named_block_once_per_document() -> None:
    """A warm worker's runs share the block they name: built again only when its
    stored document changed, each name on its own."""
    from stream_ingest.blocks.reload import Configs

    stored = {"cams": "a", "lab": "x"}
    loads = Loads()
    configs = Configs(loads, digest=lambda name: stored[name])

    first = [configs("cams"), configs("cams"), configs("lab")]
    stored["cams"] = "b"
    after = [configs("cams"), configs("lab")]

    assert first == [("cams", 1), ("cams", 1), ("lab", 2)]
    assert after == [("cams", 3), ("lab", 2)]


def test_runs_starting_together_build_the_block_once() -> None:
    """A burst of new recordings: every run's load but one waits for that build."""
    import threading
    import time

    from stream_ingest.blocks.reload import Configs

    loads = Loads()

    def slow(name: str) -> object:
        time.sleep(0.2)
        return loads(name)

    configs = Configs(slow, digest=lambda name: "a")
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(configs("cams"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert loads.count == 1
    assert got == [("cams", 1)] * 8


@pytest.mark.usefixtures("registered")
def test_a_run_s_config_is_the_stored_block_built_once_per_change() -> None:
    """Against a real Prefect server: two runs of the process get the same block
    object; an edit in the UI gives the next run a new one with the change."""
    from stream_ingest.flows.runtime import config_of_run

    first = config_of_run("run-1", None)
    assert config_of_run("run-2", None) is first
    edit_config(settle_seconds=0.75)
    changed = config_of_run("run-3", None)
    assert changed is not first
    assert changed.settle_seconds == 0.75
