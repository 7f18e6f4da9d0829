"""The janitor flow: nothing leaks storage cost, nothing stays "uploading" forever.

1. Looks at the multipart uploads that stream-ingest created (recorded in the uploads
   registry the moment they were created) that no live run holds and that made no
   progress for `upload_ttl_hours`. A failed stream's own upload is resumable and
   kept while its file can be read; once the file cannot be read (gone, replaced,
   unreadable), its parts are salvaged into `<stem>.partial<ext>` (stream_ingest/flows/salvage.py).
   An upload that is not its stream's current one is aborted. Uploads that are not in
   the registry belong to some other application and are never touched, even under
   our prefix. A failed stream whose salvage was cut short (its run killed part-way)
   has it finished at once, from what S3 holds, as a rerun would.
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

from stream_ingest.blocks.config import IngestConfig
from stream_ingest.errors import StreamError
from stream_ingest.flows.creation import adopt_unregistered
from stream_ingest.flows.report import janitor_failed
from stream_ingest.flows.runs import ended_runs
from stream_ingest.flows.runtime import config_of_run
from stream_ingest.flows.salvage import SALVAGED, end_unheld, source_lost
from stream_ingest.janitor_plan import (
    STALE_AFTER_LEASES,
    Action,
    plan_streams,
    plan_unfinished,
    plan_uploads,
)
from stream_ingest.retention import sweep_report
from stream_ingest.settings import config_block_name
from stream_ingest.states import Status


@task(name="sweep", task_run_name="sweep", cache_policy=NO_CACHE)
def sweep(config: str | None = None, now: float | None = None) -> list[Action]:
    log = get_run_logger()
    # The warm worker read it beside the run's start (stream_ingest/flows/runtime.py).
    cfg = config_of_run(str(flow_run.id or ""), config)
    config_name = config or config_block_name()  # what the flow would use by default
    bucket, store = cfg.bucket, cfg.checkpoints
    now = time.time() if now is None else now
    active = {r.stream_id: r for r in store.streams.active()}
    leased = {sid for sid in active if store.leases.holder(sid)}
    runs = {r.flow_run_id for r in active.values() if r.flow_run_id}
    stale = STALE_AFTER_LEASES * cfg.lease_ttl_seconds
    actions = plan_streams(active, leased, ended_runs(runs), now, stale)
    for act in actions:
        janitor_failed(store, active[act.stream_id], f"janitor: {act.reason}", config_name)
        active[act.stream_id] = dataclasses.replace(active[act.stream_id], status=Status.FAILED)
        log.info("stream %s marked failed: %s", act.stream_id, act.reason)
    ttl = cfg.upload_ttl_hours * 3600
    for sid, key, at in store.parts.creations():
        if now - at >= ttl:  # its run died between S3's creation and the registry
            adopted = adopt_unregistered(bucket, store, sid, key, at)
            store.parts.end_creation(sid, key)
            if adopted:
                log.info("stream %s: found %d unregistered upload(s) at %s", sid, len(adopted), key)
    registry = store.parts.uploads()
    owners = {str(u.get("stream_id", "")) for u in registry.values()}
    records = {r.stream_id: r for r in store.streams.many(owners - active.keys())} | active
    # A salvage names its stream in the registry until it ends: a cut-short one is found
    # here even once S3 no longer lists its upload (it completed the prefix).
    unfinished = plan_unfinished(records, leased)
    done = [_salvage(cfg, act, config_name) for act in unfinished]
    # Uploads are listed under the prefix when every key starts with it.
    prefix = cfg.s3_prefix if cfg.s3_key_template.startswith("{prefix}/") else ""
    pending = bucket.list_multipart_uploads(prefix)
    ids = {p.upload_id for p in pending}
    lost = {
        sid: why
        for sid, rec in records.items()
        if rec.status == Status.FAILED
        and rec.s3_upload_id in ids
        and (why := source_lost(rec)) is not None
    }
    uploads = plan_uploads(pending, registry, records, leased, now, ttl, lost)
    keys = {p.upload_id: p.key for p in pending}
    for act in uploads:
        if act.kind == "salvage":
            done.append(_salvage(cfg, act, config_name))
        elif act.kind == "abort-upload":
            bucket.abort_multipart_upload(keys[act.target], act.target)
            store.parts.forget_upload(act.target)
            log.info(
                "aborted upload %s of stream %s: %s", act.target[:12], act.stream_id, act.reason
            )
            done.append(act)
        else:
            log.info("kept upload %s of stream %s: %s", act.target[:12], act.stream_id, act.reason)
            done.append(act)
    return actions + done + sweep_report(store.retention.sweep(now))


def _salvage(cfg: IngestConfig, act: Action, config_name: str) -> Action:
    """Salvage a failed stream whose file is gone, or finish its cut-short salvage (or
    abort an upload that holds nothing to keep); where that cannot be done now, its
    upload is kept."""
    log = get_run_logger()
    try:
        ended = end_unheld(
            cfg, act.stream_id, "salvage", f"janitor: {act.reason}", config_name, log
        )
    except StreamError as exc:
        log.warning("kept upload %s of stream %s: %s", act.target[:12], act.stream_id, exc)
        return Action("keep-upload", act.stream_id, act.target, str(exc))
    if ended.how == SALVAGED:
        return Action("salvaged", act.stream_id, ended.record.salvage_key, ended.summary)
    return Action("abort-upload", act.stream_id, act.target, ended.record.error)


@flow(name="janitor", flow_run_name="janitor", log_prints=False)
def janitor(config: str | None = None) -> list[dict[str, str]]:
    """Abort orphaned uploads of ours, salvage failed streams whose file is gone, and
    fail streams whose run is gone.

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
