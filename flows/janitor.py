"""The janitor flow: nothing leaks storage cost, nothing stays "uploading" forever.

1. Aborts multipart uploads that stream-ingest created (recorded in the uploads
   registry the moment they were created) and that no live stream owns, once they are
   older than `upload_ttl_hours`. Uploads that are not in the registry belong to some
   other application and are never touched, even under our prefix.
2. Marks streams whose run ended without finishing (crashed run, lost lease) as
   failed, so `stream-ingest streams rerun --failed` finds them.
It reports what it did in a table artifact.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from blocks.bucket import PendingUpload
from blocks.records import StreamRecord
from flows.runtime import load_blocks
from stream_ingest.settings import load_settings
from stream_ingest.states import ACTIVE, Status

# A stream with no lease and no progress for this long has lost its run.
STALE_AFTER_LEASES = 2


@dataclass(frozen=True)
class Action:
    kind: str  # "abort-upload" | "mark-failed"
    stream_id: str
    target: str  # upload id or stream status
    reason: str


def plan_uploads(
    pending: list[PendingUpload],
    registry: dict[str, dict[str, Any]],
    records: dict[str, StreamRecord],
    leased: set[str],
    now: float,
    ttl_seconds: float,
) -> list[Action]:
    """Pure: which uploads to abort. Ours (in the registry), older than the TTL, and
    not the current upload of a stream that is live (leased) or resumable."""
    actions = []
    for up in pending:
        mine = registry.get(up.upload_id)
        if mine is None or now - up.initiated_epoch < ttl_seconds:
            continue
        sid = str(mine.get("stream_id", ""))
        record = records.get(sid)
        if sid in leased:
            continue
        owned = (
            record is not None
            and record.s3_upload_id == up.upload_id
            and record.status not in (Status.COMPLETED, Status.ABORTED)
        )
        if owned and record.status != Status.FAILED:
            continue  # an active stream between runs: the next rule handles it first
        if owned:
            reason = "failed stream past the upload TTL"
        elif record is None:
            reason = "no stream record"
        else:
            reason = f"stream is {record.status} with upload {record.s3_upload_id[:12] or 'none'}"
        actions.append(Action("abort-upload", sid, up.upload_id, reason))
    return actions


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
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp() if iso else 0.0


def _ended_runs(run_ids: set[str]) -> set[str]:
    """The runs among `run_ids` that Prefect reports in a final state."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    ids = [UUID(r) for r in run_ids if r]
    if not ids:
        return set()
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
    return {str(r.id) for r in runs if r.state is not None and r.state.is_final()}


@task(name="sweep", task_run_name="sweep", cache_policy=NO_CACHE)
def sweep(now: float | None = None) -> list[Action]:
    log = get_run_logger()
    settings = load_settings()
    bucket, store = load_blocks(settings)
    now = time.time() if now is None else now
    records = {r.stream_id: r for r in store.list_streams()}
    leased = {sid for sid in records if store.lease_holder(sid)}
    active_runs = {r.flow_run_id for r in records.values() if r.status in ACTIVE}
    stale = STALE_AFTER_LEASES * settings.lease_ttl_seconds
    actions = plan_streams(records, leased, _ended_runs(active_runs), now, stale)
    for act in actions:
        store.set_status(act.stream_id, Status.FAILED, error=f"janitor: {act.reason}")
        records[act.stream_id].status = Status.FAILED
        log.info("stream %s marked failed: %s", act.stream_id, act.reason)
    pending = bucket.list_multipart_uploads(bucket.bucket_folder.strip("/"))
    ttl = settings.upload_ttl_hours * 3600
    uploads = plan_uploads(pending, store.uploads(), records, leased, now, ttl)
    keys = {p.upload_id: p.key for p in pending}
    for act in uploads:
        bucket.abort_multipart_upload(keys[act.target], act.target)
        store.forget_upload(act.target)
        log.info("aborted upload %s of stream %s: %s", act.target[:12], act.stream_id, act.reason)
    return actions + uploads


@flow(name="janitor", flow_run_name="janitor", log_prints=False)
def janitor() -> list[dict[str, str]]:
    """Abort orphaned uploads of ours and fail streams whose run is gone."""
    actions = sweep()
    rows = "\n".join(
        f"| {a.kind} | {a.stream_id} | {a.target[:16]} | {a.reason} |" for a in actions
    )
    create_markdown_artifact(
        markdown="| action | stream | target | reason |\n|---|---|---|---|\n"
        + (rows or "| nothing to do | | | |"),
        key="stream-ingest-janitor",
        description="What the janitor did",
    )
    return [a.__dict__ for a in actions]
