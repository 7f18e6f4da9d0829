"""`stream-ingest streams salvage|abort ID`: an operator ends a failed stream.

Salvage keeps what it uploaded as an object of its own, abort discards it (the
operator's word is the only thing that aborts parts that are not provably redundant).
Both look first (ListParts, HEADs: `preview`, what `--dry-run` prints), then act under
the stream's lease (stream_ingest/flows/salvage.py), so that no rerun starts meanwhile.
"""

from __future__ import annotations

import logging
from typing import Literal

from stream_ingest.blocks.config import IngestConfig
from stream_ingest.errors import StreamError
from stream_ingest.flows.salvage import Ended, Plan, end_unheld, plan_abort, plan_end
from stream_ingest.salvage import endable

Action = Literal["salvage", "abort"]
WHY = {"salvage": "salvaged by an operator", "abort": "aborted by an operator"}
log = logging.getLogger("stream_ingest.cli")


def preview(config: IngestConfig, stream_id: str, action: Action) -> Plan:
    """What `action` would do, changing nothing; StreamError if it cannot be done."""
    store = config.checkpoints
    record = store.streams.require(stream_id)
    refusal = endable(record, action)
    if refusal:
        raise StreamError(refusal)
    if store.leases.holder(stream_id):
        raise StreamError(f"stream {stream_id} is held by a run; not touching it")
    if action == "salvage":
        return plan_end(config.bucket, store, record)
    return plan_abort(config.bucket, record)


def end(config: IngestConfig, name: str, stream_id: str, action: Action) -> Ended:
    """Do it (the stream is looked at again under its lease) and announce it."""
    return end_unheld(config, stream_id, action, WHY[action], name, log)
