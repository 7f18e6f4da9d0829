"""`stream-ingest dev` starts the whole stack, serves the UI, ingests a file, and on
SIGTERM stops every process it started."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import boto3
import httpx
import pytest

from stream_ingest.devstack.services import free_port
from tests.e2e.stack import BIN, ROOT, until


def descendants(pid: int) -> set[int]:
    """Every live process below `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.e2e
def test_dev_runs_everything_and_stops_it_all(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "STREAM_INGEST_"))}
    env.update(PATH=f"{BIN}:{env.get('PATH', '')}", STREAM_INGEST_IDLE_TIMEOUT_SECONDS="4")
    watch = tmp_path / "watch"
    port = free_port()
    dev = subprocess.Popen(
        [
            str(BIN / "stream-ingest"),
            "dev",
            "--watch",
            str(watch),
            "--state-dir",
            str(tmp_path / "state"),
            "--prefect-port",
            str(port),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(dev.stdout), daemon=True)
    reader.start()
    try:
        until(
            lambda: any("press Ctrl-C" in x for x in lines) or dev.poll() is not None,
            180,
            "dev to start",
        )
        assert dev.poll() is None, "".join(lines)
        output = "".join(lines)
        assert f"Prefect UI: http://127.0.0.1:{port}" in output
        assert "IN MEMORY" in output
        ui = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert ui.status_code == 200 and "<html" in ui.text.lower()
        endpoint = re.search(r"started moto S3 at (http://\S+):", output).group(1)

        data = random.Random(3).randbytes(3 * 1024 * 1024 + 17)
        with open(watch / "take 1.mkv", "wb") as fh:
            fh.write(data[: len(data) // 2])
            fh.flush()
            time.sleep(0.5)
            fh.write(data[len(data) // 2 :])
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="dev",
            aws_secret_access_key="dev",
        )
        body = until(
            lambda: s3.get_object(Bucket="recordings", Key="recordings/take 1.mkv")["Body"].read(),
            120,
            "the object in S3",
        )
        assert body == data

        # A second terminal in the same folder, with nothing exported, finds the stack
        # (prefect.toml written by dev) and its Redis (through the config block).
        pointer = tmp_path / "prefect.toml"
        assert pointer.exists()
        listed = until(
            lambda: [
                r
                for r in json.loads(
                    subprocess.run(
                        [str(BIN / "stream-ingest"), "streams", "list", "--json"],
                        cwd=tmp_path,
                        env=env,
                        capture_output=True,
                        text=True,
                        check=True,
                        timeout=60,
                    ).stdout
                )
                if r["status"] == "completed"
            ],
            60,
            "the completed stream in `streams list`",
        )
        assert [r["original_path"] for r in listed] == [str(watch / "take 1.mkv")]
        runs = subprocess.run(
            [str(BIN / "prefect"), "flow-run", "ls"],
            cwd=tmp_path,
            env={**env, "COLUMNS": "250"},  # a wide table: run names in full
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert runs.returncode == 0 and "ingest-take 1.mkv" in runs.stdout, runs.stderr
        started = descendants(dev.pid)
        assert len(started) >= 5  # prefect server, redis, moto, worker, sensor

        dev.send_signal(signal.SIGTERM)
        assert dev.wait(60) == 0
    finally:
        if dev.poll() is None:
            dev.kill()
    reader.join(5)
    assert "stopped everything it started" in "".join(lines)
    assert not (tmp_path / "prefect.toml").exists()
    leftover = (
        until(lambda: not any(alive(p) for p in started) or None, 20, "every child to exit")
        if started
        else True
    )
    assert leftover
    assert ROOT.exists()
