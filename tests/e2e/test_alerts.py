"""The alerts fire: a real `prefect server start` (its triggers and actions run), the
operator's commands (`blocks register`, `automations apply`), a webhook block pointing
at a receiver this test runs, and the events the flows send for each condition. Each
notification must reach the receiver naming its stream; a stream that ended, or keeps
sending progress, is never reported stuck."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.events import emit_event
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_API_URL, temporary_settings

from stream_ingest.alerts import CONDITIONS
from stream_ingest.devstack.services import PrefectServer
from stream_ingest.flows.report import EVENT_PREFIX, stream_resource
from stream_ingest.records import StreamRecord
from tests.e2e.stack import BIN, new_bucket, product_env, run_cli, until

pytestmark = pytest.mark.e2e
CONFIG = "stream-ingest"  # the default config block, which `blocks register` saves
BLOCK = "studio-alerts"
STUCK_AFTER = 10  # Prefect's shortest proactive window
WAIT = 120  # generous: the server checks proactive triggers every few seconds


class Receiver:
    """A webhook endpoint: keeps the JSON body of every POST it is sent."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhook-receiver", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def about(self, stream_id: str, condition: str) -> list[dict[str, Any]]:
        """The notifications whose subject names `stream_id` and `condition`."""
        return [
            m
            for m in list(self.received)
            if stream_id in m.get("subject", "") and m["subject"].endswith(condition)
        ]

    def wait_for(self, stream_id: str, condition: str) -> dict[str, Any]:
        return until(
            lambda: (self.about(stream_id, condition) or [None])[0],
            WAIT,
            f"the {condition} notification of {stream_id}",
        )


@pytest.fixture(scope="module")
def receiver(tmp_path_factory, redis_server, moto_server) -> Iterator[Receiver]:
    """A server with the alerts applied as the docs say, notifying the receiver."""
    workdir: Path = tmp_path_factory.mktemp("alerts")
    _, bucket, namespace = new_bucket(moto_server.url, "alerts")
    env = product_env(workdir, redis_server.url, moto_server.url, bucket, namespace)
    env["STREAM_INGEST_ALERT_BLOCK"] = f"custom-webhook/{BLOCK}"
    env["STREAM_INGEST_STUCK_AFTER_SECONDS"] = str(STUCK_AFTER)
    server = PrefectServer(workdir=str(workdir / "server"))
    Path(server.workdir).mkdir(parents=True)
    server.start()
    env["PREFECT_API_URL"] = server.api_url
    try:
        with Receiver() as receiving, temporary_settings({PREFECT_API_URL: server.api_url}):
            CustomWebhookNotificationBlock(
                name="studio",
                url=receiving.url,
                json_data={"subject": "{{subject}}", "body": "{{body}}"},
            ).save(BLOCK)
            run_cli([str(BIN / "stream-ingest"), "blocks", "register"], env)
            applied = run_cli([str(BIN / "stream-ingest"), "automations", "apply"], env)
            assert len(applied.splitlines()) == len(CONDITIONS), applied
            yield receiving
            EventsWorker.drain_all(timeout=10)
    finally:
        server.stop()


def _emit(stream_id: str, name: str, **payload: Any) -> None:
    """An event as a run of the stream sends it (stream_ingest/flows/report.py)."""
    record = StreamRecord(stream_id, original_path=f"/rec/{stream_id}.mp4", identity=stream_id)
    emit_event(
        event=f"{EVENT_PREFIX}.{name}",
        resource=stream_resource(record, CONFIG),
        payload={"stream_id": stream_id, **payload},
    )


def test_failed_salvaged_and_lagging_streams_are_notified(receiver: Receiver) -> None:
    _emit("s-fail", "failed", error="S3 unavailable: 503")
    _emit("s-salv", "salvaged", error="source deleted", bytes=123, salvage_key="rec/x.partial.mp4")
    _emit("s-lag", "lagging", lag_bytes=987654, lag_seconds=42.5)

    failed = receiver.wait_for("s-fail", "failed")
    assert "S3 unavailable: 503" in failed["body"] and "/rec/s-fail.mp4" in failed["body"]
    salvaged = receiver.wait_for("s-salv", "salvaged")
    assert "rec/x.partial.mp4" in salvaged["body"]
    lagging = receiver.wait_for("s-lag", "lagging")
    assert "987654 bytes" in lagging["body"] and "42.5 s" in lagging["body"]


def test_a_stream_without_progress_is_notified_stuck(receiver: Receiver) -> None:
    _emit("s-done", "started")
    _emit("s-done", "completed")
    _emit("s-alive", "started")
    _emit("s-stuck", "started")
    _emit("s-stuck", "progress", lag_bytes=0)

    # s-alive reports progress more often than the window, until s-stuck is reported.
    deadline = time.monotonic() + WAIT
    while not receiver.about("s-stuck", "stuck") and time.monotonic() < deadline:
        _emit("s-alive", "progress", lag_bytes=0)
        time.sleep(STUCK_AFTER / 4)
    _emit("s-alive", "completed")

    stuck = receiver.wait_for("s-stuck", "stuck")
    assert "/rec/s-stuck.mp4" in stuck["body"] and "stream-ingest.stream.progress" in stuck["body"]
    # Their windows (opened before s-stuck's last one) were judged by then.
    assert receiver.about("s-done", "stuck") == []
    assert receiver.about("s-alive", "stuck") == []
