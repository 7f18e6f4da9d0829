"""What an operator on call sees and does, against the real stack (server, deployed
flows, worker, sensor): the run's story in the UI, a retry from the UI that resumes
from the checkpoint, `streams rerun --failed`, the example automation, and the UI
itself in a headless browser."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from stream_ingest.blocks.checkpoints import CheckpointStore
from tests.e2e.relay import Relay
from tests.e2e.stack import BIN, ROOT, Stack, new_bucket, product_env, run_cli, until
from tests.flows.helpers import upload_part_calls

MIB = 1024 * 1024
SECRET = "e2e-Secret-Value-42"  # moto accepts any key; it must never reach a log
pytestmark = pytest.mark.e2e


class Ops:
    def __init__(self, stack: Stack, relay: Relay, store: CheckpointStore, s3: Any, bucket: str):
        self.stack, self.relay, self.store, self.s3, self.bucket = stack, relay, store, s3, bucket

    def stream_of(self, path: Path) -> str:
        return until(
            lambda: next(
                (r.stream_id for r in self.store.streams.list() if r.original_path == str(path)),
                None,
            ),
            60,
            f"the stream of {path.name}",
        )

    def body(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()


@pytest.fixture(scope="module")
def ops(tmp_path_factory, redis_server, moto_server) -> Iterator[Ops]:
    """One stack for the module; S3 goes through a relay the tests can take down."""
    workdir = tmp_path_factory.mktemp("ops")
    s3, bucket, namespace = new_bucket(moto_server.url, "ops")
    relay = Relay(moto_server.port)
    relay.up()
    env = product_env(workdir, redis_server.url, relay.url, bucket, namespace)
    env["STREAM_INGEST_AWS_SECRET_ACCESS_KEY"] = SECRET
    try:
        with Stack(env, workdir) as stack:
            yield Ops(
                stack, relay, CheckpointStore.from_url(redis_server.url, namespace), s3, bucket
            )
    finally:
        relay.down()


def _write(path: Path, data: bytes, chunk: int, pause: float) -> None:
    with open(path, "wb") as fh:  # one handle, like a recorder
        for i in range(0, len(data), chunk):
            fh.write(data[i : i + chunk])
            fh.flush()
            time.sleep(pause)


@pytest.fixture(scope="module")
def story(ops: Ops) -> dict[str, Any]:
    """A recording ingested end to end: its completed flow run and stream id."""
    data = random.Random(21).randbytes(11 * MIB + 5)
    src = ops.stack.watch_dir / "story.mp4"
    _write(src, data, 4 * MIB, 0.3)
    run = until(lambda: ops.stack.run_for("story.mp4"), 60, "the run of story.mp4")
    run = ops.stack.wait_for_state(run["id"], "COMPLETED")
    assert ops.body("e2e/story.mp4") == data
    return {"run": run, "stream_id": ops.stream_of(src), "data": data}


def test_a_completed_run_tells_its_story_in_the_api(ops: Ops, story: dict[str, Any]) -> None:
    stack, run, sid = ops.stack, story["run"], story["stream_id"]

    assert run["name"] == "ingest-story.mp4"
    assert f"stream:{sid}" in run["tags"]
    # The worker's labels (written beside the run's start) say which worker ran it.
    assert run["labels"]["prefect.worker.type"] == "stream-ingest-warm", run["labels"]
    assert run["labels"]["prefect.work-pool.name"] == "video-ingest", run["labels"]
    tasks = stack.post("/task_runs/filter", {"flow_runs": {"id": {"any_": [run["id"]]}}})
    names = {t["name"] for t in tasks}
    assert {"find-stream", "open-upload", "finalize"} <= names
    # Parts go up one task run each, or several in one (a live stream's window, a
    # stream catching up): `upload-part-N` or `upload-parts-FIRST-LAST`.
    sent = set()
    for name in names:
        if m := re.fullmatch(r"upload-parts?-(\d+)(?:-(\d+))?", name):
            sent.update(range(int(m[1]), int(m[2] or m[1]) + 1))
    assert {1, 2} <= sent, names

    artifacts = stack.post(
        "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}}
    )
    progress = [a for a in artifacts if a["type"] == "progress"]
    assert progress and progress[0]["data"] == 100.0
    [table] = [a for a in artifacts if a["type"] == "table"]
    [row] = json.loads(table["data"]) if isinstance(table["data"], str) else table["data"]
    assert row["object"] == f"s3://{ops.bucket}/e2e/story.mp4"
    assert row["bytes"] == len(story["data"]) and row["parts"] == 3
    assert row["re-uploaded parts"] == 0 and len(row["sha256"]) == 64
    assert {"duration (s)", "MB/s"} <= row.keys()

    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    events = until(
        lambda: _events(stack, since, f"stream-ingest.stream.{sid}", "completed"),
        30,
        "the stream's completed event",
    )
    names = {e["event"] for e in events}
    assert {"stream-ingest.stream.started", "stream-ingest.stream.completed"} <= names
    completed = next(e for e in events if e["event"] == "stream-ingest.stream.completed")
    assert completed["payload"]["sha256"] == row["sha256"]
    related = {r["prefect.resource.id"] for r in completed["related"]}
    assert f"prefect.flow-run.{run['id']}" in related
    detected = _events(stack, since, "stream-ingest.file.", "")
    assert any(e["event"] == "stream-ingest.file.detected" for e in detected)

    def completion_logged() -> list[str]:
        # the run's logs are shipped in batches, so they may land after its final state
        body = {"logs": {"flow_run_id": {"any_": [run["id"]]}}}
        messages = [entry["message"] for entry in stack.post("/logs/filter", body)]
        return messages if any(sid in m and "completed" in m for m in messages) else []

    messages = until(completion_logged, 30, "the run's completion log line")
    assert not any(SECRET in m for m in messages)


def _events(stack: Stack, since: str, prefix: str, needs: str) -> list[dict[str, Any]]:
    body = {
        "filter": {"any_resource": {"id_prefix": [prefix]}, "occurred": {"since": since}},
        "limit": 50,
    }
    events = stack.post("/events/filter", body)["events"]
    return events if any(e["event"].endswith(needs) for e in events) else []


def test_retry_from_the_ui_resumes_without_reuploading_checkpointed_parts(
    ops: Ops, moto_server
) -> None:
    stack, store = ops.stack, ops.store
    data = random.Random(22).randbytes(26 * MIB + 99)
    src = stack.watch_dir / "outage.mkv"
    writer = threading.Thread(target=_write, args=(src, data, 2 * MIB, 0.25), daemon=True)
    writer.start()
    sid = ops.stream_of(src)
    until(lambda: len(store.parts.get(sid)) >= 2, 60, "two checkpointed parts")
    ops.relay.down()  # S3 unreachable from here on
    try:
        writer.join(30)
        run = until(lambda: stack.run_for("outage.mkv"), 10, "the run")
        failed = stack.wait_for_state(run["id"], "FAILED", timeout=240)
    finally:
        ops.relay.up()
    record = store.streams.get(sid)
    assert record.status == "failed" and "S3 unavailable" in record.error
    assert "S3 unavailable" in failed["state"]["message"]
    checkpointed = set(store.parts.get(sid))
    assert checkpointed, "the failed run kept its checkpoint"
    log_start = Path(moto_server.log_path).stat().st_size

    # Exactly what the UI's Retry button sends.
    retry = {"type": "SCHEDULED", "name": "AwaitingRetry", "message": "Retry from the UI"}
    stack.post(f"/flow_runs/{run['id']}/set_state", {"state": retry, "force": False})
    stack.wait_for_state(run["id"], "COMPLETED", timeout=180)

    assert ops.body("e2e/outage.mkv") == data
    record = store.streams.get(sid)
    assert record.status == "completed" and record.failures == 0
    calls = upload_part_calls(Path(moto_server.log_path), log_start, record.s3_upload_id)
    assert not set(calls) & checkpointed, "a checkpointed part was uploaded again"
    all_parts = set(range(1, -(-len(data) // (5 * MIB)) + 1))
    assert set(calls) == all_parts - checkpointed


def test_rerun_failed_creates_one_run_per_failed_stream(ops: Ops) -> None:
    from stream_ingest.records import StreamRecord
    from stream_ingest.states import Status

    stack, store = ops.stack, ops.store
    made = {
        f"rerun-{status}-{i}": status
        for i, status in enumerate(
            [Status.FAILED, Status.FAILED, Status.COMPLETED, Status.UPLOADING, Status.ABORTED]
        )
    }
    for sid, status in made.items():
        path = str(stack.watch_dir / "gone" / f"{sid}.mp4")
        store.streams.put(StreamRecord(stream_id=sid, original_path=path, status=status))
    expected = {r.stream_id for r in store.streams.list(Status.FAILED)}
    assert {s for s, st in made.items() if st == Status.FAILED} <= expected

    out = run_cli([str(BIN / "stream-ingest"), "streams", "rerun", "--failed"], stack.env)

    assert len(out.strip().splitlines()) == len(expected), out
    reruns = [r for r in stack.flow_runs() if "rerun" in r["tags"]]
    assert sorted(r["parameters"]["stream_id"] for r in reruns) == sorted(expected)
    for r in reruns:
        sid = r["parameters"]["stream_id"]
        assert r["parameters"]["path"] == store.streams.get(sid).original_path
        assert f"stream:{sid}" in r["tags"]


def test_example_automation_reruns_a_failed_stream_a_bounded_number_of_times(ops: Ops) -> None:
    stack = ops.stack
    out = run_cli(
        [
            str(BIN / "prefect"),
            "automation",
            "create",
            "--from-file",
            str(ROOT / "automations" / "rerun-failed-stream.yaml"),
        ],
        stack.env,
    )
    # Rich wraps the CLI's line; the id is the only UUID in it.
    automation_id = re.search(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", "".join(out.split()))[0]
    deployment = stack.get("/deployments/name/stream-ingest/stream-ingest")
    try:
        for sid, failures in (("auto-first", "1"), ("auto-fourth", "4")):
            _emit_failed(stack, deployment["id"], sid, failures)
        created = until(
            lambda: [
                r for r in stack.flow_runs() if r["parameters"].get("stream_id") == "auto-first"
            ],
            30,
            "the automation's rerun",
        )
        time.sleep(3)  # the fourth failure had as long to fire and must not have
        runs = stack.flow_runs()
    finally:
        stack_delete(stack, f"/automations/{automation_id}")
    for r in created:
        stack_delete(stack, f"/flow_runs/{r['id']}")  # it would run a minute from now
    [rerun] = created
    assert rerun["parameters"]["path"] == "/rec/auto-first.mp4"
    assert rerun["parameters"]["config"] == "stream-ingest"
    assert rerun["state_type"] == "SCHEDULED"
    start = datetime.fromisoformat(rerun["expected_start_time"])
    assert start - datetime.now(UTC) > timedelta(seconds=20)  # schedule_after: a minute
    assert not [r for r in runs if r["parameters"].get("stream_id") == "auto-fourth"]


def stack_delete(stack: Stack, path: str) -> None:
    httpx.delete(f"{stack.api}{path}", timeout=15)


def _emit_failed(stack: Stack, deployment_id: str, sid: str, failures: str) -> None:
    """A `failed` event as a failed run of the deployment emits it (stream_ingest/flows/report.py)."""
    code = f"""
from prefect.events import emit_event
emit_event(
    event="stream-ingest.stream.failed",
    resource={{
        "prefect.resource.id": "stream-ingest.stream.{sid}",
        "stream-ingest.stream-id": "{sid}",
        "stream-ingest.path": "/rec/{sid}.mp4",
        "stream-ingest.config": "stream-ingest",
        "stream-ingest.failures": "{failures}",
    }},
    related=[{{"prefect.resource.id": "prefect.deployment.{deployment_id}",
              "prefect.resource.role": "deployment"}}],
    payload={{"error": "S3 unavailable: test"}},
)
from prefect.events.worker import EventsWorker
EventsWorker.drain_all()
"""
    subprocess.run([str(BIN / "python"), "-c", code], env=stack.env, check=True, timeout=60)


def test_the_ui_shows_the_completed_run_in_a_browser(
    ops: Ops, story: dict[str, Any], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is needed (./test.sh installs it)"
    shot = tmp_path / "ui-flow-run.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{ops.stack.server.url}/runs", wait_until="domcontentloaded")
            page.get_by_text("ingest-story.mp4").first.click(timeout=60_000)
            page.wait_for_url(f"**/runs/flow-run/{story['run']['id']}*", timeout=30_000)
            page.get_by_text("Completed").first.wait_for(timeout=30_000)
            page.get_by_text("upload-part").first.wait_for(timeout=30_000)
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":  # the README's picture
        shutil.copy(shot, ROOT / "docs" / "img" / shot.name)
