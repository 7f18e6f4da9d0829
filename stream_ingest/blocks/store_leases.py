"""The lease of a stream in the checkpoint store (`{ns}:stream:{id}:lease`): one run
at a time may upload it. And `{ns}:stream:{id}:ask-again`: a run that found the lease
held asks its holder to look at the file again once it lets go (a change it may not
have seen)."""

from __future__ import annotations

from stream_ingest.blocks.redis_support import unavailable
from stream_ingest.blocks.store_space import RedisSpace
from stream_ingest.errors import LeaseLost

# A run that found the lease held leaves this much time for the holder to notice.
ASK_AGAIN_TTL_SECONDS = 24 * 3600

# Renew if we hold it, take it if nobody does (Redis restarted without its data).
RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
TAKE_OVER = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Leases:
    """Take, renew, take over from a dead run, release; ask again (`store.leases`)."""

    def __init__(self, space: RedisSpace) -> None:
        self._space = space

    @unavailable
    def acquire(self, stream_id: str, token: str, ttl: float) -> bool:
        """Take the stream's lease, or keep it if `token` already holds it."""
        script = self._space.script("renew", RENEW)
        return bool(script(keys=[self._space.lease_key(stream_id)], args=[token, int(ttl * 1000)]))

    def renew(self, stream_id: str, token: str, ttl: float) -> None:
        if not self.acquire(stream_id, token, ttl):
            raise LeaseLost(stream_id)

    @unavailable
    def take_over(self, stream_id: str, holder: str, token: str, ttl: float) -> bool:
        """Replace `holder`'s lease with ours, only if `holder` still has it."""
        args = [holder, token, int(ttl * 1000)]
        script = self._space.script("take_over", TAKE_OVER)
        return bool(script(keys=[self._space.lease_key(stream_id)], args=args))

    @unavailable
    def release(self, stream_id: str, token: str) -> None:
        script = self._space.script("release", RELEASE)
        script(keys=[self._space.lease_key(stream_id)], args=[token])

    @unavailable
    def holder(self, stream_id: str) -> str | None:
        holder = self._space.client.get(self._space.lease_key(stream_id))
        return holder.decode() if holder else None

    @unavailable
    def ask_again(self, stream_id: str) -> None:
        """Another run holds the lease: ask it to look at the file again when it ends."""
        key = self._space.ask_again_key(stream_id)
        self._space.client.set(key, 1, ex=ASK_AGAIN_TTL_SECONDS)

    @unavailable
    def take_ask_again(self, stream_id: str) -> bool:
        """Whether a run asked since (and the request is consumed: one look answers it)."""
        return self._space.client.getdel(self._space.ask_again_key(stream_id)) is not None
