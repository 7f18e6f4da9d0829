"""Stop requests for streams that run as threads of a warm worker (workers/warm.py).

A thread cannot be killed from outside, so the worker asks and the stream obeys: the
tail loop checks its run's request on every poll and raises `StopRequested`, which
the flow records as a resumable failure (checkpoint kept, lease released) before the
worker gives the run its final state (Cancelled, or scheduled again on shutdown).
"""

from __future__ import annotations

import threading

from stream_ingest.errors import StreamError

_lock = threading.Lock()
_requests: dict[str, str] = {}  # flow run id -> why


class StopRequested(StreamError):
    """Resumable: the stream stops where it is and a rerun picks it up."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"stopped: {reason}")
        self.reason = reason


def request(run_id: str, reason: str) -> None:
    with _lock:
        _requests.setdefault(run_id, reason)


def withdraw(run_id: str) -> None:
    with _lock:
        _requests.pop(run_id, None)


def requested(run_id: str) -> str | None:
    with _lock:
        return _requests.get(run_id)


def check(run_id: str) -> None:
    reason = requested(run_id)
    if reason is not None:
        raise StopRequested(reason)
