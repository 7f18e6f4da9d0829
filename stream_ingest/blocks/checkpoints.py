"""CheckpointStore: the block that holds stream-ingest's state in Redis. It is the
block (its fields, its connection) and composes the roles that do the work, one module
each. A role imports only what they all share (store_space.py: the client, the key
names, the scripts, the expiry; redis_support.py: CheckpointUnavailable) and the pure
core, never this module or another role, so each reads on its own:

  store.streams     stream records, the all/active indexes      store_streams.py
  store.parts       parts (fenced by the lease), our uploads    store_parts.py
  store.identities  file identity -> stream (sensor dedupe)     store_identities.py
  store.leases      the one run that may upload, ask-again      store_leases.py
  store.revisions   a completed object's next revision          store_revisions.py
  store.hints       the sensor's close hints, S3 capabilities   store_hints.py
  store.retention   the janitor's index sweep, the prune        store_retention.py

A transaction that touches two roles' keys belongs to the role that owns it, handed
the other role it needs when the store builds them (an identity claim writes the new
stream's record; a part rebuilds a lost meta hash): the roles never reach back to the
store.

Keys, all under the namespace `ns` (default "stream-ingest"; docs/how-it-works.md,
"The Redis schema", has them all):
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
index sweep drops its entries (stream_ingest/blocks/store_retention.py).

Redis permissions (ACL) for the flow, the sensor, the janitor and the CLI, on keys
`{ns}:*`: GET SET DEL EXISTS HGET HSET HSETNX HGETALL HDEL HINCRBY HLEN SADD SREM
SMEMBERS ZADD ZRANGE ZREM PEXPIRE PERSIST PTTL WATCH MULTI EXEC UNWATCH EVALSHA EVAL
SCRIPT PING
(`stream-ingest doctor` tries them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

import redis
from prefect.blocks.core import Block
from prefect_redis import RedisDatabase
from prefect_redis.connection import redis_from_url
from pydantic import Field, PrivateAttr

from stream_ingest.blocks.redis_support import CLIENT_OPTIONS, unavailable
from stream_ingest.blocks.store_hints import Hints
from stream_ingest.blocks.store_identities import Identities
from stream_ingest.blocks.store_leases import Leases
from stream_ingest.blocks.store_parts import Parts
from stream_ingest.blocks.store_retention import Retention
from stream_ingest.blocks.store_revisions import Revisions
from stream_ingest.blocks.store_space import HINT_TTL_SECONDS, RedisSpace
from stream_ingest.blocks.store_streams import Streams


@dataclass(frozen=True)
class _Roles:
    space: RedisSpace
    streams: Streams
    parts: Parts
    identities: Identities
    leases: Leases
    revisions: Revisions
    hints: Hints
    retention: Retention

    @classmethod
    def of(cls, space: RedisSpace) -> _Roles:
        streams = Streams(space)
        parts = Parts(space, streams)
        identities = Identities(space, streams)
        return cls(
            space=space,
            streams=streams,
            parts=parts,
            identities=identities,
            leases=Leases(space),
            revisions=Revisions(space, streams),
            hints=Hints(space),
            retention=Retention(space, streams, identities, parts),
        )


R = TypeVar("R")


class _Role(Generic[R]):
    """A role of the store: its own role object, all built together on first use."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, store: CheckpointStore | None, owner: type) -> R:
        if store is None:
            return self  # type: ignore[return-value]
        return getattr(store._built(), self._name)


class CheckpointStore(Block):
    """Stream checkpoints in Redis, under one key namespace. The work is done by its
    roles: `streams`, `parts`, `identities`, `leases`, `revisions`, `hints` and
    `retention` (below); `space` has the key names they share.

    Example:
        ```python
        from stream_ingest.blocks.checkpoints import CheckpointStore
        store = CheckpointStore.load("stream-ingest")
        print([r.stream_id for r in store.streams.list()])
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
    # The roles are private attributes, built on first use: never fields of the block
    # (its schema and saved document are the fields above alone).
    _roles: _Roles | None = PrivateAttr(default=None)

    streams: ClassVar[_Role[Streams]] = _Role()
    parts: ClassVar[_Role[Parts]] = _Role()
    identities: ClassVar[_Role[Identities]] = _Role()
    leases: ClassVar[_Role[Leases]] = _Role()
    revisions: ClassVar[_Role[Revisions]] = _Role()
    hints: ClassVar[_Role[Hints]] = _Role()
    retention: ClassVar[_Role[Retention]] = _Role()

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

    @unavailable
    def ping(self) -> None:
        self.redis_client.ping()

    # -- the roles --------------------------------------------------------------
    def _connect(self) -> redis.Redis:
        return self.redis_client

    def _built(self) -> _Roles:
        roles = self._roles
        if roles is None or getattr(roles.space.connect, "__self__", None) is not self:
            # Built for another store (a copy shares its original's private
            # attributes): this one's roles use this one's client, at the same retention.
            space = RedisSpace(self.namespace, self._connect)
            if roles is not None:
                space.retention_seconds = roles.space.retention_seconds
                space.hint_ttl_seconds = roles.space.hint_ttl_seconds
            roles = self._roles = _Roles.of(space)
        return roles

    @property
    def space(self) -> RedisSpace:
        """The key names under this store's namespace, the client and the scripts the
        roles share."""
        return self._built().space

    # -- how long keys live ----------------------------------------------------------
    # Not fields of the block: the IngestConfig block holds the retention and hands it
    # to its store; a store loaded alone keeps the default.
    def set_retention(
        self, streams_seconds: float, hints_seconds: float = HINT_TTL_SECONDS
    ) -> None:
        """How long an ended stream's keys and a hint are kept (the IngestConfig block
        sets the first from its `retention_days`)."""
        if streams_seconds <= 0 or hints_seconds <= 0:
            raise ValueError("retention must be positive")
        self.space.retention_seconds = streams_seconds
        self.space.hint_ttl_seconds = hints_seconds

    @property
    def retention_seconds(self) -> float:
        return self.space.retention_seconds

    @property
    def hint_ttl_seconds(self) -> float:
        return self.space.hint_ttl_seconds
