"""Who is writing a file, asked of /proc: a real writer process, a reader, a closed
file, a process that exited, and the cases where the answer must be "unknown"."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stream_ingest.flows.writers import writers_of
from stream_ingest.mounts import filesystem_of, is_network, parse_mountinfo
from stream_ingest.tail import WriterState

HOLD = textwrap.dedent(
    """
    import sys, time
    fh = open(sys.argv[1], sys.argv[2])
    print("open", flush=True)
    sys.stdin.readline()
    """
)


def hold(path: Path, mode: str) -> subprocess.Popen[str]:
    """Another process that holds `path` open in `mode` until its stdin closes."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
    return proc


def release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(10)


@pytest.mark.parametrize("mode", ["ab", "r+b", "wb"])
def test_a_process_holding_the_file_for_writing_is_a_writer(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "rec.mkv"
    path.write_bytes(b"x")
    proc = hold(path, mode)
    try:
        found = writers_of(str(path))
        assert found.state == WriterState.WRITING
        assert proc.pid in found.pids and f"{proc.pid} (python" in found.reason
    finally:
        release(proc)
    after = writers_of(str(path))
    assert after.state == WriterState.CLOSED and after.pids == ()


def test_readers_and_other_files_are_not_writers(tmp_path: Path) -> None:
    path, other = tmp_path / "rec.mp4", tmp_path / "other.mp4"
    path.write_bytes(b"x")
    other.write_bytes(b"y")
    reader, elsewhere = hold(path, "rb"), hold(other, "ab")
    try:
        assert writers_of(str(path)).state == WriterState.CLOSED
        assert writers_of(str(other)).state == WriterState.WRITING
    finally:
        release(reader)
        release(elsewhere)


def test_without_proc_the_answer_is_unknown(tmp_path: Path) -> None:
    path = tmp_path / "rec.mp4"
    path.write_bytes(b"x")
    found = writers_of(str(path), proc=str(tmp_path / "no-proc"))
    assert found.state == WriterState.UNKNOWN and "no " in found.reason


def test_a_missing_file_is_an_error_not_an_answer(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        writers_of(str(tmp_path / "gone.mp4"))


MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
36 22 0:40 / /mnt/nas rw,relatime shared:20 - nfs4 nas:/export rw,vers=4.2
37 22 0:41 / /mnt/nas/local\\040disk rw - ext4 /dev/sdb1 rw
38 22 0:42 / /media/cloud rw - fuse.rclone remote: rw
"""


@pytest.mark.parametrize(
    ("path", "fstype", "network"),
    [
        ("/home/rec/a.mp4", "ext4", False),
        ("/mnt/nas/cam1/a.mp4", "nfs4", True),
        ("/mnt/nas/local disk/a.mp4", "ext4", False),  # a local disk mounted below it
        ("/mnt/nasty/a.mp4", "ext4", False),  # a prefix of the name is not a parent
        ("/media/cloud/a.mp4", "fuse.rclone", True),
    ],
)
def test_the_filesystem_of_a_path(path: str, fstype: str, network: bool) -> None:
    kind = filesystem_of(path, parse_mountinfo(MOUNTINFO))
    assert kind == fstype and is_network(kind) is network


def test_this_machines_mounts_parse() -> None:
    mounts = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    assert any(point == "/" for point, _ in mounts)
    assert filesystem_of(os.path.realpath(__file__), mounts) != "unknown"


def test_the_last_writer_is_asked_first_and_the_rest_only_when_it_stopped(
    tmp_path: Path,
) -> None:
    """A live recording's writer answers from its own fd table; once it closed the
    file, every process is looked at again (another may have it open for writing)."""
    path = tmp_path / "rec.mkv"
    path.write_bytes(b"x")
    first, second = hold(path, "ab"), hold(path, "ab")
    try:
        known = writers_of(str(path), known=(first.pid,))
        assert known.pids == (first.pid,)  # the others' fd tables were not read
        release(first)
        after = writers_of(str(path), known=(first.pid,))
        assert after.state == WriterState.WRITING and after.pids == (second.pid,)
    finally:
        release(second)
    assert writers_of(str(path), known=(second.pid,)).state == WriterState.CLOSED
