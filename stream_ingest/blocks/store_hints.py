"""Hints in the checkpoint store: keys that expire on their own and say what someone
saw, for whoever looks next. The sensor's close hints (`{ns}:hint:{sha1(path)}`), and
what the S3 store was found to do (`{ns}:s3-capabilities:{sha1(where)}`,
stream_ingest/blocks/bucket.py StreamBucket.capabilities, which takes this role as its
CapabilityCache)."""

from __future__ import annotations

import time

from stream_ingest.blocks.redis_support import unavailable
from stream_ingest.blocks.store_space import RedisSpace
from stream_ingest.options import DAY_SECONDS

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


class Hints:
    """Close hints and the S3 capability cache (`store.hints`)."""

    def __init__(self, space: RedisSpace) -> None:
        self._space = space

    @unavailable
    def note_closed(self, path: str, identity: str, size: int = -1, mtime_ns: int = -1) -> None:
        """The sensor saw `path` (this incarnation) closed after writing, when the file
        had `size` bytes and `mtime_ns` (-1: not known, the hint can never end a run)."""
        key = self._space.hint_key(path)
        fields = {
            "closed_at": time.time(),
            "closed_identity": identity,
            "closed_size": size,
            "closed_mtime_ns": mtime_ns,
        }
        with self._space.client.pipeline(transaction=True) as pipe:
            pipe.delete(key)  # a hint is one close, not fields of several
            pipe.hset(key, mapping=fields)
            pipe.pexpire(key, max(1, int(self._space.hint_ttl_seconds * 1000)))
            pipe.execute()

    @unavailable
    def take_closed(self, path: str, identity: str, size: int, mtime_ns: int) -> bool:
        """Use this take's close hint once: True if it says the file was closed as it
        is now (`size`, `mtime_ns`: nothing was written since the close). A hint of this
        take that writes followed is stale and goes too; another take's is left."""
        taken = self._space.script("take_hint", _TAKE_HINT)(
            keys=[self._space.hint_key(path)], args=[identity, size, mtime_ns]
        )
        return bool(taken)

    @unavailable
    def clear(self, path: str) -> None:
        self._space.client.delete(self._space.hint_key(path))

    @unavailable
    def closed_at(self, path: str, identity: str) -> float | None:
        """When the sensor saw this incarnation of `path` closed after writing, if it did."""
        raw = self._space.client.hgetall(self._space.hint_key(path))
        if raw.get(b"closed_identity", b"").decode() != identity:
            return None
        return float(raw[b"closed_at"])

    # -- what the S3 store can do ------------------------------------------------
    @unavailable
    def cached_capabilities(self, where: str) -> str | None:
        raw = self._space.client.get(self._space.capabilities_key(where))
        return raw.decode() if raw else None

    @unavailable
    def cache_capabilities(self, where: str, text: str) -> None:
        # A day: a store upgraded (or replaced behind the same endpoint) is probed again.
        self._space.client.set(self._space.capabilities_key(where), text, ex=int(DAY_SECONDS))
