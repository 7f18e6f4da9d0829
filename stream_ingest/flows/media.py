"""What each recording is: ffprobe's facts about the completed file, read after the
stream is completed, so that nothing about them can delay, fail or change the object.

The run reads them while it still holds the stream's lease (no other run can begin
the next revision meanwhile), from the local file, and only while the file is still
the one completed (same size and mtime before and after ffprobe): a file that changed
since is left unprobed, its change becomes the next revision and is probed then. The
report goes into the stream's record (`media`) and into a manifest object beside the
recording, `<key>.media.json` (docs/operate.md says why not tags or metadata).

Nothing here fails a stream: a recording ffprobe cannot read is reported
`unreadable` with ffprobe's reason, a missing ffprobe is one info line, and a manifest
or record that cannot be written is a warning.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

from prefect import get_run_logger

from stream_ingest.blocks.bucket import STREAM_ID
from stream_ingest.errors import SourceError, StreamError
from stream_ingest.flows import stopping
from stream_ingest.flows.runtime import StreamContext
from stream_ingest.flows.source import snapshot
from stream_ingest.media import MediaReport, ffprobe_reason, manifest_key, parse_ffprobe
from stream_ingest.records import StreamRecord, utc_now
from stream_ingest.states import Status

BEAT_SECONDS = 1.0  # the lease keeper must see the run alive while ffprobe reads


def describe(ctx: StreamContext) -> MediaReport | None:
    """Probe the stream's completed recording and record what ffprobe says; None
    where it was not asked (turned off, not found, the stream not completed)."""
    log, sid = get_run_logger(), ctx.record.stream_id
    wanted = ctx.config.ffprobe_path
    if not wanted:
        return None
    ffprobe = shutil.which(wanted)
    if ffprobe is None:
        log.info("stream %s: no ffprobe (%s): its media facts are not read", sid, wanted)
        return None
    try:
        record = ctx.store.streams.get(sid)
    except StreamError as exc:
        log.warning("stream %s: media facts not read: %s", sid, exc)
        return None
    if record is None or record.status != Status.COMPLETED:
        return None
    report = probe(ctx, ffprobe, record)
    log.info("stream %s: media: %s", sid, report.summary())
    try:
        ctx.store.streams.update(sid, media=report.to_json())
    except StreamError as exc:
        log.warning("stream %s: media facts not recorded: %s", sid, exc)
    write_manifest(ctx, record, report)
    return report


def probe(ctx: StreamContext, ffprobe: str, record: StreamRecord) -> MediaReport:
    """ffprobe's report on the file, as long as it is the completed revision's."""
    timeout = ctx.config.ffprobe_timeout_seconds

    def report(**why: str) -> MediaReport:
        return MediaReport(record.revision, record.total_bytes, **why)

    try:
        before = snapshot(ctx.path, ctx.owned)
    except SourceError as exc:
        return report(not_probed=f"the file could not be read after completion ({exc})")
    if not _as_completed(before.size, before.mtime_ns, record):
        return report(not_probed="the file changed after completion")
    path = os.path.abspath(ctx.path)
    command = [
        ffprobe,
        *("-v", "error", "-print_format", "json", "-show_format", "-show_streams"),
        # Local files only: a file whose bytes are a playlist must not make it fetch URLs.
        *("-protocol_whitelist", "file"),
        f"file:{path}",  # `file:`: a colon in a name is no protocol
    ]
    try:
        answered = _run(command, timeout, ctx.token)
    except OSError as exc:
        return report(not_probed=f"ffprobe could not be started ({exc})")
    if answered is None:
        return report(not_probed=f"ffprobe did not answer within {timeout:g} s")
    code, out, err = answered
    try:
        after = snapshot(ctx.path, ctx.owned)
    except SourceError as exc:
        return report(not_probed=f"the file could not be read after completion ({exc})")
    if (after.size, after.mtime_ns) != (before.size, before.mtime_ns):
        return report(not_probed="the file changed while ffprobe read it")
    if code != 0:
        return report(unreadable=ffprobe_reason(err, path))
    try:
        return MediaReport(record.revision, record.total_bytes, parse_ffprobe(out))
    except ValueError as exc:
        return report(unreadable=str(exc))


def _as_completed(size: int, mtime_ns: int, record: StreamRecord) -> bool:
    # An mtime of 0 was recorded where the object's size alone decides (completed.py).
    return size == record.total_bytes and record.completed_mtime_ns in (0, mtime_ns)


def _run(command: list[str], timeout: float, token: str) -> tuple[int, str, str] | None:
    """(exit code, stdout, stderr) of `command`; None if it ran past `timeout` (it
    is killed). The run beats while it waits: a slow ffprobe is no stuck run."""
    deadline = time.monotonic() + timeout
    with subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    ) as proc:
        while True:
            stopping.beat(token)
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                proc.communicate()
                return None
            try:
                out, err = proc.communicate(timeout=min(BEAT_SECONDS, left))
            except subprocess.TimeoutExpired:
                continue
            return proc.returncode, out, err


def write_manifest(ctx: StreamContext, record: StreamRecord, report: MediaReport) -> None:
    """The report beside the object, with what names the object it describes, so
    that it outlives the checkpoint. Never over an object that is not a manifest
    (a recording whose key happens to be `<key>.media.json`)."""
    log, key = get_run_logger(), manifest_key(record.s3_key)
    body = {
        "object": record.s3_key,
        "stream_id": record.stream_id,
        "sha256": record.sha256,
        "etag": record.object_etag,
        "probed_at_utc": utc_now(),
        **report.as_dict(),
    }
    try:
        there = ctx.bucket.head_object(key)
        if there is not None and (
            STREAM_ID in there.get("Metadata", {}) or there.get("ContentType") != "application/json"
        ):
            log.warning(
                "stream %s: s3://%s/%s is not a manifest: not replaced",
                record.stream_id,
                record.s3_bucket,
                key,
            )
            return
        ctx.bucket.put_manifest(key, json.dumps(body, indent=1).encode())
    except StreamError as exc:
        log.warning("stream %s: no media manifest at %s: %s", record.stream_id, key, exc)
