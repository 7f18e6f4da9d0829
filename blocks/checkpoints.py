"""CheckpointStore: the only module that talks to Redis. It owns the schema.

Keys, all under the namespace `ns` (default "stream-ingest"):
  {ns}:stream:{id}:meta     hash   StreamRecord fields
  {ns}:stream:{id}:parts    hash   part number -> PartRecord JSON
  {ns}:stream:{id}:lease    string token of the one run allowed to upload (PX TTL)
  {ns}:streams:active       set    ids of detected/uploading/finalizing streams
  {ns}:streams:all          zset   every id, scored by start time (for listing)
  {ns}:streams:by-identity  hash   file identity "dev:ino" -> stream id
  {ns}:uploads              hash   upload id -> {stream_id, key, created} (janitor)
  {ns}:hint:{sha1(path)}    hash   sensor hints: closed_at, closed_identity, deleted_at
A part's record and the stream's progress change in one Lua script that first checks
the lease token, so a run that lost its lease can never overwrite a newer checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar

import redis
from prefect_redis import RedisDatabase

from blocks.records import PartRecord, StreamRecord, utc_now
from stream_ingest.errors import CheckpointUnavailable, LeaseLost, StreamNotFound
from stream_ingest.states import ACTIVE, Status, transition

P = ParamSpec("P")
T = TypeVar("T")

_RECORD_PART = """
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
# Renew if we hold it, take it if nobody does (Redis restarted without its data).
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
_TAKE_OVER = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _unavailable(fn: Callable[P, T]) -> Callable[P, T]:
    """Turn Redis connection failures into CheckpointUnavailable (a transient error)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except (
            redis.ConnectionError,
            redis.TimeoutError,
            redis.exceptions.BusyLoadingError,
        ) as exc:
            raise CheckpointUnavailable(
                type(exc).__name__ + ": " + str(exc).split("\n")[0]
            ) from None

    return wrapper


class CheckpointStore:
    """Stream checkpoints in Redis. Build with `from_block` or `from_url`."""

    def __init__(self, client: redis.Redis, namespace: str = "stream-ingest") -> None:
        self.r = client
        self.ns = namespace
        self._record_part = client.register_script(_RECORD_PART)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._take_over = client.register_script(_TAKE_OVER)

    @classmethod
    def from_block(cls, block: RedisDatabase, namespace: str = "stream-ingest") -> CheckpointStore:
        client = block.get_client()
        # Fail in seconds, not minutes, when Redis is down, so the task retry logic
        # (not a hung socket) decides what happens next.
        client.connection_pool.connection_kwargs.update(
            socket_timeout=10, socket_connect_timeout=5, health_check_interval=15
        )
        return cls(client, namespace)

    @classmethod
    def from_url(cls, url: str, namespace: str = "stream-ingest") -> CheckpointStore:
        return cls(
            redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5), namespace
        )

    # -- keys ---------------------------------------------------------------
    def meta_key(self, sid: str) -> str:
        return f"{self.ns}:stream:{sid}:meta"

    def parts_key(self, sid: str) -> str:
        return f"{self.ns}:stream:{sid}:parts"

    def lease_key(self, sid: str) -> str:
        return f"{self.ns}:stream:{sid}:lease"

    def hint_key(self, path: str) -> str:
        return f"{self.ns}:hint:{hashlib.sha1(path.encode()).hexdigest()}"

    @property
    def active_key(self) -> str:
        return f"{self.ns}:streams:active"

    @property
    def all_key(self) -> str:
        return f"{self.ns}:streams:all"

    @property
    def identity_key(self) -> str:
        return f"{self.ns}:streams:by-identity"

    @property
    def uploads_key(self) -> str:
        return f"{self.ns}:uploads"

    # -- streams ------------------------------------------------------------
    @_unavailable
    def ping(self) -> None:
        self.r.ping()

    @_unavailable
    def claim_identity(self, identity: str, record: StreamRecord) -> tuple[str, bool]:
        """Atomically bind a file identity to `record`'s stream (creating it) unless
        another stream already has it. Returns (stream id, created). The binding and
        the stream's record are written in one transaction, so whoever loses the
        race finds the winner's record at once."""

        def claim(pipe: redis.client.Pipeline) -> tuple[str, bool]:
            existing = pipe.hget(self.identity_key, identity)
            if existing is not None:
                return existing.decode(), False
            pipe.multi()
            pipe.hset(self.identity_key, identity, record.stream_id)
            self._queue_put(pipe, record)
            return record.stream_id, True

        return self.r.transaction(claim, self.identity_key, value_from_callable=True)

    @_unavailable
    def forget_identity(self, identity: str, stream_id: str) -> None:
        """Unbind an identity (its file was deleted), if it still points at stream_id."""
        if self.r.hget(self.identity_key, identity) == stream_id.encode():
            self.r.hdel(self.identity_key, identity)

    @_unavailable
    def stream_for_identity(self, identity: str) -> str | None:
        sid = self.r.hget(self.identity_key, identity)
        return sid.decode() if sid else None

    @_unavailable
    def put(self, record: StreamRecord) -> None:
        """Write the whole record and its indexes (used at creation and to rebuild a
        meta hash lost with Redis's data)."""
        with self.r.pipeline(transaction=True) as pipe:
            self._queue_put(pipe, record)
            pipe.execute()

    def _queue_put(self, pipe: redis.client.Pipeline, record: StreamRecord) -> None:
        pipe.hset(self.meta_key(record.stream_id), mapping=record.to_hash())
        pipe.zadd(self.all_key, {record.stream_id: time.time()}, nx=True)
        if record.identity:
            pipe.hsetnx(self.identity_key, record.identity, record.stream_id)
        if record.status in ACTIVE:
            pipe.sadd(self.active_key, record.stream_id)
        else:
            pipe.srem(self.active_key, record.stream_id)

    @_unavailable
    def get(self, stream_id: str) -> StreamRecord | None:
        raw = self.r.hgetall(self.meta_key(stream_id))
        return StreamRecord.from_hash(raw) if raw else None

    def require(self, stream_id: str) -> StreamRecord:
        record = self.get(stream_id)
        if record is None:
            raise StreamNotFound(stream_id)
        return record

    @_unavailable
    def update(self, stream_id: str, **values: object) -> None:
        """Set fields other than status (use `set_status` for that)."""
        if "status" in values:
            raise ValueError("use set_status to change a stream's status")
        self.r.hset(self.meta_key(stream_id), mapping={k: str(v) for k, v in values.items()})

    @_unavailable
    def set_status(self, stream_id: str, status: Status, **values: object) -> Status:
        """Move the stream to `status` if the transition is legal (checked against the
        stored status under WATCH), together with other fields."""
        meta = self.meta_key(stream_id)

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
                pipe.sadd(self.active_key, stream_id)
            else:
                pipe.srem(self.active_key, stream_id)

        self.r.transaction(apply, meta)
        return status

    @_unavailable
    def list_streams(self, status: Status | None = None) -> list[StreamRecord]:
        """Every stream, oldest first, optionally only those with `status`."""
        ids = [i.decode() for i in self.r.zrange(self.all_key, 0, -1)]
        with self.r.pipeline(transaction=False) as pipe:
            for sid in ids:
                pipe.hgetall(self.meta_key(sid))
            raws = pipe.execute()
        records = [StreamRecord.from_hash(raw) for raw in raws if raw]
        return [r for r in records if status is None or r.status == status]

    @_unavailable
    def active_ids(self) -> set[str]:
        return {m.decode() for m in self.r.smembers(self.active_key)}

    # -- parts ----------------------------------------------------------------
    @_unavailable
    def record_part(
        self, record: StreamRecord, token: str, part: PartRecord, lease_ttl: float
    ) -> None:
        """Store one uploaded part and the stream's progress atomically, fenced by the
        lease. Rebuilds the meta hash if Redis lost it. Raises LeaseLost."""
        sid = record.stream_id
        keys = [self.lease_key(sid), self.parts_key(sid), self.meta_key(sid)]
        args = [token, part.number, part.to_json(), part.size, utc_now(), int(lease_ttl * 1000)]
        result = self._record_part(keys=keys, args=args)
        if result == 2:  # the meta hash is gone: Redis restarted without its data
            self.put(self._rebuilt(record))
            result = self._record_part(keys=keys, args=args)
        if result != 1:
            raise LeaseLost(sid)

    def restore(self, record: StreamRecord) -> bool:
        """Rebuild the meta hash from the run's copy of `record` if Redis lost it
        (restarted without its data); True if it had to."""
        if self.get(record.stream_id) is not None:
            return False
        self.put(self._rebuilt(record))
        return True

    def _rebuilt(self, record: StreamRecord) -> StreamRecord:
        """The meta hash to restore from the run's copy of the record: progress counted
        from the parts hash (it may have survived), and status uploading unless the
        run was finalizing (the run's copy may still say detected or failed, from
        which the next set_status would be illegal)."""
        kept = self.parts(record.stream_id)
        live = Status.FINALIZING if record.status == Status.FINALIZING else Status.UPLOADING
        return dataclasses.replace(
            record,
            status=live,
            bytes_uploaded=sum(p.size for p in kept.values()),
            parts_count=len(kept),
        )

    @_unavailable
    def parts(self, stream_id: str) -> dict[int, PartRecord]:
        raw = self.r.hgetall(self.parts_key(stream_id))
        return {int(k): PartRecord.from_json(v) for k, v in raw.items()}

    @_unavailable
    def replace_parts(self, stream_id: str, parts: Iterable[PartRecord]) -> None:
        """Make the parts hash exactly `parts` (after reconciling with S3)."""
        parts = list(parts)
        with self.r.pipeline(transaction=True) as pipe:
            pipe.delete(self.parts_key(stream_id))
            if parts:
                pipe.hset(self.parts_key(stream_id), mapping={p.number: p.to_json() for p in parts})
            pipe.hset(
                self.meta_key(stream_id),
                mapping={"bytes_uploaded": sum(p.size for p in parts), "parts_count": len(parts)},
            )
            pipe.execute()

    # -- lease ----------------------------------------------------------------
    @_unavailable
    def acquire_lease(self, stream_id: str, token: str, ttl: float) -> bool:
        """Take the stream's lease, or keep it if `token` already holds it."""
        return bool(self._renew(keys=[self.lease_key(stream_id)], args=[token, int(ttl * 1000)]))

    def renew_lease(self, stream_id: str, token: str, ttl: float) -> None:
        if not self.acquire_lease(stream_id, token, ttl):
            raise LeaseLost(stream_id)

    @_unavailable
    def take_over_lease(self, stream_id: str, holder: str, token: str, ttl: float) -> bool:
        """Replace `holder`'s lease with ours, only if `holder` still has it."""
        args = [holder, token, int(ttl * 1000)]
        return bool(self._take_over(keys=[self.lease_key(stream_id)], args=args))

    @_unavailable
    def release_lease(self, stream_id: str, token: str) -> None:
        self._release(keys=[self.lease_key(stream_id)], args=[token])

    @_unavailable
    def lease_holder(self, stream_id: str) -> str | None:
        holder = self.r.get(self.lease_key(stream_id))
        return holder.decode() if holder else None

    # -- uploads registry (for the janitor) -----------------------------------
    @_unavailable
    def register_upload(self, upload_id: str, stream_id: str, key: str) -> None:
        value = json.dumps({"stream_id": stream_id, "key": key, "created": time.time()})
        self.r.hset(self.uploads_key, upload_id, value)

    @_unavailable
    def forget_upload(self, upload_id: str) -> None:
        self.r.hdel(self.uploads_key, upload_id)

    @_unavailable
    def uploads(self) -> dict[str, dict[str, Any]]:
        return {k.decode(): json.loads(v) for k, v in self.r.hgetall(self.uploads_key).items()}

    # -- sensor hints ---------------------------------------------------------
    @_unavailable
    def hint_closed(self, path: str, identity: str) -> None:
        self.r.hset(
            self.hint_key(path), mapping={"closed_at": time.time(), "closed_identity": identity}
        )

    @_unavailable
    def hint_deleted(self, path: str) -> None:
        self.r.hset(self.hint_key(path), mapping={"deleted_at": time.time()})

    @_unavailable
    def clear_hints(self, path: str) -> None:
        self.r.delete(self.hint_key(path))

    @_unavailable
    def closed_hint(self, path: str, identity: str) -> float | None:
        """When the sensor saw this incarnation of `path` closed after writing, if it did."""
        raw = self.r.hgetall(self.hint_key(path))
        if raw.get(b"closed_identity", b"").decode() != identity:
            return None
        return float(raw[b"closed_at"])
