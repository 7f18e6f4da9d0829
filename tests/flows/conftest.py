"""Fixtures of the flow tests."""

from __future__ import annotations

import pytest

from stream_ingest.flows import batch, report
from tests.flows.automation import Events


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Events:
    """The events the flows would emit, kept instead of sent."""
    sent = Events()
    monkeypatch.setattr(report, "emit_event", sent)
    monkeypatch.setattr(batch, "emit_event", sent)
    return sent
