"""The parts of the checkpoint store: each uploaded part of a stream
(`{ns}:stream:{id}:parts`), and the registry of the multipart uploads that are ours
(`{ns}:uploads`, the janitor's list of what it may abort).

A part's record and the stream's progress change in one Lua script that first checks
the lease token, so a run that lost its lease can never overwrite a newer checkpoint.
That script writes the meta hash too, so this role is handed the streams role to
rebuild a meta hash that Redis lost (it owns the transaction; streams owns the
record)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable
from typing import Any, Protocol

import redis

from stream_ingest.blocks.redis_support import unavailable
from stream_ingest.blocks.store_space import RedisSpace
from stream_ingest.errors import LeaseLost
from stream_ingest.records import PartRecord, StreamRecord, utc_now
from stream_ingest.states import Status

RECORD_PART = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[3]) == 0 then return 2 end
if not holder then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[6]) end
local old = redis.call('HGET', KEYS[2], ARGV[2])
local delta = tonumber(ARGV[4])
if old then delta = delta - cjson.decode(old)['size'] end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('HINCRBY', KEYS[3], 'bytes_uploaded', delta)
local n = redis.call('HLEN', KEYS[2])
redis.call('HSET', KEYS[3], 'last_activity_at_utc', ARGV[5], 'parts_count', n)
return 1
"""


class Records(Protocol):
    """What the parts need of the streams role (stream_ingest/blocks/store_streams.py)."""

    def get(self, stream_id: str) -> StreamRecord | None: ...

    def put(self, record: StreamRecord) -> None: ...


class Parts:
    """Record, read and replace a stream's parts; register our uploads
    (`store.parts`)."""

    def __init__(self, space: RedisSpace, streams: Records) -> None:
        self._space = space
        self._streams = streams

    @unavailable
    def record(self, record: StreamRecord, token: str, part: PartRecord, lease_ttl: float) -> None:
        """Store one uploaded part and the stream's progress atomically, fenced by the
        lease. Rebuilds the meta hash if Redis lost it. Raises LeaseLost."""
        space = self._space
        sid = record.stream_id
        keys = [space.lease_key(sid), space.parts_key(sid), space.meta_key(sid)]
        args = [token, part.number, part.to_json(), part.size, utc_now(), int(lease_ttl * 1000)]
        result = space.script("record_part", RECORD_PART)(keys=keys, args=args)
        if result == 2:  # the meta hash is gone: Redis restarted without its data
            self._streams.put(self._rebuilt(record))
            result = space.script("record_part", RECORD_PART)(keys=keys, args=args)
        if result != 1:
            raise LeaseLost(sid)

    def restore(self, record: StreamRecord) -> bool:
        """Rebuild the meta hash from the run's copy of `record` if Redis lost it
        (restarted without its data); True if it had to."""
        if self._streams.get(record.stream_id) is not None:
            return False
        self._streams.put(self._rebuilt(record))
        return True

    def _rebuilt(self, record: StreamRecord) -> StreamRecord:
        """The meta hash to restore from the run's copy of the record: progress counted
        from the parts hash (it may have survived), and status uploading unless the
        run was finalizing (the run's copy may still say detected or failed, from
        which the next set_status would be illegal)."""
        kept = self.get(record.stream_id)
        live = Status.FINALIZING if record.status == Status.FINALIZING else Status.UPLOADING
        return dataclasses.replace(
            record,
            status=live,
            bytes_uploaded=sum(p.size for p in kept.values()),
            parts_count=len(kept),
        )

    @unavailable
    def get(self, stream_id: str) -> dict[int, PartRecord]:
        raw = self._space.client.hgetall(self._space.parts_key(stream_id))
        return {int(k): PartRecord.from_json(v) for k, v in raw.items()}

    @unavailable
    def replace(self, stream_id: str, parts: Iterable[PartRecord]) -> None:
        """Make the parts hash exactly `parts` (after reconciling with S3)."""
        space = self._space
        parts = list(parts)
        meta = space.meta_key(stream_id)

        def apply(pipe: redis.client.Pipeline) -> None:
            # The progress goes only into a record that exists: fields alone would make
            # a record without an id or a status, which no reader can load (Redis lost
            # it between the run's read and here; set_status then says so).
            exists = pipe.exists(meta)
            pipe.multi()
            pipe.delete(space.parts_key(stream_id))
            if parts:
                pipe.hset(
                    space.parts_key(stream_id), mapping={p.number: p.to_json() for p in parts}
                )
            if exists:
                progress = {"bytes_uploaded": sum(p.size for p in parts), "parts_count": len(parts)}
                pipe.hset(meta, mapping=progress)

        space.client.transaction(apply, meta)

    # -- uploads registry (for the janitor) -----------------------------------
    @unavailable
    def register_upload(self, upload_id: str, stream_id: str, key: str) -> None:
        value = json.dumps({"stream_id": stream_id, "key": key, "created": time.time()})
        self._space.client.hset(self._space.uploads_key, upload_id, value)

    @unavailable
    def adopt_upload(self, upload_id: str, stream_id: str, key: str, created: float) -> None:
        """Register an upload found in S3 that no entry names, unless one does by now
        (its run registered it meanwhile: that entry is the truth)."""
        value = json.dumps({"stream_id": stream_id, "key": key, "created": created})
        self._space.client.hsetnx(self._space.uploads_key, upload_id, value)

    # An upload is created in S3 before the registry can name it: a run that dies in
    # between (killed, its answer lost) leaves one that nobody knows. The creation is
    # announced first (`{ns}:uploads:creating`), and stays until the upload is
    # registered (stream_ingest/flows/creation.py).
    @unavailable
    def begin_creation(self, stream_id: str, key: str) -> float | None:
        """Announce an upload about to be created; the time an earlier announcement of
        the same stream and key was made if it never ended (its upload may exist)."""
        field = json.dumps([stream_id, key])
        with self._space.client.pipeline(transaction=True) as pipe:
            pipe.hget(self._space.creating_key, field)
            pipe.hset(self._space.creating_key, field, time.time())
            earlier, _ = pipe.execute()
        return None if earlier is None else float(earlier)

    @unavailable
    def end_creation(self, stream_id: str, key: str) -> None:
        self._space.client.hdel(self._space.creating_key, json.dumps([stream_id, key]))

    @unavailable
    def creations(self) -> list[tuple[str, str, float]]:
        """(stream id, key, announced at) of every creation not ended."""
        found = self._space.client.hgetall(self._space.creating_key).items()
        return [(*json.loads(field), float(at)) for field, at in found]

    @unavailable
    def forget_upload(self, upload_id: str) -> None:
        self._space.client.hdel(self._space.uploads_key, upload_id)

    @unavailable
    def holders(self) -> dict[str, set[str]]:
        """The streams with an upload registered at each key, from one read of the
        registry (a new take's key choice: a key an unfinished take is to complete at
        is not free, though no object is there yet)."""
        return held_keys(self.uploads().values())

    @unavailable
    def uploads(self) -> dict[str, dict[str, Any]]:
        return {
            k.decode(): json.loads(v)
            for k, v in self._space.client.hgetall(self._space.uploads_key).items()
        }


def held_keys(entries: Iterable[dict[str, Any]]) -> dict[str, set[str]]:
    """Registry entries grouped by key: key -> the ids of the streams whose uploads
    are to complete there."""
    out: dict[str, set[str]] = {}
    for entry in entries:
        out.setdefault(entry["key"], set()).add(entry["stream_id"])
    return out
