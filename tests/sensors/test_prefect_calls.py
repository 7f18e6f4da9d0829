"""The default Prefect calls, checked without a server: the exact arguments passed
to `run_deployment` and `emit_event`, and the start-up check of PREFECT_API_URL."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from sensors.prefect_calls import (
    RunRequest,
    describe_prefect_error,
    prefect_emit,
    require_api_url,
    run_deployment_trigger,
)
from stream_ingest.errors import ConfigurationError


def test_run_request_shape() -> None:
    request = RunRequest("stream-ingest/stream-ingest", "/rec/a.mp4", "s-1")
    assert request.parameters == {"path": "/rec/a.mp4", "stream_id": "s-1"}
    assert request.idempotency_key == "stream-ingest:s-1"


def test_errors_are_described_in_one_line() -> None:
    refused = httpx.ConnectError("[Errno 111] Connection refused\nmore detail")
    assert describe_prefect_error(refused) == (
        "Prefect API unreachable (ConnectError: [Errno 111] Connection refused)"
    )
    assert describe_prefect_error(ValueError("Deployment not found")) == (
        "Prefect API call failed (ValueError: Deployment not found)"
    )


def test_missing_api_url_fails_at_start() -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings(restore_defaults={PREFECT_API_URL}),
        pytest.raises(ConfigurationError, match="PREFECT_API_URL"),
    ):
        require_api_url()
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:4200/api"}):
        require_api_url()


def test_default_trigger_calls_run_deployment_without_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The exact call: no wait for the run (timeout=0), never nested as a subflow,
    the idempotency key that makes a repeated trigger return the same run."""
    import prefect.deployments

    seen: list[dict[str, Any]] = []
    run_id = uuid.uuid4()

    def fake_run_deployment(**kwargs: Any) -> SimpleNamespace:
        seen.append(kwargs)
        return SimpleNamespace(id=run_id)

    monkeypatch.setattr(prefect.deployments, "run_deployment", fake_run_deployment)
    request = RunRequest("stream-ingest/stream-ingest", "/rec/a.mp4", "s-1")
    assert run_deployment_trigger(request) == str(run_id)
    assert seen == [
        {
            "name": "stream-ingest/stream-ingest",
            "parameters": {"path": "/rec/a.mp4", "stream_id": "s-1"},
            "idempotency_key": "stream-ingest:s-1",
            "timeout": 0,
            "as_subflow": False,
        }
    ]


def test_default_emitter_passes_the_event_on(monkeypatch: pytest.MonkeyPatch) -> None:
    import prefect.events

    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(prefect.events, "emit_event", lambda **kw: seen.append(kw))
    resource = {"prefect.resource.id": "stream-ingest.file.1:2", "path": "/rec/a.mp4"}
    prefect_emit(event="stream-ingest.file.closed", resource=resource, payload={"a": 1})
    assert seen == [
        {
            "event": "stream-ingest.file.closed",
            "resource": resource,
            "payload": {"a": 1},
            "related": None,
        }
    ]
