"""Rerun streams by creating runs of the stream-ingest deployment: the new run takes
the stream's lease and resumes from its checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

from stream_ingest.blocks.config import IngestConfig
from stream_ingest.flows.runs import RunRequest, create_stream_run
from stream_ingest.records import StreamRecord
from stream_ingest.states import TERMINAL, Status


@dataclass(frozen=True)
class Rerun:
    stream_id: str
    message: str
    started: bool


def rerun_streams(config: IngestConfig, name: str, stream_id: str | None) -> list[Rerun]:
    """One new run per stream to rerun: `stream_id`, or every failed stream if None."""
    store = config.checkpoints
    targets = [store.streams.require(stream_id)] if stream_id else store.streams.list(Status.FAILED)
    return [_rerun(config, name, rec) for rec in targets]


def _rerun(config: IngestConfig, name: str, rec: StreamRecord) -> Rerun:
    if rec.status in TERMINAL:
        return Rerun(rec.stream_id, f"already {rec.status}; nothing to rerun", False)
    request = RunRequest.rerun(config.deployment, rec.original_path, rec.stream_id, name)
    run = create_stream_run(request)
    return Rerun(rec.stream_id, f"rerun as flow run {run.name} ({run.id})", True)
