"""A real `prefect server start`, `prefect deploy --all` of prefect.yaml to a process
work pool, a real worker and the sensor: a file written in steps into the watch
folder becomes a byte-identical S3 object, and its flow run is Completed."""

from __future__ import annotations

import hashlib
import random
import time
from pathlib import Path

import pytest

from stream_ingest.services import PrefectServer, Service
from tests.e2e.conftest import BIN, ROOT, flow_runs, run_cli, until

MIB = 1024 * 1024


class Proc(Service):
    def __init__(self, name: str, cmd: list[str], env: dict[str, str], workdir: str) -> None:
        self.name, self._cmd, self._env = name, cmd, env
        super().__init__(port=0, workdir=workdir)

    def command(self) -> list[str]:
        return self._cmd

    def env(self) -> dict[str, str]:
        return self._env

    def ready(self) -> bool:
        return True


@pytest.mark.e2e
def test_file_written_in_steps_arrives_byte_identical(e2e_env, tmp_path, s3, bucket_name):
    env = dict(e2e_env)
    server = PrefectServer(workdir=str(tmp_path / "server"))
    Path(server.workdir).mkdir()
    with server:
        env["PREFECT_API_URL"] = server.api_url
        run_cli(
            [str(BIN / "prefect"), "work-pool", "create", "video-ingest", "--type", "process"], env
        )
        run_cli([str(BIN / "stream-ingest"), "blocks", "register"], env)
        run_cli([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], env)
        worker = Proc(
            "worker",
            [str(BIN / "prefect"), "worker", "start", "--pool", "video-ingest"],
            env,
            str(tmp_path),
        )
        sensor = Proc("sensor", [str(BIN / "stream-ingest"), "sensor"], env, str(tmp_path))
        with worker, sensor:
            time.sleep(1)  # let the sensor's observer start before the file appears
            data = random.Random(7).randbytes(13 * MIB + 321)
            src = Path(env["STREAM_INGEST_WATCH_DIR"]) / "camera 1.mp4"
            with open(src, "wb") as fh:  # one handle, like a recorder
                for i in range(0, len(data), 2 * MIB):
                    fh.write(data[i : i + 2 * MIB])
                    fh.flush()
                    time.sleep(0.3)
            closed_at = time.monotonic()

            runs = until(
                lambda: [r for r in flow_runs(server.api_url) if r["state_type"] == "COMPLETED"],
                120,
                "a completed stream-ingest flow run",
            )
            body = until(
                lambda: s3.get_object(Bucket=bucket_name, Key="e2e/camera 1.mp4")["Body"].read(),
                30,
                "the object",
            )
            latency = time.monotonic() - closed_at
        all_runs = flow_runs(server.api_url)
    assert body == data, f"object differs (worker log: {worker.log_path})"
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()
    assert len(all_runs) == 1, [r["name"] for r in all_runs]  # one run per file
    assert runs[0]["name"] == "ingest-camera 1.mp4"
    assert latency < 60
    assert ROOT.exists()
