"""Retry policy shared by the tasks: retry transient failures with exponential
backoff, never bad input, bad credentials or a missing bucket (no retry storms)."""

from __future__ import annotations

from typing import Any

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
