"""File identity: which incarnation of a path a stream belongs to.

A path can be deleted and written again; (device, inode) tells the incarnations apart
without reading the file, and survives renames inside the watch folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class FileIdentity:
    device: int
    inode: int

    def __str__(self) -> str:
        return f"{self.device}:{self.inode}"

    @classmethod
    def of_stat(cls, st: os.stat_result) -> FileIdentity:
        return cls(st.st_dev, st.st_ino)
