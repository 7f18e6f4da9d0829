"""The host's token bucket in Redis: every process uploading from one host (the warm
worker, and each flow-run process of the process worker) takes its grants from one
key, so `bandwidth_limit_mbps` holds for the host, not per process. One script call
per grant (stream_ingest/bandwidth.py: GRANT_BYTES), the same arithmetic as
TokenBucket.reserve, on Redis's clock so that hosts' clocks do not matter."""

from __future__ import annotations

import socket

import redis

from stream_ingest.bandwidth import capacity
from stream_ingest.blocks.checkpoints import CheckpointStore

# KEYS[1] the host's bucket; ARGV rate (bytes/s), capacity, size. Returns the wait
# in microseconds. The key outlives a quiet minute only if something keeps using it.
_RESERVE = """
local rate, cap, size = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local h = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(h[1]), tonumber(h[2])
if tokens == nil or at == nil then
  tokens = cap
else
  tokens = math.min(cap, tokens + math.max(0, now - at) * rate)
end
tokens = tokens - size
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], 60000)
if tokens >= 0 then return 0 end
return math.ceil(-tokens / rate * 1e6)
"""


class HostBucket:
    """`reserve(size, rate)`: the seconds to wait before sending `size` bytes."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self._script = client.register_script(_RESERVE)
        self.key = key

    @classmethod
    def of(cls, store: CheckpointStore, host: str | None = None) -> HostBucket:
        """The bucket of `host` (default: this one) in the store's namespace."""
        host = host or socket.gethostname()
        return cls(store.redis_client, f"{store.namespace}:bandwidth:{host}")

    def reserve(self, size: int, rate: float) -> float:
        micros = self._script(keys=[self.key], args=[rate, capacity(rate), size])
        return int(micros) / 1e6
