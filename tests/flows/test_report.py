"""How a stream's run gets its name (created so by the sensor, or named by the flow
as it starts) and its progress bar. Prefect's client is replaced: the calls made are what is checked."""

from __future__ import annotations

import logging
import uuid
from types import SimpleNamespace
from typing import Any

import prefect.client.orchestration
import pytest

from stream_ingest.flows import report
from stream_ingest.flows.ingest import stream_ingest
from stream_ingest.records import StreamRecord
from tests.flows.helpers import MIB

RUN_ID = str(uuid.uuid4())


class Client:
    def __init__(self, fail: bool = False) -> None:
        self.renamed: list[tuple[uuid.UUID, str]] = []
        self.fail = fail

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def set_flow_run_name(self, flow_run_id: uuid.UUID, name: str) -> None:
        if self.fail:
            raise ConnectionError("server down")
        self.renamed.append((flow_run_id, name))


@pytest.fixture
def run_named(monkeypatch: pytest.MonkeyPatch):
    """The current run (prefect.runtime) as `name`, and the client the flow gets."""

    def install(name: str, client: Client) -> Client:
        monkeypatch.setattr(report, "flow_run", SimpleNamespace(id=RUN_ID, name=name))
        monkeypatch.setattr(prefect.client.orchestration, "get_client", lambda sync_client: client)
        monkeypatch.setattr(report, "get_run_logger", lambda: logging.getLogger("report-test"))
        return client

    return install


def test_prefect_s_engine_does_not_rename_the_runs():
    # A flow_run_name would make the engine write the name at every run's start.
    assert stream_ingest.flow_run_name is None


def test_a_run_created_with_its_name_makes_no_call(run_named):
    client = run_named("ingest-a.mp4", Client())
    report.name_run("ingest-a.mp4")
    assert client.renamed == []


def test_a_run_named_otherwise_is_renamed(run_named):
    client = run_named("crafty-wolf", Client())
    report.name_run("ingest-a.mp4")
    assert client.renamed == [(uuid.UUID(RUN_ID), "ingest-a.mp4")]


def test_a_failed_rename_is_logged_not_raised(run_named, caplog):
    run_named("crafty-wolf", Client(fail=True))
    with caplog.at_level(logging.WARNING, logger="report-test"):
        report.name_run("ingest-a.mp4")
    assert "could not name the flow run 'ingest-a.mp4': server down" in caplog.text


def test_the_progress_bar_is_created_with_the_first_progress_not_before_the_first_byte(
    monkeypatch: pytest.MonkeyPatch, events
) -> None:
    """Opening a stream waits for no artifact: the bar is created once, where the
    stream stands at its first progress (parts on their way), then updated when due;
    a bar that could not be created is not asked for again on every poll."""
    created: list[dict[str, Any]] = []
    updated: list[tuple[Any, ...]] = []
    monkeypatch.setattr(
        report, "create_progress_artifact", lambda **kw: created.append(kw) or uuid.uuid4()
    )
    monkeypatch.setattr(report, "update_progress_artifact", lambda *a: updated.append(a))
    reporter = report.Reporter(StreamRecord("s-2", original_path="/rec/b.mp4"), "", "cfg")
    reporter.start()
    assert created == []
    reporter.progress(3 * MIB, 12 * MIB)
    reporter.progress(4 * MIB, 12 * MIB)  # not due: no call
    assert [c["progress"] for c in created] == [25.0] and updated == []
    reporter.progress(12 * MIB, 12 * MIB, force=True)
    assert [u[1] for u in updated] == [100.0]

    monkeypatch.setattr(report, "get_run_logger", lambda: logging.getLogger("lag-test"))

    def refused(**kw: Any) -> None:
        created.append(kw)
        raise ConnectionError("server down")

    monkeypatch.setattr(report, "create_progress_artifact", refused)
    failing = report.Reporter(StreamRecord("s-3", original_path="/rec/c.mp4"), "", "cfg")
    created.clear()
    for _ in range(3):
        failing.progress(MIB, 12 * MIB, force=True)
    assert len(created) == 1
