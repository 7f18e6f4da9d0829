"""The scrape-time figures about streams (stream_ingest/metrics.py): streams by state
and the lag of each live stream, read from records as the checkpoint store lists them."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
import redis
from botocore.exceptions import ClientError
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stream_ingest.blocks import bucket
from stream_ingest.blocks.redis_support import unavailable
from stream_ingest.errors import CheckpointUnavailable, S3Rejected, S3Unavailable, StreamError
from stream_ingest.flows import retry
from stream_ingest.metrics import REGISTRY, StreamsCollector
from stream_ingest.records import StreamRecord
from stream_ingest.states import Status


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
    # A live stream with nothing behind reports a lag of 0; an ended one none.
    assert got[("stream_ingest_stream_lag_bytes", (("stream", "a"),))] == 0
    assert ("stream_ingest_stream_lag_bytes", (("stream", "c"),)) not in got


def test_lag_is_reported_per_live_stream_only() -> None:
    since = (datetime.now(UTC) - timedelta(seconds=30)).isoformat()
    live = StreamRecord(
        "live", status=Status.UPLOADING, behind_bytes=7_000_000, behind_since_utc=since
    )
    done = StreamRecord("done", status=Status.COMPLETED, behind_bytes=5, behind_since_utc=since)
    got = samples([live, done])
    assert got[("stream_ingest_stream_lag_bytes", (("stream", "live"),))] == 7_000_000
    assert 30 <= got[("stream_ingest_stream_lag_seconds", (("stream", "live"),))] < 300
    assert ("stream_ingest_stream_lag_bytes", (("stream", "done"),)) not in got


def test_an_unreadable_store_gives_no_stream_figures_and_no_failed_scrape() -> None:
    def down():
        raise ConnectionError("Redis is down")

    registry = CollectorRegistry()
    registry.register(StreamsCollector(down))
    assert "stream_ingest_streams" not in generate_latest(registry).decode()


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_transient_error_retried_is_counted_by_type_and_a_permanent_one_is_not(
    monkeypatch,
) -> None:
    monkeypatch.setattr(retry.time, "sleep", lambda s: None)
    errors = [S3Unavailable("503 from S3")]

    def flaky() -> str:
        if errors:
            raise errors.pop()
        return "sent"

    before = counted("stream_ingest_retries_total", error="S3Unavailable")
    assert retry.with_retries(flaky, "part 1", logging.getLogger("test")) == "sent"
    assert counted("stream_ingest_retries_total", error="S3Unavailable") == before + 1

    refused = counted("stream_ingest_retries_total", error="S3Rejected")
    with pytest.raises(S3Rejected):
        retry.with_retries(lambda: (_ for _ in ()).throw(S3Rejected("AccessDenied")), "p", None)
    assert counted("stream_ingest_retries_total", error="S3Rejected") == refused


def test_s3_errors_are_counted_by_code_and_a_missing_key_is_not() -> None:
    def answer(code: str, status: int) -> ClientError:
        return ClientError(
            {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
        )

    slow, missing = (
        counted("stream_ingest_s3_errors_total", code=c) for c in ("SlowDown", "NoSuchKey")
    )
    for exc in (answer("SlowDown", 503), answer("NoSuchKey", 404)):
        with pytest.raises(StreamError), bucket._s3_errors("b"):
            raise exc
    assert counted("stream_ingest_s3_errors_total", code="SlowDown") == slow + 1
    assert counted("stream_ingest_s3_errors_total", code="NoSuchKey") == missing


def test_redis_going_away_is_counted_by_error() -> None:
    @unavailable
    def read() -> None:
        raise redis.ConnectionError("Connection refused")

    before = counted("stream_ingest_redis_errors_total", error="ConnectionError")
    with pytest.raises(CheckpointUnavailable):
        read()
    assert counted("stream_ingest_redis_errors_total", error="ConnectionError") == before + 1


def test_a_task_retry_prefect_is_told_to_make_is_counted() -> None:
    from prefect.states import Failed

    before = counted("stream_ingest_retries_total", error="CheckpointUnavailable")
    failed = Failed(data=CheckpointUnavailable("Redis restarting"))
    assert retry.transient_only(None, None, failed) is True
    assert retry.transient_only(None, None, Failed(data=S3Rejected("AccessDenied"))) is False
    assert counted("stream_ingest_retries_total", error="CheckpointUnavailable") == before + 1
