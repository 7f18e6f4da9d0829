"""Retention in the checkpoint store, so Redis does not grow with every recording ever
made. A mixin of CheckpointStore (stream_ingest/blocks/checkpoints.py); the decisions are pure
(stream_ingest/retention.py).

- A stream that ends (completed, aborted, skipped) keeps its meta, parts, prior and
  revisions keys for the retention, then Redis expires them (PEXPIRE in the same
  transaction as the status); a revision that reopens it makes them permanent again
  (PERSIST). Its lease expires on its own.
- A sensor hint expires after a day: it is news only while its take is uploaded.
- Sets and hashes cannot expire a member, so `sweep_indexes` (the janitor, each run)
  drops the index entries that name a stream whose meta key is gone, and an identity
  bound to such a stream counts as free (stream_ingest/blocks/identities.py).
- `prune` (`stream-ingest streams prune`) applies the retention to streams that ended
  before their keys had an expiry, then sweeps.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING

import redis

from stream_ingest.blocks.redis_support import unavailable
from stream_ingest.options import DAY_SECONDS
from stream_ingest.retention import (
    BY_IDENTITY,
    UPLOADS,
    IndexEntry,
    Indexes,
    Retirement,
    dangling,
    plan_retirements,
)
from stream_ingest.states import TERMINAL, Status

if TYPE_CHECKING:
    from stream_ingest.blocks.checkpoints import CheckpointStore

HINT_TTL_SECONDS = DAY_SECONDS

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
# KEYS: meta, another key of the stream. ARGV: the retention in milliseconds. The
# other key lives as long as the meta key (a revision recorded after the stream
# completed must not outlive it); without a meta key, for the retention.
FOLLOW_META = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -1 then return redis.call('PERSIST', KEYS[2]) end
if ttl == -2 then ttl = ARGV[1] end
return redis.call('PEXPIRE', KEYS[2], ttl)
"""


class Retention:
    """Expiry of ended streams and hints, the index sweep and the prune."""

    def set_retention(
        self: CheckpointStore, streams_seconds: float, hints_seconds: float = HINT_TTL_SECONDS
    ) -> None:
        """How long an ended stream's keys and a hint are kept (the IngestConfig block
        sets the first from its `retention_days`)."""
        if streams_seconds <= 0 or hints_seconds <= 0:
            raise ValueError("retention must be positive")
        self._retention_seconds = streams_seconds
        self._hint_ttl_seconds = hints_seconds

    @property
    def retention_seconds(self: CheckpointStore) -> float:
        return self._retention_seconds

    @property
    def hint_ttl_seconds(self: CheckpointStore) -> float:
        return self._hint_ttl_seconds

    def stream_keys(self: CheckpointStore, sid: str) -> tuple[str, str, str, str]:
        """The keys of a stream that the retention expires (the lease has a TTL)."""
        return self.meta_key(sid), self.parts_key(sid), self.prior_key(sid), self.revisions_key(sid)

    def _queue_retention(
        self: CheckpointStore,
        pipe: redis.client.Pipeline,
        sid: str,
        status: Status,
        before: Status | str | None = None,
    ) -> None:
        """Expire the stream's keys if `status` ends it; make them permanent if it was
        ended (`before`; None: unknown) and is live again."""
        if status in TERMINAL:
            for key in self.stream_keys(sid):
                pipe.pexpire(key, _ms(self.retention_seconds))
        elif before is None or before in TERMINAL:
            for key in self.stream_keys(sid):
                pipe.persist(key)

    def _follow_meta(
        self: CheckpointStore, pipe: redis.client.Pipeline, sid: str, key: str
    ) -> None:
        script = self._script("follow_meta", FOLLOW_META)
        script(keys=[self.meta_key(sid), key], args=[_ms(self.retention_seconds)], client=pipe)

    # -- the sweep and the prune -------------------------------------------------
    @unavailable
    def sweep_indexes(
        self: CheckpointStore,
        now: float | None = None,
        dry_run: bool = False,
        gone: Iterable[str] = (),
    ) -> list[IndexEntry]:
        """Drop the index entries that name a stream whose meta key is gone (expired),
        and return them; `dry_run` only returns them (counting `gone` as gone too)."""
        now = time.time() if now is None else now
        client = self.redis_client
        indexes = Indexes(
            frozenset(m.decode() for m in client.zrange(self.all_key, 0, -1)),
            frozenset(m.decode() for m in client.smembers(self.active_key)),
            self.identities(),
            self.uploads(),
        )
        ids = sorted(indexes.stream_ids())
        with client.pipeline(transaction=False) as pipe:
            for sid in ids:
                pipe.exists(self.meta_key(sid))
            found = pipe.execute()
        alive = {sid for sid, n in zip(ids, found, strict=True) if n} - set(gone)
        entries = dangling(indexes, alive, now, self.retention_seconds)
        if dry_run or not entries:
            return entries
        grouped: dict[str, list[IndexEntry]] = defaultdict(list)
        for entry in entries:
            grouped[entry.stream_id].append(entry)
        script = self._script("drop_entries", DROP_ENTRIES)
        keys = [self.all_key, self.active_key, self.identity_key, self.uploads_key]
        with client.pipeline(transaction=False) as pipe:
            for sid, group in grouped.items():
                identities = [e.member for e in group if e.index == BY_IDENTITY]
                uploads = [e.member for e in group if e.index == UPLOADS]
                args = [sid, len(identities), *identities, *uploads]
                script(keys=[self.meta_key(sid), *keys], args=args, client=pipe)
            dropped = {sid for sid, ok in zip(grouped, pipe.execute(), strict=True) if ok}
        return [e for e in entries if e.stream_id in dropped]

    @unavailable
    def prune(
        self: CheckpointStore, now: float | None = None, dry_run: bool = False
    ) -> tuple[list[Retirement], list[IndexEntry]]:
        """Apply the retention now to streams that ended before their keys had an
        expiry: delete those older than it, give the others what is left of it; then
        sweep the indexes. Returns what was done (`dry_run`: what would be)."""
        now = time.time() if now is None else now
        ended = [r for r in self.list_streams() if r.status in TERMINAL]
        with self.redis_client.pipeline(transaction=False) as pipe:
            for rec in ended:
                pipe.pttl(self.meta_key(rec.stream_id))
            ttls = pipe.execute()
        expiring = {r.stream_id for r, ttl in zip(ended, ttls, strict=True) if ttl >= 0}
        plan = plan_retirements(ended, expiring, now, self.retention_seconds)
        if dry_run:
            deleted = {p.stream_id for p in plan if p.action == "delete"}
            return plan, self.sweep_indexes(now, dry_run=True, gone=deleted)
        stamps = {r.stream_id: r.last_activity_at_utc for r in ended}
        script = self._script("retire", RETIRE)
        with self.redis_client.pipeline(transaction=False) as pipe:
            for step in plan:
                sid = step.stream_id
                keys = [*self.stream_keys(sid), self.lease_key(sid)]
                ms = 0 if step.action == "delete" else _ms(step.ttl_seconds)
                script(keys=keys, args=[ms, stamps[sid], *map(str, TERMINAL)], client=pipe)
            done = pipe.execute()
        retired = [step for step, ok in zip(plan, done, strict=True) if ok]
        return retired, self.sweep_indexes(now)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
