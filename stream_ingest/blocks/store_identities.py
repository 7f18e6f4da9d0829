"""The identity index of the checkpoint store (`{ns}:streams:by-identity`): which
stream each file incarnation ("dev:ino:birth") belongs to. Kept apart because the
sensor's dedupe rests on these transactions alone.

An identity bound to a stream whose record is gone (it ended and expired, and the
index sweep has not dropped the entry yet) is free: a file with that identity is a
new stream, never one bound to a record that no longer exists.

A claim writes the binding and the new stream's record in one transaction, so this
role is handed the streams role's `queue_put` (it owns the transaction; streams owns
the record)."""

from __future__ import annotations

from typing import Protocol

import redis

from stream_ingest.blocks.redis_support import unavailable
from stream_ingest.blocks.store_space import RedisSpace
from stream_ingest.identity import legacy
from stream_ingest.records import StreamRecord


class QueuedRecords(Protocol):
    """What the identities need of the streams role (stream_ingest/blocks/store_streams.py)."""

    def queue_put(self, pipe: redis.client.Pipeline, record: StreamRecord) -> None: ...


class Identities:
    """Claim, rebind (a new take), forget, list (`store.identities`)."""

    def __init__(self, space: RedisSpace, streams: QueuedRecords) -> None:
        self._space = space
        self._streams = streams

    @unavailable
    def claim(self, identity: str, record: StreamRecord) -> tuple[str, bool]:
        """Atomically bind a file identity to `record`'s stream (creating it) unless
        another stream already has it. Returns (stream id, created). The binding and
        the stream's record are written in one transaction, so whoever loses the
        race finds the winner's record at once."""
        index = self._space.identity_key
        old = legacy(identity)

        def claim(pipe: redis.client.Pipeline) -> tuple[str, bool]:
            existing = pipe.hget(index, identity)
            if existing is not None and self._exists(pipe, existing):
                return existing.decode(), False
            before = pipe.hget(index, old) if old and existing is None else None
            moved = before is not None and self._exists(pipe, before)
            pipe.multi()
            if before is not None:
                pipe.hdel(index, old)
            if moved:
                # Bound before birth times were kept: the same file, moved to its full
                # identity (an upgrade must not make every known file a new stream).
                pipe.hset(index, identity, before)
                return before.decode(), False
            pipe.hset(index, identity, record.stream_id)
            self._streams.queue_put(pipe, record)
            return record.stream_id, True

        return self._space.client.transaction(claim, index, value_from_callable=True)

    @unavailable
    def rebind(self, identity: str, old_id: str, record: StreamRecord) -> tuple[str, bool]:
        """Bind `identity` to `record`'s new stream instead of `old_id`'s (a new take of
        the same file), unless someone already moved it on. Returns (stream id, created)
        like `claim`."""
        index = self._space.identity_key

        def rebind(pipe: redis.client.Pipeline) -> tuple[str, bool]:
            existing = pipe.hget(index, identity)
            if (
                existing is not None
                and existing.decode() != old_id
                and self._exists(pipe, existing)
            ):
                return existing.decode(), False
            pipe.multi()
            pipe.hset(index, identity, record.stream_id)
            self._streams.queue_put(pipe, record)
            return record.stream_id, True

        return self._space.client.transaction(rebind, index, value_from_callable=True)

    def _exists(self, pipe: redis.client.Pipeline, sid: bytes) -> bool:
        """Whether the stream's record exists, watched until the transaction ends (a
        record that appears or expires meanwhile makes it retry)."""
        meta = self._space.meta_key(sid.decode())
        pipe.watch(meta)
        return bool(pipe.exists(meta))

    @unavailable
    def forget(self, identity: str, stream_id: str) -> None:
        """Unbind an identity (its file was deleted), if it still points at stream_id
        (compare and delete in one transaction: a new take may just have taken it)."""
        index = self._space.identity_key

        def forget(pipe: redis.client.Pipeline) -> None:
            if pipe.hget(index, identity) == stream_id.encode():
                pipe.multi()
                pipe.hdel(index, identity)

        self._space.client.transaction(forget, index)

    @unavailable
    def all(self) -> dict[str, str]:
        """Every bound identity and its stream (the scan releases those of gone files)."""
        raw = self._space.client.hgetall(self._space.identity_key)
        return {k.decode(): v.decode() for k, v in raw.items()}

    @unavailable
    def stream_for(self, identity: str) -> str | None:
        sid = self._space.client.hget(self._space.identity_key, identity)
        return sid.decode() if sid else None
