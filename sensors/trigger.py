"""Turning sensor events into at most one flow run per file incarnation, plus the
close and delete hints the flow reads.

Dedupe has two layers. Redis: `claim_identity` binds the file identity ("dev:ino") to
a new stream in one optimistic transaction (WATCH the identity index, MULTI, EXEC), so
only the first sensor event for an incarnation, across restarts and sensors, creates
a stream. Prefect: the run is created with the idempotency key
`stream-ingest:{stream_id}`, so re-triggering a claimed stream that never got its run
(a crash between claim and trigger) returns the same run instead of a second one.

Every handler here is safe to call again from the start after any failure: the run
loop retries an event until it succeeds.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import PurePath
from typing import Any

from blocks.checkpoints import CheckpointStore
from flows.runs import RunRequest
from flows.source import identity_of, outside_target
from sensors.events import Cause, DirGone, FileAppeared, FileClosed, FileGone, SensorEvent
from sensors.prefect_calls import EmitFn, TriggerFn, describe_prefect_error
from stream_ingest.keys import is_text, printable
from stream_ingest.records import StreamRecord
from stream_ingest.states import Status

log = logging.getLogger("stream_ingest.sensor")

EVENT_PREFIX = "stream-ingest.file"


class TriggerFailed(Exception):
    """The trigger (Prefect) raised; `reason` is the one-line cause for the retry log."""

    def __init__(self, cause: BaseException) -> None:
        self.reason = describe_prefect_error(cause)
        super().__init__(self.reason)
        self.cause = cause


@dataclass(frozen=True)
class Seen:
    """A path whose current incarnation needs nothing more from us."""

    identity: str
    stream_id: str


class StreamTrigger:
    """Handle one SensorEvent at a time (from one thread: the run loop)."""

    def __init__(
        self,
        store: CheckpointStore,
        *,
        deployment: str,
        config: str,
        watch_dir: str,
        trigger: TriggerFn,
        follow_symlinks: bool = False,
        emit: EmitFn,
        memory: int = 10_000,
    ) -> None:
        self.store = store
        self.deployment = deployment
        self.config = config  # the IngestConfig block the runs load
        self.watch_dir = watch_dir
        self.follow_symlinks = follow_symlinks
        self.skipped: set[str] = set()  # symlinks out of the folder, logged once
        self.trigger = trigger
        self.emit = emit
        # path -> Seen, least recently used first. It saves Redis round trips for
        # repeated events and rescans, and it is how a deleted file's identity is
        # known (a gone file cannot be stat'ed). Bounded: losing an entry costs one
        # Redis lookup, or a delete that cannot release its identity.
        self.memory = memory
        self.seen: OrderedDict[str, Seen] = OrderedDict()

    def handle(self, event: SensorEvent) -> None:
        match event:
            case FileAppeared(path=path, cause=cause):
                self.appeared(path, cause)
            case FileClosed(path=path):
                self.closed(path)
            case FileGone(path=path, moved_to=moved_to):
                self.gone(path, moved_to)
            case DirGone(path=folder):
                prefix = folder.rstrip(os.sep) + os.sep
                for path in [p for p in self.seen if p.startswith(prefix)]:
                    self.gone(path)

    # -- appear -----------------------------------------------------------------
    def appeared(self, path: str, cause: Cause) -> str | None:
        """Start a run for this incarnation of `path` unless one exists; return its
        identity (None if it is no longer a regular file)."""
        if self._outside(path):
            return None
        identity = identity_of(path)
        if identity is None:
            return None
        known = self.seen.get(path)
        if known is not None and known.identity == identity:
            self.seen.move_to_end(path)
            return identity
        if known is not None:
            # Another file now sits at this path (replaced by a rename over it, or
            # its delete event was missed): release the old incarnation's identity.
            self.store.forget_identity(known.identity, known.stream_id)
        fresh = StreamRecord(
            stream_id=str(uuid.uuid4()),
            original_path=path,
            identity=identity,
            watch_dir=self.watch_dir,
            status=Status.DETECTED,
        )
        sid, created = self.store.claim_identity(identity, fresh)
        if created:
            # Hints at this path belong to an earlier incarnation.
            self.store.clear_hints(path)
            self._start(path, sid, identity, cause)
        elif self._needs_run(path, sid, identity, fresh):
            self._start(path, sid, identity, cause)
        # A completed stream whose file is now smaller than its total_bytes (rewritten
        # in place under the same inode) is not detected here: it stays completed.
        self._remember(path, Seen(identity, sid))
        return identity

    def _needs_run(self, path: str, sid: str, identity: str, fresh: StreamRecord) -> bool:
        """The identity was claimed before. It still needs a run only if the claimer
        crashed before it recorded one (the retry reuses the idempotency key)."""
        existing = self.store.get(sid)
        if existing is None:
            # claim_identity is two round trips (HSETNX, then the meta hash): a crash
            # between them leaves an identity pointing at nothing, which the flow
            # cannot open. Rebuild the record under the claimed id.
            self.store.put(replace(fresh, stream_id=sid))
        elif existing.status != Status.DETECTED or existing.flow_run_id:
            log.debug("%s: stream %s exists (%s); nothing to do", path, sid, existing.status)
            return False
        elif existing.original_path != path:
            self.store.update(sid, original_path=path)
        # Keep a close hint that is already about this very incarnation.
        if self.store.closed_hint(path, identity) is None:
            self.store.clear_hints(path)
        return True

    def _start(self, path: str, sid: str, identity: str, cause: Cause) -> None:
        # A name with bytes that are not UTF-8 cannot travel in JSON parameters: the
        # run then takes the path from the stream's record.
        request = RunRequest.first(self.deployment, path if is_text(path) else "", sid, self.config)
        try:
            run_id = self.trigger(request)
        except Exception as exc:
            raise TriggerFailed(exc) from exc
        self.store.update(sid, flow_run_id=run_id)
        if cause == "moved":
            # Renamed into place (`x.mp4.part` -> `x.mp4`): written already, and no
            # close-after-write will follow, so the flow need not wait its idle timeout.
            self.store.hint_closed(path, identity)
        log.info("%s: new recording (%s); stream %s, flow run %s", path, cause, sid, run_id)
        self._emit(
            "detected",
            path,
            identity,
            {"stream_id": sid, "flow_run_id": run_id, "cause": cause},
            run_id,
        )

    # -- close ----------------------------------------------------------------
    def closed(self, path: str) -> None:
        # A close of a file we never saw appear (created while the sensor was down)
        # still needs its run; the claim makes this a no-op for known files.
        identity = self.appeared(path, "closed")
        if identity is None:
            return
        self.store.hint_closed(path, identity)
        log.info("%s: closed after writing", path)
        self._emit("closed", path, identity, {"stream_id": self._sid(path)})

    # -- gone -----------------------------------------------------------------
    def gone(self, path: str, moved_to: str | None = None) -> None:
        known = self.seen.get(path)
        identity, sid = (known.identity, known.stream_id) if known else (None, None)
        if identity is None and moved_to:
            identity, sid = self._owner_after_move(path, moved_to)
        if identity and sid:
            # Free the identity: the kernel reuses inode numbers, and a new file with
            # this one must not be taken for the old stream.
            self.store.forget_identity(identity, sid)
        self.seen.pop(path, None)
        log.info("%s: %s", path, f"moved to {moved_to}" if moved_to else "deleted")
        self._emit("deleted", path, identity, {"stream_id": sid, "moved_to": moved_to})

    def _owner_after_move(self, path: str, moved_to: str) -> tuple[str | None, str | None]:
        """A renamed file keeps its inode: read the identity at the new path and take
        the stream only if it was this path's."""
        identity = identity_of(moved_to)
        sid = self.store.stream_for_identity(identity) if identity else None
        record = self.store.get(sid) if sid else None
        if record is None or record.original_path != path:
            return identity, None
        return identity, sid

    # -- helpers --------------------------------------------------------------
    def _outside(self, path: str) -> bool:
        """A symlink out of the watch folder is skipped (logged once per path)."""
        target = None if self.follow_symlinks else outside_target(path, self.watch_dir)
        if target is not None and path not in self.skipped:
            self.skipped.add(path)
            log.warning(
                "%s: skipped, it leads to %s outside the watch folder (follow_symlinks)",
                printable(path),
                printable(target),
            )
        return target is not None

    def _remember(self, path: str, seen: Seen) -> None:
        self.seen[path] = seen
        self.seen.move_to_end(path)
        while len(self.seen) > self.memory:
            self.seen.popitem(last=False)

    def _sid(self, path: str) -> str | None:
        known = self.seen.get(path)
        return known.stream_id if known else None

    def _emit(
        self,
        what: str,
        path: str,
        identity: str | None,
        payload: dict[str, Any],
        flow_run_id: str | None = None,
    ) -> None:
        """Emit `stream-ingest.file.{what}`; the UI is a convenience, so a failure
        is logged and never stops the sensor."""
        shown = printable(path)  # events are JSON: no undecodable bytes
        resource = {
            "prefect.resource.id": f"{EVENT_PREFIX}.{identity or 'unknown'}",
            "prefect.resource.name": PurePath(shown).name,
            "path": shown,
        }
        related = (
            [
                {
                    "prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
                    "prefect.resource.role": "flow-run",
                }
            ]
            if flow_run_id
            else None
        )
        body = {"path": shown, "identity": identity, **payload}
        try:
            self.emit(
                event=f"{EVENT_PREFIX}.{what}", resource=resource, payload=body, related=related
            )
        except Exception as exc:
            log.warning(
                "could not emit %s.%s for %s (%s: %s)",
                EVENT_PREFIX,
                what,
                path,
                type(exc).__name__,
                exc,
            )
