"""The retry policy of every stream task: transient failures are retried with
exponential backoff, never bad input, a permanent S3 refusal or a bug (no retry
storms). Tasks take it as `@task(name=..., **RETRIED)`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from stream_ingest import metrics
from stream_ingest.errors import StreamError

T = TypeVar("T")

RETRIES = 5
RETRY_DELAYS = exponential_backoff(backoff_factor=1)(RETRIES)  # 1, 2, 4, 8, 16 s


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: our errors marked transient (S3 5xx and throttling, timeouts,
    Redis unreachable), and dropped or timed-out connections. Everything else (a
    permanent S3 refusal, bad input, a bug) fails at once with its one line."""
    if isinstance(exc, StreamError):
        return exc.transient
    return isinstance(exc, ConnectionError | TimeoutError)


def transient_only(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry_condition_fn: retry only transient errors (at most RETRIES).
    Prefect asks only while retries are left: a yes is a retry."""
    try:
        state.result()
    except Exception as exc:
        if retried := is_transient(exc):
            metrics.RETRIES.labels(metrics.error_name(exc)).inc()
        return retried
    return False


# Tasks work on live files and clients: nothing about them may be cached.
RETRIED: dict[str, Any] = {
    "retries": RETRIES,
    "retry_delay_seconds": RETRY_DELAYS,
    "retry_condition_fn": transient_only,
    "cache_policy": NO_CACHE,
}


def with_retries(fn: Callable[[], T], what: str, log: Any) -> T:
    """`fn()` under the task policy, for one item of a task run that does many (a
    batch of parts): the item is retried by itself, as its own task run would be,
    instead of failing the batch and sending its other items again."""
    for attempt, delay in enumerate([*RETRY_DELAYS, None], start=1):
        try:
            return fn()
        except Exception as exc:
            if delay is None or not is_transient(exc):
                raise
            metrics.RETRIES.labels(metrics.error_name(exc)).inc()
            log.warning("%s: %s; retry %d/%d in %.0f s", what, exc, attempt, RETRIES, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")
