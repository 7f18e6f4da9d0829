"""The identity index of the checkpoint store: which stream each file incarnation
("dev:ino:birth") belongs to. A mixin of CheckpointStore (stream_ingest/blocks/checkpoints.py), kept
apart because the sensor's dedupe rests on these transactions alone.

An identity bound to a stream whose record is gone (it ended and expired, and the
index sweep has not dropped the entry yet) is free: a file with that identity is a
new stream, never one bound to a record that no longer exists."""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis

from stream_ingest.blocks.redis_support import unavailable
from stream_ingest.identity import legacy
from stream_ingest.records import StreamRecord

if TYPE_CHECKING:
    from stream_ingest.blocks.checkpoints import CheckpointStore


class IdentityIndex:
    """`{ns}:streams:by-identity`: claim, rebind (a new take), forget, list."""

    @unavailable
    def claim_identity(
        self: CheckpointStore, identity: str, record: StreamRecord
    ) -> tuple[str, bool]:
        """Atomically bind a file identity to `record`'s stream (creating it) unless
        another stream already has it. Returns (stream id, created). The binding and
        the stream's record are written in one transaction, so whoever loses the
        race finds the winner's record at once."""

        old = legacy(identity)

        def claim(pipe: redis.client.Pipeline) -> tuple[str, bool]:
            existing = pipe.hget(self.identity_key, identity)
            if existing is not None and self._exists(pipe, existing):
                return existing.decode(), False
            before = pipe.hget(self.identity_key, old) if old and existing is None else None
            moved = before is not None and self._exists(pipe, before)
            pipe.multi()
            if before is not None:
                pipe.hdel(self.identity_key, old)
            if moved:
                # Bound before birth times were kept: the same file, moved to its full
                # identity (an upgrade must not make every known file a new stream).
                pipe.hset(self.identity_key, identity, before)
                return before.decode(), False
            pipe.hset(self.identity_key, identity, record.stream_id)
            self._queue_put(pipe, record)
            return record.stream_id, True

        return self.redis_client.transaction(claim, self.identity_key, value_from_callable=True)

    @unavailable
    def rebind_identity(
        self: CheckpointStore, identity: str, old_id: str, record: StreamRecord
    ) -> tuple[str, bool]:
        """Bind `identity` to `record`'s new stream instead of `old_id`'s (a new take of
        the same file), unless someone already moved it on. Returns (stream id, created)
        like claim_identity."""

        def rebind(pipe: redis.client.Pipeline) -> tuple[str, bool]:
            existing = pipe.hget(self.identity_key, identity)
            if (
                existing is not None
                and existing.decode() != old_id
                and self._exists(pipe, existing)
            ):
                return existing.decode(), False
            pipe.multi()
            pipe.hset(self.identity_key, identity, record.stream_id)
            self._queue_put(pipe, record)
            return record.stream_id, True

        return self.redis_client.transaction(rebind, self.identity_key, value_from_callable=True)

    def _exists(self: CheckpointStore, pipe: redis.client.Pipeline, sid: bytes) -> bool:
        """Whether the stream's record exists, watched until the transaction ends (a
        record that appears or expires meanwhile makes it retry)."""
        meta = self.meta_key(sid.decode())
        pipe.watch(meta)
        return bool(pipe.exists(meta))

    @unavailable
    def forget_identity(self: CheckpointStore, identity: str, stream_id: str) -> None:
        """Unbind an identity (its file was deleted), if it still points at stream_id
        (compare and delete in one transaction: a new take may just have taken it)."""

        def forget(pipe: redis.client.Pipeline) -> None:
            if pipe.hget(self.identity_key, identity) == stream_id.encode():
                pipe.multi()
                pipe.hdel(self.identity_key, identity)

        self.redis_client.transaction(forget, self.identity_key)

    @unavailable
    def identities(self: CheckpointStore) -> dict[str, str]:
        """Every bound identity and its stream (the scan releases those of gone files)."""
        raw = self.redis_client.hgetall(self.identity_key)
        return {k.decode(): v.decode() for k, v in raw.items()}

    @unavailable
    def stream_for_identity(self: CheckpointStore, identity: str) -> str | None:
        sid = self.redis_client.hget(self.identity_key, identity)
        return sid.decode() if sid else None
