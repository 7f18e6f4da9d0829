"""Recordings a run keeps open while it reads them.

Every open of a recording is an IN_OPEN that each inotify watcher of the folder
handles: the sensor looks up the file's stream for each one (a stat and a Redis
read), and a 1 GiB recording is 128 part reads, a live one twice that with the
verification at its close. So a run's reads of its own file share one descriptor,
opened and checked once (stream_ingest/flows/source.py); it reads the take's own
inode whatever its name comes to point at, which the run's looks by name judge.

A descriptor is closed when the run lets go of the file (a deleted recording's
disk space is freed then), or when more are held than the limit, and never while a
read uses it: a closed number is reused by the next open, and the read would get
another file's bytes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

# More than a warm worker's streams at once (50 at 0.5 GiB); past it the least
# recently read go first (their runs reopen them).
LIMIT = 128


@dataclass
class _Held:
    fd: int
    users: int = 0
    dropped: bool = False  # let go of or evicted: closed by its last user


@dataclass
class _Gate:
    lock: threading.Lock = field(default_factory=threading.Lock)
    waiting: int = 0


class HeldFiles(Generic[K]):
    """Descriptors by key, opened by `open_fd(key)` on first use and closed by
    `close_fd`."""

    def __init__(
        self, open_fd: Callable[[K], int], close_fd: Callable[[int], None], limit: int = LIMIT
    ) -> None:
        self._open, self._close, self.limit = open_fd, close_fd, limit
        self._held: OrderedDict[K, _Held] = OrderedDict()
        self._gates: dict[K, _Gate] = {}  # keys being opened, and who waits for them
        self._lock = threading.Lock()

    @contextmanager
    def borrow(self, key: K) -> Iterator[int]:
        """The descriptor of `key`, kept open for the next read."""
        held = self._take(key) or self._open_once(key)
        try:
            yield held.fd
        finally:
            self._put_back(held)

    def _open_once(self, key: K) -> _Held:
        """Open `key` for a read (one user): the parts of a file read in parallel
        find it unopened together, and each open would be an IN_OPEN of its own. The
        first opens it, outside the lock (an open may fail or be slow); the others of
        that key wait for it, and then share its descriptor."""
        with self._lock:
            gate = self._gates.setdefault(key, _Gate())
            gate.waiting += 1
        try:
            with gate.lock:
                held = self._take(key)
                if held is not None:
                    return held
                fd = self._open(key)
                with self._lock:
                    held = self._held[key] = _Held(fd, users=1)
                    evicted = self._evict()
                for fd_ in evicted:
                    self._close(fd_)
                return held
        finally:
            with self._lock:
                gate.waiting -= 1
                if not gate.waiting:
                    del self._gates[key]

    def release(self, keep: Callable[[K], bool]) -> None:
        """Let go of every descriptor whose key `keep` refuses."""
        with self._lock:
            gone = [k for k in self._held if not keep(k)]
            closing = [fd for k in gone if (fd := self._drop(self._held.pop(k))) is not None]
        for fd in closing:
            self._close(fd)

    def __len__(self) -> int:
        return len(self._held)

    def kept(self) -> list[K]:
        with self._lock:
            return list(self._held)

    def _take(self, key: K) -> _Held | None:
        with self._lock:
            held = self._held.get(key)
            if held is not None:
                held.users += 1
                self._held.move_to_end(key)
            return held

    def _put_back(self, held: _Held) -> None:
        with self._lock:
            held.users -= 1
            close = held.dropped and held.users == 0
        if close:
            self._close(held.fd)

    def _evict(self) -> list[int]:
        closing = []
        while len(self._held) > self.limit:
            _key, oldest = self._held.popitem(last=False)
            fd = self._drop(oldest)
            if fd is not None:
                closing.append(fd)
        return closing

    @staticmethod
    def _drop(held: _Held) -> int | None:
        """Mark `held` gone; its descriptor if nobody reads it now (else its last
        user closes it)."""
        held.dropped = True
        return held.fd if held.users == 0 else None
