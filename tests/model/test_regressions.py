"""Failures the model (test_model.py) found, each kept as a plain test: the shortest
story that shows it, against the real engine (a private Redis, the sensor's trigger,
the flow where it takes one)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.flows.runs import RunRequest
from stream_ingest.flows.source import snapshot
from stream_ingest.records import PartRecord, StreamRecord
from stream_ingest.sensors.events import FileAppeared, FileClosed, FileOpened
from stream_ingest.sensors.trigger import StreamTrigger
from stream_ingest.states import ACTIVE, Status
from tests.flows.helpers import lose_redis_data


@pytest.fixture
def watch(tmp_path: Path) -> Path:
    folder = tmp_path / "watch"
    folder.mkdir()
    return folder


class Runs:
    """Prefect's run creation as the sensor sees it: one run per idempotency key, a
    repeated key answered with that key's run, whatever became of it."""

    def __init__(self) -> None:
        self.started: dict[str, RunRequest] = {}
        self.ids: dict[str, str] = {}
        self.over: set[str] = set()

    def __call__(self, request: RunRequest) -> str:
        self.started.setdefault(request.idempotency_key, request)
        return self.ids.setdefault(request.idempotency_key, f"run-{len(self.ids) + 1}")

    def end(self, key: str) -> None:
        self.over.add(self.ids[key])


def _trigger(store: CheckpointStore, watch: Path, runs: Runs) -> StreamTrigger:
    return StreamTrigger(
        store,
        deployment="stream-ingest/stream-ingest",
        config="stream-ingest",
        watch_dir=str(watch),
        trigger=runs,
        emit=lambda **_: None,
        run_over=runs.over.__contains__,
    )


def test_a_take_recorded_after_redis_lost_its_data_gets_a_run(
    watch: Path, store: CheckpointStore
) -> None:
    """The sensor remembers the file's identity and stream; Redis loses the record;
    `ffmpeg -y` records a new take over the file (same inode). The open, the close and
    every later scan of the file found the sensor's memory and a record that is gone,
    and did nothing: the take was never uploaded (until the sensor restarted)."""
    runs = Runs()
    sensor = _trigger(store, watch, runs)
    video = watch / "a.mp4"
    video.write_bytes(b"take one")
    sensor.handle(FileAppeared(str(video), "created"))
    assert len(runs.started) == 1
    lose_redis_data(store)

    with open(video, "r+b") as fh:  # O_TRUNC in place: the same identity
        fh.truncate(0)
        fh.write(b"take two")
    sensor.handle(FileOpened(str(video)))
    sensor.handle(FileClosed(str(video)))
    sensor.handle(FileAppeared(str(video), "scan"))

    assert len(runs.started) == 2
    second = list(runs.started.values())[1]
    record = store.streams.require(second.stream_id)
    assert (record.status, record.original_path) == (Status.DETECTED, str(video))
    assert store.identities.stream_for(str(snapshot(str(video)).identity)) == second.stream_id


def test_a_field_written_to_a_lost_record_does_not_make_half_a_record(
    store: CheckpointStore, watch: Path
) -> None:
    """Redis lost a stream's record between a run's read of it and its next write of
    a field (open-upload's, the sensor's flow_run_id): the write made a meta hash of
    that field alone, a record without an id or a status, which every listing then
    failed to read (TypeError), the sensor's and the janitor's included."""
    store.streams.put(StreamRecord(stream_id="s1", original_path=str(watch / "a.mp4")))
    lose_redis_data(store)

    store.streams.update("s1", flow_run_id="run-1", s3_upload_id="u-1")

    assert store.streams.get("s1") is None
    assert store.streams.list() == []
    assert not store.redis_client.exists(store.space.meta_key("s1"))


def test_replacing_the_parts_of_a_lost_record_does_not_make_half_a_record(
    store: CheckpointStore, watch: Path
) -> None:
    """Redis lost a stream's record between the run's find-stream and its open-upload,
    which starts the parts afresh (`store.parts.replace`): the progress fields it
    wrote made a meta hash without an id or a status, which every listing then failed
    to read (TypeError), the sensor's and the janitor's included."""
    store.streams.put(StreamRecord(stream_id="s1", original_path=str(watch / "a.mp4")))
    lose_redis_data(store)

    store.parts.replace("s1", [])

    assert store.streams.get("s1") is None
    assert store.streams.list() == []
    assert not store.redis_client.exists(store.space.meta_key("s1"))


def test_replacing_the_parts_still_counts_the_progress_of_a_record(
    store: CheckpointStore,
) -> None:
    store.streams.put(StreamRecord(stream_id="s3", original_path="/w/c.mp4"))
    part = PartRecord(number=1, etag="e1", offset=0, size=5, checksum="c1")
    store.parts.replace("s3", [part])
    record = store.streams.require("s3")
    assert (record.bytes_uploaded, record.parts_count) == (5, 1)
    assert store.parts.get("s3") == {1: part}


def test_update_still_sets_fields_of_a_record_that_exists(store: CheckpointStore) -> None:
    store.streams.put(StreamRecord(stream_id="s2", original_path="/w/b.mp4"))
    store.streams.update("s2", flow_run_id="run-2")
    assert store.streams.require("s2").flow_run_id == "run-2"
    assert os.fspath(store.streams.require("s2").original_path) == "/w/b.mp4"


def test_a_completed_take_is_not_uploaded_again_after_redis_lost_its_data(
    registered, s3, store
) -> None:
    from stream_ingest.flows.ingest import stream_ingest

    watch = Path(registered.watch_dir)
    video = watch / "a.mp4"
    video.write_bytes(b"take one")
    assert stream_ingest(path=str(video))["status"] == "completed"
    lose_redis_data(store)
    runs = Runs()
    restarted = _trigger(store, watch, runs)  # a sensor started after the loss: its scan
    restarted.handle(FileAppeared(str(video), "scan"))
    for request in list(runs.started.values()):
        stream_ingest(path=request.sent_path, stream_id=request.stream_id)

    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=registered.s3_bucket)["Contents"]]
    assert keys == ["rec/a.mp4"]


def test_a_revision_whose_run_died_before_it_began_is_uploaded(
    registered, s3, store, monkeypatch
) -> None:
    import stream_ingest.flows.ingest as ingest_module
    from stream_ingest.flows.ingest import stream_ingest

    watch = Path(registered.watch_dir)
    video = watch / "a.mp4"
    video.write_bytes(b"take one")
    assert stream_ingest(path=str(video))["status"] == "completed"
    runs = Runs()
    sensor = _trigger(store, watch, runs)
    sensor.handle(FileAppeared(str(video), "scan"))
    with open(video, "ab") as fh:  # the recorder goes on: a revision
        fh.write(b" and more")
    sensor.handle(FileClosed(str(video)))
    [(key, revision)] = [(k, r) for k, r in runs.started.items() if "revision" in r.tags]
    real = ingest_module.find_stream

    def dies(*args, **kwargs):
        raise RuntimeError("the worker died")

    monkeypatch.setattr(ingest_module, "find_stream", dies)
    assert stream_ingest(
        path=revision.sent_path, stream_id=revision.stream_id, return_state=True
    ).is_failed()
    monkeypatch.setattr(ingest_module, "find_stream", real)
    runs.end(key)  # Prefect says the run is over (failed)
    ran = set(runs.started)

    sensor.handle(FileClosed(str(video)))  # everything that looks at the file again
    sensor.handle(FileAppeared(str(video), "scan"))
    for key, request in list(runs.started.items()):
        if key not in ran:
            stream_ingest(path=request.sent_path, stream_id=request.stream_id)

    body = s3.get_object(Bucket=registered.s3_bucket, Key="rec/a.mp4")["Body"].read()
    assert body == b"take one and more"


def test_an_upload_created_for_a_run_that_died_at_once_is_aborted(
    registered, s3, store, monkeypatch
) -> None:
    from stream_ingest.blocks.bucket import StreamBucket
    from stream_ingest.flows.ingest import stream_ingest
    from stream_ingest.flows.janitor import janitor
    from tests.conftest import edit_config

    edit_config(upload_ttl_hours=1e-6)
    video = Path(registered.watch_dir) / "a.mp4"
    video.write_bytes(b"take one")
    real = StreamBucket.create_multipart_upload

    def answer_lost(self, *args, **kwargs):
        real(self, *args, **kwargs)
        raise RuntimeError("the worker died")

    monkeypatch.setattr(StreamBucket, "create_multipart_upload", answer_lost)
    first = stream_ingest(path=str(video), return_state=True)
    assert first.is_failed()
    monkeypatch.setattr(StreamBucket, "create_multipart_upload", real)
    [record] = store.streams.list()
    assert stream_ingest(stream_id=record.stream_id)["status"] == "completed"
    janitor()

    assert not s3.list_multipart_uploads(Bucket=registered.s3_bucket).get("Uploads")


@pytest.mark.parametrize("dies_in", ["open-upload", "find-stream"])
def test_a_stream_whose_run_rebuilt_its_lost_record_and_died_is_rerun(
    registered, s3, store, monkeypatch, dies_in: str
) -> None:
    """Redis lost a new stream's record (and with it the sensor's flow_run_id) before
    its run began; the run rebuilt the record from the file (find-stream) and died:
    killed in open-upload (no failure recorded, the lease left held), or failing in
    find-stream after the rebuild. The record said `detected` with no run: the janitor
    fails only a detected stream whose run Prefect reports over, so it never did,
    `rerun --failed` never found it, and the sensor, which knew the file, saw nothing
    new in its writes. The take was in no object while that sensor lived."""
    import stream_ingest.flows.ingest as ingest_module
    from stream_ingest.blocks.store_leases import Leases
    from stream_ingest.flows.ingest import stream_ingest
    from stream_ingest.flows.janitor import janitor

    watch = Path(registered.watch_dir)
    video = watch / "a.mp4"
    video.write_bytes(b"take one")
    runs = Runs()
    sensor = _trigger(store, watch, runs)
    sensor.handle(FileAppeared(str(video), "created"))
    sensor.handle(FileClosed(str(video)))
    [(key, request)] = runs.started.items()
    lose_redis_data(store)

    def killed(*args, **kwargs):
        raise RuntimeError("the run's process is killed")

    with monkeypatch.context() as dying:
        if dies_in == "open-upload":  # kill -9: nothing after it reaches Redis
            dying.setattr(ingest_module, "open_upload", killed)
            dying.setattr(ingest_module, "record_end", lambda *args: None)
            dying.setattr(Leases, "release", lambda *args: None)
        else:  # a call after the rebuild fails (a refusal, a bug)
            dying.setattr(Leases, "acquire", killed)
        state = stream_ingest(
            path=request.sent_path, stream_id=request.stream_id, return_state=True
        )
    assert state.is_failed()
    runs.end(key)
    assert store.streams.require(request.stream_id).status == Status.DETECTED
    with open(video, "ab") as fh:  # the recorder writes the file again
        fh.write(b" and more")
    sensor.handle(FileOpened(str(video)))
    sensor.handle(FileClosed(str(video)))
    assert list(runs.started) == [key]  # the sensor knows the file: nothing new

    janitor()
    for record in store.streams.list(Status.FAILED):  # `streams rerun --failed`
        stream_ingest(stream_id=record.stream_id)

    body = s3.get_object(Bucket=registered.s3_bucket, Key="rec/a.mp4")["Body"].read()
    assert body == b"take one and more"


def _salvage_cut_short_after_its_completion(registered, store, monkeypatch):
    """Another file is renamed over a take mid-upload; the run's salvage completes the
    uploaded prefix at the stream's key and dies there (before its copy to the partial
    key, before any record of its end). Returns the stream as left and the take."""
    from stream_ingest.blocks.bucket import StreamBucket
    from stream_ingest.flows.ingest import stream_ingest
    from stream_ingest.parts import MIB
    from tests.conftest import edit_config
    from tests.flows.helpers import payload

    edit_config(max_parts_in_flight=1)  # the parts one after another: part 1 goes up
    watch = Path(registered.watch_dir)
    video, other = watch / "a.mp4", watch / "a.mp4.part"
    take = payload(5 * MIB + 3)
    video.write_bytes(take)
    other.write_bytes(payload(5 * MIB, seed=1))
    real_upload, real_complete = StreamBucket.upload_part, StreamBucket.complete_multipart_upload

    def upload_part(self, key, upload_id, number, body):
        out = real_upload(self, key, upload_id, number, body)
        if number == 1 and other.exists():
            os.rename(other, video)  # renamed over the take: its tail is gone
        return out

    def complete_then_die(self, *args, **kwargs):
        real_complete(self, *args, **kwargs)
        raise RuntimeError("the run's process is killed")

    with monkeypatch.context() as dying:
        dying.setattr(StreamBucket, "upload_part", upload_part)
        dying.setattr(StreamBucket, "complete_multipart_upload", complete_then_die)
        assert stream_ingest(path=str(video), return_state=True).is_failed()
    [record] = store.streams.list()
    assert record.salvage_key and record.status in ACTIVE  # cut short, its end unrecorded
    return record, take


def _only_the_partial(s3, store, record, take) -> None:
    from stream_ingest.parts import MIB

    record = store.streams.require(record.stream_id)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=record.s3_bucket)["Contents"]}
    assert (record.status, keys) == (Status.SALVAGED, {record.salvage_key})
    body = s3.get_object(Bucket=record.s3_bucket, Key=record.salvage_key)["Body"].read()
    assert body == take[: 5 * MIB]
    assert not s3.list_multipart_uploads(Bucket=record.s3_bucket).get("Uploads")
    assert store.parts.uploads() == {}


def test_a_salvage_cut_short_after_its_completion_is_finished_not_confirmed(
    registered, s3, store, monkeypatch
) -> None:
    """A rerun found the object at the stream's key made of its checkpointed parts
    and confirmed it as the completed take: a prefix at the take's key, passed off as
    the whole recording. (The rerun comes first here: the janitor would finish the
    salvage itself.)"""
    from stream_ingest.flows.ingest import stream_ingest

    record, take = _salvage_cut_short_after_its_completion(registered, store, monkeypatch)

    stream_ingest(stream_id=record.stream_id, return_state=True)  # `streams rerun ID`

    _only_the_partial(s3, store, record, take)


def test_the_janitor_finishes_a_salvage_cut_short_after_its_completion(
    registered, s3, store, monkeypatch
) -> None:
    """S3 no longer lists the upload (it was completed), so the janitor, which looked
    only at listed uploads, failed the stream and left the prefix at the take's key
    until someone reran it."""
    from stream_ingest.flows.janitor import janitor

    record, take = _salvage_cut_short_after_its_completion(registered, store, monkeypatch)

    actions = janitor()

    assert [a["kind"] for a in actions] == ["mark-failed", "salvaged"]
    _only_the_partial(s3, store, record, take)


def test_a_retake_whose_run_finds_redis_emptied_keeps_the_first_take(registered, s3, store) -> None:
    """`ffmpeg -y` rewrote a completed take; its run, carrying the stream's id, finds
    Redis emptied. The object at the key is that stream's, but of another take: the
    retake goes to a key of its own, the first take's object stays."""
    from stream_ingest.flows.ingest import stream_ingest

    video = Path(registered.watch_dir) / "a.mp4"
    video.write_bytes(b"take one")
    first = stream_ingest(path=str(video))
    assert first["status"] == "completed"
    with open(video, "r+b") as fh:  # the same inode, truncated and written again
        fh.truncate(0)
        fh.write(b"take two")
    lose_redis_data(store)
    assert stream_ingest(path=str(video), stream_id=first["stream_id"])["status"] == "completed"

    bucket = registered.s3_bucket
    bodies = {
        o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        for o in s3.list_objects_v2(Bucket=bucket)["Contents"]
    }
    assert bodies == {"rec/a.mp4": b"take one", "rec/a (2).mp4": b"take two"}
