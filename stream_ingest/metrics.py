"""What stream-ingest counts for Prometheus, in one registry of its own.

A dedicated `REGISTRY`, not prometheus_client's global one: the endpoint shows
stream-ingest's figures only, and two components in one process (the tests) share it
without registering a metric twice. The counters are bumped where the work happens
(flows/upload.py, flows/retry.py, flows/ingest.py, blocks/bucket.py,
blocks/redis_support.py, sensors/run.py); the figures about streams (how many in each
state, lag per live stream) are read from the checkpoint store at scrape time
(`StreamsCollector`), so they are right whichever process uploads the stream.
`stream_ingest/telemetry.py` serves the registry. docs/operate.md lists every metric.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from stream_ingest.lag import lag_of
from stream_ingest.records import StreamRecord
from stream_ingest.states import ACTIVE, Status

log = logging.getLogger("stream_ingest.metrics")

REGISTRY = CollectorRegistry()

UPLOADED_BYTES = Counter(
    "stream_ingest_uploaded_bytes",
    "Bytes sent to S3 as parts (read from the files; parts copied server-side are not counted).",
    registry=REGISTRY,
)
UPLOADED_PARTS = Counter(
    "stream_ingest_uploaded_parts",
    "Parts sent to S3 (UploadPart) and checkpointed.",
    registry=REGISTRY,
)
COPIED_PARTS = Counter(
    "stream_ingest_copied_parts",
    "Parts of a revision copied server-side from the previous object (UploadPartCopy).",
    registry=REGISTRY,
)
PART_SECONDS = Histogram(
    "stream_ingest_part_upload_seconds",
    "Time of one UploadPart request, from the first byte sent to S3's answer.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120),
    registry=REGISTRY,
)
RETRIES = Counter(
    "stream_ingest_retries",
    "Automatic retries of a part or a task after a transient error, by the error's type.",
    ["error"],
    registry=REGISTRY,
)
FAILURES = Counter(
    "stream_ingest_stream_failures",
    "Runs that ended their stream failed (resumable) or lost (salvaged), by the error's type.",
    ["kind"],
    registry=REGISTRY,
)
REDIS_ERRORS = Counter(
    "stream_ingest_redis_errors",
    "Redis requests that failed for want of Redis (connection, timeout, loading), by error.",
    ["error"],
    registry=REGISTRY,
)
S3_ERRORS = Counter(
    "stream_ingest_s3_errors",
    "S3 requests that failed, by S3's error code (or the connection error's name).",
    ["code"],
    registry=REGISTRY,
)
SENSOR_EVENTS = Counter(
    "stream_ingest_sensor_events",
    "File events the sensor handled (appeared, closed, gone, ...), by event.",
    ["event"],
    registry=REGISTRY,
)

STREAMS = "stream_ingest_streams"
LAG_BYTES = "stream_ingest_stream_lag_bytes"
LAG_SECONDS = "stream_ingest_stream_lag_seconds"


def part_done(size: int, copied: bool, seconds: float) -> None:
    """One part checkpointed: copied server-side, or sent from its file in `seconds`."""
    if copied:
        COPIED_PARTS.inc()
        return
    UPLOADED_BYTES.inc(size)
    UPLOADED_PARTS.inc()
    PART_SECONDS.observe(seconds)


def error_name(exc: BaseException) -> str:
    return type(exc).__name__


class StreamsCollector(Collector):
    """Streams by state and the lag of each live stream, read at each scrape.

    `streams` lists every stream record (the checkpoint store's `streams.list`); a
    store that cannot be read gives no stream figures for that scrape, and one log
    line, rather than a failed scrape.
    """

    def __init__(self, streams: Callable[[], Iterable[StreamRecord]]) -> None:
        self._streams = streams

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            records = list(self._streams())
        except Exception as exc:
            log.warning("metrics: could not read the streams: %s", exc)
            return
        by_state = GaugeMetricFamily(
            STREAMS, "Streams in the checkpoint store by state.", labels=["state"]
        )
        counts = {str(status): 0 for status in Status}
        for record in records:
            counts[str(record.status)] = counts.get(str(record.status), 0) + 1
        for state, count in sorted(counts.items()):
            by_state.add_metric([state], count)
        yield by_state
        lag_bytes = GaugeMetricFamily(
            LAG_BYTES, "Bytes of a live stream's file not yet in S3.", labels=["stream"]
        )
        lag_seconds = GaugeMetricFamily(
            LAG_SECONDS, "Age of the oldest byte of a live stream not yet in S3.", labels=["stream"]
        )
        now = time.time()
        for record in records:
            if record.status in ACTIVE:
                lag = lag_of(record, now)
                lag_bytes.add_metric([record.stream_id], lag.bytes)
                lag_seconds.add_metric([record.stream_id], lag.seconds)
        yield lag_bytes
        yield lag_seconds

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Names only: the registry checks them for clashes without reading Redis.
        yield GaugeMetricFamily(STREAMS, "", labels=["state"])
        yield GaugeMetricFamily(LAG_BYTES, "", labels=["stream"])
        yield GaugeMetricFamily(LAG_SECONDS, "", labels=["stream"])


_collector: StreamsCollector | None = None
_collector_lock = threading.Lock()


def watch_streams(streams: Callable[[], Iterable[StreamRecord]]) -> None:
    """Report the streams `streams` lists (one source per process: the last given)."""
    global _collector
    with _collector_lock:
        if _collector is not None:
            REGISTRY.unregister(_collector)
        _collector = StreamsCollector(streams)
        REGISTRY.register(_collector)
