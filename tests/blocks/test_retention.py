"""Retention in the CheckpointStore, against a private redis-server: an ended stream's
keys expire after the retention and a revision makes them permanent again, hints
expire, the sweep drops index entries of streams that are gone (their identity is
free), and the prune applies the retention to keys that have no expiry."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.devstack.services import wait_for
from stream_ingest.records import PartRecord, Revision, StreamRecord
from stream_ingest.retention import ACTIVE, ALL, BY_IDENTITY, UPLOADS
from stream_ingest.states import Status

HOUR_MS = 3_600_000
DAY = 86_400.0


def part(n: int) -> PartRecord:
    return PartRecord(n, f'"etag-{n}"', (n - 1) * 100, 100, f"sum-{n}")


def uploading(store: CheckpointStore, identity: str | None = None) -> StreamRecord:
    """A stream as the sensor claims it and a run uploads it: two parts recorded."""
    identity = identity or f"9:{uuid.uuid4().int % 10**9}:1"
    record = StreamRecord(uuid.uuid4().hex, original_path="/w/cam.mp4", identity=identity)
    sid, created = store.identities.claim(identity, record)
    assert created
    store.streams.set_status(sid, Status.UPLOADING)
    for n in (1, 2):
        store.parts.record(record, "run-1", part(n), lease_ttl=30)
    return store.streams.require(sid)


def completed(store: CheckpointStore, identity: str | None = None) -> StreamRecord:
    record = uploading(store, identity)
    sid = record.stream_id
    store.streams.set_status(sid, Status.FINALIZING)
    store.streams.set_status(sid, Status.COMPLETED, sha256="ab" * 32, total_bytes=200)
    store.revisions.add(sid, Revision(record.revision, 200, "ab" * 32, "2026-01-01T00:00:00", 2))
    store.leases.release(sid, "run-1")
    return store.streams.require(sid)


def ttls(store: CheckpointStore, sid: str) -> dict[str, int]:
    """PTTL of each of the stream's keys that exist (-1: no expiry)."""
    names = ("meta", "parts", "prior", "revisions")
    found = {
        n: store.redis_client.pttl(k)
        for n, k in zip(names, store.space.stream_keys(sid), strict=True)
    }
    return {n: ttl for n, ttl in found.items() if ttl != -2}


def wait_expired(store: CheckpointStore, sid: str) -> None:
    wait_for(lambda: not store.redis_client.exists(store.space.meta_key(sid)), 10, "the expiry")


# -- expiry of ended streams ---------------------------------------------------


@pytest.mark.parametrize("end", [Status.COMPLETED, Status.ABORTED, Status.SKIPPED])
def test_an_ended_stream_keeps_its_keys_for_the_retention(store, end) -> None:
    store.set_retention(3600)
    record = uploading(store)
    sid = record.stream_id
    store.redis_client.hset(store.space.prior_key(sid), 1, part(1).to_json())  # a revision's
    assert set(ttls(store, sid).values()) == {-1}

    if end == Status.COMPLETED:
        store.streams.set_status(sid, Status.FINALIZING)
    store.streams.set_status(sid, end)

    found = ttls(store, sid)
    assert set(found) == {"meta", "parts", "prior"}
    assert all(HOUR_MS - 10_000 < ttl <= HOUR_MS for ttl in found.values()), found


def test_a_live_or_failed_stream_never_expires(store) -> None:
    store.set_retention(3600)
    record = uploading(store)
    sid = record.stream_id
    store.streams.set_status(sid, Status.FAILED, error="S3 unavailable")
    assert set(ttls(store, sid).values()) == {-1}
    store.streams.set_status(sid, Status.UPLOADING)
    store.streams.set_status(sid, Status.FINALIZING)
    assert set(ttls(store, sid).values()) == {-1}


def test_the_revision_recorded_after_completion_expires_with_the_record(store) -> None:
    """mark_completed records the revision after the status: the list it creates then
    must not outlive the record."""
    store.set_retention(3600)
    record = completed(store)

    found = ttls(store, record.stream_id)
    assert set(found) == {"meta", "parts", "revisions"}
    assert abs(found["revisions"] - found["meta"]) < 10_000


def test_a_revision_makes_the_keys_permanent_again_until_it_completes(store) -> None:
    store.set_retention(3600)
    sid = completed(store).stream_id

    reopened = store.revisions.begin(sid, "run-2")

    assert reopened.status == Status.UPLOADING and reopened.revision == 2
    found = ttls(store, sid)
    assert set(found) == {"meta", "prior", "revisions"}  # parts: moved to prior
    assert set(found.values()) == {-1}

    store.parts.record(reopened, "run-2", part(1), lease_ttl=30)
    store.streams.set_status(sid, Status.FINALIZING)
    store.streams.set_status(sid, Status.COMPLETED)
    store.revisions.add(sid, Revision(2, 300, "cd" * 32, "2026-01-02T00:00:00", 1, 1))
    found = ttls(store, sid)
    assert set(found) == {"meta", "parts", "revisions"}  # prior: used, deleted
    assert all(HOUR_MS - 10_000 < ttl <= HOUR_MS for ttl in found.values()), found


def test_a_record_put_whole_expires_when_ended_and_not_when_live(store) -> None:
    """put() writes a whole record: finalize's fallback (Redis lost the stream after
    the object was completed), or a rebuild of a live one."""
    store.set_retention(3600)
    record = StreamRecord(uuid.uuid4().hex, status=Status.COMPLETED, identity="3:3:3")

    store.streams.put(record)
    assert 0 < store.redis_client.pttl(store.space.meta_key(record.stream_id)) <= HOUR_MS

    store.streams.put(StreamRecord(record.stream_id, status=Status.UPLOADING, identity="3:3:3"))
    assert store.redis_client.pttl(store.space.meta_key(record.stream_id)) == -1


# -- hints -----------------------------------------------------------------------


def test_a_hint_expires_after_a_day(store) -> None:
    store.hints.note_closed("/w/cam.mp4", "1:2:3")

    ttl = store.redis_client.pttl(store.space.hint_key("/w/cam.mp4"))
    assert 24 * HOUR_MS - 10_000 < ttl <= 24 * HOUR_MS
    assert store.hints.closed_at("/w/cam.mp4", "1:2:3") is not None


def test_a_hint_is_gone_after_its_ttl(store) -> None:
    store.set_retention(3600, hints_seconds=0.2)
    store.hints.note_closed("/w/cam.mp4", "1:2:3")

    wait_for(lambda: store.hints.closed_at("/w/cam.mp4", "1:2:3") is None, 10, "the hint's expiry")
    assert not store.redis_client.exists(store.space.hint_key("/w/cam.mp4"))


# -- the index sweep and free identities -------------------------------------------


def test_after_expiry_the_sweep_drops_the_stream_from_every_index(store) -> None:
    store.set_retention(0.3)
    gone = completed(store)
    sid = gone.stream_id
    store.parts.register_upload("up-gone", sid, "rec/cam.mp4")
    live = uploading(store)  # never ends: nothing of it may go
    store.parts.register_upload("up-live", live.stream_id, "rec/live.mp4")
    lost = uploading(store)  # its record vanished while it was live (Redis lost it)
    store.redis_client.delete(store.space.meta_key(lost.stream_id))
    wait_expired(store, sid)
    assert store.redis_client.zscore(store.space.all_key, sid) is not None  # still listed

    # While an upload's entry is younger than the retention the janitor may still
    # need it to abort the upload ("no stream record"): it stays.
    first = store.retention.sweep(now=time.time() - 3600)
    assert {(e.index, e.member) for e in first} == {
        (ALL, sid),
        (BY_IDENTITY, gone.identity),
        (ALL, lost.stream_id),
        (ACTIVE, lost.stream_id),
        (BY_IDENTITY, lost.identity),
    }
    assert set(store.parts.uploads()) == {"up-gone", "up-live"}

    second = store.retention.sweep()

    assert [(e.index, e.member, e.stream_id) for e in second] == [(UPLOADS, "up-gone", sid)]
    assert [r.stream_id for r in store.streams.list()] == [live.stream_id]
    ids = {m.decode() for m in store.redis_client.zrange(store.space.all_key, 0, -1)}
    assert ids == {live.stream_id}
    assert {m.decode() for m in store.redis_client.smembers(store.space.active_key)} == {
        live.stream_id
    }
    assert store.identities.all() == {live.identity: live.stream_id}
    assert set(store.parts.uploads()) == {"up-live"}
    assert store.retention.sweep() == []


def test_a_dry_sweep_changes_nothing(store) -> None:
    store.set_retention(0.3)
    gone = completed(store)
    wait_expired(store, gone.stream_id)

    assert {e.index for e in store.retention.sweep(dry_run=True)} == {ALL, BY_IDENTITY}

    assert store.identities.stream_for(gone.identity) == gone.stream_id
    assert store.redis_client.zscore(store.space.all_key, gone.stream_id) is not None


def test_the_identity_of_a_stream_that_expired_is_free(store) -> None:
    """Before the sweep drops its entry: a new file with that identity (a reused
    inode, a file moved back) is a new stream, not one bound to nothing."""
    store.set_retention(0.3)
    gone = completed(store, identity="5:6:7")
    wait_expired(store, gone.stream_id)
    fresh = StreamRecord("new-take", original_path="/w/cam.mp4", identity="5:6:7")

    assert store.identities.claim("5:6:7", fresh) == ("new-take", True)
    assert store.streams.require("new-take").identity == "5:6:7"
    assert store.identities.all() == {"5:6:7": "new-take"}


def test_a_rebind_over_a_stream_that_expired_takes_the_identity(store) -> None:
    store.set_retention(0.3)
    gone = completed(store, identity="5:6:8")
    wait_expired(store, gone.stream_id)
    fresh = StreamRecord("next-take", original_path="/w/cam.mp4", identity="5:6:8")

    # another take than the one the caller knew, but that one is gone
    assert store.identities.rebind("5:6:8", "some-earlier-take", fresh) == ("next-take", True)
    assert store.identities.stream_for("5:6:8") == "next-take"


def test_a_legacy_identity_of_a_stream_that_expired_is_free(store) -> None:
    """Bound as "dev:ino" (before birth times were kept) to a stream that is gone."""
    store.set_retention(0.3)
    gone = completed(store, identity="7:98")
    wait_expired(store, gone.stream_id)
    fresh = StreamRecord("after", original_path="/w/a.mp4", identity="7:98:123")

    assert store.identities.claim("7:98:123", fresh) == ("after", True)
    assert store.identities.all() == {"7:98:123": "after"}


# -- prune: streams that ended before their keys had an expiry ---------------------


def legacy_ended(
    store: CheckpointStore, sid: str, status: Status, days_ago: float, identity: str
) -> None:
    """A stream as it was written before expiries: ended `days_ago`, keys permanent."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - days_ago * DAY))
    record = StreamRecord(
        sid, identity=identity, status=status, started_at_utc=stamp, last_activity_at_utc=stamp
    )
    store.streams.put(record)
    store.redis_client.hset(store.space.parts_key(sid), 1, part(1).to_json())
    store.redis_client.hset(store.space.revisions_key(sid), 1, json.dumps({"number": 1}))
    store.hints.note_closed("/w/x", "unrelated")  # a key outside the streams: untouched
    for key in store.space.stream_keys(sid):
        store.redis_client.persist(key)


def test_prune_deletes_what_ended_past_the_retention_and_expires_the_rest(store) -> None:
    store.set_retention(30 * DAY)
    legacy_ended(store, "old", Status.COMPLETED, 40, "1:1:1")
    legacy_ended(store, "old-aborted", Status.ABORTED, 31, "1:1:2")
    legacy_ended(store, "recent", Status.COMPLETED, 2, "1:1:3")
    legacy_ended(store, "failed-old", Status.FAILED, 40, "1:1:4")
    store.streams.put(StreamRecord("live", status=Status.UPLOADING, identity="1:1:5"))
    store.parts.register_upload("up-old", "old", "rec/old.mp4")
    old_entry = {"stream_id": "old", "key": "rec/old.mp4", "created": time.time() - 41 * DAY}
    store.redis_client.hset(store.space.uploads_key, "up-old", json.dumps(old_entry))

    now = time.time()
    dry, dry_entries = store.retention.prune(now, dry_run=True)

    assert [(s.action, s.stream_id) for s in dry] == [
        ("delete", "old"),
        ("delete", "old-aborted"),
        ("expire", "recent"),
    ]
    assert {(e.index, e.member) for e in dry_entries} == {
        (ALL, "old"),
        (ALL, "old-aborted"),
        (BY_IDENTITY, "1:1:1"),
        (BY_IDENTITY, "1:1:2"),
        (UPLOADS, "up-old"),
    }
    for sid in ("old", "old-aborted", "recent", "failed-old", "live"):
        assert set(ttls(store, sid).values()) == {-1}, sid  # nothing changed
    assert len(store.identities.all()) == 5 and "up-old" in store.parts.uploads()

    retired, entries = store.retention.prune(now)

    assert retired == dry and entries == dry_entries
    for sid in ("old", "old-aborted"):
        assert ttls(store, sid) == {} and store.streams.get(sid) is None
    left = ttls(store, "recent")
    assert set(left) == {"meta", "parts", "revisions"}
    assert all(27.9 * DAY * 1000 < ttl <= 28 * DAY * 1000 for ttl in left.values()), left
    assert set(ttls(store, "failed-old").values()) == {-1}
    assert [r.stream_id for r in store.streams.list()] == ["recent", "failed-old", "live"]
    assert set(store.identities.all()) == {"1:1:3", "1:1:4", "1:1:5"}
    assert store.parts.uploads() == {}
    assert store.hints.closed_at("/w/x", "unrelated") is not None
    assert store.retention.prune() == ([], [])


def test_prune_spares_a_stream_reopened_since_it_looked(store, monkeypatch) -> None:
    """A revision that reopens the stream between the plan and the deletion wins, even
    once it has completed again (ended, but just now)."""
    store.set_retention(30 * DAY)
    legacy_ended(store, "reopened", Status.COMPLETED, 40, "2:2:2")
    real = store.streams.list

    def list_then_revise(status=None):
        found = real(status)
        store.revisions.begin("reopened", "run-2")
        store.streams.set_status("reopened", Status.FINALIZING)
        store.streams.set_status("reopened", Status.COMPLETED)
        return found

    monkeypatch.setattr(store.streams, "list", list_then_revise)

    retired, _ = store.retention.prune()

    assert retired == []
    assert store.streams.require("reopened").revision == 2
    assert store.identities.stream_for("2:2:2") == "reopened"
