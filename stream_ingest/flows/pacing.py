"""The process's part of the host's bandwidth limit (`bandwidth_limit_mbps`): every
part a stream sends to S3 waits here for its bytes first, in turns of GRANT_BYTES
(stream_ingest/bandwidth.py says in which order streams get them).

Where the limit applies: before a part's UploadPart call, for the whole part, taken in
turns (a stream's parts one after the other, each sent once it has its last); a
copied part (a revision's unchanged bytes) sends nothing and takes nothing.
The part then goes at the link's speed: pacing the body's reads instead would count
botocore's own reads of it (the CRC32 and, on HTTP endpoints, the signature's hash
read the body before it is sent) and give up sending from the part's buffer. The
limit holds over any window longer than a part's time at the limit (1 s for an
8 MiB part at 64 Mbit/s); within it a part is a burst.

Shared how: turns are taken one at a time per process, each from the host's bucket in
Redis (stream_ingest/blocks/bandwidth.py): the warm worker's runs, and the process
worker's one process per run, share one limit per host. Fair shares and live before
backlog are decided within a process (all of a warm worker's streams); processes
take turns in Redis as they come, one grant each at a time, so one-run processes get
about equal shares and no process's backlog can queue ahead of a live stream by more
than one grant. Where Redis does not answer, a process falls back to a bucket of its
own (the limit per process) until it does.

Changed without a restart: a run brings the limit of the block it loaded, and while
streams upload the block is read again every RELOAD_SECONDS (one read per process).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from stream_ingest.bandwidth import (
    GRANT_BYTES,
    FairQueue,
    Kind,
    TokenBucket,
    bytes_per_second,
    grants,
)
from stream_ingest.blocks.bandwidth import HostBucket
from stream_ingest.blocks.config import IngestConfig
from stream_ingest.flows.configs import read_config

RELOAD_SECONDS = 10.0
log = logging.getLogger(__name__)

Reserve = Callable[[int, float], float]  # (size, rate) -> seconds to wait


class Limiter:
    """Grants bytes to the streams of this process at the current rate (0: at once).

    Args:
        reserve: the host's bucket (HostBucket.reserve); None: a bucket of this process.
        clock, sleep: monotonic seconds and a sleep (tests pass fake ones).
    """

    def __init__(
        self,
        reserve: Reserve | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        grant: int = GRANT_BYTES,
    ) -> None:
        self._turn = threading.Condition()
        self._queue = FairQueue()
        self._busy = False
        self._rate = 0.0
        self._own = TokenBucket(1.0)
        self._reserve = reserve
        self._clock, self._sleep, self._grant = clock, sleep, grant
        self._warn_at = 0.0
        self.granted = 0  # bytes, since the process started (benchmarks, tests)

    @property
    def rate(self) -> float:
        return self._rate

    def set_rate(self, rate: float) -> None:
        """The limit in bytes/s from now on; 0 lets everything through."""
        with self._turn:
            if rate != self._rate:
                if rate > 0:
                    self._own.set_rate(rate, self._clock())
                self._rate = rate
                self._turn.notify_all()

    def waiting(self) -> dict[str, Kind]:
        """The streams waiting for a grant, and their class."""
        with self._turn:
            return self._queue.waiting()

    def set_reserve(self, reserve: Reserve | None) -> None:
        with self._turn:
            self._reserve = reserve

    def acquire(self, key: str, kind: Kind, size: int) -> None:
        """Wait until stream `key` may send `size` bytes."""
        sizes = grants(size, self._grant)
        with self._turn:
            if self._rate <= 0 or not sizes:
                return
            # Queued for every grant of the part at once: between two of its grants the
            # part keeps its place, or a waiting backlog would take every other turn
            # of a live stream (it wakes first while the live part comes back for more).
            ticket = self._queue.wait(key, kind, len(sizes))
        taken = 0
        try:
            for n in sizes:
                if not self._take(key, ticket, n):
                    return  # no limit any more
                taken += 1
        finally:
            if taken < len(sizes):
                with self._turn:
                    self._queue.cancel(ticket)
                    self._turn.notify_all()

    def _take(self, key: str, ticket: int, size: int) -> bool:
        with self._turn:
            self._turn.wait_for(
                lambda: self._rate <= 0 or (not self._busy and self._queue.turn() == ticket)
            )
            if self._rate <= 0:
                return False
            self._queue.granted(key, size)
            self._busy, rate, reserve = True, self._rate, self._reserve
        try:
            self._sleep(self._wait(size, rate, reserve))
        finally:
            with self._turn:
                self._busy = False
                self.granted += size
                self._turn.notify_all()
        return True

    def _wait(self, size: int, rate: float, reserve: Reserve | None) -> float:
        if reserve is not None:
            try:
                return reserve(size, rate)
            except redis.RedisError as exc:
                now = self._clock()
                if now >= self._warn_at:  # once a minute, not once a grant
                    self._warn_at = now + 60
                    log.warning("bandwidth: Redis did not answer (%s); limiting this process", exc)
        with self._turn:
            return self._own.reserve(size, self._clock())


class Follower:
    """Keeps the process's limiter at the config block's `bandwidth_limit_mbps`."""

    def __init__(
        self,
        limiter: Limiter,
        load: Callable[[str], IngestConfig] = read_config,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limiter, self._load, self._clock = limiter, load, clock
        self._lock = threading.Lock()
        self._name: str | None = None
        self._namespace: str | None = None
        self._next = 0.0
        self._loading = False

    def follow(self, config: IngestConfig, name: str) -> None:
        """A run loaded `config` (block `name`): the newest word on the limit."""
        with self._lock:
            self._name = name
            self._next = self._clock() + RELOAD_SECONDS
            if config.checkpoints.namespace != self._namespace:
                self._namespace = config.checkpoints.namespace
                self.limiter.set_reserve(HostBucket.of(config.checkpoints).reserve)
        self.limiter.set_rate(bytes_per_second(config.bandwidth_limit_mbps))

    def tick(self) -> None:
        """Cheap, called often by uploading runs: read the block again when due, on a
        thread of its own (a run never waits for the API for this)."""
        with self._lock:
            if self._loading or self._name is None or self._clock() < self._next:
                return
            self._loading, self._next, name = True, self._clock() + RELOAD_SECONDS, self._name
        threading.Thread(
            target=self._reload, args=(name,), name="bandwidth-reload", daemon=True
        ).start()

    def _reload(self, name: str) -> None:
        try:
            config = self._load(name)
        except Exception as exc:  # the API or the block away: keep the last limit
            log.warning("bandwidth: could not reload ingest-config/%s (%s)", name, exc)
            return
        finally:
            with self._lock:
                self._loading = False
        self.limiter.set_rate(bytes_per_second(config.bandwidth_limit_mbps))


LIMITER = Limiter()
LIMIT = Follower(LIMITER)
