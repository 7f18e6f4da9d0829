"""The watchdog side: a handler that filters and enqueues, the observer choice, and
the catch-up scan.

The handler runs on the observer's dispatch thread while it holds the observer's
lock, so it does no I/O at all: slow work there would stall every watch. It only
turns watchdog events into `stream_ingest.sensors.events` values on a `queue.Queue`.
"""

from __future__ import annotations

import logging
import os
import queue
from collections.abc import Iterator
from pathlib import Path

from watchdog.events import (
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from stream_ingest.sensors.events import (
    DirGone,
    FileAppeared,
    FileClosed,
    FileFilter,
    FileGone,
    FileOpened,
    SensorEvent,
)

log = logging.getLogger("stream_ingest.sensor")

# Only what the sensor uses. With inotify this also narrows the kernel mask, so the
# IN_MODIFY of every write a recorder makes never reaches Python. FileClosedEvent is
# IN_CLOSE_WRITE; FileClosedNoWriteEvent (a reader closing, e.g. the flow itself)
# is deliberately left out. FileOpenedEvent (IN_OPEN, once per open, not per write)
# is how a recorder starting over a completed file (`ffmpeg -y`) is seen at once.
EVENT_TYPES: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileOpenedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    FileClosedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]


def _text(path: bytes | str) -> str:
    return os.fsdecode(path)


class EnqueueHandler(FileSystemEventHandler):
    """Turn watchdog events for wanted files into SensorEvents on `events`."""

    def __init__(self, events: queue.Queue[SensorEvent], wanted: FileFilter) -> None:
        super().__init__()
        self.events = events
        self.wanted = wanted

    def on_created(self, event: FileSystemEvent) -> None:
        # inotify reports a file moved in from outside the watch as created.
        path = _text(event.src_path)
        if not event.is_directory and self.wanted.wants(path):
            self.events.put(FileAppeared(path, "created"))

    def on_moved(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            # Inside the watch, watchdog also sends a FileMovedEvent for each file in
            # the folder; out of it, it sends DirDeletedEvent (see on_deleted).
            return
        src, dest = _text(event.src_path), _text(event.dest_path)
        src_wanted, dest_wanted = self.wanted.wants(src), bool(dest) and self.wanted.wants(dest)
        # A rename is the old path gone and a new one appearing: the old path's run
        # can no longer read it, and the key in S3 follows the name. Gone goes first
        # so the identity is released before the new path claims it.
        if src_wanted:
            self.events.put(FileGone(src, moved_to=dest or None))
        if dest_wanted:
            self.events.put(FileAppeared(dest, "moved"))

    def on_deleted(self, event: FileSystemEvent) -> None:
        # inotify reports a move out of the watch folder as deleted.
        path = _text(event.src_path)
        if event.is_directory:
            self.events.put(DirGone(path))
        elif self.wanted.wants(path):
            self.events.put(FileGone(path))

    def on_opened(self, event: FileSystemEvent) -> None:
        path = _text(event.src_path)
        if not event.is_directory and self.wanted.wants(path):
            self.events.put(FileOpened(path))

    def on_closed(self, event: FileSystemEvent) -> None:
        path = _text(event.src_path)
        if not event.is_directory and self.wanted.wants(path):
            self.events.put(FileClosed(path))


def make_observer(use_polling: bool, poll_seconds: float = 1.0) -> BaseObserver:
    """inotify (`Observer`) by default; `PollingObserver` for network mounts, where
    inotify sees only local writes. Polling sends no close events: streams there end
    on the flow's idle timeout."""
    observer: BaseObserver = PollingObserver(timeout=poll_seconds) if use_polling else Observer()
    observer.name = "sensor-observer"
    return observer


def scan(root: Path, wanted: FileFilter) -> Iterator[FileAppeared]:
    """Every wanted file under `root`, as if just created (hidden folders skipped)."""

    def report(exc: OSError) -> None:
        log.warning("catch-up scan could not read %s (%s)", exc.filename, exc.strerror)

    for folder, dirs, files in os.walk(root, onerror=report):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = os.path.join(folder, name)
            if wanted.wants(path):
                yield FileAppeared(path, "scan")
