"""What every checkpoint module shares on the Redis side: the client's options, the
translation of connection failures into CheckpointUnavailable, and the Lua scripts
that a lease token fences."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from stream_ingest.errors import CheckpointUnavailable

P = ParamSpec("P")
T = TypeVar("T")
# Fail in seconds, not minutes, when Redis is down: two quick retries of a dropped
# connection (a restart), then CheckpointUnavailable and the task's retry policy.
CLIENT_OPTIONS: dict[str, Any] = {
    "socket_timeout": 10,
    "socket_connect_timeout": 5,
    "health_check_interval": 15,
    "retry": Retry(ExponentialBackoff(cap=1.0, base=0.1), retries=2),
    # File names may hold bytes that are not UTF-8 (os.fsdecode's surrogates): store
    # the bytes themselves instead of failing to encode them.
    "encoding_errors": "surrogateescape",
}

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


def unavailable(fn: Callable[P, T]) -> Callable[P, T]:
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
