"""Retention under the test harness: a completed recording's object carries what finds
it again (stream id, take, size, SHA-256) and its checkpoint expires after the config
block's retention; the janitor drops the index entries of streams that are gone."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from stream_ingest.flows.ingest import stream_ingest
from stream_ingest.flows.janitor import janitor
from stream_ingest.records import StreamRecord
from stream_ingest.states import Status
from tests.conftest import edit_config
from tests.flows.helpers import MIB, payload

pytestmark = pytest.mark.usefixtures("registered")
DAY_MS = 86_400_000


def _tags(s3, bucket: str, key: str) -> dict[str, str]:
    tagset = s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    return {t["Key"]: t["Value"] for t in tagset}


def _expiry_ms(store, sid: str) -> dict[str, int]:
    return {
        "meta": store.redis_client.pttl(store.space.meta_key(sid)),
        "parts": store.redis_client.pttl(store.space.parts_key(sid)),
        "revisions": store.redis_client.pttl(store.space.revisions_key(sid)),
    }


def test_each_take_of_an_object_is_tagged_and_its_checkpoint_expires(registered, s3, store):
    edit_config(retention_days=2)
    data = payload(6 * MIB + 5, seed=61)
    src = Path(registered.watch_dir) / "tagged.mp4"
    src.write_bytes(data)

    first = stream_ingest(path=str(src))

    sid, key = first["stream_id"], first["s3_key"]
    assert _tags(s3, registered.s3_bucket, key) == {
        "sha256": hashlib.sha256(data).hexdigest(),
        "stream-id": sid,
        "size": str(len(data)),
        "revision": "1",
    }
    expiry = _expiry_ms(store, sid)
    assert all(2 * DAY_MS - 60_000 < ms <= 2 * DAY_MS for ms in expiry.values()), expiry

    grown = data + payload(MIB, seed=62)
    with open(src, "ab") as fh:
        fh.write(grown[len(data) :])
    second = stream_ingest(stream_id=sid)

    assert second["status"] == "completed" and int(second["revision"]) == 2
    assert _tags(s3, registered.s3_bucket, key) == {
        "sha256": hashlib.sha256(grown).hexdigest(),
        "stream-id": sid,
        "size": str(len(grown)),
        "revision": "2",
    }
    expiry = _expiry_ms(store, sid)
    assert all(2 * DAY_MS - 60_000 < ms <= 2 * DAY_MS for ms in expiry.values()), expiry


def test_the_janitor_drops_index_entries_of_streams_that_are_gone(registered, store):
    store.streams.put(StreamRecord("gone", status=Status.COMPLETED, identity="4:4:4"))
    store.streams.put(StreamRecord("kept", status=Status.COMPLETED, identity="4:4:5"))
    store.redis_client.delete(store.space.meta_key("gone"))  # what its expiry does

    actions = janitor()

    assert store.identities.all() == {"4:4:5": "kept"}
    assert [r.stream_id for r in store.streams.list()] == ["kept"]
    assert {m.decode() for m in store.redis_client.zrange(store.space.all_key, 0, -1)} == {"kept"}
    assert [(a["kind"], a["target"]) for a in actions] == [("drop-index-entries", "2 entries")]
