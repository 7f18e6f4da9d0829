"""The running flow's side of lag (stream_ingest/lag.py): the tail loop shows it each
size it observes; the upload tasks add each part S3 holds to `ctx.stored`.

What it costs: no Redis call per part. The figures go into the stream's record at
most every LAG_WRITE_EVERY_SECONDS (one HSET), and on a transition, which is also an
event (`stream-ingest.stream.lagging` / `caught-up`). Lag is a report: a failed write
is logged, never raised, and the stream goes on.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol

from stream_ingest.flows.runtime import StreamContext
from stream_ingest.lag import (
    LAG_WRITE_EVERY_SECONDS,
    Lag,
    LagAlarm,
    Sightings,
    Transition,
    describe,
    lag_at,
    parse_utc,
    rate,
    utc_text,
)
from stream_ingest.records import PartRecord


class Announcer(Protocol):
    """What LagWatch needs of the Reporter (stream_ingest/flows/report.py)."""

    def event(self, name: str, **payload: Any) -> None: ...


class LagWatch:
    """One run's view of its stream's lag."""

    def __init__(
        self,
        ctx: StreamContext,
        announcer: Announcer,
        log: logging.Logger | logging.LoggerAdapter[Any],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ctx, self.announcer, self.log, self.clock = ctx, announcer, log, clock
        config = ctx.config
        self.alarm = LagAlarm(config.lag_alert_seconds, config.lag_alert_grace_seconds)
        self.sightings = Sightings()
        self.host = socket.gethostname()
        self.lag = Lag(0, 0.0)
        self._written: tuple[float, int] | None = None  # (when, bytes held then)
        # Bytes an earlier run saw and left behind were first seen no later than it
        # said: an age that starts again with every rerun would hide a stuck stream.
        rec = ctx.record
        since = parse_utc(rec.behind_since_utc)
        if since is not None and rec.behind_bytes > 0:
            self.sightings.see(rec.observed_bytes, since)

    def settle(self, parts: dict[int, PartRecord]) -> None:
        """S3 holds exactly `parts` (the checkpoint's, at the start or after a
        finalize that found the file changed)."""
        self.ctx.stored.reset((p.number, p.offset, p.size) for p in parts.values())

    def observe(self, size: int) -> Lag:
        """The file holds `size` bytes now: its lag, announced on a transition and
        recorded when due."""
        now = self.clock()
        self.sightings.see(size, now)
        held, hole = self.ctx.stored.figures()
        self.sightings.forget_below(hole)
        oldest = self.sightings.first_holding(hole)
        self.lag = lag_at(size, held, oldest, now)
        change = self.alarm.step(self.lag.seconds, now)
        if change is not None:
            self._announce(change)
        if (
            change is not None
            or self._written is None
            or (now - self._written[0] >= LAG_WRITE_EVERY_SECONDS)
        ):
            self._write(size, now, held, oldest if self.lag.bytes else None)
        return self.lag

    def finish(self, size: int) -> None:
        """The object is complete: every byte of the file is in S3."""
        now = self.clock()
        self.lag = Lag(0, 0.0)
        if self.alarm.step(0.0, now) is not None:
            self._announce(Transition.CAUGHT_UP)
        self._write(size, now, size, None)

    def _announce(self, change: Transition) -> None:
        sid, alarm = self.ctx.record.stream_id, self.alarm
        if change == Transition.LAGGING:
            self.log.warning(
                "stream %s is lagging: %s (over %g s for %g s)",
                sid,
                describe(self.lag),
                alarm.threshold,
                alarm.grace,
            )
        else:
            self.log.info("stream %s caught up: %s", sid, describe(self.lag))
        self.announcer.event(
            str(change),
            lag_bytes=self.lag.bytes,
            lag_seconds=round(self.lag.seconds, 1),
            lag_alert_seconds=self.alarm.threshold,
            host=self.host,
        )

    def _write(self, size: int, now: float, held: int, oldest: float | None) -> None:
        per_second = rate(self._written[1], self._written[0], held, now) if self._written else 0
        self._written = (now, held)
        try:
            self.ctx.store.streams.update(
                self.ctx.record.stream_id,
                host=self.host,
                observed_bytes=size,
                observed_at_utc=utc_text(now),
                behind_bytes=self.lag.bytes,
                behind_since_utc="" if oldest is None else utc_text(oldest),
                upload_rate_bps=per_second,
            )
        except Exception as exc:  # a report: the parts' own writes say if Redis is gone
            self.log.warning("stream %s: lag not recorded: %s", self.ctx.record.stream_id, exc)
