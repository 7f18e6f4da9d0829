"""The alerts: one Prefect automation per condition an operator is told about, each
sending a notification through the block the config names (`alert_block`).

- failed: a stream's run failed (resumable: its upload is kept for a rerun);
- stuck: a stream started, or reported progress, and then nothing for
  `stuck_after_seconds`: no progress event and no end (its run hangs, or its host or
  worker is gone);
- salvaged: a stream's source went away and its uploaded parts were kept as an object;
- lagging: a stream has stayed behind its file longer than its grace period.

Each reacts to the events the flows emit with the stream as their resource
(stream_ingest/flows/report.py), only those of one config block
(`stream-ingest.config`), so that sites sharing a Prefect server alert apart.

Pure: the builders return each automation as the body Prefect's API takes
(`POST /automations/`); `stream-ingest automations apply` (stream_ingest/cli/automations.py)
creates or updates them by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STREAM_EVENT = "stream-ingest.stream"  # the flows' event prefix (flows/report.py)
STREAM_RESOURCE = "stream-ingest.stream.*"
# Every way a run of a stream ends: the last event a stuck stream's alert waits for.
ENDS = ("completed", "failed", "cancelled", "rescheduled", "aborted", "salvaged", "skipped")
# The event a running stream sends periodically while it uploads.
PROGRESS = "progress"
CONDITIONS = ("failed", "stuck", "salvaged", "lagging")
# Prefect refuses a proactive trigger whose window is shorter.
MIN_STUCK_SECONDS = 10.0

# Jinja, rendered by Prefect's server with the event that fired the automation (for
# `stuck`: the last start or progress event of the stream).
STREAM_ID = "{{ event.resource['stream-ingest.stream-id'] }}"
PATH = "{{ event.resource['stream-ingest.path'] }}"
CONFIG = "{{ event.resource['stream-ingest.config'] }}"


@dataclass(frozen=True)
class BlockRef:
    """A notification block as `alert_block` names it: `slug/name`, or the name alone."""

    name: str
    slug: str | None = None

    def __str__(self) -> str:
        return f"{self.slug}/{self.name}" if self.slug else self.name


def parse_block_ref(text: str) -> BlockRef:
    """`custom-webhook/studio-alerts` -> slug and name; `studio-alerts` -> the name alone.

    Raises:
        ValueError: empty, or more than one `/`.
    """
    text = text.strip()
    if not text:
        raise ValueError("alert_block is empty: name a notification block to send alerts to")
    slug, sep, name = text.rpartition("/")
    if sep and (not slug or not name or "/" in slug):
        raise ValueError(f"alert_block {text!r}: give TYPE-SLUG/NAME or the block's NAME")
    return BlockRef(name=name, slug=slug or None)


def progress_every(stuck_after_seconds: float) -> float:
    """How often a running stream sends its progress event: three in each stuck
    window, so one lost or late event is no alert, and at least once a minute."""
    return min(60.0, stuck_after_seconds / 3)


def automation_name(config: str, condition: str) -> str:
    """The name `apply` finds an alert by: one per condition and config block."""
    return f"stream-ingest alert: {condition} ({config})"


def alert_automations(
    config: str, block_document_id: str, stuck_after_seconds: float
) -> list[dict[str, Any]]:
    """The four alerts of config block `config`, in CONDITIONS order, each notifying
    through the block document `block_document_id`."""
    return [
        failed_alert(config, block_document_id),
        stuck_alert(config, block_document_id, stuck_after_seconds),
        salvaged_alert(config, block_document_id),
        lagging_alert(config, block_document_id),
    ]


def failed_alert(config: str, block_document_id: str) -> dict[str, Any]:
    return _on_event(
        config,
        block_document_id,
        "failed",
        "A stream's run failed; its upload is kept and a rerun resumes it.",
        f"Stream {STREAM_ID} ({PATH}, config {CONFIG}) failed: {{{{ event.payload.error }}}}\n"
        "Failures in a row: {{ event.resource['stream-ingest.failures'] }}. "
        f"A rerun resumes from its checkpoint: stream-ingest streams rerun {STREAM_ID}",
    )


def stuck_alert(config: str, block_document_id: str, stuck_after_seconds: float) -> dict[str, Any]:
    """Proactive: after a stream's start or progress event, expect another progress
    event or an end within `stuck_after_seconds`; fire if none came. Each progress
    event opens the next window (Prefect's pattern for heartbeats: an event that is
    both `after` and `expect`)."""
    if stuck_after_seconds < MIN_STUCK_SECONDS:
        raise ValueError(
            f"stuck_after_seconds must be at least {MIN_STUCK_SECONDS:g} "
            "(Prefect's shortest proactive window)"
        )
    seconds = f"{stuck_after_seconds:g}"
    trigger = {
        "type": "event",
        "posture": "Proactive",
        "after": [f"{STREAM_EVENT}.started", f"{STREAM_EVENT}.{PROGRESS}"],
        "expect": [f"{STREAM_EVENT}.{PROGRESS}", *(f"{STREAM_EVENT}.{end}" for end in ENDS)],
        "match": _match(config),
        "for_each": ["prefect.resource.id"],
        "threshold": 1,
        "within": stuck_after_seconds,
    }
    return _automation(
        config,
        "stuck",
        f"A running stream sent no progress event and did not end for {seconds} s.",
        trigger,
        _notify(
            block_document_id,
            f"stream-ingest: stream {STREAM_ID} stuck",
            f"Stream {STREAM_ID} ({PATH}, config {CONFIG}) is stuck: no progress for "
            f"{seconds} s since its last {{{{ event.event }}}} event at "
            "{{ event.occurred }}. Its run may hang, or its worker or host be gone.",
        ),
    )


def salvaged_alert(config: str, block_document_id: str) -> dict[str, Any]:
    return _on_event(
        config,
        block_document_id,
        "salvaged",
        "A stream's source went away; what was uploaded of it was kept as an object.",
        f"Stream {STREAM_ID} ({PATH}, config {CONFIG}) was salvaged: "
        "{{ event.payload.error }}\nIts first {{ event.payload.bytes }} bytes are "
        "in {{ event.payload.salvage_key }}.",
    )


def lagging_alert(config: str, block_document_id: str) -> dict[str, Any]:
    return _on_event(
        config,
        block_document_id,
        "lagging",
        "A stream has been behind its file for longer than its grace period.",
        f"Stream {STREAM_ID} ({PATH}, config {CONFIG}) is lagging: "
        "{{ event.payload.lag_bytes }} bytes written to the file are not in S3 yet, "
        "the oldest for {{ event.payload.lag_seconds }} s.",
    )


def _on_event(
    config: str, block_document_id: str, condition: str, description: str, body: str
) -> dict[str, Any]:
    """An alert that notifies once per `stream-ingest.stream.<condition>` event."""
    return _automation(
        config,
        condition,
        description,
        _reactive(config, condition),
        _notify(block_document_id, f"stream-ingest: stream {STREAM_ID} {condition}", body),
    )


def _automation(
    config: str,
    condition: str,
    description: str,
    trigger: dict[str, Any],
    action: dict[str, Any],
) -> dict[str, Any]:
    return {
        "name": automation_name(config, condition),
        "description": f"{description} Made by `stream-ingest automations apply`.",
        "enabled": True,
        "trigger": trigger,
        "actions": [action],
    }


def _match(config: str) -> dict[str, str]:
    return {"prefect.resource.id": STREAM_RESOURCE, "stream-ingest.config": config}


def _reactive(config: str, event: str) -> dict[str, Any]:
    """Fire once per event `event` of a stream of `config`."""
    return {
        "type": "event",
        "posture": "Reactive",
        "expect": [f"{STREAM_EVENT}.{event}"],
        "match": _match(config),
        "for_each": ["prefect.resource.id"],
        "threshold": 1,
        "within": 0,
    }


def _notify(block_document_id: str, subject: str, body: str) -> dict[str, Any]:
    return {
        "type": "send-notification",
        "block_document_id": block_document_id,
        "subject": subject,
        "body": body,
    }
