"""The streams of the checkpoint store: each stream's record (`{ns}:stream:{id}:meta`)
and the indexes that list them (`{ns}:streams:all`, `{ns}:streams:active`).

Status changes are optimistic transactions (WATCH, MULTI, EXEC) checked against
stream_ingest/states.py; the same transaction gives an ended stream's keys their
expiry, or takes it away from one that is live again."""

from __future__ import annotations

import time
from collections.abc import Iterable

import redis

from stream_ingest.blocks.redis_support import unavailable
from stream_ingest.blocks.store_space import RedisSpace
from stream_ingest.errors import StreamNotFound
from stream_ingest.records import StreamRecord, utc_now
from stream_ingest.states import ACTIVE, Status, transition

# Fields of a record that exists, in one step (HSET alone would create the hash).
_UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""


class Streams:
    """Create, read, update and list stream records (`store.streams`)."""

    def __init__(self, space: RedisSpace) -> None:
        self._space = space

    @unavailable
    def put(self, record: StreamRecord) -> None:
        """Write the whole record and its indexes (used at creation and to rebuild a
        meta hash lost with Redis's data)."""
        with self._space.client.pipeline(transaction=True) as pipe:
            self.queue_put(pipe, record)
            pipe.execute()

    def queue_put(self, pipe: redis.client.Pipeline, record: StreamRecord) -> None:
        """`put`, queued in the caller's transaction (an identity claim writes the
        binding and the record together)."""
        space = self._space
        pipe.hset(space.meta_key(record.stream_id), mapping=record.to_hash())
        pipe.zadd(space.all_key, {record.stream_id: time.time()}, nx=True)
        if record.identity:
            pipe.hsetnx(space.identity_key, record.identity, record.stream_id)
        if record.status in ACTIVE:
            pipe.sadd(space.active_key, record.stream_id)
        else:
            pipe.srem(space.active_key, record.stream_id)
        space.queue_retention(pipe, record.stream_id, record.status)

    @unavailable
    def get(self, stream_id: str) -> StreamRecord | None:
        raw = self._space.client.hgetall(self._space.meta_key(stream_id))
        return StreamRecord.from_hash(raw) if raw else None

    def require(self, stream_id: str) -> StreamRecord:
        record = self.get(stream_id)
        if record is None:
            raise StreamNotFound(stream_id)
        return record

    @unavailable
    def update(self, stream_id: str, **values: object) -> None:
        """Set fields other than status (use `set_status` for that) of a stream that
        exists. A record Redis lost is left lost: a hash of the fields alone would be a
        record without an id or a status that no reader can load (`put` and
        `store.parts.restore` rebuild whole records)."""
        if "status" in values:
            raise ValueError("use set_status to change a stream's status")
        if not values:
            return
        args = [x for k, v in values.items() for x in (k, str(v))]
        self._space.script("update", _UPDATE)(keys=[self._space.meta_key(stream_id)], args=args)

    @unavailable
    def set_status(self, stream_id: str, status: Status, **values: object) -> Status:
        """Move the stream to `status` if the transition is legal (checked against the
        stored status under WATCH), together with other fields."""
        space = self._space
        meta = space.meta_key(stream_id)

        def apply(pipe: redis.client.Pipeline) -> None:
            current = pipe.hget(meta, "status")
            if current is None:
                raise StreamNotFound(stream_id)
            transition(current.decode(), status)
            pipe.multi()
            fields = {k: str(v) for k, v in values.items()}
            fields.update(status=str(status), last_activity_at_utc=utc_now())
            pipe.hset(meta, mapping=fields)
            if status in ACTIVE:
                pipe.sadd(space.active_key, stream_id)
            else:
                pipe.srem(space.active_key, stream_id)
            space.queue_retention(pipe, stream_id, status, before=current.decode())

        space.client.transaction(apply, meta)
        return status

    @unavailable
    def list(self, status: Status | None = None) -> list[StreamRecord]:
        """Every stream, oldest first, optionally only those with `status`."""
        ids = [i.decode() for i in self._space.client.zrange(self._space.all_key, 0, -1)]
        return [r for r in self.many(ids) if status is None or r.status == status]

    @unavailable
    def active(self) -> list[StreamRecord]:
        """The detected, uploading and finalizing streams (the janitor's work list)."""
        members = self._space.client.smembers(self._space.active_key)
        return self.many(sorted(m.decode() for m in members))

    @unavailable
    def many(self, ids: Iterable[str]) -> list[StreamRecord]:
        """The records of `ids` that exist, in one round trip."""
        with self._space.client.pipeline(transaction=False) as pipe:
            for sid in ids:
                pipe.hgetall(self._space.meta_key(sid))
            raws = pipe.execute()
        return [StreamRecord.from_hash(raw) for raw in raws if raw]
