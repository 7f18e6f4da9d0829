"""The example automation (automations/rerun-failed-stream.yaml) as Prefect's server
matches it, and a stand-in for `emit_event` that keeps the events it would fire on."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import yaml
from prefect.context import FlowRunContext, TaskRunContext
from prefect.server.events.schemas.automations import EventTrigger
from prefect.server.events.schemas.events import ReceivedEvent
from prefect.types._datetime import now

ROOT = Path(__file__).resolve().parents[2]
AUTOMATION = yaml.safe_load((ROOT / "automations" / "rerun-failed-stream.yaml").read_text())
ENDS = ("failed", "cancelled", "rescheduled", "aborted", "salvaged", "completed", "skipped")


class Events:
    """Stands in for `emit_event` in stream_ingest/flows/report.py: what would have been sent, and
    whether Prefect saw a run there (it would relate that run and its deployment)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> None:
        in_a_run = FlowRunContext.get() is not None or TaskRunContext.get() is not None
        self.sent.append({**kwargs, "in_a_run": in_a_run})

    def last_end(self) -> dict[str, Any]:
        return [e for e in self.sent if _name(e) in ENDS][-1]

    def ends(self) -> list[tuple[str, str]]:
        """(event, failures label) of every end of a stream, in order."""
        return [
            (_name(e), e["resource"]["stream-ingest.failures"])
            for e in self.sent
            if _name(e) in ENDS
        ]


def _name(event: dict[str, Any]) -> str:
    return event["event"].rsplit(".", 1)[-1]


def reruns(sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events among `sent` that the example automation fires on."""
    trigger = EventTrigger(**AUTOMATION["trigger"])
    return [
        e
        for e in sent
        if trigger.covers(
            ReceivedEvent(
                event=e["event"],
                resource=e["resource"],
                related=e.get("related") or [],
                occurred=now("UTC"),
                id=uuid.uuid4(),
            )
        )
    ]


def rerun_parameters(event: dict[str, Any]) -> dict[str, str]:
    """The parameters of the automation's run-deployment action for `event`."""
    return {
        # "{{ event.resource['stream-ingest.path'] }}": the label between the quotes
        name: event["resource"][template.split("'")[1]]
        for name, template in AUTOMATION["actions"][0]["parameters"].items()
    }
