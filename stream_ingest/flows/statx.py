"""A file's birth time from Linux statx(2), through libc (Python's os.stat has no
st_birthtime on Linux). 0 where the kernel, libc or the filesystem cannot tell."""

from __future__ import annotations

import ctypes
import os
import sys

_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_STATX_BTIME = 0x800


class _Timestamp(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_int64), ("nsec", ctypes.c_uint32), ("_pad", ctypes.c_int32)]


class _Statx(ctypes.Structure):
    # struct statx from linux/stat.h (256 bytes; only the mask and btime are read).
    _fields_ = [
        ("mask", ctypes.c_uint32),
        ("blksize", ctypes.c_uint32),
        ("attributes", ctypes.c_uint64),
        ("nlink", ctypes.c_uint32),
        ("uid", ctypes.c_uint32),
        ("gid", ctypes.c_uint32),
        ("mode", ctypes.c_uint16),
        ("_pad1", ctypes.c_uint16),
        ("ino", ctypes.c_uint64),
        ("size", ctypes.c_uint64),
        ("blocks", ctypes.c_uint64),
        ("attributes_mask", ctypes.c_uint64),
        ("atime", _Timestamp),
        ("btime", _Timestamp),
        ("ctime", _Timestamp),
        ("mtime", _Timestamp),
        ("_rest", ctypes.c_uint64 * 18),
    ]


def _load() -> object | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.statx  # glibc >= 2.28
    except (OSError, AttributeError):
        return None


_statx = _load()


def birth_ns(path: str) -> int:
    """The birth time of the file at `path` (symlinks followed, like os.stat) in ns,
    or 0 if it cannot be known."""
    return _birth(_AT_FDCWD, os.fsencode(path), 0)


def birth_ns_of_fd(fd: int) -> int:
    """The birth time of the open file `fd` in ns, or 0 if it cannot be known."""
    return _birth(fd, b"", _AT_EMPTY_PATH)


def _birth(dir_fd: int, path: bytes, flags: int) -> int:
    if _statx is None:
        return 0
    buf = _Statx()
    if _statx(dir_fd, path, flags, _STATX_BTIME, ctypes.byref(buf)) != 0:  # type: ignore[operator]
        return 0
    if not buf.mask & _STATX_BTIME:
        return 0
    return buf.btime.sec * 1_000_000_000 + buf.btime.nsec
