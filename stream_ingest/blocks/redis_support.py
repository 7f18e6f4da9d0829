"""What every checkpoint module shares on the Redis side: the client's options and the
translation of connection failures into CheckpointUnavailable."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from stream_ingest import metrics
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
            metrics.REDIS_ERRORS.labels(metrics.error_name(exc)).inc()
            raise CheckpointUnavailable(
                type(exc).__name__ + ": " + str(exc).split("\n")[0]
            ) from None

    return wrapper
