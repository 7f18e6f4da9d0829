"""CheckpointStore: the block that holds stream-ingest's state in Redis; with its
mixins (identities.py, revisions.py, leases.py) and redis_support.py, the only code
that talks to Redis. It owns the schema.

Keys, all under the namespace `ns` (default "stream-ingest"):
  {ns}:stream:{id}:meta     hash   StreamRecord fields
  {ns}:stream:{id}:parts    hash   part number -> PartRecord JSON
  {ns}:stream:{id}:lease    string token of the one run allowed to upload (PX TTL)
  {ns}:stream:{id}:prior    hash   a revision's source: the completed object's parts
  {ns}:stream:{id}:revisions hash  revision number -> Revision JSON (size, sha256, ...)
  {ns}:streams:active       set    ids of detected/uploading/finalizing streams
  {ns}:streams:all          zset   every id, scored by start time (for listing)
  {ns}:streams:by-identity  hash   file identity "dev:ino:birth" -> stream id
  {ns}:uploads              hash   upload id -> {stream_id, key, created} (janitor)
  {ns}:hint:{sha1(path)}    hash   a close the sensor saw: closed_at, closed_identity,
                                   closed_size, closed_mtime_ns (TTL a day; used once)
A part's record and the stream's progress change in one Lua script that first checks
the lease token, so a run that lost its lease can never overwrite a newer checkpoint.
Claims and status changes are optimistic transactions (WATCH, MULTI, EXEC). A stream
that ends keeps its four stream keys for the retention; then they expire and the
index sweep drops its entries (stream_ingest/blocks/retention.py).

Redis permissions (ACL) for the flow, the sensor, the janitor and the CLI, on keys
`{ns}:*`: GET SET DEL EXISTS HGET HSET HSETNX HGETALL HDEL HINCRBY HLEN SADD SREM
SMEMBERS ZADD ZRANGE ZREM PEXPIRE PERSIST PTTL WATCH MULTI EXEC UNWATCH EVALSHA EVAL
SCRIPT PING
(`stream-ingest doctor` tries them).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Iterable
from typing import Any

import redis
from prefect.blocks.core import Block
from prefect_redis import RedisDatabase
from prefect_redis.connection import redis_from_url
from pydantic import Field, PrivateAttr

from stream_ingest.blocks.identities import IdentityIndex
from stream_ingest.blocks.leases import Leases
from stream_ingest.blocks.redis_support import CLIENT_OPTIONS, RECORD_PART, unavailable
from stream_ingest.blocks.retention import HINT_TTL_SECONDS, Retention
from stream_ingest.blocks.revisions import RevisionLog
from stream_ingest.errors import LeaseLost, StreamNotFound
from stream_ingest.options import DAY_SECONDS, DEFAULT_RETENTION_DAYS
from stream_ingest.records import PartRecord, StreamRecord, utc_now
from stream_ingest.states import ACTIVE, Status, transition

# A close hint of this take is read and deleted in one step, so that it ends at most
# one run's recording, and only if the file is still as it was when it was closed. A
# hint of a later state of the file than the caller's look (the recorder wrote on and
# closed after that stat) is left for the next look, which sees that state: deleted,
# the recording would end only at the idle timeout. Sizes and times are compared as
# decimal strings (nanoseconds since the epoch exceed a Lua number's precision).
_TAKE_HINT = """
local function later(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
local h = redis.call('HMGET', KEYS[1], 'closed_identity', 'closed_size', 'closed_mtime_ns')
if h[1] ~= ARGV[1] then return 0 end
if type(h[2]) == 'string' and type(h[3]) == 'string' and h[2] ~= '-1'
    and (later(h[2], ARGV[2]) or later(h[3], ARGV[3])) then
  return 0
end
redis.call('DEL', KEYS[1])
if h[2] ~= '-1' and h[2] == ARGV[2] and h[3] == ARGV[3] then return 1 end
return 0
"""


# Fields of a record that exists, in one step (HSET alone would create the hash).
_UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""


class CheckpointStore(IdentityIndex, RevisionLog, Leases, Retention, Block):
    """Stream checkpoints in Redis, under one key namespace.

    Example:
        ```python
        from stream_ingest.blocks.checkpoints import CheckpointStore
        store = CheckpointStore.load("stream-ingest")
        print([r.stream_id for r in store.list_streams()])
        ```
    """

    _block_type_name = "Checkpoint Store"
    _block_type_slug = "checkpoint-store"
    _description = "Redis checkpoints of stream-ingest: streams, parts, leases, sensor hints."

    redis: RedisDatabase = Field(description="The Redis server that holds the checkpoints.")
    namespace: str = Field(
        "stream-ingest",
        min_length=1,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Prefix of every key, so several installations can share one Redis.",
    )
    _client: redis.Redis | None = PrivateAttr(default=None)
    _scripts: dict[str, Any] = PrivateAttr(default_factory=dict)
    # Not fields of the block: the IngestConfig block holds the retention and hands it
    # to its store (set_retention); a store loaded alone keeps the default.
    _retention_seconds: float = PrivateAttr(default=DEFAULT_RETENTION_DAYS * DAY_SECONDS)
    _hint_ttl_seconds: float = PrivateAttr(default=HINT_TTL_SECONDS)

    @classmethod
    def from_url(cls, url: str, namespace: str = "stream-ingest") -> CheckpointStore:
        return cls(redis=RedisDatabase.from_connection_string(url), namespace=namespace)

    @property
    def redis_client(self) -> redis.Redis:
        """One client per store, built with the options above."""
        if self._client is None:
            db = self.redis
            if db.connection_url is not None:
                self._client = redis_from_url(
                    db.connection_url.get_secret_value(), **CLIENT_OPTIONS
                )
            else:
                self._client = redis.Redis(
                    host=db.host,
                    port=db.port,
                    db=db.db,
                    username=db.username.get_secret_value() if db.username else None,
                    password=db.password.get_secret_value() if db.password else None,
                    ssl=db.ssl,
                    **CLIENT_OPTIONS,
                )
        return self._client

    def same_place(self, other: CheckpointStore) -> bool:
        """Whether `other` reaches the same keys (ignoring clients already built)."""
        return self.namespace == other.namespace and self.redis.model_dump(
            mode="json", context={"include_secrets": True}
        ) == other.redis.model_dump(mode="json", context={"include_secrets": True})

    def _script(self, name: str, source: str) -> Any:
        if name not in self._scripts:
            self._scripts[name] = self.redis_client.register_script(source)
        return self._scripts[name]

    # -- keys ---------------------------------------------------------------
    def meta_key(self, sid: str) -> str:
        return f"{self.namespace}:stream:{sid}:meta"

    def parts_key(self, sid: str) -> str:
        return f"{self.namespace}:stream:{sid}:parts"

    def lease_key(self, sid: str) -> str:
        return f"{self.namespace}:stream:{sid}:lease"

    def prior_key(self, sid: str) -> str:
        return f"{self.namespace}:stream:{sid}:prior"

    def revisions_key(self, sid: str) -> str:
        return f"{self.namespace}:stream:{sid}:revisions"

    def hint_key(self, path: str) -> str:
        return f"{self.namespace}:hint:{hashlib.sha1(os.fsencode(path)).hexdigest()}"

    @property
    def active_key(self) -> str:
        return f"{self.namespace}:streams:active"

    @property
    def all_key(self) -> str:
        return f"{self.namespace}:streams:all"

    @property
    def identity_key(self) -> str:
        return f"{self.namespace}:streams:by-identity"

    @property
    def uploads_key(self) -> str:
        return f"{self.namespace}:uploads"

    # -- streams ------------------------------------------------------------
    @unavailable
    def ping(self) -> None:
        self.redis_client.ping()

    @unavailable
    def put(self, record: StreamRecord) -> None:
        """Write the whole record and its indexes (used at creation and to rebuild a
        meta hash lost with Redis's data)."""
        with self.redis_client.pipeline(transaction=True) as pipe:
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
        self._queue_retention(pipe, record.stream_id, record.status)

    @unavailable
    def get(self, stream_id: str) -> StreamRecord | None:
        raw = self.redis_client.hgetall(self.meta_key(stream_id))
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
        record without an id or a status that no reader can load (`put` and `restore`
        rebuild whole records)."""
        if "status" in values:
            raise ValueError("use set_status to change a stream's status")
        if not values:
            return
        args = [x for k, v in values.items() for x in (k, str(v))]
        self._script("update", _UPDATE)(keys=[self.meta_key(stream_id)], args=args)

    @unavailable
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
            self._queue_retention(pipe, stream_id, status, before=current.decode())

        self.redis_client.transaction(apply, meta)
        return status

    @unavailable
    def list_streams(self, status: Status | None = None) -> list[StreamRecord]:
        """Every stream, oldest first, optionally only those with `status`."""
        ids = [i.decode() for i in self.redis_client.zrange(self.all_key, 0, -1)]
        return [r for r in self.streams(ids) if status is None or r.status == status]

    @unavailable
    def active_streams(self) -> list[StreamRecord]:
        """The detected, uploading and finalizing streams (the janitor's work list)."""
        return self.streams(sorted(m.decode() for m in self.redis_client.smembers(self.active_key)))

    @unavailable
    def streams(self, ids: Iterable[str]) -> list[StreamRecord]:
        """The records of `ids` that exist, in one round trip."""
        with self.redis_client.pipeline(transaction=False) as pipe:
            for sid in ids:
                pipe.hgetall(self.meta_key(sid))
            raws = pipe.execute()
        return [StreamRecord.from_hash(raw) for raw in raws if raw]

    # -- parts ----------------------------------------------------------------
    @unavailable
    def record_part(
        self, record: StreamRecord, token: str, part: PartRecord, lease_ttl: float
    ) -> None:
        """Store one uploaded part and the stream's progress atomically, fenced by the
        lease. Rebuilds the meta hash if Redis lost it. Raises LeaseLost."""
        sid = record.stream_id
        keys = [self.lease_key(sid), self.parts_key(sid), self.meta_key(sid)]
        args = [token, part.number, part.to_json(), part.size, utc_now(), int(lease_ttl * 1000)]
        result = self._script("record_part", RECORD_PART)(keys=keys, args=args)
        if result == 2:  # the meta hash is gone: Redis restarted without its data
            self.put(self._rebuilt(record))
            result = self._script("record_part", RECORD_PART)(keys=keys, args=args)
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

    @unavailable
    def parts(self, stream_id: str) -> dict[int, PartRecord]:
        raw = self.redis_client.hgetall(self.parts_key(stream_id))
        return {int(k): PartRecord.from_json(v) for k, v in raw.items()}

    @unavailable
    def replace_parts(self, stream_id: str, parts: Iterable[PartRecord]) -> None:
        """Make the parts hash exactly `parts` (after reconciling with S3)."""
        parts = list(parts)
        with self.redis_client.pipeline(transaction=True) as pipe:
            pipe.delete(self.parts_key(stream_id))
            if parts:
                pipe.hset(self.parts_key(stream_id), mapping={p.number: p.to_json() for p in parts})
            pipe.hset(
                self.meta_key(stream_id),
                mapping={"bytes_uploaded": sum(p.size for p in parts), "parts_count": len(parts)},
            )
            pipe.execute()

    # -- uploads registry (for the janitor) -----------------------------------
    @unavailable
    def register_upload(self, upload_id: str, stream_id: str, key: str) -> None:
        value = json.dumps({"stream_id": stream_id, "key": key, "created": time.time()})
        self.redis_client.hset(self.uploads_key, upload_id, value)

    @unavailable
    def adopt_upload(self, upload_id: str, stream_id: str, key: str, created: float) -> None:
        """Register an upload found in S3 that no entry names, unless one does by now
        (its run registered it meanwhile: that entry is the truth)."""
        value = json.dumps({"stream_id": stream_id, "key": key, "created": created})
        self.redis_client.hsetnx(self.uploads_key, upload_id, value)

    # An upload is created in S3 before the registry can name it: a run that dies in
    # between (killed, its answer lost) leaves one that nobody knows. The creation is
    # announced first, and the announcement stays until the upload is registered.
    @property
    def creating_key(self) -> str:
        return f"{self.namespace}:uploads:creating"

    @unavailable
    def begin_creation(self, stream_id: str, key: str) -> float | None:
        """Announce an upload about to be created; the time an earlier announcement of
        the same stream and key was made if it never ended (its upload may exist)."""
        field = json.dumps([stream_id, key])
        with self.redis_client.pipeline(transaction=True) as pipe:
            pipe.hget(self.creating_key, field)
            pipe.hset(self.creating_key, field, time.time())
            earlier, _ = pipe.execute()
        return None if earlier is None else float(earlier)

    @unavailable
    def end_creation(self, stream_id: str, key: str) -> None:
        self.redis_client.hdel(self.creating_key, json.dumps([stream_id, key]))

    @unavailable
    def creations(self) -> list[tuple[str, str, float]]:
        """(stream id, key, announced at) of every creation not ended."""
        found = self.redis_client.hgetall(self.creating_key).items()
        return [(*json.loads(field), float(at)) for field, at in found]

    @unavailable
    def forget_upload(self, upload_id: str) -> None:
        self.redis_client.hdel(self.uploads_key, upload_id)

    @unavailable
    def uploads(self) -> dict[str, dict[str, Any]]:
        return {
            k.decode(): json.loads(v)
            for k, v in self.redis_client.hgetall(self.uploads_key).items()
        }

    # -- what the S3 store can do (stream_ingest/blocks/bucket.py StreamBucket.capabilities) --
    def capabilities_key(self, where: str) -> str:
        return f"{self.namespace}:s3-capabilities:{hashlib.sha1(where.encode()).hexdigest()}"

    @unavailable
    def cached_capabilities(self, where: str) -> str | None:
        raw = self.redis_client.get(self.capabilities_key(where))
        return raw.decode() if raw else None

    @unavailable
    def cache_capabilities(self, where: str, text: str) -> None:
        # A day: a store upgraded (or replaced behind the same endpoint) is probed again.
        self.redis_client.set(self.capabilities_key(where), text, ex=int(DAY_SECONDS))

    # -- sensor hints ---------------------------------------------------------
    @unavailable
    def hint_closed(self, path: str, identity: str, size: int = -1, mtime_ns: int = -1) -> None:
        """The sensor saw `path` (this incarnation) closed after writing, when the file
        had `size` bytes and `mtime_ns` (-1: not known, the hint can never end a run)."""
        key = self.hint_key(path)
        fields = {
            "closed_at": time.time(),
            "closed_identity": identity,
            "closed_size": size,
            "closed_mtime_ns": mtime_ns,
        }
        with self.redis_client.pipeline(transaction=True) as pipe:
            pipe.delete(key)  # a hint is one close, not fields of several
            pipe.hset(key, mapping=fields)
            pipe.pexpire(key, max(1, int(self.hint_ttl_seconds * 1000)))
            pipe.execute()

    @unavailable
    def take_closed_hint(self, path: str, identity: str, size: int, mtime_ns: int) -> bool:
        """Use this take's close hint once: True if it says the file was closed as it
        is now (`size`, `mtime_ns`: nothing was written since the close). A hint of this
        take that writes followed is stale and goes too; another take's is left."""
        taken = self._script("take_hint", _TAKE_HINT)(
            keys=[self.hint_key(path)], args=[identity, size, mtime_ns]
        )
        return bool(taken)

    @unavailable
    def clear_hints(self, path: str) -> None:
        self.redis_client.delete(self.hint_key(path))

    @unavailable
    def closed_hint(self, path: str, identity: str) -> float | None:
        """When the sensor saw this incarnation of `path` closed after writing, if it did."""
        raw = self.redis_client.hgetall(self.hint_key(path))
        if raw.get(b"closed_identity", b"").decode() != identity:
            return None
        return float(raw[b"closed_at"])
