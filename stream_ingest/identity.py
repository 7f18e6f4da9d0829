"""File identity: which incarnation of a path a stream belongs to.

A path can be deleted and written again, and the kernel reuses a freed inode number
for the next new file. (device, inode, birth time) tells the incarnations apart
without reading the file and survives renames inside the watch folder. The birth time
comes from statx where the filesystem keeps it (ext4, xfs, btrfs, tmpfs); where it
does not (some network mounts), the identity is (device, inode) alone and a reused
inode is only told apart by what the file holds (a new take is smaller, see tail).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class FileIdentity:
    device: int
    inode: int
    born_ns: int = 0  # birth time in ns since the epoch; 0 where unknown

    def __str__(self) -> str:
        base = f"{self.device}:{self.inode}"
        return f"{base}:{self.born_ns}" if self.born_ns else base

    @classmethod
    def of_stat(cls, st: os.stat_result, born_ns: int = 0) -> FileIdentity:
        return cls(st.st_dev, st.st_ino, born_ns)


def same_file(stored: str, current: str) -> bool:
    """Whether a stored identity and one read now name the same incarnation. Where
    either has no birth time (written before it was kept, or statx could not tell)
    they match on device and inode alone."""
    if stored == current:
        return True
    old, new = stored.split(":"), current.split(":")
    return (len(old) == 2 or len(new) == 2) and old[:2] == new[:2]


def legacy(identity: str) -> str | None:
    """The same file's identity as stored before birth times were kept ("dev:ino"),
    or None if `identity` has no birth time."""
    fields = identity.split(":")
    return ":".join(fields[:2]) if len(fields) == 3 else None
