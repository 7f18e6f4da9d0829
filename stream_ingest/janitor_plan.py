"""Pure decisions of the janitor: which uploads to abort, keep or salvage, which
salvages to finish, which streams to fail.

The janitor flow (stream_ingest/flows/janitor.py) gathers the facts (S3's pending uploads, the
uploads registry, the streams, their leases, which runs Prefect reports over) and
acts on what these functions return.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stream_ingest.records import PendingUpload, StreamRecord
from stream_ingest.states import ACTIVE, TERMINAL, Status

# A stream with no lease and no progress for this long has lost its run.
STALE_AFTER_LEASES = 2


@dataclass(frozen=True)
class Action:
    # "abort-upload" | "mark-failed" | "salvage" | "keep-upload", and what a salvage
    # did: "salvaged" (target: the partial key) or "abort-upload"
    kind: str
    stream_id: str
    target: str  # upload id, stream status or object key
    reason: str


def plan_uploads(
    pending: list[PendingUpload],
    registry: dict[str, dict[str, Any]],
    records: dict[str, StreamRecord],
    leased: set[str],
    now: float,
    ttl_seconds: float,
    lost: Mapping[str, str] | None = None,
) -> list[Action]:
    """Pure: what to do with the uploads of ours (in the registry) that made no
    progress for the TTL and that no live run holds. A failed stream's own upload is
    resumable: kept while its file can be read, salvaged once it cannot (`lost`: why,
    by stream id), never aborted for its age. An upload that is not its stream's
    current one (the stream ended, or moved on to another upload) is aborted."""
    lost = lost or {}
    actions = []
    for up in pending:
        mine = registry.get(up.upload_id)
        if mine is None:
            continue
        sid = str(mine.get("stream_id", ""))
        record = records.get(sid)
        owned = (
            record is not None
            and record.s3_upload_id == up.upload_id
            and record.status not in TERMINAL
        )
        # The later of S3's Initiated and our own record of the creation (a server
        # whose clock, or whose emulator: moto says 2010, is off never makes a fresh
        # upload look old) and, for a stream's own upload, of its last progress: a
        # recording longer than the TTL is not old.
        last = max(up.initiated_epoch, float(mine.get("created", 0)))
        if owned and record is not None:
            last = max(last, _epoch(record.last_activity_at_utc))
        if now - last < ttl_seconds or sid in leased:
            continue
        if owned and record is not None and record.salvage_key:
            continue  # its salvage began: plan_unfinished finishes it
        if owned and record is not None:
            if record.status != Status.FAILED:
                continue  # an active stream between runs: plan_streams handles it first
            if sid in lost:
                actions.append(Action("salvage", sid, up.upload_id, lost[sid]))
            else:
                why = "failed stream whose file is still readable: resumable"
                actions.append(Action("keep-upload", sid, up.upload_id, why))
            continue
        if record is None:
            reason = "no stream record"
        else:
            reason = f"stream is {record.status} with upload {record.s3_upload_id[:12] or 'none'}"
        actions.append(Action("abort-upload", sid, up.upload_id, reason))
    return actions


def plan_unfinished(records: Mapping[str, StreamRecord], leased: set[str]) -> list[Action]:
    """Pure: failed streams whose salvage began and was cut short (the record names
    the partial key and still its upload), that no run holds. Nothing of them is
    resumable and their file is not needed: the salvage goes on from what S3 holds
    (the upload, or the prefix it completed at the stream's key), as a rerun would,
    whatever the upload's age or whether S3 still lists it."""
    return [
        Action(
            "salvage", sid, rec.s3_upload_id, f"its salvage into {rec.salvage_key} was cut short"
        )
        for sid, rec in records.items()
        if rec.status == Status.FAILED
        and rec.salvage_key
        and rec.s3_upload_id
        and sid not in leased
    ]


def plan_streams(
    records: dict[str, StreamRecord],
    leased: set[str],
    ended_runs: set[str],
    now: float,
    stale_seconds: float,
) -> list[Action]:
    """Pure: active streams whose run is over (Prefect says so) or that hold no lease
    and made no progress for `stale_seconds`. A `detected` stream only counts once
    its run is over: before that it is waiting for a worker, with no lease yet (its
    run failed before the checkpoint could say so, e.g. Redis was down)."""
    actions = []
    for sid, rec in records.items():
        if rec.status not in ACTIVE:
            continue
        if rec.flow_run_id and rec.flow_run_id in ended_runs:
            actions.append(
                Action(
                    "mark-failed",
                    sid,
                    str(rec.status),
                    f"flow run {rec.flow_run_id} ended without finishing",
                )
            )
        elif (
            rec.status != Status.DETECTED
            and sid not in leased
            and now - _epoch(rec.last_activity_at_utc) > stale_seconds
        ):
            actions.append(Action("mark-failed", sid, str(rec.status), "lease lost, no progress"))
    return actions


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp() if iso else 0.0
