"""Finished small files seen together share a flow run; everything else keeps its own.

Through the sensor's real loop (inotify, the queue, the flush), with a fake Prefect."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import httpx

from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.sensors.run import Sensor
from stream_ingest.states import Status
from tests.sensors.helpers import FakeEvents, FakePrefect, running, wait_until, write

MakeSensor = Callable[..., Sensor]


def _drop(watch: Path, names: list[str], size: int = 64 * 1024) -> list[Path]:
    """Write each file beside the folder, then rename it in: finished when it appears."""
    staging = watch.parent / "staging"
    staging.mkdir(exist_ok=True)
    paths = []
    for name in names:
        tmp = write(staging / name, os.urandom(size))
        os.rename(tmp, watch / name)
        paths.append(watch / name)
    return paths


def test_files_renamed_in_together_share_one_run(
    watch: Path, store: CheckpointStore, prefect: FakePrefect, make_sensor: MakeSensor
) -> None:
    with running(make_sensor()):
        files = _drop(watch, [f"seg{i:03}.ts" for i in range(30)])
        wait_until(lambda: len(prefect.covered(store)) >= 30, "runs for the 30 files", 10)
    assert sorted(prefect.covered(store)) == sorted(map(str, files))
    batches = [c for c in prefect.calls if c.batch]
    # A burst becomes a few runs, not thirty (the drain may end between events).
    assert batches and len(prefect.calls) <= 5
    for call in batches:
        assert call.parameters == {"stream_ids": list(call.batch), "config": call.config}
        assert call.idempotency_key == f"stream-ingest:batch:{call.batch[0]}"
        assert {f"stream:{sid}" for sid in call.batch} <= set(call.run_tags)
        run = prefect.runs[call.idempotency_key]
        for sid in call.batch:
            record = store.streams.require(sid)
            assert (record.flow_run_id, record.status) == (run, Status.DETECTED)


def test_part_files_renamed_in_place_are_batched_with_their_close_hint(
    watch: Path, store: CheckpointStore, prefect: FakePrefect, make_sensor: MakeSensor
) -> None:
    """OBS's `x.mp4.part` -> `x.mp4`: the sensor ignores `.part`; the rename is the
    file's appearance, and no close follows it, so the close hint is written for it
    as for a run of its own."""
    with running(make_sensor()):
        names = [f"take{i}.mp4" for i in range(5)]
        for name in names:
            write(watch / f"{name}.part", os.urandom(16 * 1024))
        for name in names:
            os.rename(watch / f"{name}.part", watch / name)
        wait_until(lambda: len(prefect.covered(store)) >= 5, "runs for the 5 files")
    assert any(c.batch for c in prefect.calls)
    for call in prefect.calls:
        for sid in call.batch:
            record = store.streams.require(sid)
            assert store.hints.closed_at(record.original_path, record.identity) is not None


def test_a_live_recording_gets_its_own_run_at_once(
    watch: Path, store: CheckpointStore, prefect: FakePrefect, make_sensor: MakeSensor
) -> None:
    with running(make_sensor()):
        video = watch / "live.mp4"
        with open(video, "wb") as recorder:
            recorder.write(b"\0" * 1024)
            recorder.flush()
            # Still open: its run is requested while it is written, not at its close.
            wait_until(lambda: prefect.calls_for(video), "the live recording's run")
    [call] = prefect.calls
    assert call.batch == () and call.stream_id


def _burst_beside_a_live_recording(
    watch: Path, store: CheckpointStore, prefect: FakePrefect, make_sensor: MakeSensor, n: int
) -> list[Path]:
    """`n` files written and closed while the sensor is busy creating a live
    recording's run (live.mp4): their events queue up, as in any burst. Returns them
    once every file has its run."""
    prefect.gate = threading.Event()
    with running(make_sensor()), open(watch / "live.mp4", "wb") as live:
        live.write(b"\0" * 1024)
        live.flush()
        wait_until(lambda: prefect.calls, "the live recording's run requested")
        clips = [write(watch / f"clip{i}.mp4", os.urandom(32 * 1024)) for i in range(n)]
        prefect.gate.set()
        wait_until(lambda: len(prefect.covered(store)) >= n + 1, f"runs for {n + 1} files", 10)
    return clips


def test_files_written_and_closed_in_one_burst_are_batched(
    watch: Path, store: CheckpointStore, prefect: FakePrefect, make_sensor: MakeSensor
) -> None:
    clips = _burst_beside_a_live_recording(watch, store, prefect, make_sensor, 10)
    batched = [p for c in prefect.calls if c.batch for p in prefect.covered_by(c, store)]
    assert sorted(batched) == sorted(map(str, clips))
    assert [c.path for c in prefect.calls if not c.batch] == [str(watch / "live.mp4")]


def test_a_batch_is_announced_in_one_event(
    watch: Path,
    store: CheckpointStore,
    prefect: FakePrefect,
    events: FakeEvents,
    make_sensor: MakeSensor,
) -> None:
    """Each event costs the Prefect server about as much as a small file's upload:
    a batch's files are one `stream-ingest.batch.detected`, their closes included."""
    clips = _burst_beside_a_live_recording(watch, store, prefect, make_sensor, 6)
    batches = [c for c in prefect.calls if c.batch]
    announced = events.named("stream-ingest.batch.detected")
    assert batches and len(announced) == len(batches)
    for call, event in zip(batches, announced, strict=True):
        run = prefect.runs[call.idempotency_key]
        assert event["resource"]["prefect.resource.id"] == f"stream-ingest.batch.{run}"
        files = event["payload"]["files"]
        assert [f["stream_id"] for f in files] == list(call.batch)
        assert all(f["closed"] and f["cause"] == "created" for f in files)
        related = {r["prefect.resource.id"]: r["prefect.resource.role"] for r in event["related"]}
        assert related[f"prefect.flow-run.{run}"] == "flow-run"
        for f in files:
            assert related[f"stream-ingest.file.{f['identity']}"] == "file"
    for clip in clips:
        assert events.names(clip) == []
    # (its close may come as the test ends)
    assert events.names(watch / "live.mp4")[0] == "stream-ingest.file.detected"


def test_a_lone_file_closed_before_its_run_is_announced_detected_then_closed(
    watch: Path, prefect: FakePrefect, events: FakeEvents, make_sensor: MakeSensor
) -> None:
    with running(make_sensor()):
        clip = write(watch / "clip.mp4", os.urandom(32 * 1024))
        wait_until(lambda: len(events.names(clip)) >= 2, "the clip's events")
    [call] = prefect.calls
    assert not call.batch
    assert events.names(clip) == ["stream-ingest.file.detected", "stream-ingest.file.closed"]


def test_a_file_larger_than_one_part_gets_its_own_run(
    watch: Path, store: CheckpointStore, prefect: FakePrefect, make_sensor: MakeSensor
) -> None:
    sensor = make_sensor()
    sensor.trigger.small_bytes = 100 * 1024
    with running(sensor):
        small = _drop(watch, ["a.ts", "b.ts"])
        [big] = _drop(watch, ["big.ts"], size=200 * 1024)
        wait_until(lambda: len(prefect.covered(store)) >= 3, "runs for the 3 files")
    assert [c.path for c in prefect.calls if not c.batch] == [str(big)]
    assert sorted(
        p for c in prefect.calls if c.batch for p in prefect.covered_by(c, store)
    ) == sorted(map(str, small))


def test_a_deployment_without_batches_gets_a_run_per_file(
    watch: Path, store: CheckpointStore, prefect: FakePrefect, make_sensor: MakeSensor, caplog
) -> None:
    prefect.batches = False
    with running(make_sensor()):
        files = _drop(watch, [f"seg{i}.ts" for i in range(5)])
        wait_until(lambda: len(prefect.covered(store)) >= 5, "runs for the 5 files")
    assert all(not c.batch for c in prefect.calls)
    assert sorted(c.path for c in prefect.calls) == sorted(map(str, files))
    assert "has no stream_ids parameter" in caplog.text


def test_a_batch_retried_after_prefect_failed_keeps_its_key(
    watch: Path, store: CheckpointStore, prefect: FakePrefect, make_sensor: MakeSensor
) -> None:
    prefect.failures = [httpx.ConnectError("down")] * 2
    with running(make_sensor(backoff_initial=0.01, backoff_max=0.02)):
        _drop(watch, [f"seg{i}.ts" for i in range(6)])
        wait_until(lambda: len(prefect.runs) and len(prefect.covered(store)) >= 6, "the runs")
    keys = [c.idempotency_key for c in prefect.calls if c.batch]
    # The failed tries and the one that succeeded asked for the same batch.
    assert len(keys) >= 3 and keys[0] == keys[1] == keys[2]
    created = {prefect.runs[k] for k in keys}
    for sid in prefect.calls[0].batch:
        assert store.streams.require(sid).flow_run_id in created


def test_batching_off_gives_each_file_its_own_run(
    watch: Path, store: CheckpointStore, settings, prefect: FakePrefect, make_sensor: MakeSensor
) -> None:
    off = settings.model_copy(update={"batch_small_files": 0})
    with running(make_sensor(settings=off)):
        _drop(watch, [f"seg{i}.ts" for i in range(4)])
        wait_until(lambda: len(prefect.calls) >= 4, "4 runs")
    assert all(not c.batch for c in prefect.calls)
