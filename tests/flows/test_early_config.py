"""A run's config block read ahead of its flow (stream_ingest/flows/runtime.py): the warm worker
reads it beside the engine's start, and the flow takes that read instead of
making its own."""

from __future__ import annotations

import threading

import pytest

from stream_ingest.errors import ConfigurationError
from stream_ingest.flows import runtime


@pytest.fixture
def reads(monkeypatch):
    made: list[str] = []

    def load(name: str) -> str:
        made.append(name)
        if name == "broken":
            raise ConfigurationError("ingest-config/broken is invalid")
        return f"config {name} #{len(made)}"

    monkeypatch.setattr(runtime, "read_config", load)
    monkeypatch.setenv("STREAM_INGEST_CONFIG_BLOCK", "site-default")
    yield made
    runtime._read_early.clear()


def test_the_flow_takes_the_early_read_once(reads):
    runtime.early_config_read("run-1", {"path": "a.mkv", "config": "cams"})()
    assert runtime.config_of_run("run-1", "cams") == "config cams #1"
    assert runtime.config_of_run("run-1", "cams") == "config cams #2"  # taken: read again
    assert reads == ["cams", "cams"]


def test_without_a_config_parameter_the_default_block_is_read(reads):
    runtime.early_config_read("run-1", {"path": "a.mkv", "config": None})()
    assert runtime.config_of_run("run-1", "site-default") == "config site-default #1"
    assert reads == ["site-default"]


def test_a_read_of_another_name_or_run_is_not_taken(reads):
    runtime.early_config_read("run-1", {"config": "cams"})()
    assert runtime.config_of_run("run-1", "other") == "config other #2"
    runtime.early_config_read("run-2", {"config": "cams"})()
    assert runtime.config_of_run("run-3", "cams") == "config cams #4"
    assert reads == ["cams", "other", "cams", "cams"]


def test_an_early_read_s_error_is_raised_where_the_flow_loads(reads):
    runtime.early_config_read("run-1", {"config": "broken"})()  # does not raise here
    with pytest.raises(ConfigurationError, match="broken is invalid"):
        runtime.config_of_run("run-1", "broken")


def test_a_read_still_on_the_wire_is_waited_for(reads):
    read = runtime.early_config_read("run-1", {"config": "cams"})  # registered, not yet run
    threading.Timer(0.2, read).start()
    assert runtime.config_of_run("run-1", "cams") == "config cams #1"
    assert reads == ["cams"]


def test_an_early_read_not_taken_is_forgotten_with_its_run(reads):
    runtime.early_config_read("run-1", {"config": "cams"})  # registered before it runs
    assert "run-1" in runtime._read_early
    runtime.forget_early_read("run-1")
    assert not runtime._read_early
    runtime.forget_early_read("run-1")  # twice: harmless
