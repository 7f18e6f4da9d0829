"""Reading the growing source file. Every failure becomes a domain error.

A run's reads go through `Owned`: the watch-folder check happens by name before the
upload starts, and a name (the file, or a folder on the way) can be swapped for a
symlink to a file outside the folder any time after. So a run opens the file from the
watch folder, one component at a time with O_NOFOLLOW, so that no link on the way is
followed out of it, and checks the open file's identity before reading it: the bytes
read are always the run's own file's, never what a name points to now. On a local
filesystem that descriptor serves the run's later reads until the run ends
(stream_ingest/flows/held.py: every open is an IN_OPEN the sensor handles); on a
network filesystem each read opens the file anew.

A stat (the run's look at its file, five times a second) needs no open where the name
still leads to the run's own file: its size and times are the run's own whatever the
path goes through, and no byte is read. An open is seen by every inotify watcher (the
sensor handles each IN_OPEN: a stat and a Redis read), so a look by name alone spares
the sensor an event per look; anything but the run's own file found by name is judged
by the open, which raises the precise error. On a network filesystem a stat may answer
from the client's attribute cache, where an open revalidates (close-to-open): there
every look still opens the file.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from stream_ingest.errors import (
    SourceMissing,
    SourceNotAFile,
    SourceOutsideFolder,
    SourceReplaced,
    SourceShrank,
    SourceUnreadable,
)
from stream_ingest.flows.held import HeldFiles
from stream_ingest.flows.statx import birth_ns, birth_ns_of_fd
from stream_ingest.identity import FileIdentity, same_file
from stream_ingest.keys import printable
from stream_ingest.mounts import filesystem_of, is_network, parse_mountinfo


@dataclass(frozen=True)
class Owned:
    """The one file a run may read: reached from `folder` without a symlink (unless
    `follow_symlinks`, then links are followed as the operator allowed) and, where
    `identity` is known, that very file."""

    folder: str
    identity: str = ""
    follow_symlinks: bool = False


@dataclass(frozen=True)
class Snapshot:
    """What one stat of the source said: enough to tell growth and rewrites apart."""

    size: int
    mtime_ns: int
    identity: FileIdentity


def snapshot(path: str, expect: str | Owned | None = None) -> Snapshot:
    """Stat the source; raise if it is gone, not a file, or (given `expect`) a
    different file from the one the stream started with. Given an `Owned`, the file
    is opened as for a read (see the module's docstring) and the open file stated."""
    if isinstance(expect, Owned):
        own = _own_by_name(path, expect)
        if own is not None:
            return own
        with _opened(path, expect) as (_fd, st, identity):
            return Snapshot(st.st_size, st.st_mtime_ns, identity)
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


def _own_by_name(path: str, owned: Owned) -> Snapshot | None:
    """The run's own file, stated by name without an open (see the module's
    docstring); None if that cannot tell: identity unknown, another file, a network
    filesystem, an error."""
    if not owned.identity:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or not _local(st.st_dev, path):
        return None
    identity = FileIdentity.of_stat(st, birth_ns(path))
    if not same_file(owned.identity, str(identity)):
        return None
    return Snapshot(st.st_size, st.st_mtime_ns, identity)


_LOCAL: dict[int, bool] = {}  # st_dev -> not a network filesystem


def _local(dev: int, path: str) -> bool:
    known = _LOCAL.get(dev)
    if known is None:
        try:
            with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
                mounts = parse_mountinfo(fh.read())
        except OSError:
            return False  # cannot tell: every look opens the file
        known = _LOCAL[dev] = not is_network(filesystem_of(os.path.realpath(path), mounts))
    return known


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


def read_range(path: str, offset: int, size: int, owned: Owned | None = None) -> bytes:
    """Exactly `size` bytes at `offset`, or SourceShrank/SourceMissing. Given `owned`,
    only from the run's own file (else SourceOutsideFolder/SourceReplaced)."""
    with _source_fd(path, owned) as fd:
        data = os.pread(fd, size, offset) if size else b""
        while len(data) < size:  # pread may return short on some filesystems
            more = os.pread(fd, size - len(data), offset + len(data))
            if not more:
                raise SourceShrank(path, offset + size, offset + len(data))
            data += more
    return data


def read_into(
    path: str, offset: int, size: int, buf: bytearray, owned: Owned | None = None
) -> memoryview:
    """Like read_range, into the caller's reused `buf` (no allocation per part):
    finalize re-reads a whole recording this way."""
    view = memoryview(buf)[:size]
    with _source_fd(path, owned) as fd:
        got = 0
        while got < size:
            n = os.preadv(fd, [view[got:]], offset + got)
            if not n:
                raise SourceShrank(path, offset + size, offset + got)
            got += n
    return view


@contextmanager
def _source_fd(path: str, owned: Owned | None) -> Iterator[int]:
    """The file to read: the run's own (`owned`), or whatever `path` names now. The
    run's own file, known by its identity on a local filesystem, stays open for its
    next read until the run lets go of it (`let_go`, stream_ingest/flows/held.py)."""
    if owned is not None:
        if owned.identity and _holdable(path, owned):
            with _HELD.borrow((path, owned)) as fd:
                yield fd
            return
        with _opened(path, owned) as (fd, _st, _identity):
            yield fd
        return
    fd = _open_step(path, None, path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


# O_NONBLOCK: a FIFO put in the file's place must fail the check, not hang the open.
_FILE = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
_FOLDER = os.O_RDONLY | os.O_CLOEXEC | os.O_DIRECTORY


@contextmanager
def _opened(path: str, owned: Owned) -> Iterator[tuple[int, os.stat_result, FileIdentity]]:
    """The run's file open, its fstat and identity; raises the domain error if the
    path leads out of the folder through a link or to a file other than `owned`."""
    fd, st, identity = _open_owned(path, owned)
    try:
        yield fd, st, identity
    finally:
        os.close(fd)


def _open_owned(path: str, owned: Owned) -> tuple[int, os.stat_result, FileIdentity]:
    if owned.follow_symlinks:
        fd = _open_step(path, None, path, _FILE)
    else:
        fd = _open_beneath(path, owned.folder)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SourceNotAFile(path)
        identity = FileIdentity.of_stat(st, birth_ns_of_fd(fd))
        if owned.identity and not same_file(owned.identity, str(identity)):
            raise SourceReplaced(path)
    except BaseException:
        os.close(fd)
        raise
    return fd, st, identity


def _holdable(path: str, owned: Owned) -> bool:
    """Known by its identity, on a local filesystem: on a network one an open
    revalidates what the client caches (close-to-open), so there each read opens."""
    device = owned.identity.split(":", 1)[0]
    return device.isdigit() and _local(int(device), path)


_HELD: HeldFiles[tuple[str, Owned]] = HeldFiles(
    lambda key: _open_owned(key[0], key[1])[0], os.close
)


def let_go(path: str) -> None:
    """The run is done with its file at `path`: close what its reads kept open."""
    _HELD.release(lambda key: key[0] != path)


@contextmanager
def reading(path: str) -> Iterator[None]:
    """A run's time with its file: what its reads kept open is closed at the end."""
    try:
        yield
    finally:
        let_go(path)


def _open_beneath(path: str, folder: str) -> int:
    """Open `path` from `folder` one component at a time, none of them followed if it
    is a symlink: a name swapped for a link after the inside check is refused here.
    A link that stays inside the folder (an alias of a recording) is still taken, as
    the inside check takes it: by the path resolved now, walked the same way."""
    rel = _beneath(path, folder)
    if rel:  # the usual case, without a realpath (an lstat per component) per read
        try:
            return _walk(path, folder, rel)
        except _LinkMet:
            pass
    root, real = os.path.realpath(folder), os.path.realpath(path)
    rel = _beneath(real, root)
    if rel is None:
        raise SourceOutsideFolder(printable(path), printable(real))
    if not rel:
        raise SourceNotAFile(path)
    try:
        return _walk(path, root, rel)
    except _LinkMet:  # a name on the way became a link since the realpath above
        target = os.path.realpath(path)
        if _beneath(target, root) is None:
            raise SourceOutsideFolder(printable(path), printable(target)) from None
        raise SourceReplaced(path) from None


class _LinkMet(Exception):
    """A component of the walk is a symlink."""


def _walk(path: str, folder: str, rel: str) -> int:
    *folders, name = rel.split("/")
    fd = _open_step(path, None, folder, _FOLDER)
    try:
        for part in folders:
            inner = _open_step(path, fd, part, _FOLDER | os.O_NOFOLLOW)
            os.close(fd)
            fd = inner
        return _open_step(path, fd, name, _FILE | os.O_NOFOLLOW)
    finally:
        os.close(fd)


def _beneath(path: str, folder: str) -> str | None:
    """`path` relative to `folder` ("" if it is `folder`), or None if not inside it
    (by the names alone, links not resolved)."""
    path, folder = os.path.abspath(path), os.path.abspath(folder)
    if path == folder:
        return ""
    base = folder.rstrip("/") + "/"
    return path[len(base) :] if path.startswith(base) else None


def _open_step(path: str, dir_fd: int | None, name: str, flags: int) -> int:
    """os.open with its failures as the source's domain errors (`path` is the whole
    source path they name); _LinkMet for a link that O_NOFOLLOW refused."""
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        raise SourceMissing(path) from None
    except OSError as exc:
        # O_NOFOLLOW refuses a link with ELOOP, or ENOTDIR where a folder is asked.
        refused = flags & os.O_NOFOLLOW and exc.errno in (errno.ELOOP, errno.ENOTDIR)
        if refused and _is_link(name, dir_fd):
            raise _LinkMet from None
        if exc.errno == errno.ENOTDIR:  # a folder on the way is a file now
            raise SourceMissing(path) from None
        raise SourceUnreadable(path, exc.strerror or str(exc)) from None


def _is_link(name: str, dir_fd: int | None) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False
