"""The scrape-time figures about streams (stream_ingest/metrics.py): streams by state
and the lag of each live stream, read from records as the checkpoint store lists them."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stream_ingest.metrics import StreamsCollector, _lag
from stream_ingest.records import StreamRecord
from stream_ingest.states import Status


@dataclasses.dataclass(frozen=True)
class LaggingRecord(StreamRecord):
    """A record with lag fields, as the checkpoint store's records carry them."""

    lag_bytes: int = 0
    lag_since_utc: str = ""


def samples(records) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(StreamsCollector(lambda: records))
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_streams_are_counted_by_state_every_state_present() -> None:
    records = [
        StreamRecord("a", status=Status.UPLOADING),
        StreamRecord("b", status=Status.UPLOADING),
        StreamRecord("c", status=Status.COMPLETED),
    ]
    got = samples(records)
    assert got[("stream_ingest_streams", (("state", "uploading"),))] == 2
    assert got[("stream_ingest_streams", (("state", "completed"),))] == 1
    assert got[("stream_ingest_streams", (("state", "failed"),))] == 0
    assert not [k for k in got if k[0].startswith("stream_ingest_stream_lag")]


def test_lag_is_reported_per_live_stream_only() -> None:
    since = (datetime.now(UTC) - timedelta(seconds=30)).isoformat()
    live = LaggingRecord("live", status=Status.UPLOADING, lag_bytes=7_000_000, lag_since_utc=since)
    done = LaggingRecord("done", status=Status.COMPLETED, lag_bytes=5, lag_since_utc=since)
    got = samples([live, done])
    assert got[("stream_ingest_stream_lag_bytes", (("stream", "live"),))] == 7_000_000
    assert 30 <= got[("stream_ingest_stream_lag_seconds", (("stream", "live"),))] < 300
    assert ("stream_ingest_stream_lag_bytes", (("stream", "done"),)) not in got


def test_lag_is_none_for_a_record_without_lag_fields() -> None:
    assert _lag(StreamRecord("s")) is None
    assert _lag(LaggingRecord("s", lag_bytes=0, lag_since_utc="")) == (0, 0.0)


def test_an_unreadable_store_gives_no_stream_figures_and_no_failed_scrape() -> None:
    def down():
        raise ConnectionError("Redis is down")

    registry = CollectorRegistry()
    registry.register(StreamsCollector(down))
    assert "stream_ingest_streams" not in generate_latest(registry).decode()
