"""Turning sensor events into at most one flow run per take of a file incarnation,
plus the close and delete hints the flow reads.

Dedupe has two layers. Redis: `store.identities.claim` binds the file identity
("dev:ino:birth") to
a new stream in one optimistic transaction (WATCH the identity index, MULTI, EXEC), so
only the first sensor event for an incarnation, across restarts and sensors, creates
a stream. Prefect: the run is created with the idempotency key
`stream-ingest:{stream_id}`, so re-triggering a claimed stream that never got its run
(a crash between claim and trigger) returns the same run instead of a second one.

A known file is looked at again when it is opened, closed after writing or found by
a scan: a file smaller than what its stream uploaded or completed is a new take (a new
stream, rebound to the same identity); a completed file that grew or changed gets a
revision run of its stream; an identity bound to an aborted stream (the file vanished
and is back) gets a new stream.

Every handler here is safe to call again from the start after any failure: the run
loop retries an event until it succeeds.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.errors import SourceMissing, SourceNotAFile, StreamError
from stream_ingest.flows.runs import RunRequest, run_is_over
from stream_ingest.flows.source import Snapshot, identity_of, outside_target, snapshot
from stream_ingest.flows.writers import OpenFiles, open_files, writers_of
from stream_ingest.identity import same_file
from stream_ingest.keys import is_text, printable
from stream_ingest.records import StreamRecord
from stream_ingest.sensors.announce import Announcer
from stream_ingest.sensors.batching import Waiting, plan_runs
from stream_ingest.sensors.events import (
    Cause,
    DirGone,
    FileAppeared,
    FileClosed,
    FileGone,
    FileOpened,
    ReleaseGone,
    SensorEvent,
)
from stream_ingest.sensors.prefect_calls import EmitFn, TriggerFn, describe_prefect_error
from stream_ingest.states import Status
from stream_ingest.tail import WriterState
from stream_ingest.takes import Change, after_completion, is_new_take

log = logging.getLogger("stream_ingest.sensor")

# Runs requested for one revision of one file state before the sensor gives up on it.
REVISION_ATTEMPTS = 3


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
        run_over: Callable[[str], bool] = run_is_over,
        batch_max: int = 0,
        small_bytes: int = 8 * 1024 * 1024,
        takes_batches: Callable[[str], bool] = lambda deployment: True,
        detect_writers: bool = True,
    ) -> None:
        self.store = store
        self.deployment = deployment
        self.config = config  # the IngestConfig block the runs load
        self.watch_dir = watch_dir
        self.follow_symlinks = follow_symlinks
        self.skipped: set[str] = set()  # symlinks out of the folder, logged once
        self.trigger = trigger
        self.announce = Announcer(emit)
        # path -> Seen, least recently used first. It saves Redis round trips for
        # repeated events and rescans, and it is how a deleted file's identity is
        # known (a gone file cannot be stat'ed). Bounded: losing an entry costs one
        # Redis lookup, or a delete that cannot release its identity.
        self.memory = memory
        self.seen: OrderedDict[str, Seen] = OrderedDict()
        # Revision requests -> (their run, attempt). A revision run that ends before
        # it begins the revision (killed, a non-transient error) leaves the stream
        # completed and the change unsent; the same request has the same idempotency
        # key, which Prefect answers with that dead run. Seen over at a later look,
        # the request is made again under a key of its own, a few times at most.
        self.run_over = run_over
        self.revisions: OrderedDict[str, tuple[str, int]] = OrderedDict()
        # With `batch_max` >= 2, new streams wait here for `flush` (the run loop calls it
        # when its queue is drained): finished small files seen together then share a
        # run (stream_ingest/sensors/batching.py). A crash before the flush loses
        # nothing: each stream is claimed and `detected` without a run, which the next
        # start's scan finds (`_needs_run`).
        self.batch_max = batch_max
        self.small_bytes = small_bytes
        self.takes_batches = takes_batches
        self.detect_writers = detect_writers
        self.waiting: dict[str, Waiting] = {}
        self.batches: list[list[Waiting]] = []  # formed, their run not yet created

    def handle(self, event: SensorEvent) -> None:
        match event:
            case FileAppeared(path=path, cause=cause):
                self.appeared(path, cause)
            case FileClosed(path=path):
                self.closed(path)
            case FileOpened(path=path):
                if path in self.seen:  # new files come as created; this is news only
                    self.appeared(path, "opened")  # for one we know: written again?
            case ReleaseGone():
                self.release_gone()
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
        snap = _look(path)
        if snap is None:
            return None
        identity = str(snap.identity)
        known = self.seen.get(path)
        if known is not None and known.identity == identity:
            self.seen.move_to_end(path)
            if cause == "created":
                return identity
            record = self.store.streams.get(known.stream_id)
            if record is not None:
                self._revisit(path, identity, record)
                return identity
            # Redis lost the stream (restarted without its data): what is in the file
            # now, a new take or the rest of this one, is claimed again below, or no
            # event would ever start its run while this memory lasts.
            self.seen.pop(path)
            known = None
        if known is not None:
            # Another file now sits at this path (replaced by a rename over it, or
            # its delete event was missed): release the old incarnation's identity.
            self.store.identities.forget(known.identity, known.stream_id)
        fresh = self._fresh(path, identity)
        sid, created = self.store.identities.claim(identity, fresh)
        if created:
            # Hints at this path belong to an earlier incarnation.
            self.store.hints.clear(path)
            self._start(path, sid, identity, cause)
        else:
            existing = self.store.streams.get(sid)
            if existing is not None and (
                existing.status == Status.COMPLETED
                or is_new_take(existing, snap.size, snap.mtime_ns)
            ):
                sid = self._revisit(path, identity, existing)
            elif self._needs_run(path, sid, identity, fresh):
                self._start(path, sid, identity, cause)
        self._remember(path, Seen(identity, sid))
        return identity

    def _revisit(self, path: str, identity: str, record: StreamRecord) -> str:
        """A known file again: start a new take's stream or a revision run if the
        file says so. Returns the stream the path now belongs to. The file is looked
        at after the record was read: the other way round, a part recorded in between
        would make the file look smaller than what was uploaded."""
        snap = _look(path)
        if snap is None or str(snap.identity) != identity:
            return record.stream_id  # gone or replaced meanwhile: its own events follow
        if is_new_take(record, snap.size, snap.mtime_ns):
            return self._new_take(path, identity, record, snap.size)
        if after_completion(record, snap.size, snap.mtime_ns) == Change.REVISION:
            self._revise(path, identity, record, snap)
        return record.stream_id

    def _new_take(self, path: str, identity: str, old: StreamRecord, size: int) -> str:
        fresh = self._fresh(path, identity)
        sid, created = self.store.identities.rebind(identity, old.stream_id, fresh)
        if not created:
            # Rebound already (by the flow, or by this handler before its trigger
            # failed): start the run only if that stream never got one.
            if self._needs_run(path, sid, identity, fresh):
                self._start(path, sid, identity, "new take")
        else:
            log.info(
                "%s: a new take over the %s stream %s (%d bytes now)",
                printable(path),
                old.status,
                old.stream_id,
                size,
            )
            self.store.hints.clear(path)
            self._start(path, sid, identity, "new take")
        self._remember(path, Seen(identity, sid))
        return sid

    def _revise(self, path: str, identity: str, record: StreamRecord, snap: Snapshot) -> None:
        """The completed file grew or was patched: one run per next revision and file
        state (repeated events for the same state return the same run; a run that
        found nothing to do does not stand in the way of a later change)."""
        sid, number = record.stream_id, record.revision + 1
        if self.store.identities.stream_for(identity) != sid:
            return  # the file is another stream's now (a new take)
        request = RunRequest.revision(
            self.deployment,
            path if is_text(path) else "",
            sid,
            self.config,
            number,
            state=f"{snap.size}-{snap.mtime_ns}",
        )
        first = request.idempotency_key
        dead, attempt = self.revisions.get(first, ("", 0))
        if dead:
            if attempt > REVISION_ATTEMPTS or not self.run_over(dead):
                return  # under way, or given up on
            if attempt == REVISION_ATTEMPTS:
                log.error(
                    "%s: revision %d of stream %s: %d runs ended before beginning it, the "
                    "last %s; `stream-ingest streams rerun %s` tries again",
                    path,
                    number,
                    sid,
                    attempt,
                    dead,
                    sid,
                )
                self.revisions[first] = (dead, attempt + 1)
                return
            request = request.attempt(attempt + 1)
            log.warning(
                "%s: revision %d of stream %s: run %s ended before it began; requested again",
                path,
                number,
                sid,
                dead,
            )
        try:
            run_id = self.trigger(request)
        except Exception as exc:
            raise TriggerFailed(exc) from exc
        self.revisions[first] = (run_id, attempt + 1)
        self.revisions.move_to_end(first)
        while len(self.revisions) > self.memory:
            self.revisions.popitem(last=False)
        log.info("%s: changed after completion; revision %d of stream %s", path, number, sid)
        self.announce.file(
            "changed",
            path,
            record.identity,
            {"stream_id": sid, "flow_run_id": run_id, "revision": number},
            run_id,
        )

    # -- flush ----------------------------------------------------------------
    def flush(self) -> None:
        """Request the runs of the waiting streams: a batch for finished small files
        seen together, a run of its own for every other. Safe to call again after a
        failure: a batch keeps its streams (and so its idempotency key) until its run
        is recorded."""
        while self.batches:
            self._start_batch(self.batches[0])
            self.batches.pop(0)
        if not self.waiting:
            return
        waiting = list(self.waiting.values())
        sizes = {}
        unsure = []  # created, small, not seen closed: does any process still write it?
        for w in waiting:
            snap = _look(w.path) if w.finished or w.cause == "created" else None
            if snap is None or str(snap.identity) != w.identity:
                continue
            sizes[w.stream_id] = snap.size
            if not w.finished and 0 < snap.size <= self.small_bytes and self.detect_writers:
                unsure.append(w)
        if len(unsure) > 1 or (unsure and any(w.finished for w in waiting)):
            walk = open_files()  # one look at every process's open files for them all
            for w in unsure:
                w.closed = _nobody_writes(w.path, walk)
        singles, self.batches = plan_runs(waiting, sizes, self.small_bytes, self.batch_max)
        for batch in self.batches:
            for w in batch:
                self.waiting.pop(w.stream_id, None)
        while self.batches:
            self._start_batch(self.batches[0])
            self.batches.pop(0)
        for w in singles:
            self._start_waiting(w)
            self.waiting.pop(w.stream_id, None)

    def _start_batch(self, batch: list[Waiting]) -> None:
        if not self._batches_taken():
            for w in batch:
                self._start_waiting(w)
            return
        for w in batch:
            if w.cause == "moved":  # as for a run of its own: see _start_now
                self._hint_closed(w.path, w.identity)
        first = batch[0].path
        request = RunRequest.batch_of(
            self.deployment,
            first if is_text(first) else "",
            [w.stream_id for w in batch],
            self.config,
        )
        try:
            run_id = self.trigger(request)
        except Exception as exc:
            raise TriggerFailed(exc) from exc
        for w in batch:
            self.store.streams.update(w.stream_id, flow_run_id=run_id)
        log.info(
            "%d finished files, %s and %d more, in one flow run %s",
            len(batch),
            printable(first),
            len(batch) - 1,
            run_id,
        )
        self.announce.batch(batch, run_id)

    def _batches_taken(self) -> bool:
        """Whether the deployment's flow takes batches; if not (deployed from an older
        version), batching is off until the sensor restarts, and the log says why."""
        try:
            taken = self.takes_batches(self.deployment)
        except Exception as exc:
            raise TriggerFailed(exc) from exc
        if not taken:
            log.warning(
                "deployment %s has no stream_ids parameter (deployed from an older "
                "version): a flow run per file; deploy again to batch small files",
                self.deployment,
            )
            self.batch_max = 0
        return taken

    def release_gone(self) -> None:
        """Unbind identities whose file is no longer at its stream's path (deleted or
        renamed while we were not looking): the kernel reuses inode numbers, and a
        renamed file must become a new stream under its new name."""
        bound = self.store.identities.all()
        records = {r.stream_id: r for r in self.store.streams.many(set(bound.values()))}
        released = 0
        for identity, sid in bound.items():
            record = records.get(sid)
            if record is None or (record.watch_dir and record.watch_dir != self.watch_dir):
                continue  # another sensor's folder, or a claim whose record is in flight
            try:
                now: str | None = str(snapshot(record.original_path).identity)
            except (SourceMissing, SourceNotAFile):
                now = None
            except StreamError:
                continue  # unreadable now (permissions, a stale mount): cannot tell
            if now is None or not same_file(identity, now):
                self.store.identities.forget(identity, sid)
                released += 1
        if released:
            log.info("released %d identities of files that are gone", released)

    def _needs_run(self, path: str, sid: str, identity: str, fresh: StreamRecord) -> bool:
        """The identity was claimed before. It still needs a run only if the claimer
        crashed before it recorded one (the retry reuses the idempotency key)."""
        existing = self.store.streams.get(sid)
        if existing is None:
            # A claim is two round trips (HSETNX, then the meta hash): a crash
            # between them leaves an identity pointing at nothing, which the flow
            # cannot open. Rebuild the record under the claimed id.
            self.store.streams.put(replace(fresh, stream_id=sid))
        elif existing.status != Status.DETECTED or existing.flow_run_id:
            log.debug("%s: stream %s exists (%s); nothing to do", path, sid, existing.status)
            return False
        elif existing.original_path != path:
            self.store.streams.update(sid, original_path=path)
        # Keep a close hint that is already about this very incarnation.
        if self.store.hints.closed_at(path, identity) is None:
            self.store.hints.clear(path)
        return True

    def _start(self, path: str, sid: str, identity: str, cause: Cause) -> None:
        if self.batch_max >= 2:
            known = self.waiting.get(sid)
            if known is None:
                self.waiting[sid] = Waiting(path, sid, identity, cause)
            else:
                known.path = path
            return
        self._start_now(path, sid, identity, cause)

    def _start_waiting(self, w: Waiting) -> None:
        """A waiting stream's own run, and the close it heard while waiting."""
        self._start_now(w.path, w.stream_id, w.identity, w.cause)
        if w.close_heard:
            self.announce.file("closed", w.path, w.identity, {"stream_id": w.stream_id})

    def _start_now(self, path: str, sid: str, identity: str, cause: Cause) -> None:
        # A name with bytes that are not UTF-8 cannot travel in JSON parameters: the
        # run then takes the path from the stream's record.
        request = RunRequest.first(self.deployment, path if is_text(path) else "", sid, self.config)
        try:
            run_id = self.trigger(request)
        except Exception as exc:
            raise TriggerFailed(exc) from exc
        self.store.streams.update(sid, flow_run_id=run_id)
        if cause == "moved":
            # Renamed into place (`x.mp4.part` -> `x.mp4`): written already, and no
            # close-after-write will follow, so the flow need not wait its idle timeout.
            self._hint_closed(path, identity)
        log.info("%s: new recording (%s); stream %s, flow run %s", path, cause, sid, run_id)
        self.announce.file(
            "detected",
            path,
            identity,
            {"stream_id": sid, "flow_run_id": run_id, "cause": cause},
            run_id,
        )

    def _hint_closed(self, path: str, identity: str) -> None:
        """Record the close with the file as it is now: a run uses it only while no
        write has followed (a touch during a paused recording is then stale)."""
        try:
            snap = snapshot(path, identity)
        except StreamError:  # gone or replaced already: nothing this close could end
            return
        self.store.hints.note_closed(path, identity, snap.size, snap.mtime_ns)

    # -- close ----------------------------------------------------------------
    def closed(self, path: str) -> None:
        # A close of a file we never saw appear (created while the sensor was down)
        # still needs its run; the claim makes this a no-op for known files.
        identity = self.appeared(path, "closed")
        if identity is None:
            return
        self._hint_closed(path, identity)
        log.info("%s: closed after writing", path)
        waiting = self.waiting.get(self._sid(path) or "")
        if waiting is not None and waiting.identity == identity:
            # Its run is not requested yet: the event goes with the request (one
            # event for a whole batch: each costs the Prefect server about 10 ms).
            waiting.closed = waiting.close_heard = True
            return
        self.announce.file("closed", path, identity, {"stream_id": self._sid(path)})

    # -- gone -----------------------------------------------------------------
    def gone(self, path: str, moved_to: str | None = None) -> None:
        known = self.seen.get(path)
        identity, sid = (known.identity, known.stream_id) if known else (None, None)
        if identity is None and moved_to:
            identity, sid = self._owner_after_move(path, moved_to)
        if identity and sid:
            # Free the identity: the kernel reuses inode numbers, and a new file with
            # this one must not be taken for the old stream.
            self.store.identities.forget(identity, sid)
        self.seen.pop(path, None)
        log.info("%s: %s", path, f"moved to {moved_to}" if moved_to else "deleted")
        self.announce.file("deleted", path, identity, {"stream_id": sid, "moved_to": moved_to})

    def _owner_after_move(self, path: str, moved_to: str) -> tuple[str | None, str | None]:
        """A renamed file keeps its inode: read the identity at the new path and take
        the stream only if it was this path's."""
        identity = identity_of(moved_to)
        sid = self.store.identities.stream_for(identity) if identity else None
        record = self.store.streams.get(sid) if sid else None
        if record is None or record.original_path != path:
            return identity, None
        return identity, sid

    # -- helpers --------------------------------------------------------------
    def _fresh(self, path: str, identity: str) -> StreamRecord:
        """A new stream's record for this incarnation (or take) of `path`."""
        return StreamRecord(
            stream_id=str(uuid.uuid4()),
            original_path=path,
            identity=identity,
            watch_dir=self.watch_dir,
            status=Status.DETECTED,
        )

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


def _nobody_writes(path: str, walk: OpenFiles) -> bool:
    """Whether the OS says that no process has `path` open for writing."""
    try:
        return writers_of(path, walk=walk).state == WriterState.CLOSED
    except OSError:
        return False


def _look(path: str) -> Snapshot | None:
    """The regular file at `path` now, or None."""
    try:
        return snapshot(path)
    except StreamError:
        return None
