"""Revisions of a completed stream's object in the checkpoint store: the parts a
revision may copy server-side (`{ns}:stream:{id}:prior`), and the list `streams show`
prints (`{ns}:stream:{id}:revisions`).

Beginning a revision moves the parts and reopens the record in one transaction that
this role owns; it is handed the streams role only to read the record back."""

from __future__ import annotations

from typing import Protocol

import redis

from stream_ingest.blocks.redis_support import unavailable
from stream_ingest.blocks.store_space import RedisSpace
from stream_ingest.errors import StreamNotFound
from stream_ingest.records import PartRecord, Revision, StreamRecord, utc_now
from stream_ingest.states import IllegalTransition, Status


class Required(Protocol):
    """What the revisions need of the streams role (stream_ingest/blocks/store_streams.py)."""

    def require(self, stream_id: str) -> StreamRecord: ...


class Revisions:
    """Begin a revision, its prior parts, the completed revisions (`store.revisions`)."""

    def __init__(self, space: RedisSpace, streams: Required) -> None:
        self._space = space
        self._streams = streams

    @unavailable
    def begin(self, stream_id: str, flow_run_id: str) -> StreamRecord:
        """Turn a completed stream into its next revision, uploading: the completed
        object's parts become the `prior` parts (what can be copied server-side) and
        the record loses its finished upload. Idempotent for a retried task: a stream
        already uploading its revision is returned as it is."""
        space = self._space
        meta, parts_key, prior = (
            space.meta_key(stream_id),
            space.parts_key(stream_id),
            space.prior_key(stream_id),
        )

        def begin(pipe: redis.client.Pipeline) -> None:
            raw = pipe.hgetall(meta)
            if not raw:
                raise StreamNotFound(stream_id)
            current = StreamRecord.from_hash(raw)
            if current.status != Status.COMPLETED:
                if current.status == Status.UPLOADING and not current.s3_upload_id:
                    return
                raise IllegalTransition(current.status, Status.UPLOADING)
            completed = pipe.hgetall(parts_key)
            pipe.multi()
            pipe.delete(prior)
            if completed:
                pipe.hset(prior, mapping=completed)
            pipe.delete(parts_key)
            pipe.hset(
                meta,
                mapping={
                    "status": str(Status.UPLOADING),
                    "revision": current.revision + 1,
                    "flow_run_id": flow_run_id,  # the janitor judges the stream by it
                    "s3_upload_id": "",
                    "total_bytes": -1,
                    "bytes_uploaded": 0,
                    "parts_count": 0,
                    "error": "",
                    "last_activity_at_utc": utc_now(),
                },
            )
            pipe.sadd(space.active_key, stream_id)
            # Live again: its keys must not expire under the revision's upload.
            space.queue_retention(pipe, stream_id, Status.UPLOADING, before=current.status)

        space.client.transaction(begin, meta, parts_key)
        return self._streams.require(stream_id)

    @unavailable
    def prior_parts(self, stream_id: str) -> dict[int, PartRecord]:
        raw = self._space.client.hgetall(self._space.prior_key(stream_id))
        return {int(k): PartRecord.from_json(v) for k, v in raw.items()}

    @unavailable
    def add(self, stream_id: str, revision: Revision) -> None:
        """Record a completed revision; its source parts are not needed any more. The
        list expires with the stream's record (it is written after the completion)."""
        space = self._space
        key = space.revisions_key(stream_id)
        with space.client.pipeline(transaction=True) as pipe:
            pipe.hset(key, revision.number, revision.to_json())
            pipe.delete(space.prior_key(stream_id))
            space.queue_follow_meta(pipe, stream_id, key)
            pipe.execute()

    @unavailable
    def list(self, stream_id: str) -> list[Revision]:
        raw = self._space.client.hgetall(self._space.revisions_key(stream_id))
        return sorted((Revision.from_json(v) for v in raw.values()), key=lambda r: r.number)
