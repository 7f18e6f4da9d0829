"""CheckpointStore against a private redis-server (one namespace per test)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest

from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.devstack.services import RedisServer, wait_for
from stream_ingest.errors import CheckpointUnavailable, LeaseLost, StreamNotFound
from stream_ingest.records import PartRecord, Revision, StreamRecord
from stream_ingest.states import IllegalTransition, Status


def new_record(**values: object) -> StreamRecord:
    values.setdefault("stream_id", uuid.uuid4().hex)
    values.setdefault("original_path", "/w/cam.mp4")
    values.setdefault("identity", f"1:{uuid.uuid4().int % 10**9}")
    values.setdefault("s3_key", "rec/cam.mp4")
    return StreamRecord(**values)  # type: ignore[arg-type]


def part(n: int, size: int, etag: str = "") -> PartRecord:
    return PartRecord(n, etag or f'"etag-{n}-{size}"', (n - 1) * 100, size, f"sum-{n}")


def raw_meta(store: CheckpointStore, sid: str) -> dict[str, str]:
    return {
        k.decode(): v.decode()
        for k, v in store.redis_client.hgetall(store.space.meta_key(sid)).items()
    }


# -- streams -----------------------------------------------------------------


def test_put_and_get_round_trip(store: CheckpointStore) -> None:
    record = new_record(total_bytes=-1, part_base_bytes=5 << 20)
    store.streams.put(record)
    assert store.streams.get(record.stream_id) == record
    assert store.streams.require(record.stream_id) == record
    assert store.identities.stream_for(record.identity) == record.stream_id
    assert record.stream_id in {r.stream_id for r in store.streams.active()}
    assert store.streams.get("nope") is None
    with pytest.raises(StreamNotFound):
        store.streams.require("nope")


def race_claims(
    store: CheckpointStore, identity: str, n: int = 8
) -> list[tuple[str, bool, object]]:
    """`n` threads claim one identity at once; each returns (stream id, created, the
    record it finds right after)."""
    barrier = threading.Barrier(n)
    results: list[tuple[str, bool, object]] = []
    lock = threading.Lock()

    def claim() -> None:
        record = new_record(identity=identity)
        barrier.wait()
        sid, created = store.identities.claim(identity, record)
        got = store.streams.get(sid)  # whoever lost must find the winner's stream at once
        with lock:
            results.append((sid, created, got))

    threads = [threading.Thread(target=claim) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_claim_identity_is_atomic(store: CheckpointStore) -> None:
    for _round in range(10):
        identity = f"42:{uuid.uuid4().int % 10**9}"
        results = race_claims(store, identity)
        assert len(results) == 8
        winners = [sid for sid, created, _ in results if created]
        assert len(winners) == 1, results
        assert {sid for sid, _, _ in results} == set(winners)
        for _sid, _created, got in results:
            assert isinstance(got, StreamRecord) and got.stream_id == winners[0]
            assert got.identity == identity
        assert store.identities.stream_for(identity) == winners[0]
    assert len(store.streams.list()) == 10  # only the winners' streams exist


def test_claim_of_a_claimed_identity_returns_the_owner(store: CheckpointStore) -> None:
    first = new_record(identity="7:7")
    assert store.identities.claim("7:7", first) == (first.stream_id, True)
    second = new_record(identity="7:7")
    assert store.identities.claim("7:7", second) == (first.stream_id, False)
    assert store.streams.get(second.stream_id) is None
    store.identities.forget("7:7", second.stream_id)  # not its owner: no effect
    assert store.identities.stream_for("7:7") == first.stream_id
    store.identities.forget("7:7", first.stream_id)
    assert store.identities.stream_for("7:7") is None
    assert store.identities.claim("7:7", second) == (second.stream_id, True)


def test_set_status_enforces_transitions_and_keeps_the_active_set(
    store: CheckpointStore,
) -> None:
    record = new_record()
    sid = record.stream_id
    store.streams.put(record)
    assert sid in {r.stream_id for r in store.streams.active()}
    with pytest.raises(IllegalTransition):
        store.streams.set_status(sid, Status.COMPLETED)  # detected -> completed
    assert store.streams.require(sid).status is Status.DETECTED

    assert store.streams.set_status(sid, Status.UPLOADING, flow_run_id="run-1") is Status.UPLOADING
    got = store.streams.require(sid)
    assert (got.status, got.flow_run_id) == (Status.UPLOADING, "run-1")
    assert got.last_activity_at_utc
    assert sid in {r.stream_id for r in store.streams.active()}

    store.streams.set_status(sid, Status.FAILED, error="S3 unavailable")
    assert sid not in {r.stream_id for r in store.streams.active()}
    assert store.streams.require(sid).error == "S3 unavailable"
    store.streams.set_status(sid, Status.UPLOADING, error="")
    assert sid in {r.stream_id for r in store.streams.active()}
    store.streams.set_status(sid, Status.FINALIZING)
    store.streams.set_status(sid, Status.COMPLETED, sha256="abc", total_bytes=10)
    got = store.streams.require(sid)
    assert (got.status, got.sha256, got.total_bytes) == (Status.COMPLETED, "abc", 10)
    assert sid not in {r.stream_id for r in store.streams.active()}

    with pytest.raises(IllegalTransition):
        store.streams.set_status(sid, Status.FAILED, error="must not be written")
    assert store.streams.require(sid).status is Status.COMPLETED
    assert store.streams.require(sid).error == ""
    with pytest.raises(StreamNotFound):
        store.streams.set_status("missing", Status.UPLOADING)


def test_abort_leaves_the_active_set(store: CheckpointStore) -> None:
    record = new_record()
    store.streams.put(record)
    store.streams.set_status(record.stream_id, Status.ABORTED, error="source deleted")
    assert record.stream_id not in {r.stream_id for r in store.streams.active()}
    with pytest.raises(IllegalTransition):
        store.streams.set_status(record.stream_id, Status.FAILED)


def test_update_sets_fields_but_never_the_status(store: CheckpointStore) -> None:
    record = new_record()
    store.streams.put(record)
    store.streams.update(record.stream_id, total_bytes=99, s3_upload_id="up-1")
    got = store.streams.require(record.stream_id)
    assert (got.total_bytes, got.s3_upload_id) == (99, "up-1")
    with pytest.raises(ValueError, match="set_status"):
        store.streams.update(record.stream_id, status="completed")
    assert store.streams.require(record.stream_id).status is Status.DETECTED


def test_list_streams_with_and_without_a_status(store: CheckpointStore) -> None:
    ids = [f"{c}-{uuid.uuid4().hex[:6]}" for c in "abc"]
    for sid in ids:
        store.streams.put(new_record(stream_id=sid))
    store.streams.set_status(ids[1], Status.FAILED)
    store.streams.set_status(ids[2], Status.UPLOADING)
    assert [r.stream_id for r in store.streams.list()] == ids
    assert [r.stream_id for r in store.streams.list(Status.FAILED)] == [ids[1]]
    assert [r.stream_id for r in store.streams.list(Status.UPLOADING)] == [ids[2]]
    assert [r.stream_id for r in store.streams.list(Status.DETECTED)] == [ids[0]]
    assert store.streams.list(Status.COMPLETED) == []


def test_namespaces_do_not_see_each_other(store: CheckpointStore, redis_server) -> None:
    other = CheckpointStore.from_url(redis_server.url, store.namespace + "-other")
    store.streams.put(new_record(identity="9:9"))
    assert other.streams.list() == []
    assert other.identities.stream_for("9:9") is None


# -- parts -------------------------------------------------------------------


def test_record_part_is_fenced_by_the_lease(store: CheckpointStore) -> None:
    record = new_record()
    store.streams.put(record)
    assert store.leases.acquire(record.stream_id, "owner", 30)
    with pytest.raises(LeaseLost):
        store.parts.record(record, "intruder", part(1, 100), 30)
    assert store.parts.get(record.stream_id) == {}
    meta = store.streams.require(record.stream_id)
    assert (meta.bytes_uploaded, meta.parts_count) == (0, 0)
    assert store.leases.holder(record.stream_id) == "owner"

    store.parts.record(record, "owner", part(1, 100), 30)
    assert store.parts.get(record.stream_id) == {1: part(1, 100)}
    assert store.streams.require(record.stream_id).bytes_uploaded == 100


def test_record_part_counts_a_rerecorded_part_once(store: CheckpointStore) -> None:
    record = new_record()
    sid = record.stream_id
    store.streams.put(record)
    store.leases.acquire(sid, "tok", 30)
    store.parts.record(record, "tok", part(1, 100), 30)
    store.parts.record(record, "tok", part(2, 50), 30)
    store.parts.record(record, "tok", part(1, 70, etag='"re-uploaded"'), 30)
    meta = store.streams.require(sid)
    assert (meta.bytes_uploaded, meta.parts_count) == (120, 2)
    assert store.parts.get(sid)[1] == part(1, 70, etag='"re-uploaded"')
    assert meta.last_activity_at_utc


def test_record_part_without_a_lease_takes_it(store: CheckpointStore) -> None:
    # Redis restarted without its data: nobody holds the lease, the writer takes it.
    record = new_record()
    store.streams.put(record)
    store.parts.record(record, "tok", part(1, 10), 30)
    assert store.leases.holder(record.stream_id) == "tok"
    assert 0 < store.redis_client.pttl(store.space.lease_key(record.stream_id)) <= 30_000


def test_record_part_rebuilds_a_deleted_meta_hash(store: CheckpointStore) -> None:
    record = new_record(s3_upload_id="up-1", part_base_bytes=5 << 20)
    sid = record.stream_id
    store.streams.put(record)
    store.leases.acquire(sid, "tok", 30)
    store.streams.set_status(sid, Status.UPLOADING)
    store.parts.record(record, "tok", part(1, 10), 30)
    store.parts.record(record, "tok", part(2, 20), 30)
    store.redis_client.delete(store.space.meta_key(sid))
    assert store.streams.get(sid) is None

    # `record` is the run's copy from when it started: status detected, no bytes yet.
    store.parts.record(record, "tok", part(3, 30), 30)
    rebuilt = store.streams.require(sid)
    assert (rebuilt.original_path, rebuilt.s3_key, rebuilt.s3_upload_id) == (
        record.original_path,
        record.s3_key,
        "up-1",
    )
    assert rebuilt.bytes_uploaded == 60 == sum(p.size for p in store.parts.get(sid).values())
    assert rebuilt.parts_count == 3
    # A part is being recorded, so the stream is uploading, and can finish normally.
    assert rebuilt.status is Status.UPLOADING
    assert sid in {r.stream_id for r in store.streams.active()}
    store.streams.set_status(sid, Status.FINALIZING)
    store.streams.set_status(sid, Status.COMPLETED)


def test_restore_rebuilds_only_a_lost_meta_hash(store: CheckpointStore) -> None:
    record = new_record(s3_upload_id="up-1", part_base_bytes=5 << 20)
    sid = record.stream_id
    store.streams.put(record)
    store.streams.set_status(sid, Status.UPLOADING, error="kept")
    assert store.parts.restore(record) is False
    assert store.streams.require(sid).error == "kept"  # an existing record is left alone

    store.redis_client.delete(
        *store.redis_client.keys(f"{store.namespace}:*")
    )  # Redis restarted without its data
    assert store.parts.restore(record) is True
    rebuilt = store.streams.require(sid)
    assert (rebuilt.status, rebuilt.s3_upload_id, rebuilt.bytes_uploaded) == (
        Status.UPLOADING,
        "up-1",
        0,
    )
    assert store.identities.stream_for(record.identity) == sid
    store.streams.set_status(sid, Status.FINALIZING)  # finalize can go on from here


def test_replace_parts(store: CheckpointStore) -> None:
    record = new_record()
    sid = record.stream_id
    store.streams.put(record)
    for n, size in ((1, 10), (2, 20), (3, 30)):
        store.parts.record(record, "tok", part(n, size), 30)
    store.parts.replace(sid, [part(1, 10), part(3, 30)])
    assert set(store.parts.get(sid)) == {1, 3}
    meta = store.streams.require(sid)
    assert (meta.bytes_uploaded, meta.parts_count) == (40, 2)
    store.parts.replace(sid, [])
    assert store.parts.get(sid) == {}
    assert store.streams.require(sid).bytes_uploaded == 0


# -- lease -------------------------------------------------------------------


def test_lease_acquire_renew_release(store: CheckpointStore) -> None:
    sid = "s-lease"
    assert store.leases.holder(sid) is None
    assert store.leases.acquire(sid, "a", 30)
    assert store.leases.acquire(sid, "a", 30)  # re-entrant for its holder
    assert not store.leases.acquire(sid, "b", 30)
    store.leases.renew(sid, "a", 30)
    with pytest.raises(LeaseLost):
        store.leases.renew(sid, "b", 30)
    store.leases.release(sid, "b")  # not the holder: no effect
    assert store.leases.holder(sid) == "a"
    store.leases.release(sid, "a")
    assert store.leases.holder(sid) is None
    assert store.leases.acquire(sid, "b", 30)
    assert store.leases.holder(sid) == "b"


def test_lease_expires_and_renewal_extends_it(store: CheckpointStore) -> None:
    sid = "s-ttl"
    assert store.leases.acquire(sid, "a", 0.3)
    assert 0 < store.redis_client.pttl(store.space.lease_key(sid)) <= 300
    store.leases.renew(sid, "a", 5)
    assert store.redis_client.pttl(store.space.lease_key(sid)) > 1000
    assert store.leases.acquire(sid, "a", 0.3)  # shorten it again
    wait_for(lambda: store.leases.holder(sid) is None, 3, "the lease to expire")
    assert store.leases.acquire(sid, "b", 30)  # expired: anyone may take it
    assert not store.leases.acquire(sid, "a", 30)
    with pytest.raises(LeaseLost):
        store.leases.renew(sid, "a", 30)
    assert store.leases.holder(sid) == "b"


def test_take_over_lease_only_from_the_named_holder(store: CheckpointStore) -> None:
    sid = "s-take-over"
    assert not store.leases.take_over(sid, "crashed", "rerun", 30)  # nobody holds it
    assert store.leases.holder(sid) is None
    assert store.leases.acquire(sid, "crashed", 30)
    assert not store.leases.take_over(sid, "someone-else", "rerun", 30)
    assert store.leases.holder(sid) == "crashed"
    assert store.leases.take_over(sid, "crashed", "rerun", 5)
    assert store.leases.holder(sid) == "rerun"
    assert 0 < store.redis_client.pttl(store.space.lease_key(sid)) <= 5000
    with pytest.raises(LeaseLost):
        store.leases.renew(sid, "crashed", 30)


# -- uploads and hints -----------------------------------------------------------


def test_upload_registry(store: CheckpointStore) -> None:
    store.parts.register_upload("up-1", "s1", "rec/a.mp4")
    store.parts.register_upload("up-2", "s2", "rec/b.mp4")
    uploads = store.parts.uploads()
    assert set(uploads) == {"up-1", "up-2"}
    assert uploads["up-1"]["stream_id"] == "s1" and uploads["up-1"]["key"] == "rec/a.mp4"
    assert abs(uploads["up-1"]["created"] - time.time()) < 60
    store.parts.forget_upload("up-1")
    assert set(store.parts.uploads()) == {"up-2"}


def test_holders_group_the_registered_uploads_by_key(store: CheckpointStore) -> None:
    """A new take's key choice reads who is to complete at which key in one read."""
    store.parts.register_upload("up-1", "s1", "rec/a.mp4")
    store.parts.register_upload("up-2", "s2", "rec/a.mp4")
    store.parts.register_upload("up-3", "s3", "rec/b.mp4")
    assert store.parts.holders() == {"rec/a.mp4": {"s1", "s2"}, "rec/b.mp4": {"s3"}}
    store.parts.forget_upload("up-2")
    assert store.parts.holders()["rec/a.mp4"] == {"s1"}


def test_closed_hint_only_for_the_matching_identity(store: CheckpointStore) -> None:
    path = "/w/cam 1/a.mp4"
    assert store.hints.closed_at(path, "1:2") is None
    before = time.time()
    store.hints.note_closed(path, "1:2")
    at = store.hints.closed_at(path, "1:2")
    assert at is not None and before - 1 <= at <= time.time() + 1
    assert store.hints.closed_at(path, "1:3") is None  # another incarnation of the path
    assert store.hints.closed_at("/w/cam 1/b.mp4", "1:2") is None
    store.hints.note_closed(path, "1:3")  # a new incarnation closed: the old hint is replaced
    assert store.hints.closed_at(path, "1:2") is None
    assert store.hints.closed_at(path, "1:3") is not None
    store.hints.clear(path)
    assert store.hints.closed_at(path, "1:3") is None


def test_a_close_hint_is_used_once_and_only_while_no_write_followed(
    store: CheckpointStore,
) -> None:
    path = "/w/cam 1/a.mp4"
    store.hints.note_closed(path, "1:2", 100, 7)
    assert not store.hints.take_closed(path, "1:3", 100, 7)  # another take's: left alone
    assert store.hints.take_closed(path, "1:2", 100, 7)
    assert not store.hints.take_closed(path, "1:2", 100, 7)  # used once
    store.hints.note_closed(path, "1:2", 100, 7)  # a touch, then the recorder wrote on
    assert not store.hints.take_closed(path, "1:2", 150, 9)
    assert store.hints.closed_at(path, "1:2") is None  # a stale hint goes
    store.hints.note_closed(path, "1:2")  # the file's state unknown: never ends a recording
    assert not store.hints.take_closed(path, "1:2", -1, -1)
    # A close after the caller's look (grown, or only rewritten) waits for a look
    # that sees the file as it was closed.
    store.hints.note_closed(path, "1:2", 150, 1_796_514_762_717_431_768)
    assert not store.hints.take_closed(path, "1:2", 100, 1_796_514_761_217_431_679)
    assert not store.hints.take_closed(path, "1:2", 150, 1_796_514_762_717_431_767)
    assert store.hints.take_closed(path, "1:2", 150, 1_796_514_762_717_431_768)


# -- Redis down ------------------------------------------------------------------


def test_a_stopped_redis_raises_checkpoint_unavailable() -> None:
    server = RedisServer().start()
    try:
        store = CheckpointStore.from_url(server.url, "down")
        record = new_record()
        store.streams.put(record)
        store.ping()
    finally:
        server.stop()
    calls: list[Callable[[], object]] = [
        store.ping,
        lambda: store.streams.get(record.stream_id),
        lambda: store.streams.put(record),
        lambda: store.identities.claim("1:1", new_record()),
        lambda: store.streams.set_status(record.stream_id, Status.UPLOADING),
        lambda: store.parts.record(record, "tok", part(1, 1), 30),
        lambda: store.leases.acquire(record.stream_id, "tok", 30),
        lambda: store.streams.list(),
        lambda: store.hints.closed_at("/w/a.mp4", "1:1"),
    ]
    started = time.monotonic()
    for call in calls:
        with pytest.raises(CheckpointUnavailable) as info:
            call()
        assert info.value.transient
    assert time.monotonic() - started < 10


def test_a_revision_keeps_the_completed_parts_as_its_copy_source(store) -> None:
    sid = "rev-1"
    store.streams.put(StreamRecord(sid, original_path="/w/a.mp4", status=Status.DETECTED))
    for status in (Status.UPLOADING, Status.FINALIZING):
        store.streams.set_status(sid, status)
    parts = [PartRecord(n, f'"e{n}"', (n - 1) * 10, 10, f"sha{n}") for n in (1, 2)]
    store.parts.replace(sid, parts)
    store.streams.set_status(sid, Status.COMPLETED, total_bytes=20, object_etag='"obj"')
    store.revisions.add(sid, Revision(1, 20, "sha-a", "t1", 2, 0))

    got = store.revisions.begin(sid, "run-2")
    assert (got.status, got.revision, got.s3_upload_id) == (Status.UPLOADING, 2, "")
    assert got.object_etag == '"obj"' and got.total_bytes == -1
    assert got.flow_run_id == "run-2"  # the janitor judges the stream by its run
    assert store.parts.get(sid) == {} and store.revisions.prior_parts(sid) == {
        p.number: p for p in parts
    }
    assert sid in {r.stream_id for r in store.streams.active()}
    # a retried task: the revision is already open, nothing moves twice
    assert store.revisions.begin(sid, "run-2").revision == 2
    assert store.revisions.prior_parts(sid) == {p.number: p for p in parts}

    store.revisions.add(sid, Revision(2, 30, "sha-b", "t2", 1, 2))
    assert store.revisions.prior_parts(sid) == {}  # no longer needed
    assert [(r.number, r.size, r.parts_copied) for r in store.revisions.list(sid)] == [
        (1, 20, 0),
        (2, 30, 2),
    ]


def test_only_a_completed_stream_begins_a_revision(store) -> None:
    store.streams.put(StreamRecord("rev-2", status=Status.DETECTED))
    store.streams.set_status("rev-2", Status.UPLOADING)
    store.streams.update("rev-2", s3_upload_id="up-1")
    with pytest.raises(IllegalTransition):
        store.revisions.begin("rev-2", "run-x")
    with pytest.raises(StreamNotFound):
        store.revisions.begin("nobody", "run-x")


def test_rebinding_an_identity_starts_a_new_take_once(store) -> None:
    old = StreamRecord("take-1", original_path="/w/a.mp4", identity="1:2:3")
    assert store.identities.claim("1:2:3", old) == ("take-1", True)
    first = StreamRecord("take-2", original_path="/w/a.mp4", identity="1:2:3")
    second = StreamRecord("take-2b", original_path="/w/a.mp4", identity="1:2:3")
    assert store.identities.rebind("1:2:3", "take-1", first) == ("take-2", True)
    # a second event for the same new take finds it instead of making a third stream
    assert store.identities.rebind("1:2:3", "take-1", second) == ("take-2", False)
    assert store.identities.stream_for("1:2:3") == "take-2"
    assert store.streams.get("take-2b") is None and store.streams.get("take-1") is not None
    assert store.identities.all() == {"1:2:3": "take-2"}


def test_an_identity_bound_before_birth_times_is_found_and_moved(store) -> None:
    """After an upgrade the sensor reads "dev:ino:birth" for a file bound as "dev:ino":
    the same file, the same stream (not a new stream and a second upload)."""
    old = StreamRecord("legacy-1", original_path="/w/a.mp4", identity="7:99")
    assert store.identities.claim("7:99", old) == ("legacy-1", True)
    fresh = StreamRecord("would-be-new", original_path="/w/a.mp4", identity="7:99:123")
    assert store.identities.claim("7:99:123", fresh) == ("legacy-1", False)
    assert store.identities.all() == {"7:99:123": "legacy-1"}
    assert store.streams.get("would-be-new") is None
