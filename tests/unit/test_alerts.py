"""The alerts' builders (stream_ingest/alerts.py): bodies Prefect's API accepts, whose
triggers match the events the flows send, for their own config block only."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from prefect.events.schemas.automations import AutomationCore
from prefect.server.events.schemas.automations import EventTrigger
from prefect.server.events.schemas.events import ReceivedEvent
from prefect.types._datetime import now

from stream_ingest import alerts
from stream_ingest.alerts import BlockRef, alert_automations, parse_block_ref
from stream_ingest.flows import report, salvage
from stream_ingest.records import StreamRecord
from tests.flows.automation import ENDS as FLOW_ENDS

BLOCK = str(uuid.uuid4())


def _event(name: str, config: str = "studio", **payload: Any) -> ReceivedEvent:
    """An event as the flows send it (stream_ingest/flows/report.py's resource)."""
    record = StreamRecord("s-1", original_path="/rec/cam1.mp4", identity="1:2:3")
    return ReceivedEvent(
        event=f"{report.EVENT_PREFIX}.{name}",
        resource=report.stream_resource(record, config),
        payload=payload,
        occurred=now("UTC"),
        id=uuid.uuid4(),
    )


def _by_condition(config: str = "studio", stuck: float = 120) -> dict[str, dict[str, Any]]:
    bodies = alert_automations(config, BLOCK, stuck)
    return dict(zip(alerts.CONDITIONS, bodies, strict=True))


def _trigger(body: dict[str, Any]) -> EventTrigger:
    return EventTrigger(**body["trigger"])


def test_every_alert_is_an_automation_prefect_accepts_with_its_own_name() -> None:
    bodies = alert_automations("studio", BLOCK, 120)

    parsed = [AutomationCore.model_validate(b) for b in bodies]
    assert [a.name for a in parsed] == [
        f"stream-ingest alert: {c} (studio)" for c in ("failed", "stuck", "salvaged", "lagging")
    ]
    for automation in parsed:
        (action,) = automation.actions
        assert action.type == "send-notification"
        assert str(action.block_document_id) == BLOCK


@pytest.mark.parametrize("condition", ["failed", "salvaged", "lagging"])
def test_a_reactive_alert_fires_on_its_event_of_its_config_only(condition: str) -> None:
    trigger = _trigger(_by_condition()[condition])

    assert trigger.posture == "Reactive"
    assert trigger.covers(_event(condition))
    assert not trigger.covers(_event(condition, config="other-site"))
    assert not trigger.covers(_event("completed"))
    assert trigger.for_each == {"prefect.resource.id"}  # each stream on its own


def test_the_stuck_alert_waits_after_a_start_or_progress_for_progress_or_an_end() -> None:
    trigger = _trigger(_by_condition(stuck=90)["stuck"])

    assert trigger.posture == "Proactive"
    assert trigger.within.total_seconds() == 90
    assert trigger.for_each == {"prefect.resource.id"}
    started, progress = _event("started"), _event("progress")
    assert trigger.covers(started) and trigger.starts_after(started.event)
    assert not trigger.expects(started.event)  # a start alone never ends a window
    assert trigger.starts_after(progress.event) and trigger.expects(progress.event)
    for end in FLOW_ENDS:
        assert trigger.expects(_event(end).event), end
        assert not trigger.starts_after(_event(end).event), end
    assert not trigger.covers(_event("started", config="other-site"))


def test_the_stuck_alert_knows_every_end_a_stream_announces() -> None:
    """An end missing here would leave a finished stream to be reported stuck."""
    announced = {
        "completed",
        "skipped",
        report.FAILED,
        report.CANCELLED,
        report.RESCHEDULED,
        report.ABORTED,
        salvage.SALVAGED,
    }
    assert set(alerts.ENDS) == announced == set(FLOW_ENDS)
    assert alerts.STREAM_EVENT == report.EVENT_PREFIX


def test_the_notification_names_the_stream_and_what_happened() -> None:
    failed = _by_condition()["failed"]["actions"][0]
    assert "{{ event.resource['stream-ingest.stream-id'] }}" in failed["subject"]
    assert "failed" in failed["subject"]
    assert "{{ event.payload.error }}" in failed["body"]
    lagging = _by_condition()["lagging"]["actions"][0]["body"]
    assert "{{ event.payload.lag_bytes }}" in lagging
    assert "{{ event.payload.lag_seconds }}" in lagging


def test_a_stuck_window_shorter_than_prefect_allows_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 10"):
        alert_automations("studio", BLOCK, 9)


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("custom-webhook/studio-alerts", BlockRef("studio-alerts", "custom-webhook")),
        (" studio-alerts ", BlockRef("studio-alerts")),
    ],
)
def test_the_block_is_named_by_slug_and_name_or_by_name(text: str, ref: BlockRef) -> None:
    assert parse_block_ref(text) == ref


@pytest.mark.parametrize("text", ["", "  ", "/x", "x/", "a/b/c"])
def test_a_block_name_that_names_nothing_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="alert_block"):
        parse_block_ref(text)


def test_a_running_stream_reports_three_times_per_stuck_window_and_once_a_minute() -> None:
    from stream_ingest.alerts import progress_every

    assert progress_every(10) == pytest.approx(10 / 3)
    assert progress_every(120) == 40
    assert progress_every(300) == 60
