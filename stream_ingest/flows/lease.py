"""Keeps a stream's lease alive from a background thread while the run works, and
only while it works: a run whose flow thread stopped beating is stuck, and its lease
is left to expire so that a rerun can take the stream over (stream_ingest/flows/stopping.py)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import traceback
from types import TracebackType

from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.errors import CheckpointUnavailable, LeaseLost
from stream_ingest.flows import stopping


class LeaseKeeper:
    """Renews every ttl/3. A renewal refused because another run holds the lease
    sets `lost`; Redis being briefly unreachable does not (nobody else can take the
    lease then, and the lease-fenced checkpoint write catches a real takeover).

    The thread that enters the keeper is the stream's: when `stuck_after` seconds
    pass without a beat from it (`check`, stopping.beat), `stuck` says where it waits,
    the run is reported stuck and renewals stop."""

    def __init__(
        self,
        store: CheckpointStore,
        stream_id: str,
        token: str,
        ttl: float,
        stuck_after: float = float("inf"),
        log: logging.Logger | logging.LoggerAdapter | None = None,
    ) -> None:
        self.store, self.stream_id, self.token, self.ttl = store, stream_id, token, ttl
        self.stuck_after, self.log = stuck_after, log
        self.lost = False
        self.stuck = ""
        self._owner = threading.get_ident()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{stream_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(min(self.ttl / 3, self.stuck_after / 4)):
            quiet = stopping.quiet_for(self.token)
            if quiet >= self.stuck_after:
                self._give_up(quiet)
                return
            try:
                self.store.leases.renew(self.stream_id, self.token, self.ttl)
            except LeaseLost:
                self.lost = True
                return
            except CheckpointUnavailable:
                continue

    def _give_up(self, quiet: float) -> None:
        self.stuck = waiting_in(self._owner)
        message = (
            f"stream {self.stream_id}: no progress for {quiet:.0f} s, waiting in {self.stuck}; "
            f"its lease is left to expire ({self.ttl:.0f} s) for a rerun"
        )
        if self.log is not None:
            self.log.error(message)
        stopping.report_stuck(self.token, f"no progress for {quiet:.0f} s, waiting in {self.stuck}")

    def check(self) -> None:
        stopping.beat(self.token)
        if self.lost:
            raise LeaseLost(self.stream_id)

    def __enter__(self) -> LeaseKeeper:
        stopping.beat(self.token)
        self._thread.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(CheckpointUnavailable):  # it expires by itself
            self.store.leases.release(self.stream_id, self.token)


def waiting_in(thread_id: int) -> str:
    """Where a thread is now: its innermost frame, and the innermost of ours (flows/,
    blocks/) that led there, e.g. `stat (stream_ingest/flows/source.py:41 snapshot)`."""
    frame = sys._current_frames().get(thread_id)
    if frame is None:
        return "a thread that has ended"
    stack = traceback.extract_stack(frame)
    inner = stack[-1]
    ours = next(
        (f for f in reversed(stack) if _short(f.filename) != os.path.basename(f.filename)), None
    )
    where = f"{inner.name} ({_short(inner.filename)}:{inner.lineno})"
    if ours is not None and ours is not inner:
        where += f" from {ours.name} ({_short(ours.filename)}:{ours.lineno})"
    return where


def _short(filename: str) -> str:
    for root in ("flows", "blocks"):
        if f"/{root}/" in filename:
            return f"{root}/{filename.rsplit(f'/{root}/', 1)[1]}"
    return os.path.basename(filename)
