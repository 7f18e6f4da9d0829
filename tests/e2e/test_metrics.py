"""Metrics and JSON logs turned on the way an operator does (STREAM_INGEST_* seeds
for `stream-ingest blocks register`), then the real warm worker's and sensor's
endpoints scraped after a recording: the worker counted the file's bytes and parts."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from stream_ingest.devstack.services import free_port
from tests.e2e.stack import Stack, until
from tests.flows.helpers import scrape

MIB = 1024 * 1024


@pytest.mark.e2e
def test_the_worker_and_sensor_endpoints_count_a_recording(e2e_env, tmp_path, s3, bucket_name):
    worker_port, sensor_port = free_port(), free_port()
    e2e_env.update(
        STREAM_INGEST_METRICS_ENABLED="true",
        STREAM_INGEST_METRICS_WORKER_PORT=str(worker_port),
        STREAM_INGEST_METRICS_SENSOR_PORT=str(sensor_port),
        STREAM_INGEST_LOG_FORMAT="json",
    )
    with Stack(e2e_env, tmp_path) as stack:
        data = random.Random(11).randbytes(11 * MIB + 7)  # 3 parts of 5 MiB
        (stack.watch_dir / "cam.mp4").write_bytes(data)
        until(
            lambda: [r for r in stack.flow_runs() if r["state_type"] == "COMPLETED"],
            120,
            "a completed stream-ingest flow run",
        )
        worker = until(lambda: scrape(worker_port), 30, "the worker's endpoint")
        sensor = until(lambda: scrape(sensor_port), 30, "the sensor's endpoint")
        assert stack.worker is not None
        worker_log = Path(stack.worker.log_path).read_text(errors="replace")

    assert worker[("stream_ingest_uploaded_bytes_total", ())] == len(data)
    assert worker[("stream_ingest_uploaded_parts_total", ())] == 3
    assert worker[("stream_ingest_part_upload_seconds_count", ())] == 3
    for got in (worker, sensor):  # both read the one store
        assert got[("stream_ingest_streams", (("state", "completed"),))] == 1
    assert sensor[("stream_ingest_sensor_events_total", (("event", "FileAppeared"),))] >= 1
    # The worker switched to JSON at its start: its runs' lines name their stream.
    lines = [json.loads(line) for line in worker_log.splitlines() if line.startswith("{")]
    assert any(line["stream_id"] and line["run_id"] for line in lines), worker_log[-2000:]
