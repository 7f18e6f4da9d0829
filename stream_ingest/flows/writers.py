"""Is anyone still writing the file? Asked of the OS, not guessed from its size.

On Linux, /proc/PID/fd/N links to every open file and /proc/PID/fdinfo/N says how it
was opened: a link to the file's (device, inode) with O_WRONLY or O_RDWR is a writer.
The answer is "unknown" where the OS cannot tell: no /proc, a network or FUSE mount
(a writer on another host is invisible), or processes whose open files this user may
not read. Then only the idle timeout ends a recording, and the flow's log says why.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from stream_ingest.mounts import filesystem_of, is_network, parse_mountinfo
from stream_ingest.shared_look import SharedLook
from stream_ingest.tail import WriterState

O_ACCMODE = 0o3  # the access mode bits of open(2)'s flags


@dataclass(frozen=True)
class Writers:
    state: WriterState
    reason: str  # one line for the log: who writes, or why nobody can tell
    pids: tuple[int, ...] = ()


@dataclass
class Remembered:
    """What one stream's looks keep from one look to the next: its file's filesystem
    type, by device (a file does not change filesystems; mountinfo is not read and
    parsed again), and the descriptor each writer holds it by, with the writer's
    name. While the recorder writes, a look is then one stat and one small read,
    however many files the recorder has open."""

    filesystems: dict[int, str] = field(default_factory=dict)
    descriptors: dict[int, tuple[str, str]] = field(default_factory=dict)  # pid -> (fd, name)


# One walk of /proc serves every stream of this process that asks within this long of
# its start: streams that end together then cost one walk, not one each.
SHARED_WALK_SECONDS = 0.1


@dataclass(frozen=True)
class OpenFiles:
    """One walk of /proc: which (pid, fd) hold each file (device, inode) open, and
    how many processes' open files could not be read."""

    holders: dict[tuple[int, int], tuple[tuple[int, str], ...]]
    denied: int


def open_files(proc: str = "/proc") -> OpenFiles:
    """Every process's open files, by (device, inode): one stat per descriptor."""
    holders: dict[tuple[int, int], list[tuple[int, str]]] = {}
    denied = 0
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        fd_dir = os.path.join(entry.path, "fd")
        try:
            fds = os.listdir(fd_dir)
        except PermissionError:
            denied += 1
            continue
        except (FileNotFoundError, ProcessLookupError):
            continue  # the process exited while we looked
        pid = int(entry.name)
        for fd in fds:
            try:
                st = os.stat(os.path.join(fd_dir, fd))
            except OSError:
                continue
            holders.setdefault((st.st_dev, st.st_ino), []).append((pid, fd))
    return OpenFiles({k: tuple(v) for k, v in holders.items()}, denied)


_walks: dict[str, SharedLook[OpenFiles]] = {}
_walks_lock = threading.Lock()


def shared_walk(proc: str = "/proc") -> SharedLook[OpenFiles]:
    """The walk of `proc` this process's streams share (SHARED_WALK_SECONDS)."""
    with _walks_lock:
        if proc not in _walks:
            _walks[proc] = SharedLook(lambda: open_files(proc), SHARED_WALK_SECONDS)
        return _walks[proc]


def writers_of(
    path: str,
    proc: str = "/proc",
    known: tuple[int, ...] = (),
    kept: Remembered | None = None,
    walk: OpenFiles | None = None,
) -> Writers:
    """Which processes have `path` open for writing. `known`: the writers of the last
    look, asked first; while one still writes, that is the answer, without reading
    every other process's open files (a live recording's look then costs one fd
    table, not the whole of /proc: 8 ms of CPU each with 90 processes here), and with
    `kept` (the stream's memory of earlier looks) one descriptor, not the whole fd
    table. The whole of /proc is walked once for every stream of this process asking
    within SHARED_WALK_SECONDS (a writer that opened the file since that walk began
    is seen at the next look); the descriptors it found on the file are read again now.
    `walk`: a walk of `proc` the caller took for many files at once (the sensor)."""
    kept = kept if kept is not None else Remembered()
    target = os.stat(path)
    fstype = kept.filesystems.get(target.st_dev)
    if fstype is None:
        try:
            mountinfo = Path(proc, "self", "mountinfo").read_text()
        except FileNotFoundError:
            return Writers(WriterState.UNKNOWN, f"no {proc}: writers cannot be seen here")
        fstype = filesystem_of(os.path.realpath(path), parse_mountinfo(mountinfo))
        kept.filesystems[target.st_dev] = fstype
    if is_network(fstype):
        return Writers(
            WriterState.UNKNOWN, f"{fstype} filesystem: writers on other hosts are invisible"
        )
    for pid in known:
        pid_dir = Path(proc, str(pid))
        try:
            held = kept.descriptors.get(pid)
            if held is not None and _writes_by(pid_dir, held[0], target):
                fd, name = held
            elif (fd := _writing_fd(pid_dir, target)) is not None:
                name = _name(proc, pid)
            else:
                continue
        except (PermissionError, FileNotFoundError, ProcessLookupError):
            continue  # gone or hidden now: the full look below decides
        kept.descriptors = {pid: (fd, name)}
        return Writers(WriterState.WRITING, f"open for writing by pid {pid} ({name})", (pid,))
    walk = walk or shared_walk(proc).get()
    found: dict[int, tuple[str, str]] = {}
    for pid, fd in walk.holders.get((target.st_dev, target.st_ino), ()):
        if pid not in found and _writes_by(Path(proc, str(pid)), fd, target):
            found[pid] = (fd, _name(proc, pid))
    kept.descriptors = found
    if found:
        names = ", ".join(f"{pid} ({name})" for pid, (_fd, name) in found.items())
        return Writers(WriterState.WRITING, f"open for writing by pid {names}", tuple(found))
    if walk.denied:
        return Writers(
            WriterState.UNKNOWN,
            f"open files of {walk.denied} processes are not readable by this user",
        )
    return Writers(WriterState.CLOSED, "no process has it open for writing")


def _writing_fd(pid_dir: Path, target: os.stat_result) -> str | None:
    """A descriptor of the process open on `target` for writing, None if none."""
    return next((fd for fd in os.listdir(pid_dir / "fd") if _writes_by(pid_dir, fd, target)), None)


def _writes_by(pid_dir: Path, fd: str, target: os.stat_result) -> bool:
    """Descriptor `fd` of the process is open on `target` for writing (now)."""
    try:
        st = os.stat(pid_dir / "fd" / fd)
    except OSError:
        return False
    if (st.st_dev, st.st_ino) != (target.st_dev, target.st_ino):
        return False
    try:
        info = (pid_dir / "fdinfo" / fd).read_text()
    except OSError:
        return False
    flags = next((int(v, 8) for k, v in _fields(info) if k == "flags"), 0)
    return flags & O_ACCMODE in (os.O_WRONLY, os.O_RDWR)


def _fields(text: str) -> list[tuple[str, str]]:
    return [(k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in text.splitlines())]


def _name(proc: str, pid: int) -> str:
    try:
        return Path(proc, str(pid), "comm").read_text().strip()
    except OSError:
        return "?"


class WriterWatch:
    """The flow's view of one file's writers, looked up only when asked (when the file
    has gone quiet). While a writer was last seen, every ask looks again: that look
    is one stat and one read of the writer's own descriptor (Remembered), and a
    recorder that closed the file without writing again (its last bytes were seen
    before its close) is seen at the next poll, not a rate limit later. Otherwise at
    most every `every` seconds while the file stays as it is (a /proc walk costs
    milliseconds); a file that changed since the last look is looked up again at
    once: the last answer was about an earlier pause. `enabled=False`
    (detect_writers off: recorders in another container or on another host) always
    answers unknown."""

    def __init__(self, path: str, enabled: bool, every: float = 1.0) -> None:
        self.path, self.enabled, self.every = path, enabled, every
        self.last = Writers(WriterState.UNKNOWN, "not looked yet")
        self._at = float("-inf")
        self._state: object = None
        self._kept = Remembered()

    @property
    def known(self) -> bool:
        """Whether the next look is cheap and due at every poll: a writer was seen
        (then a look is a stat and a read of its descriptor), or none was asked yet
        (one /proc walk, which finds the recorder of a file that never goes quiet)."""
        return self.last.state == WriterState.WRITING or self._at == float("-inf")

    def look(self, now: float, state: object = None) -> Writers:
        """What the OS says now; `state` is the file's (size, mtime) as last seen."""
        if not self.enabled:
            return Writers(WriterState.UNKNOWN, "writer detection is off (detect_writers)")
        writing = self.last.state == WriterState.WRITING
        if writing or now - self._at >= self.every or state != self._state:
            known = self.last.pids
            looked = writers_of(self.path, known=known, kept=self._kept)
            self.last, self._at, self._state = looked, now, state
        return self.last
