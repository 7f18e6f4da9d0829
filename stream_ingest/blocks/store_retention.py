"""The janitor's side of retention in the checkpoint store: the index sweep and the
prune, so Redis does not grow with every recording ever made. The decisions are pure
(stream_ingest/retention.py).

- A stream that ends (completed, aborted, skipped) keeps its meta, parts, prior and
  revisions keys for the retention, then Redis expires them (PEXPIRE in the same
  transaction as the status, stream_ingest/blocks/store_space.py queue_retention); a
  revision that reopens it makes them permanent again (PERSIST). Its lease expires on
  its own.
- A sensor hint expires after a day: it is news only while its take is uploaded.
- Sets and hashes cannot expire a member, so `sweep` (the janitor, each run) drops
  the index entries that name a stream whose meta key is gone, and an identity bound
  to such a stream counts as free (stream_ingest/blocks/store_identities.py).
- `prune` (`stream-ingest streams prune`) applies the retention to streams that ended
  before their keys had an expiry, then sweeps.

The sweep reads every index, so this role is handed the roles that list them.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Protocol

from stream_ingest.blocks.redis_support import unavailable
from stream_ingest.blocks.store_space import RedisSpace, ms
from stream_ingest.records import StreamRecord
from stream_ingest.retention import (
    BY_IDENTITY,
    UPLOADS,
    IndexEntry,
    Indexes,
    Retirement,
    dangling,
    plan_retirements,
)
from stream_ingest.states import TERMINAL

# KEYS: meta, streams:all, streams:active, by-identity, uploads. ARGV: stream id, the
# number of identities, the identities, the upload ids. Checked again here: a stream
# rebuilt since the sweep looked keeps its entries.
DROP_ENTRIES = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
local n = tonumber(ARGV[2])
for i = 3, 2 + n do
  if redis.call('HGET', KEYS[4], ARGV[i]) == ARGV[1] then redis.call('HDEL', KEYS[4], ARGV[i]) end
end
for i = 3 + n, #ARGV do redis.call('HDEL', KEYS[5], ARGV[i]) end
return 1
"""
# KEYS: meta, parts, prior, revisions, lease. ARGV: milliseconds to keep them (0:
# delete now), the last activity the plan saw, the terminal statuses. Only a stream
# unchanged since the plan (no revision reopened it meanwhile) is retired.
RETIRE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or redis.call('HGET', KEYS[1], 'last_activity_at_utc') ~= ARGV[2] then
  return 0
end
local ended = false
for i = 3, #ARGV do if ARGV[i] == status then ended = true end end
if not ended then return 0 end
if ARGV[1] == '0' then redis.call('DEL', unpack(KEYS)) return 1 end
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
return 1
"""


class Listed(Protocol):
    """What the sweep needs of the streams role."""

    def list(self, status: Any = None) -> list[StreamRecord]: ...


class Bound(Protocol):
    """What the sweep needs of the identities role."""

    def all(self) -> dict[str, str]: ...


class Registered(Protocol):
    """What the sweep needs of the parts role (its uploads registry)."""

    def uploads(self) -> dict[str, dict[str, Any]]: ...


class Retention:
    """The index sweep and the prune (`store.retention`)."""

    def __init__(
        self, space: RedisSpace, streams: Listed, identities: Bound, parts: Registered
    ) -> None:
        self._space = space
        self._streams = streams
        self._identities = identities
        self._parts = parts

    @unavailable
    def sweep(
        self, now: float | None = None, dry_run: bool = False, gone: Iterable[str] = ()
    ) -> list[IndexEntry]:
        """Drop the index entries that name a stream whose meta key is gone (expired),
        and return them; `dry_run` only returns them (counting `gone` as gone too)."""
        space = self._space
        now = time.time() if now is None else now
        client = space.client
        indexes = Indexes(
            frozenset(m.decode() for m in client.zrange(space.all_key, 0, -1)),
            frozenset(m.decode() for m in client.smembers(space.active_key)),
            self._identities.all(),
            self._parts.uploads(),
        )
        ids = sorted(indexes.stream_ids())
        with client.pipeline(transaction=False) as pipe:
            for sid in ids:
                pipe.exists(space.meta_key(sid))
            found = pipe.execute()
        alive = {sid for sid, n in zip(ids, found, strict=True) if n} - set(gone)
        entries = dangling(indexes, alive, now, space.retention_seconds)
        if dry_run or not entries:
            return entries
        grouped: dict[str, list[IndexEntry]] = defaultdict(list)
        for entry in entries:
            grouped[entry.stream_id].append(entry)
        script = space.script("drop_entries", DROP_ENTRIES)
        keys = [space.all_key, space.active_key, space.identity_key, space.uploads_key]
        with client.pipeline(transaction=False) as pipe:
            for sid, group in grouped.items():
                identities = [e.member for e in group if e.index == BY_IDENTITY]
                uploads = [e.member for e in group if e.index == UPLOADS]
                args = [sid, len(identities), *identities, *uploads]
                script(keys=[space.meta_key(sid), *keys], args=args, client=pipe)
            dropped = {sid for sid, ok in zip(grouped, pipe.execute(), strict=True) if ok}
        return [e for e in entries if e.stream_id in dropped]

    @unavailable
    def prune(
        self, now: float | None = None, dry_run: bool = False
    ) -> tuple[list[Retirement], list[IndexEntry]]:
        """Apply the retention now to streams that ended before their keys had an
        expiry: delete those older than it, give the others what is left of it; then
        sweep the indexes. Returns what was done (`dry_run`: what would be)."""
        space = self._space
        now = time.time() if now is None else now
        ended = [r for r in self._streams.list() if r.status in TERMINAL]
        with space.client.pipeline(transaction=False) as pipe:
            for rec in ended:
                pipe.pttl(space.meta_key(rec.stream_id))
            ttls = pipe.execute()
        expiring = {r.stream_id for r, ttl in zip(ended, ttls, strict=True) if ttl >= 0}
        plan = plan_retirements(ended, expiring, now, space.retention_seconds)
        if dry_run:
            deleted = {p.stream_id for p in plan if p.action == "delete"}
            return plan, self.sweep(now, dry_run=True, gone=deleted)
        stamps = {r.stream_id: r.last_activity_at_utc for r in ended}
        script = space.script("retire", RETIRE)
        with space.client.pipeline(transaction=False) as pipe:
            for step in plan:
                sid = step.stream_id
                keys = [*space.stream_keys(sid), space.lease_key(sid)]
                keep = 0 if step.action == "delete" else ms(step.ttl_seconds)
                script(keys=keys, args=[keep, stamps[sid], *map(str, TERMINAL)], client=pipe)
            done = pipe.execute()
        retired = [step for step, ok in zip(plan, done, strict=True) if ok]
        return retired, self.sweep(now)
