"""What the Prefect UI shows about a stream: the run's tag, a progress artifact, a
summary table at the end, and events with the stream as their resource.

Reporting never fails a stream: every call to the API is best-effort and logged.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.context import FlowRunContext
from prefect.events import emit_event
from prefect.runtime import flow_run

from stream_ingest.progress import progress_due
from stream_ingest.records import StreamRecord

EVENT_PREFIX = "stream-ingest.stream"


def stream_resource(record: StreamRecord, config: str) -> dict[str, str]:
    """The stream as an event resource. `stream-ingest.failures` lets an automation
    rerun a failed stream a bounded number of times, with the same config block
    (automations/)."""
    return {
        "stream-ingest.config": config,
        "prefect.resource.id": f"stream-ingest.stream.{record.stream_id}",
        "prefect.resource.name": record.original_path.rsplit("/", 1)[-1] or record.stream_id,
        "stream-ingest.path": record.original_path,
        "stream-ingest.stream-id": record.stream_id,
        "stream-ingest.failures": str(record.failures),
    }


class Reporter:
    def __init__(self, record: StreamRecord, flow_run_id: str, config: str) -> None:
        self.record = record
        self.config = config
        self.flow_run_id = flow_run_id
        self.started = time.monotonic()
        self._progress_id: UUID | None = None
        self._last_progress: float | None = None
        self._last_uploaded = 0

    def _safely(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            get_run_logger().warning("could not %s: %s", what, exc)
            return None

    def event(self, name: str, **payload: Any) -> None:
        self._safely(
            f"emit {name}",
            emit_event,
            event=f"{EVENT_PREFIX}.{name}",
            resource=stream_resource(self.record, self.config),
            payload={"stream_id": self.record.stream_id, "s3_key": self.record.s3_key, **payload},
        )

    def start(self) -> None:
        """Tag the run with the stream id, announce the stream, open its progress bar."""
        self._safely("tag the flow run", self._tag)
        self.event("started", flow_run_id=self.flow_run_id)
        self._progress_id = self._safely(
            "create the progress artifact",
            create_progress_artifact,
            progress=0.0,
            description=f"Bytes of {self.record.original_path} in S3",
        )
        self._last_progress = time.monotonic()  # the bar starts at 0 %

    def _tag(self) -> None:
        tag = f"stream:{self.record.stream_id}"
        # The sensor's runs are created tagged: the run's own copy says so, no API call.
        if self.flow_run_id and tag not in (flow_run.tags or []):
            add_tag(self.flow_run_id, tag)

    def progress(self, uploaded: int, size: int, force: bool = False) -> None:
        """Update the progress bar when it is due (stream_ingest.progress) or forced."""
        now = time.monotonic()
        due = progress_due(
            now, self._last_progress, uploaded, self._last_uploaded, self.record.part_base_bytes
        )
        if self._progress_id is None or not (force or due):
            return
        self._last_progress, self._last_uploaded = now, uploaded
        percent = 100.0 if size == 0 else min(100.0, 100.0 * uploaded / size)
        self._safely("update progress", update_progress_artifact, self._progress_id, percent)

    def completed(self, size: int, parts: int, reuploaded: int, sha256: str) -> None:
        seconds = max(time.monotonic() - self.started, 1e-6)
        rec = self.record
        self.progress(size, size, force=True)
        row = {
            "object": f"s3://{rec.s3_bucket}/{rec.s3_key}",
            "bytes": size,
            "parts": parts,
            "re-uploaded parts": reuploaded,
            "sha256": sha256,
            "duration (s)": round(seconds, 2),
            "MB/s": round(size / seconds / 1e6, 2),
        }
        self._safely(
            "create the summary artifact",
            create_table_artifact,
            table=[row],
            key=f"stream-{rec.stream_id[:8]}",
            description=f"Summary of stream {rec.stream_id}",
        )
        self.event("completed", bytes=size, parts=parts, reuploaded_parts=reuploaded, sha256=sha256)

    def failed(self, message: str, aborted: bool) -> None:
        self.event("aborted" if aborted else "failed", error=message)


def name_run(wanted: str) -> None:
    """Name this run `wanted` unless it was created so (the sensor and `streams rerun`
    name their runs; one started from the UI is renamed here: one API call)."""
    if not flow_run.id or flow_run.name == wanted:
        return
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            client.set_flow_run_name(UUID(flow_run.id), wanted)
    except Exception as exc:
        get_run_logger().warning("could not name the flow run %r: %s", wanted, exc)
        return
    if (context := FlowRunContext.get()) is not None and context.flow_run is not None:
        context.flow_run.name = wanted  # the run's own copy, for its later log lines


def add_tag(flow_run_id: str, tag: str) -> None:
    """Add `tag` to the run's tags (a read and an update)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(flow_run_id))
        client.update_flow_run(UUID(flow_run_id), tags=sorted({*run.tags, tag}))
