"""StreamTrigger against a real (private) Redis: dedupe, crash recovery between claim
and trigger, hints, and identity release on delete and rename. No observer here:
events are fed in directly, as the run loop would."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.flows.source import snapshot
from stream_ingest.records import StreamRecord
from stream_ingest.sensors.events import (
    DirGone,
    FileAppeared,
    FileClosed,
    FileGone,
    FileOpened,
    ReleaseGone,
)
from stream_ingest.sensors.trigger import StreamTrigger, TriggerFailed
from stream_ingest.settings import Settings
from stream_ingest.states import Status
from tests.sensors.helpers import FakeEvents, FakePrefect, identity, write

MakeTrigger = Callable[[], StreamTrigger]


def test_new_file_starts_one_run_and_records_it(
    watch: Path,
    store: CheckpointStore,
    settings: Settings,
    prefect: FakePrefect,
    events: FakeEvents,
    make_trigger: MakeTrigger,
) -> None:
    video = write(watch / "cam" / "a.mp4")
    make_trigger().handle(FileAppeared(str(video), "created"))

    [call] = prefect.calls
    sid = call.stream_id
    assert call.deployment == "stream-ingest/stream-ingest"
    assert call.parameters == {"path": str(video), "stream_id": sid, "config": "stream-ingest"}
    assert call.idempotency_key == f"stream-ingest:{sid}"
    record = store.streams.require(sid)
    assert record.status == Status.DETECTED
    assert record.original_path == str(video)
    assert record.identity == identity(video)
    assert record.watch_dir == str(watch)  # the flow's keys are relative to it
    assert record.part_base_bytes == 0  # chosen by the flow, from the block, at upload
    assert record.flow_run_id == prefect.runs[call.idempotency_key]
    assert store.identities.stream_for(identity(video)) == sid
    assert sid in {r.stream_id for r in store.streams.active()}
    [sent] = events.sent
    assert sent["event"] == "stream-ingest.file.detected"
    assert sent["resource"] == {
        "prefect.resource.id": f"stream-ingest.file.{identity(video)}",
        "prefect.resource.name": "a.mp4",
        "path": str(video),
    }
    assert sent["payload"]["stream_id"] == sid
    assert sent["related"][0]["prefect.resource.id"] == f"prefect.flow-run.{record.flow_run_id}"


def test_many_events_and_restarts_give_one_run(
    watch: Path, prefect: FakePrefect, make_trigger: MakeTrigger
) -> None:
    video = write(watch / "a.mkv")
    for _ in range(3):  # three sensor lifetimes, each with fresh memory
        trigger = make_trigger()
        for cause in ("created", "scan", "moved", "closed", "created"):
            trigger.handle(FileAppeared(str(video), cause))  # type: ignore[arg-type]
        trigger.handle(FileClosed(str(video)))
    assert len(prefect.calls) == 1


def test_directory_and_vanished_paths_are_skipped(
    watch: Path, prefect: FakePrefect, make_trigger: MakeTrigger
) -> None:
    (watch / "looks-like.mp4").mkdir()
    trigger = make_trigger()
    trigger.handle(FileAppeared(str(watch / "looks-like.mp4"), "created"))
    trigger.handle(FileAppeared(str(watch / "never-there.mp4"), "created"))
    trigger.handle(FileClosed(str(watch / "never-there.mp4")))
    assert prefect.calls == []


def test_claimed_but_never_triggered_is_triggered_with_the_same_key(
    watch: Path,
    store: CheckpointStore,
    prefect: FakePrefect,
    make_trigger: MakeTrigger,
) -> None:
    """The sensor crashed between claim and trigger: the next one triggers that
    stream (same stream id, so the same idempotency key and the same run)."""
    video = write(watch / "a.mp4")
    crashed = StreamRecord(stream_id="s-1", original_path=str(video), identity=identity(video))
    assert store.identities.claim(identity(video), crashed) == ("s-1", True)
    make_trigger().handle(FileAppeared(str(video), "scan"))
    make_trigger().handle(FileAppeared(str(video), "scan"))
    assert [c.stream_id for c in prefect.calls] == ["s-1"]
    assert store.streams.require("s-1").flow_run_id == prefect.runs["stream-ingest:s-1"]


def test_trigger_failure_is_retried_without_a_second_stream(
    watch: Path, store: CheckpointStore, prefect: FakePrefect, make_trigger: MakeTrigger
) -> None:
    video = write(watch / "a.mp4")
    prefect.failures.append(ConnectionRefusedError("api down"))
    trigger = make_trigger()
    with pytest.raises(TriggerFailed, match=r"Prefect API unreachable \(ConnectionRefusedError"):
        trigger.handle(FileAppeared(str(video), "created"))
    first = prefect.calls[0].stream_id
    assert store.streams.require(first).flow_run_id == ""
    trigger.handle(FileAppeared(str(video), "created"))  # the run loop's retry
    assert [c.stream_id for c in prefect.calls] == [first, first]
    assert len(prefect.runs_for(video)) == 1
    assert store.streams.require(first).flow_run_id == prefect.runs[f"stream-ingest:{first}"]


def test_identity_without_its_record_is_a_new_stream(
    watch: Path, store: CheckpointStore, prefect: FakePrefect, make_trigger: MakeTrigger
) -> None:
    """An index entry whose stream's record is gone (the stream ended and expired, or
    Redis lost the record) binds nothing: the file is a new stream and is triggered."""
    video = write(watch / "a.mp4")
    store.redis_client.hset(store.space.identity_key, identity(video), "s-orphan")
    make_trigger().handle(FileAppeared(str(video), "created"))
    [call] = prefect.calls
    assert call.stream_id != "s-orphan"
    record = store.streams.require(call.stream_id)
    assert (record.status, record.original_path) == (Status.DETECTED, str(video))
    assert store.identities.stream_for(identity(video)) == call.stream_id
    assert store.streams.get("s-orphan") is None


@pytest.mark.parametrize(
    ("status", "flow_run_id"),
    [
        (Status.DETECTED, "run-already"),
        (Status.UPLOADING, "run-1"),
        (Status.COMPLETED, "run-1"),
        (Status.FAILED, "run-1"),
        (Status.SKIPPED, ""),
    ],
)
def test_existing_streams_are_left_alone(
    watch: Path,
    store: CheckpointStore,
    prefect: FakePrefect,
    make_trigger: MakeTrigger,
    status: Status,
    flow_run_id: str,
) -> None:
    video = write(watch / "a.mp4")
    store.streams.put(
        StreamRecord(
            stream_id="s-old",
            original_path=str(video),
            identity=identity(video),
            status=status,
            flow_run_id=flow_run_id,
        )
    )
    make_trigger().handle(FileAppeared(str(video), "scan"))
    assert prefect.calls == []


def test_close_writes_the_hint_for_this_incarnation(
    watch: Path,
    store: CheckpointStore,
    prefect: FakePrefect,
    events: FakeEvents,
    make_trigger: MakeTrigger,
) -> None:
    video = write(watch / "a.mp4")
    # Never seen created (the sensor was down): the close still starts its run.
    make_trigger().handle(FileClosed(str(video)))
    assert len(prefect.calls) == 1
    assert store.hints.closed_at(str(video), identity(video)) is not None
    assert store.hints.closed_at(str(video), "0:0") is None
    assert events.names(video) == ["stream-ingest.file.detected", "stream-ingest.file.closed"]


def test_a_file_renamed_into_place_is_hinted_closed_at_once(
    watch: Path, store: CheckpointStore, prefect: FakePrefect, make_trigger: MakeTrigger
) -> None:
    renamed, created = write(watch / "done.mp4"), write(watch / "live.mp4")
    trigger = make_trigger()
    trigger.handle(FileAppeared(str(renamed), "moved"))
    trigger.handle(FileAppeared(str(created), "created"))

    assert len(prefect.calls) == 2
    assert store.hints.closed_at(str(renamed), identity(renamed)) is not None
    assert store.hints.closed_at(str(created), identity(created)) is None  # may still grow


def test_deleted_then_recreated_path_is_a_new_stream(
    watch: Path,
    store: CheckpointStore,
    prefect: FakePrefect,
    events: FakeEvents,
    make_trigger: MakeTrigger,
) -> None:
    video = write(watch / "a.mp4")
    trigger = make_trigger()
    trigger.handle(FileAppeared(str(video), "created"))
    trigger.handle(FileClosed(str(video)))
    old_identity, old_sid = identity(video), prefect.calls[0].stream_id

    video.unlink()
    trigger.handle(FileGone(str(video)))
    # Released, so that a reused inode number is not taken for the old stream.
    assert store.identities.stream_for(old_identity) is None

    write(video, b"new take")
    trigger.handle(FileAppeared(str(video), "created"))
    assert [c.path for c in prefect.calls] == [str(video), str(video)]
    new_sid = prefect.calls[1].stream_id
    assert new_sid != old_sid
    assert store.identities.stream_for(identity(video)) == new_sid
    # The old incarnation's hints are gone before the new run starts.
    assert store.redis_client.exists(store.space.hint_key(str(video))) == 0
    assert store.hints.closed_at(str(video), old_identity) is None
    assert "stream-ingest.file.deleted" in events.names(video)


def test_rename_releases_the_old_path_and_starts_the_new_name(
    watch: Path, store: CheckpointStore, prefect: FakePrefect, make_trigger: MakeTrigger
) -> None:
    old, new = watch / "take.mp4", watch / "final.mp4"
    write(old)
    make_trigger().handle(FileAppeared(str(old), "created"))
    old.rename(new)
    # A fresh sensor (no memory of the old path) still finds the stream through
    # the identity at the new name.
    trigger = make_trigger()
    trigger.handle(FileGone(str(old), moved_to=str(new)))
    trigger.handle(FileAppeared(str(new), "moved"))
    assert [c.path for c in prefect.calls] == [str(old), str(new)]
    assert store.identities.stream_for(identity(new)) == prefect.calls[1].stream_id
    assert store.identities.stream_for(identity(new)) != prefect.calls[0].stream_id


def test_rename_does_not_release_another_paths_stream(
    watch: Path, store: CheckpointStore, make_trigger: MakeTrigger
) -> None:
    video = write(watch / "a.mp4")
    other = StreamRecord(stream_id="s-other", original_path="/elsewhere/b.mp4")
    store.identities.claim(identity(video), other)
    make_trigger().handle(FileGone(str(watch / "unrelated.mp4"), moved_to=str(video)))
    assert store.identities.stream_for(identity(video)) == "s-other"


def test_file_replaced_by_a_rename_over_it_is_a_new_stream(
    watch: Path, store: CheckpointStore, prefect: FakePrefect, make_trigger: MakeTrigger
) -> None:
    """Atomic replace (write a temp file, rename it over the video): no delete event
    for the old file, only a new identity at the same path."""
    video = write(watch / "a.mp4")
    trigger = make_trigger()
    trigger.handle(FileAppeared(str(video), "created"))
    old_identity = identity(video)
    os.replace(write(watch / "a.mp4.tmp", b"replacement"), video)
    trigger.handle(FileAppeared(str(video), "moved"))
    assert len(prefect.calls) == 2
    assert store.identities.stream_for(old_identity) is None
    assert store.identities.stream_for(identity(video)) == prefect.calls[1].stream_id


def test_directory_gone_releases_the_files_under_it(
    watch: Path, store: CheckpointStore, make_trigger: MakeTrigger
) -> None:
    inside, beside = write(watch / "cam1" / "a.mp4"), write(watch / "cam10" / "b.mp4")
    trigger = make_trigger()
    for video in (inside, beside):
        trigger.handle(FileAppeared(str(video), "created"))
    trigger.handle(DirGone(str(watch / "cam1")))
    assert store.identities.stream_for(identity(inside)) is None
    assert store.identities.stream_for(identity(beside)) is not None


def test_event_failures_are_logged_not_fatal(
    watch: Path,
    prefect: FakePrefect,
    events: FakeEvents,
    make_trigger: MakeTrigger,
    caplog: pytest.LogCaptureFixture,
) -> None:
    events.fail = True
    video = write(watch / "a.mp4")
    with caplog.at_level(logging.WARNING, logger="stream_ingest.sensor"):
        make_trigger().handle(FileAppeared(str(video), "created"))
    assert len(prefect.calls) == 1
    assert "could not emit stream-ingest.file.detected" in caplog.text


def test_a_symlink_out_of_the_folder_is_skipped_and_logged_once(
    watch: Path,
    tmp_path: Path,
    store: CheckpointStore,
    prefect: FakePrefect,
    make_trigger: MakeTrigger,
    caplog: pytest.LogCaptureFixture,
) -> None:
    outside = write(tmp_path / "elsewhere" / "secret.mp4")
    link = watch / "secret.mp4"
    link.symlink_to(outside)
    inside_target = write(watch / "sub" / "real.mp4")
    (watch / "alias.mp4").symlink_to(inside_target)  # stays inside: a file like any
    trigger = make_trigger()
    with caplog.at_level(logging.WARNING, logger="stream_ingest.sensor"):
        for _ in range(3):  # created, closed, rescanned
            trigger.handle(FileAppeared(str(link), "scan"))
        trigger.handle(FileAppeared(str(watch / "alias.mp4"), "scan"))

    assert not prefect.calls_for(link)
    assert prefect.calls_for(watch / "alias.mp4")
    warnings = [r.getMessage() for r in caplog.records if "outside the watch folder" in r.message]
    assert len(warnings) == 1 and str(outside) in warnings[0]
    trigger.follow_symlinks = True  # the block's follow_symlinks, reloaded
    trigger.handle(FileAppeared(str(link), "scan"))
    assert prefect.calls_for(link)


def test_a_name_that_is_not_utf8_is_claimed_with_its_bytes(
    watch: Path, store: CheckpointStore, prefect: FakePrefect, make_trigger: MakeTrigger
) -> None:
    raw = os.fsencode(watch) + b"/take\xe9.mp4"
    with open(raw, "wb") as fh:
        fh.write(b"x")
    path = os.fsdecode(raw)
    make_trigger().handle(FileAppeared(path, "created"))

    [call] = prefect.calls
    assert call.path == ""  # not JSON text: the run reads it from the record
    assert store.streams.require(call.stream_id).original_path == path


def _completed(store: CheckpointStore, video: Path, sid: str = "take-1") -> StreamRecord:
    """A stream that completed `video` as it is now."""
    snap = snapshot(str(video))
    record = StreamRecord(
        stream_id=sid,
        original_path=str(video),
        identity=str(snap.identity),
        status=Status.COMPLETED,
        total_bytes=snap.size,
        completed_mtime_ns=snap.mtime_ns,
        flow_run_id="run-1",
    )
    store.identities.claim(record.identity, record)
    return record


def test_a_new_take_over_a_completed_file_is_a_new_stream(
    watch: Path, store: CheckpointStore, prefect: FakePrefect, make_trigger: MakeTrigger
) -> None:
    """`ffmpeg -y`: the same inode truncated at open and written again. Seen at the
    open (IN_OPEN), so the new take is uploaded while it is recorded."""
    video = write(watch / "a.mp4", b"take one " * 1000)
    old = _completed(store, video)
    trigger = make_trigger()
    trigger.handle(FileAppeared(str(video), "scan"))  # known, unchanged: nothing to do
    assert prefect.calls == []

    with open(video, "wb") as fh:  # O_TRUNC: same inode, same identity
        fh.write(b"take two")
        fh.flush()
        trigger.handle(FileOpened(str(video)))
    trigger.handle(FileClosed(str(video)))  # later events find the new take's stream

    [call] = prefect.calls
    assert call.stream_id != old.stream_id and call.idempotency_key.endswith(call.stream_id)
    fresh = store.streams.require(call.stream_id)
    assert (fresh.status, fresh.identity) == (Status.DETECTED, old.identity)
    assert store.identities.stream_for(old.identity) == call.stream_id
    assert store.streams.require(old.stream_id).status is Status.COMPLETED  # its object stays


def test_a_completed_file_that_grows_gets_one_revision_run(
    watch: Path, store: CheckpointStore, prefect: FakePrefect, make_trigger: MakeTrigger
) -> None:
    video = write(watch / "a.mp4", b"take one " * 1000)
    old = _completed(store, video)
    trigger = make_trigger()
    with open(video, "ab") as fh:
        trigger.handle(FileOpened(str(video)))  # opened, nothing written yet
        assert prefect.calls == []
        fh.write(b"appended later")
    trigger.handle(FileClosed(str(video)))
    make_trigger().handle(FileAppeared(str(video), "scan"))  # after a restart: same run
    state = snapshot(str(video))

    assert {c.idempotency_key for c in prefect.calls} == {
        f"stream-ingest:{old.stream_id}:revision-2:{state.size}-{state.mtime_ns}"
    }
    assert {c.stream_id for c in prefect.calls} == {old.stream_id}
    assert all("revision" in c.tags for c in prefect.calls)
    assert store.identities.stream_for(old.identity) == old.stream_id

    with open(video, "ab") as fh:  # changed again before that run began: a run for it
        fh.write(b"and more")
    trigger.handle(FileClosed(str(video)))
    assert len({c.idempotency_key for c in prefect.calls}) == 2


def test_a_revision_whose_run_ended_before_it_began_is_requested_again_a_few_times(
    watch: Path,
    store: CheckpointStore,
    prefect: FakePrefect,
    make_trigger: MakeTrigger,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Prefect answers a repeated idempotency key with its run, even a dead one: a
    revision run that died before it began the revision is asked for again under a
    key of its own once Prefect says it is over, three runs at most, then an error."""
    video = write(watch / "a.mp4", b"take one " * 1000)
    _completed(store, video)
    trigger = make_trigger()
    with open(video, "ab") as fh:
        fh.write(b"appended later")
    trigger.handle(FileClosed(str(video)))
    trigger.handle(FileAppeared(str(video), "scan"))  # the run is not over: the same run
    assert len(prefect.runs) == 1

    for _ in range(5):  # every run ends at once, the stream still completed
        prefect.over.update(prefect.runs.values())
        trigger.handle(FileAppeared(str(video), "scan"))

    keys = sorted(prefect.runs)
    assert len(keys) == 3
    assert [k.rsplit(":", 1)[-1] for k in keys[1:]] == ["attempt-2", "attempt-3"]
    assert "streams rerun" in caplog.text


def test_an_aborted_streams_file_back_in_the_folder_is_a_new_stream(
    watch: Path, store: CheckpointStore, prefect: FakePrefect, make_trigger: MakeTrigger
) -> None:
    """Renamed while the sensor was down: the run found its path gone and aborted; the
    file, under its new name, is a recording that must still land."""
    video = write(watch / "renamed.mp4")
    aborted = StreamRecord(
        stream_id="gone-1",
        original_path=str(watch / "old-name.mp4"),
        identity=identity(video),
        status=Status.ABORTED,
        error="source file not found",
    )
    store.identities.claim(aborted.identity, aborted)
    make_trigger().handle(FileAppeared(str(video), "scan"))
    [call] = prefect.calls
    assert call.stream_id != "gone-1" and call.path == str(video)
    assert store.identities.stream_for(aborted.identity) == call.stream_id


def test_the_scan_releases_identities_of_files_that_are_gone(
    watch: Path, store: CheckpointStore, prefect: FakePrefect, make_trigger: MakeTrigger
) -> None:
    kept, gone, moved = (write(watch / n) for n in ("kept.mp4", "gone.mp4", "moved.mp4"))
    trigger = make_trigger()
    for video in (kept, gone, moved):
        trigger.handle(FileAppeared(str(video), "created"))
    ids = {v: identity(v) for v in (kept, gone, moved)}
    elsewhere = StreamRecord("other", original_path="/elsewhere/x.mp4", watch_dir="/elsewhere")
    store.identities.claim("9:9:9", elsewhere)
    gone.unlink()  # events missed: the sensor was down
    moved.rename(watch / "moved-away.mp4")

    make_trigger().handle(ReleaseGone())

    bound = store.identities.all()
    assert ids[kept] in bound and "9:9:9" in bound  # another sensor's folder: not ours
    assert ids[gone] not in bound and ids[moved] not in bound


def test_a_new_take_whose_trigger_failed_gets_its_run_on_the_retry(
    watch: Path, store: CheckpointStore, prefect: FakePrefect, make_trigger: MakeTrigger
) -> None:
    """The run loop retries an event from the start: the identity is already rebound
    to the new take, whose run must still be created (once)."""
    video = write(watch / "a.mp4", b"take one " * 1000)
    old = _completed(store, video)
    trigger = make_trigger()
    trigger.handle(FileAppeared(str(video), "scan"))  # the start-up scan: known
    with open(video, "wb") as fh:
        fh.write(b"take two")
    prefect.failures.append(ConnectionError("Prefect API down"))
    with pytest.raises(TriggerFailed):
        trigger.handle(FileOpened(str(video)))
    trigger.handle(FileOpened(str(video)))  # the retry
    trigger.handle(FileClosed(str(video)))

    new_sid = store.identities.stream_for(old.identity)
    assert new_sid and new_sid != old.stream_id
    assert len(prefect.runs_for(video)) == 1
    assert store.streams.require(new_sid).flow_run_id == prefect.runs[f"stream-ingest:{new_sid}"]
