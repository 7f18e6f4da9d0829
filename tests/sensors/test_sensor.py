"""The whole sensor with a real observer (inotify unless stated): catch-up scan,
restarts, live files, close and delete hints."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.errors import ConfigurationError
from stream_ingest.records import StreamRecord
from stream_ingest.sensors.events import FileAppeared
from stream_ingest.sensors.run import Sensor
from stream_ingest.settings import Settings, load_settings
from stream_ingest.states import Status
from tests.sensors.helpers import FakePrefect, identity, running, wait_until, write

MakeSensor = Callable[..., Sensor]


def test_catch_up_scan_triggers_files_without_a_finished_stream(
    watch: Path, store: CheckpointStore, prefect: FakePrefect, make_sensor: MakeSensor
) -> None:
    fresh = [write(watch / "a.mp4"), write(watch / "cam" / "deep" / "b.MOV")]
    done = write(watch / "done.mkv")
    ignored = [
        write(watch / ".hidden.mp4"),
        write(watch / ".cache" / "c.mp4"),
        write(watch / "notes.txt"),
        write(watch / "d.mp4.part"),
    ]
    store.streams.put(
        StreamRecord(
            stream_id="s-done",
            original_path=str(done),
            identity=identity(done),
            status=Status.COMPLETED,
            flow_run_id="run-old",
        )
    )
    with running(make_sensor()):
        # caught_up is set only after the scan was handled: no waiting needed. Both
        # were finished when found, and small: one run for the two.
        assert sorted(prefect.covered(store)) == sorted(map(str, fresh))
        assert [len(c.batch) for c in prefect.calls] == [2]
    assert not prefect.calls_for(done)
    assert not any(prefect.calls_for(p) for p in ignored)


def test_restarted_sensor_triggers_each_file_once(
    watch: Path, prefect: FakePrefect, make_sensor: MakeSensor
) -> None:
    first = write(watch / "first.mp4")
    with running(make_sensor()):
        live = write(watch / "live.mp4")
        wait_until(lambda: prefect.calls_for(live), "the live file's run")
    while_down = write(watch / "while-down.mp4")
    with running(make_sensor()):
        pass
    with running(make_sensor()) as sensor:
        sensor.events.put(FileAppeared(str(first), "created"))  # a replayed event
        late = write(watch / "late.mp4")
        wait_until(lambda: prefect.calls_for(late), "the late file's run")
    for path in (first, live, while_down, late):
        assert len(prefect.calls_for(path)) == 1, path


def test_a_growing_file_with_many_events_gets_one_run(
    watch: Path, store: CheckpointStore, prefect: FakePrefect, make_sensor: MakeSensor
) -> None:
    video = watch / "growing.mp4"
    with running(make_sensor()) as sensor:
        for _ in range(5):  # a recorder that reopens and appends: many creates/closes
            with open(video, "ab") as out:
                for _ in range(20):
                    out.write(b"x" * 4096)
                    out.flush()
        for _ in range(20):
            sensor.events.put(FileAppeared(str(video), "created"))
        wait_until(
            lambda: store.hints.closed_at(str(video), identity(video)), "the close hint", timeout=5
        )
        wait_until(lambda: sensor.events.empty() and prefect.calls, "the queue to drain")
        time.sleep(0.3)  # the events' handling is over: no second run may follow
    assert len(prefect.calls) == 1
    record = store.streams.require(prefect.calls[0].stream_id)
    assert record.flow_run_id == prefect.runs[prefect.calls[0].idempotency_key]


def test_close_after_write_sets_the_hint(
    watch: Path, store: CheckpointStore, prefect: FakePrefect, make_sensor: MakeSensor
) -> None:
    video = watch / "cam" / "take.mkv"
    video.parent.mkdir()
    with running(make_sensor()):
        out = open(video, "wb")  # noqa: SIM115 - closed explicitly below
        out.write(b"\x1a\x45\xdf\xa3" * 1000)
        out.flush()
        wait_until(lambda: prefect.calls_for(video), "the run for the open file")
        # Still open: created is not closed, and a reader's close is no hint.
        with open(video, "rb") as reader:
            reader.read(10)
        # The sensor handles events in order: once a file created after the reader's
        # close has its run, that close has been seen (and must have left no hint).
        marker = write(watch / "marker.mp4")
        wait_until(lambda: prefect.calls_for(marker), "the run for a later file")
        assert store.hints.closed_at(str(video), identity(video)) is None
        out.close()
        wait_until(lambda: store.hints.closed_at(str(video), identity(video)), "the close hint")
    assert len(prefect.calls_for(video)) == 1


def test_delete_releases_the_identity_and_recreating_triggers_again(
    watch: Path, store: CheckpointStore, prefect: FakePrefect, make_sensor: MakeSensor
) -> None:
    video = watch / "a.mp4"
    with running(make_sensor()):
        write(video)
        wait_until(lambda: prefect.calls_for(video), "the first run")
        old_identity = identity(video)
        assert store.identities.stream_for(old_identity) is not None
        video.unlink()
        wait_until(lambda: store.identities.stream_for(old_identity) is None, "the release")
        write(video, b"second take")
        wait_until(lambda: len(prefect.calls_for(video)) == 2, "the second run")
        first, second = prefect.calls_for(video)
        assert first.stream_id != second.stream_id
        assert store.identities.stream_for(identity(video)) == second.stream_id


def test_moved_in_and_renamed_from_temporary_name(
    tmp_path: Path,
    watch: Path,
    store: CheckpointStore,
    prefect: FakePrefect,
    make_sensor: MakeSensor,
) -> None:
    outside = write(tmp_path / "outside.mp4")
    with running(make_sensor()):
        partial = write(watch / "b.mp4.part")
        moved_in = watch / "a.mp4"
        outside.rename(moved_in)
        done = watch / "b.mp4"
        partial.rename(done)
        wait_until(lambda: len(prefect.covered(store)) >= 2, "both runs")
    # Both finished when they appeared: one run (a batch) may take both.
    assert sorted(prefect.covered(store)) == sorted([str(moved_in), str(done)])
    assert str(partial) not in prefect.covered(store)


def test_atomic_replace_triggers_the_new_file(
    watch: Path, store: CheckpointStore, prefect: FakePrefect, make_sensor: MakeSensor
) -> None:
    video = write(watch / "a.mp4")
    with running(make_sensor()):
        old_identity = identity(video)
        os.replace(write(watch / "a.mp4.tmp", b"replacement"), video)
        wait_until(lambda: len(prefect.calls_for(video)) == 2, "the replacement's run")
    assert store.identities.stream_for(old_identity) is None


def test_watch_folder_disappearing_stops_with_an_error(
    tmp_path: Path, store: CheckpointStore, namespace: str, prefect: FakePrefect
) -> None:
    folder = tmp_path / "mount"
    folder.mkdir()
    settings = load_settings(watch_dir=folder, redis_namespace=namespace)
    sensor = Sensor(settings, store, trigger=prefect, emit=lambda **_: None)
    errors: list[BaseException] = []
    stop = threading.Event()

    def target() -> None:
        try:
            sensor.run(stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="sensor-test-vanish")
    thread.start()
    try:
        wait_until(sensor.caught_up.is_set, "the catch-up scan")
        folder.rmdir()
        wait_until(lambda: errors, "the sensor to notice")
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert isinstance(errors[0], ConfigurationError)
    assert "disappeared" in str(errors[0])


def test_new_subfolder_is_watched(
    watch: Path, prefect: FakePrefect, make_sensor: MakeSensor
) -> None:
    with running(make_sensor()):
        video = write(watch / "2024" / "06" / "cam.ts")
        wait_until(lambda: prefect.calls_for(video), "the run in the new subfolder")


def test_polling_observer_triggers_too(
    watch: Path, namespace: str, prefect: FakePrefect, make_sensor: MakeSensor
) -> None:
    polling = load_settings(watch_dir=watch, redis_namespace=namespace, use_polling=True)
    with running(make_sensor(settings=polling, poll_seconds=0.1)):
        video = write(watch / "net.mp4")
        wait_until(lambda: prefect.calls_for(video), "the run from a polling observer")
    assert len(prefect.calls) == 1


def test_periodic_rescan_finds_what_the_watch_missed(
    watch: Path, store: CheckpointStore, settings: Settings, prefect: FakePrefect
) -> None:
    """Files the observer never reported (inotify overflow) are found by a rescan."""
    sensor = Sensor(
        settings,
        store,
        trigger=prefect,
        emit=lambda **_: None,
        rescan_seconds=0.2,
        takes_batches=prefect.takes,
    )
    # Stand-in for a dropped event: no handler receives anything.
    sensor.events = _Discard()  # type: ignore[assignment]
    with running(sensor):
        video = write(watch / "missed.mp4")
        wait_until(lambda: prefect.calls_for(video), "the rescan's run")


class _Discard:
    """A queue that loses everything put on it."""

    def put(self, item: object) -> None:
        pass

    def get(self, timeout: float) -> object:
        import queue
        import time

        time.sleep(timeout)
        raise queue.Empty

    def qsize(self) -> int:
        return 0


def test_a_changed_config_block_applies_without_a_restart(
    watch: Path,
    settings,
    store: CheckpointStore,
    prefect: FakePrefect,
    make_sensor: MakeSensor,
) -> None:
    """What an edit in the UI's Blocks page does to a running sensor: new extensions,
    deployment and checkpoint namespace apply at the next reload."""
    from stream_ingest.blocks.registration import build_config

    current = {"config": build_config(settings)}
    sensor = make_sensor(reload=lambda: current["config"], reload_seconds=0.1)
    with running(sensor):
        early = write(watch / "early.xyz")
        first = write(watch / "first.mp4")
        wait_until(lambda: prefect.calls_for(first), "the run for an .mp4")
        reloads = {"n": 0}
        original = sensor.reload
        sensor.reload = lambda: (reloads.__setitem__("n", reloads["n"] + 1), original())[1]
        wait_until(lambda: reloads["n"] >= 2, "two reloads")
        assert sensor.trigger.store is store  # the same place: its client is kept
        edited = settings.model_copy(
            update={
                "video_extensions": (".mp4", ".xyz"),
                "deployment": "stream-ingest/edited",
                "redis_namespace": store.namespace + "-edited",
            }
        )
        current["config"] = build_config(edited)
        wait_until(lambda: sensor.options.deployment == "stream-ingest/edited", "the reload")
        later = write(watch / "later.xyz")
        wait_until(lambda: prefect.calls_for(later), "the run for an .xyz")
    assert not prefect.calls_for(early)  # written before the edit: not a recording then
    [call] = prefect.calls_for(later)
    assert call.deployment == "stream-ingest/edited"
    moved = current["config"].checkpoints
    assert moved.namespace == store.namespace + "-edited"
    assert (
        moved.streams.get(call.stream_id) is not None and store.streams.get(call.stream_id) is None
    )
