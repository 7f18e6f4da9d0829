"""Stop requests and heartbeats for streams that run as threads of a warm worker
(stream_ingest/workers/warm.py).

A thread cannot be killed from outside, so the worker asks and the stream obeys: the
tail loop checks its run's request on every poll and raises `StopRequested`, which
the flow records as a resumable failure (checkpoint kept, lease released) before the
worker gives the run its final state (Cancelled, or scheduled again on shutdown).

The same check is the stream's heartbeat. A stream whose flow thread stops beating
for `stuck_timeout_seconds` (a read on a hung mount, a call that never returns) is
stuck: its lease keeper stops renewing (stream_ingest/flows/lease.py), so a rerun can take the
stream over once the lease expires, and reports it here with where the thread
waits; the warm worker then crashes the run and frees its slot.
"""

from __future__ import annotations

import threading
import time

from stream_ingest.errors import StreamError

# The reasons the warm worker gives; the flow reports the first as `cancelled` and the
# second as `rescheduled` (stream_ingest/flows/report.py), never as a failure to rerun.
CANCELLED = "cancelled by an operator"
SHUTDOWN = "the worker is shutting down; the next worker resumes it"

_lock = threading.Lock()
_requests: dict[str, str] = {}  # flow run id -> why
_beats: dict[str, float] = {}  # flow run id -> time.monotonic() of the last beat
_stuck: dict[str, str] = {}  # flow run id -> what it is stuck in, for the run's state


class StopRequested(StreamError):
    """Resumable: the stream stops where it is and a rerun picks it up."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"stopped: {reason}")
        self.reason = reason


def request(run_id: str, reason: str) -> None:
    with _lock:
        _requests.setdefault(run_id, reason)


def withdraw(run_id: str) -> None:
    """Forget the run: its request, beats and stuck report (it has ended)."""
    with _lock:
        _requests.pop(run_id, None)
        _beats.pop(run_id, None)
        _stuck.pop(run_id, None)


def requested(run_id: str) -> str | None:
    with _lock:
        return _requests.get(run_id)


def check(run_id: str) -> None:
    """The tail loop's call on every poll: a heartbeat, and a stop if one was asked."""
    beat(run_id)
    reason = requested(run_id)
    if reason is not None:
        raise StopRequested(reason)


def beat(run_id: str) -> None:
    with _lock:
        _beats[run_id] = time.monotonic()


def quiet_for(run_id: str) -> float:
    """Seconds since the run's last beat (0 if it never beat)."""
    with _lock:
        last = _beats.get(run_id)
    return 0.0 if last is None else time.monotonic() - last


def report_stuck(run_id: str, where: str) -> None:
    with _lock:
        _stuck.setdefault(run_id, where)


def stuck() -> dict[str, str]:
    """Stuck runs of this process and what each waits in."""
    with _lock:
        return dict(_stuck)
