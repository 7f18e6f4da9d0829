"""Which filesystem a path is on, from the text of /proc/self/mountinfo (pure).

A writer on another host is invisible in this host's /proc: on a network filesystem
(or a FUSE mount, which may be one) whether a file is still being written cannot be
known, and only the idle timeout can end a recording there.
"""

from __future__ import annotations

NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "9p", "afs", "lustre", "gpfs"}
)


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040...)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[tuple[str, str]]:
    """(mount point, filesystem type) for each line of /proc/self/mountinfo.

    >>> parse_mountinfo("36 35 98:0 / /mnt/rec rw,noatime - nfs4 srv:/rec rw")
    [('/mnt/rec', 'nfs4')]
    """
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if sep and len(fields) >= 5 and tail:
            mounts.append((_unescape(fields[4]), tail[0]))
    return mounts


def filesystem_of(path: str, mounts: list[tuple[str, str]]) -> str:
    """The type of the filesystem that holds the absolute, resolved `path`: the
    longest mount point that contains it (the last one mounted, if stacked)."""
    best, kind = -1, "unknown"
    for point, fstype in mounts:
        inside = path == point or path.startswith(point.rstrip("/") + "/") or point == "/"
        if inside and len(point) >= best:
            best, kind = len(point), fstype
    return kind


def is_network(fstype: str) -> bool:
    return fstype in NETWORK_FILESYSTEMS or fstype.startswith("fuse")
