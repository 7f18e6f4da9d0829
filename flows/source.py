"""Reading the growing source file. Every failure becomes a domain error."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from flows.statx import birth_ns
from stream_ingest.errors import (
    SourceMissing,
    SourceNotAFile,
    SourceOutsideFolder,
    SourceReplaced,
    SourceShrank,
    SourceUnreadable,
)
from stream_ingest.identity import FileIdentity, same_file
from stream_ingest.keys import printable


@dataclass(frozen=True)
class Snapshot:
    """What one stat of the source said: enough to tell growth and rewrites apart."""

    size: int
    mtime_ns: int
    identity: FileIdentity


def snapshot(path: str, expect: str | None = None) -> Snapshot:
    """Stat the source; raise if it is gone, not a file, or (given `expect`) a
    different file from the one the stream started with."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise SourceMissing(path) from None
    except OSError as exc:
        raise SourceUnreadable(path, exc.strerror or str(exc)) from None
    if not stat.S_ISREG(st.st_mode):
        raise SourceNotAFile(path)
    identity = FileIdentity.of_stat(st, birth_ns(path))
    if expect and not same_file(expect, str(identity)):
        raise SourceReplaced(path)
    return Snapshot(st.st_size, st.st_mtime_ns, identity)


def identity_of(path: str) -> str | None:
    """The identity of the regular file at `path`, or None if there is none now."""
    try:
        return str(snapshot(path).identity)
    except (SourceMissing, SourceNotAFile):
        return None


def outside_target(path: str, folder: str) -> str | None:
    """Where `path` really is when a symlink (the file, or a folder on the way) takes
    it out of `folder`; None when it stays inside."""
    real, root = os.path.realpath(path), os.path.realpath(folder)
    return None if real == root or real.startswith(root.rstrip("/") + "/") else real


def check_inside(path: str, folder: str, follow_symlinks: bool) -> None:
    """Raise SourceOutsideFolder unless `path` is inside `folder` (or following is on)."""
    target = None if follow_symlinks else outside_target(path, folder)
    if target is not None:
        raise SourceOutsideFolder(printable(path), printable(target))


def check_readable(path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise SourceMissing(path) from None
    except IsADirectoryError:
        raise SourceNotAFile(path) from None
    except OSError as exc:
        raise SourceUnreadable(path, exc.strerror or str(exc)) from None


def read_range(path: str, offset: int, size: int) -> bytes:
    """Exactly `size` bytes at `offset`, or SourceShrank/SourceMissing."""
    try:
        with open(path, "rb") as fh:
            data = os.pread(fh.fileno(), size, offset) if size else b""
            while len(data) < size:  # pread may return short on some filesystems
                more = os.pread(fh.fileno(), size - len(data), offset + len(data))
                if not more:
                    raise SourceShrank(path, offset + size, offset + len(data))
                data += more
    except FileNotFoundError:
        raise SourceMissing(path) from None
    return data


def read_into(path: str, offset: int, size: int, buf: bytearray) -> memoryview:
    """Like read_range, into the caller's reused `buf` (no allocation per part):
    finalize re-reads a whole recording this way."""
    view = memoryview(buf)[:size]
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise SourceMissing(path) from None
    try:
        got = 0
        while got < size:
            n = os.preadv(fd, [view[got:]], offset + got)
            if not n:
                raise SourceShrank(path, offset + size, offset + got)
            got += n
    finally:
        os.close(fd)
    return view
