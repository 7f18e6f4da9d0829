"""A real `prefect server start`, `prefect deploy --all` of prefect.yaml to a process
work pool, a real worker and the sensor: a file written in steps into the watch
folder becomes a byte-identical S3 object, and its flow run is Completed."""

from __future__ import annotations

import hashlib
import random
import time

import pytest

from tests.e2e.stack import Stack, until

MIB = 1024 * 1024


@pytest.mark.e2e
def test_file_written_in_steps_arrives_byte_identical(e2e_env, tmp_path, s3, bucket_name):
    with Stack(e2e_env, tmp_path) as stack:
        data = random.Random(7).randbytes(13 * MIB + 321)
        src = stack.watch_dir / "camera 1.mp4"
        with open(src, "wb") as fh:  # one handle, like a recorder
            for i in range(0, len(data), 2 * MIB):
                fh.write(data[i : i + 2 * MIB])
                fh.flush()
                time.sleep(0.3)
        closed_at = time.monotonic()

        runs = until(
            lambda: [r for r in stack.flow_runs() if r["state_type"] == "COMPLETED"],
            120,
            "a completed stream-ingest flow run",
        )
        body = until(
            lambda: s3.get_object(Bucket=bucket_name, Key="e2e/camera 1.mp4")["Body"].read(),
            30,
            "the object",
        )
        latency = time.monotonic() - closed_at
        all_runs = stack.flow_runs()
    assert body == data, f"object differs (worker log: {stack.worker.log_path})"
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()
    assert len(all_runs) == 1, [r["name"] for r in all_runs]  # one run per file
    assert runs[0]["name"] == "ingest-camera 1.mp4"
    assert latency < 60
