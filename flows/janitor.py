"""The janitor flow: nothing leaks storage cost, nothing stays "uploading" forever.

1. Aborts multipart uploads that stream-ingest created (recorded in the uploads
   registry the moment they were created) and that no live stream owns, once they are
   older than `upload_ttl_hours`. Uploads that are not in the registry belong to some
   other application and are never touched, even under our prefix.
2. Marks streams whose run ended without finishing (crashed run, lost lease) as
   failed, so `stream-ingest streams rerun --failed` finds them.
3. Drops the index entries of streams whose keys expired (after the uploads: an
   orphaned upload of such a stream is aborted first).
It reports what it did in a table artifact.
"""

from __future__ import annotations

import dataclasses
import time

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from flows.report import janitor_failed
from flows.runs import ended_runs
from flows.runtime import config_of_run
from stream_ingest.janitor_plan import STALE_AFTER_LEASES, Action, plan_streams, plan_uploads
from stream_ingest.retention import sweep_report
from stream_ingest.settings import config_block_name
from stream_ingest.states import Status


@task(name="sweep", task_run_name="sweep", cache_policy=NO_CACHE)
def sweep(config: str | None = None, now: float | None = None) -> list[Action]:
    log = get_run_logger()
    # The warm worker read it beside the run's start (flows/runtime.py).
    cfg = config_of_run(str(flow_run.id or ""), config)
    config_name = config or config_block_name()  # what the flow would use by default
    bucket, store = cfg.bucket, cfg.checkpoints
    now = time.time() if now is None else now
    active = {r.stream_id: r for r in store.active_streams()}
    leased = {sid for sid in active if store.lease_holder(sid)}
    runs = {r.flow_run_id for r in active.values() if r.flow_run_id}
    stale = STALE_AFTER_LEASES * cfg.lease_ttl_seconds
    actions = plan_streams(active, leased, ended_runs(runs), now, stale)
    for act in actions:
        janitor_failed(store, active[act.stream_id], f"janitor: {act.reason}", config_name)
        active[act.stream_id] = dataclasses.replace(active[act.stream_id], status=Status.FAILED)
        log.info("stream %s marked failed: %s", act.stream_id, act.reason)
    registry = store.uploads()
    owners = {str(u.get("stream_id", "")) for u in registry.values()}
    records = {r.stream_id: r for r in store.streams(owners - active.keys())} | active
    # Uploads are listed under the prefix when every key starts with it.
    prefix = cfg.s3_prefix if cfg.s3_key_template.startswith("{prefix}/") else ""
    pending = bucket.list_multipart_uploads(prefix)
    ttl = cfg.upload_ttl_hours * 3600
    uploads = plan_uploads(pending, registry, records, leased, now, ttl)
    keys = {p.upload_id: p.key for p in pending}
    for act in uploads:
        bucket.abort_multipart_upload(keys[act.target], act.target)
        store.forget_upload(act.target)
        log.info("aborted upload %s of stream %s: %s", act.target[:12], act.stream_id, act.reason)
    return actions + uploads + sweep_report(store.sweep_indexes(now))


@flow(name="janitor", flow_run_name="janitor", log_prints=False)
def janitor(config: str | None = None) -> list[dict[str, str]]:
    """Abort orphaned uploads of ours and fail streams whose run is gone.

    Args:
        config: the IngestConfig block (default: STREAM_INGEST_CONFIG_BLOCK, else
            "stream-ingest").
    """
    actions = sweep(config)
    rows = "\n".join(
        f"| {a.kind} | {a.stream_id} | {a.target[:16]} | {a.reason} |" for a in actions
    )
    create_markdown_artifact(
        markdown="| action | stream | target | reason |\n|---|---|---|---|\n"
        + (rows or "| nothing to do | | | |"),
        key="stream-ingest-janitor",
        description="What the janitor did",
    )
    return [dataclasses.asdict(a) for a in actions]
