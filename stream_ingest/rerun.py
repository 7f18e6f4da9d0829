"""Rerun streams by creating runs of the stream-ingest deployment: the new run takes
the stream's lease and resumes from its checkpoint."""

from __future__ import annotations

import uuid

from blocks.checkpoints import CheckpointStore
from blocks.records import StreamRecord
from stream_ingest.settings import Settings
from stream_ingest.states import Status


def rerun_streams(
    settings: Settings, store: CheckpointStore, stream_id: str | None, failed: bool
) -> tuple[list[str], int]:
    """Create one run per stream to rerun. Returns (lines to print, exit code)."""
    from prefect.deployments import run_deployment

    if stream_id:
        record = store.get(stream_id)
        if record is None:
            return [f"no stream with id {stream_id}"], 1
        targets = [record]
    else:
        targets = store.list_streams(Status.FAILED)
        if not targets:
            return ["no failed streams"], 0
    lines: list[str] = []
    for rec in targets:
        if rec.status in (Status.COMPLETED, Status.ABORTED):
            lines.append(f"{rec.stream_id}: already {rec.status}; nothing to rerun")
            continue
        run = run_deployment(
            name=settings.deployment,
            parameters=rerun_parameters(rec),
            # A new key per rerun: Prefect returns the old run for a repeated key.
            idempotency_key=f"rerun:{rec.stream_id}:{uuid.uuid4()}",
            tags=[f"stream:{rec.stream_id}", "rerun"],
            timeout=0,
        )
        lines.append(f"{rec.stream_id}: rerun as flow run {run.name} ({run.id})")
    return lines, 0


def rerun_parameters(record: StreamRecord) -> dict[str, str]:
    return {"path": record.original_path, "stream_id": record.stream_id}
