"""The events of a batch run (stream_ingest/flows/batch.py): pure, no I/O.

The files of a batch are announced together, one event per batch and kind in place of
one per file: the Prefect server spends about 10 ms of CPU on an event, as much as our
side spends on a small file's upload. The event's resource is the batch (its flow
run); each file is a related resource and a row of the payload's `files`. Prefect
refuses an event with over 100 related resources (its default), so a larger batch is
announced in several events of at most PER_EVENT files.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import PurePath
from typing import Any

BATCH_PREFIX = "stream-ingest.batch"
PER_EVENT = 50


def batch_events(
    kind: str,
    flow_run_id: str,
    files: Sequence[dict[str, Any]],
    related: Sequence[dict[str, str]],
    labels: dict[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """`emit_event` arguments for `stream-ingest.batch.<kind>`: `files[i]` (its
    payload row, with a `path`) goes with `related[i]` (its resource, with a role)."""
    for at in range(0, len(files), PER_EVENT):
        rows, resources = files[at : at + PER_EVENT], related[at : at + PER_EVENT]
        first = PurePath(str(rows[0].get("path", ""))).name or "?"
        resource = {
            "prefect.resource.id": f"{BATCH_PREFIX}.{flow_run_id}",
            "prefect.resource.name": f"{first} and {len(rows) - 1} more",
            **(labels or {}),
        }
        run = {"prefect.resource.id": f"prefect.flow-run.{flow_run_id}"}
        yield {
            "event": f"{BATCH_PREFIX}.{kind}",
            "resource": resource,
            "related": [{**run, "prefect.resource.role": "flow-run"}, *resources],
            "payload": {"flow_run_id": flow_run_id, "files": list(rows)},
        }
