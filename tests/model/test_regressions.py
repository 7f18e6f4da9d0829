"""Failures the model (test_model.py) found, each kept as a plain test: the shortest
story that shows it, against the real engine (a private Redis, the sensor's trigger,
the flow where it takes one)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from blocks.checkpoints import CheckpointStore
from stream_ingest.records import StreamRecord


@pytest.fixture
def watch(tmp_path: Path) -> Path:
    folder = tmp_path / "watch"
    folder.mkdir()
    return folder


def _wipe(store: CheckpointStore) -> None:
    """Redis restarted without its data (the test's namespace only)."""
    for key in store.redis_client.scan_iter(f"{store.namespace}:*"):
        store.redis_client.delete(key)


def test_a_field_written_to_a_lost_record_does_not_make_half_a_record(
    store: CheckpointStore, watch: Path
) -> None:
    """Redis lost a stream's record between a run's read of it and its next write of
    a field (open-upload's, the sensor's flow_run_id): the write made a meta hash of
    that field alone, a record without an id or a status, which every listing then
    failed to read (TypeError), the sensor's and the janitor's included."""
    store.put(StreamRecord(stream_id="s1", original_path=str(watch / "a.mp4")))
    _wipe(store)

    store.update("s1", flow_run_id="run-1", s3_upload_id="u-1")

    assert store.get("s1") is None
    assert store.list_streams() == []
    assert not store.redis_client.exists(store.meta_key("s1"))


def test_update_still_sets_fields_of_a_record_that_exists(store: CheckpointStore) -> None:
    store.put(StreamRecord(stream_id="s2", original_path="/w/b.mp4"))
    store.update("s2", flow_run_id="run-2")
    assert store.require("s2").flow_run_id == "run-2"
    assert os.fspath(store.require("s2").original_path) == "/w/b.mp4"
