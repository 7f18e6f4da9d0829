"""After a run lets go of its stream: the run another change started while this one
held the lease (it found the lease held and asked this one to look again).

Without this, a change made while the holder was completing (a tool patching the
file a moment after the recorder closed it) would wait for the next event, which may
never come."""

from __future__ import annotations

from prefect import get_run_logger

from stream_ingest.blocks.config import IngestConfig
from stream_ingest.errors import StreamError
from stream_ingest.flows.opening import change_since
from stream_ingest.flows.runs import RunRequest, create_stream_run
from stream_ingest.flows.source import snapshot
from stream_ingest.takes import Change


def look_again(cfg: IngestConfig, config: str, stream_id: str, unasked: bool = False) -> str | None:
    """If a run asked (stream_ingest/blocks/store_leases.py ask_again), or `unasked`,
    start the run for a change of the file since its completion; returns what was
    done, None if nobody asked or nothing changed. `unasked`: the run confirmed an
    earlier run's completion without looking at the file, which may have changed
    while the stream waited, failed, for its rerun (a new take, by `ffmpeg -y`)."""
    store, log = cfg.checkpoints, get_run_logger()
    if not store.leases.take_ask_again(stream_id) and not unasked:
        return None
    record = store.streams.require(stream_id)
    if change_since(store, record) == Change.NONE:
        return None
    try:
        snap = snapshot(record.original_path, record.identity or None)
        state = f"{snap.size}-{snap.mtime_ns}"
        request = RunRequest.revision(
            cfg.deployment, record.original_path, stream_id, config, record.revision + 1, state
        )
        run = create_stream_run(request)
        message = f"the file changed since: flow run {run.name}"
    except StreamError as exc:
        message = f"the file changed since, and now {exc}"
    except Exception as exc:  # no deployment here (a run outside one), Prefect down
        message = f"the file changed since (left to the sensor: {exc})"
    log.info("stream %s: %s", stream_id, message)
    return message
