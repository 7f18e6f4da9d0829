"""The Prometheus endpoint as a scraper sees it: a real stream flow (moto S3, the
test's Redis), then its figures scraped over HTTP and parsed as Prometheus does."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_ingest.blocks.config import load_config
from stream_ingest.devstack.services import free_port
from stream_ingest.flows import telemetry
from stream_ingest.flows.ingest import stream_ingest
from stream_ingest.metrics import REGISTRY
from stream_ingest.parts import MIB
from tests.conftest import edit_config
from tests.flows.helpers import payload, scrape

pytestmark = pytest.mark.usefixtures("registered")


@pytest.fixture
def served() -> Iterator[int]:
    """The worker's endpoint, turned on in the test's config block as an operator does."""
    port = free_port()
    edit_config(metrics_enabled=True, metrics_worker_port=port)
    assert telemetry.start(load_config(), "worker") == port
    yield port
    telemetry.stop(port)


def test_a_streams_bytes_and_parts_are_scraped_as_uploaded(registered, served: int) -> None:
    data = payload(2 * 5 * MIB + 12345, seed=3)  # parts of 5 MiB: 3 parts
    src = Path(registered.watch_dir) / "cam.mp4"
    src.write_bytes(data)
    before = scrape(served)

    result = stream_ingest(path=str(src))

    after = scrape(served)

    def grew(name: str) -> float:
        return after[(name, ())] - before.get((name, ()), 0.0)

    assert result["status"] == "completed"
    assert grew("stream_ingest_uploaded_bytes_total") == len(data)
    assert grew("stream_ingest_uploaded_parts_total") == result["parts_count"] == 3
    assert grew("stream_ingest_part_upload_seconds_count") == 3
    # Read from the test's checkpoint store at the scrape: its one stream, completed.
    assert after[("stream_ingest_streams", (("state", "completed"),))] == 1
    assert after[("stream_ingest_streams", (("state", "uploading"),))] == 0


def test_a_port_in_use_is_one_error_line_and_no_endpoint(caplog) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.ERROR, logger="stream_ingest.telemetry"):
            assert telemetry.serve(port, "metrics_worker_port") is False
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert f"port {port}" in errors[0] and "metrics_worker_port" in errors[0]


def test_metrics_are_off_unless_enabled(registered) -> None:
    assert load_config().metrics_enabled is False
    assert telemetry.start(load_config(), "worker") is None


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_failed_stream_is_counted_by_kind(registered, monkeypatch) -> None:
    from stream_ingest.blocks.registration import register_blocks
    from stream_ingest.settings import load_settings

    monkeypatch.setenv("STREAM_INGEST_S3_BUCKET", "no-such-bucket-here")
    register_blocks(load_settings())
    src = Path(registered.watch_dir) / "a.mp4"
    src.write_bytes(b"x" * 100)
    failures = counted("stream_ingest_stream_failures_total", kind="BucketMissing")

    assert stream_ingest(path=str(src), return_state=True).is_failed()

    assert counted("stream_ingest_stream_failures_total", kind="BucketMissing") == failures + 1
