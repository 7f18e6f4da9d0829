"""What the sensor reacts to, as small immutable values, and the pure filter that
decides which paths are recordings at all.

The watchdog handler turns filesystem events into these values and nothing more; all
I/O (stat, Redis, Prefect) happens later, in the processing loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePath
from typing import Literal

from stream_ingest.options import IngestOptions

# Why a file is being looked at: the first three come from watchdog, "scan" from the
# catch-up scan, "closed" from a close-after-write, "opened" from an open (a recorder
# starting again over a file: `ffmpeg -y` truncates at open), "new take" when the
# file turned out to be a new recording at a known path.
Cause = Literal["created", "moved", "scan", "closed", "opened", "new take"]


@dataclass(frozen=True)
class FileAppeared:
    """A file is at `path`: created, moved in, found by a scan. It may still grow."""

    path: str
    cause: Cause


@dataclass(frozen=True)
class FileClosed:
    """inotify IN_CLOSE_WRITE: a writer closed `path`. A hint only: a crashed
    recorder closes too, and network filesystems never send it."""

    path: str


@dataclass(frozen=True)
class FileOpened:
    """inotify IN_OPEN of a file: someone opened `path` (a reader too, the flow
    itself included). Only looked at for files the sensor already knows, to see a
    completed recording being written again."""

    path: str


@dataclass(frozen=True)
class ReleaseGone:
    """Part of each scan: release the identities of files that are gone, also when
    their delete event was missed (sensor down, queue overflow)."""


@dataclass(frozen=True)
class FileGone:
    """`path` was deleted or moved away; `moved_to` is where it went when watchdog
    knows (a rename inside the watch folder), so its identity can still be read."""

    path: str
    moved_to: str | None = None


@dataclass(frozen=True)
class DirGone:
    """A directory left the watch folder (moved out): inotify sends nothing for the
    files inside it, so the files we know under it are treated as gone."""

    path: str


SensorEvent = FileAppeared | FileClosed | FileOpened | FileGone | DirGone | ReleaseGone


@dataclass(frozen=True)
class FileFilter:
    """Which paths are recordings: under the watch folder, no hidden component below
    it, a video extension (case-insensitive), no ignore pattern on the file name.

    Pure: it reads no file. Whether the path is a regular file is checked with the
    stat that also gives the file identity.

    >>> f = FileFilter(PurePath("/rec"), frozenset({".mp4"}), ("*.tmp",))
    >>> f.wants("/rec/cam1/a.MP4"), f.wants("/rec/.cache/a.mp4"), f.wants("/other/a.mp4")
    (True, False, False)
    """

    watch_dir: PurePath
    extensions: frozenset[str]
    ignore_patterns: tuple[str, ...] = ()

    @classmethod
    def of(cls, options: IngestOptions, root: PurePath) -> FileFilter:
        return cls(
            watch_dir=root,
            extensions=frozenset(e.lower() for e in options.video_extensions),
            # Lower-cased like the extensions: "*.TMP" from a Windows share is a temp file too.
            ignore_patterns=tuple(p.lower() for p in options.ignore_patterns),
        )

    def wants(self, path: str | PurePath) -> bool:
        candidate = PurePath(path)
        try:
            rel = candidate.relative_to(self.watch_dir)
        except ValueError:
            return False
        # Only components below the watch folder count: the folder itself may live
        # under a hidden directory (~/.local/recordings). ".." starts with "." too.
        if not rel.parts or any(part.startswith(".") for part in rel.parts):
            return False
        name = rel.name.lower()
        if PurePath(name).suffix not in self.extensions:
            return False
        return not any(fnmatchcase(name, pattern) for pattern in self.ignore_patterns)


def watch_root(folder: str | os.PathLike[str]) -> Path:
    """The watch folder as an absolute path, made the way the flow makes it
    (`os.path.abspath`: ".." folded, symlinks kept), so that the paths the sensor
    passes and the S3 keys the flow derives from them agree."""
    return Path(os.path.abspath(folder))
