"""The retry policy of every stream task: transient failures are retried with
exponential backoff, never bad input, bad credentials or a missing bucket (no retry
storms). Tasks take it as `@task(name=..., **RETRIED)`."""

from __future__ import annotations

from typing import Any

from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from stream_ingest.errors import StreamError

RETRIES = 5
RETRY_DELAYS = exponential_backoff(backoff_factor=1)(RETRIES)  # 1, 2, 4, 8, 16 s


def transient_only(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry_condition_fn: retry only errors marked transient, or errors we do
    not know (an unexpected OSError, say), at most RETRIES times."""
    try:
        state.result()
    except StreamError as exc:
        return exc.transient
    except Exception:
        return True
    return False


# Tasks work on live files and clients: nothing about them may be cached.
RETRIED: dict[str, Any] = {
    "retries": RETRIES,
    "retry_delay_seconds": RETRY_DELAYS,
    "retry_condition_fn": transient_only,
    "cache_policy": NO_CACHE,
}
