"""What the sensor tells Prefect's event feed about files: `stream-ingest.file.*` for
one file (detected, closed, deleted, ...) and `stream-ingest.batch.detected` for the
finished files that share a run (stream_ingest/batch_events.py). The UI is a
convenience: an event that cannot be sent is logged and never stops the sensor."""

from __future__ import annotations

import logging
from pathlib import PurePath
from typing import Any

from stream_ingest.batch_events import batch_events
from stream_ingest.keys import printable
from stream_ingest.sensors.batching import Waiting
from stream_ingest.sensors.prefect_calls import EmitFn

log = logging.getLogger("stream_ingest.sensor")

EVENT_PREFIX = "stream-ingest.file"


class Announcer:
    """The sensor's events, sent with `emit` (Prefect's emit_event, or a test's)."""

    def __init__(self, emit: EmitFn) -> None:
        self.emit = emit

    def batch(self, batch: list[Waiting], run_id: str) -> None:
        """`stream-ingest.batch.detected` in place of a `detected` (and `closed`) per
        file (stream_ingest/batch_events.py)."""
        files = [
            {
                "path": printable(w.path),
                "identity": w.identity,
                "stream_id": w.stream_id,
                "cause": w.cause,
                "closed": w.close_heard,
            }
            for w in batch
        ]
        related = [
            {
                "prefect.resource.id": f"{EVENT_PREFIX}.{f['identity']}",
                "prefect.resource.role": "file",
                "prefect.resource.name": PurePath(f["path"]).name,
            }
            for f in files
        ]
        for event in batch_events("detected", run_id, files, related):
            try:
                self.emit(**event)
            except Exception as exc:
                log.warning("could not emit %s (%s: %s)", event["event"], type(exc).__name__, exc)

    def file(
        self,
        what: str,
        path: str,
        identity: str | None,
        payload: dict[str, Any],
        flow_run_id: str | None = None,
    ) -> None:
        """Emit `stream-ingest.file.{what}`; the UI is a convenience, so a failure
        is logged and never stops the sensor."""
        shown = printable(path)  # events are JSON: no undecodable bytes
        resource = {
            "prefect.resource.id": f"{EVENT_PREFIX}.{identity or 'unknown'}",
            "prefect.resource.name": PurePath(shown).name,
            "path": shown,
        }
        related = (
            [
                {
                    "prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
                    "prefect.resource.role": "flow-run",
                }
            ]
            if flow_run_id
            else None
        )
        body = {"path": shown, "identity": identity, **payload}
        try:
            self.emit(
                event=f"{EVENT_PREFIX}.{what}", resource=resource, payload=body, related=related
            )
        except Exception as exc:
            log.warning(
                "could not emit %s.%s for %s (%s: %s)",
                EVENT_PREFIX,
                what,
                path,
                type(exc).__name__,
                exc,
            )
