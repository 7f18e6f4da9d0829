"""Who is writing a file, asked of /proc: a real writer process, a reader, a closed
file, a process that exited, and the cases where the answer must be "unknown"."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from stream_ingest.flows import writers
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


@pytest.fixture(autouse=True)
def fresh_walks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each look walks /proc anew: these tests open and close files between looks
    faster than the walk a process's streams share."""
    monkeypatch.setattr(writers, "_walks", {})
    monkeypatch.setattr(writers, "SHARED_WALK_SECONDS", 0.0)


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


def fake_proc(root: Path, opened: dict[int, list[tuple[Path, int]]]) -> Path:
    """A /proc tree: each pid's fd links to its files, fdinfo with their open flags,
    and this machine's mountinfo (the files are on a local disk)."""
    proc = root / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text(Path("/proc/self/mountinfo").read_text())
    for pid, files in opened.items():
        (proc / str(pid) / "fd").mkdir(parents=True)
        (proc / str(pid) / "fdinfo").mkdir()
        (proc / str(pid) / "comm").write_text(f"rec{pid}\n")
        for n, (path, flags) in enumerate(files, start=3):
            (proc / str(pid) / "fd" / str(n)).symlink_to(path)
            (proc / str(pid) / "fdinfo" / str(n)).write_text(f"pos:\t0\nflags:\t0{flags:o}\n")
    return proc


def test_streams_asking_at_once_share_one_walk_of_proc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twenty streams whose recordings end together cost one walk of every process's
    open files, not twenty; each still gets its own file's answer."""
    monkeypatch.setattr(writers, "SHARED_WALK_SECONDS", 5.0)
    files = [tmp_path / f"cam{i:02d}.mkv" for i in range(20)]
    for f in files:
        f.write_bytes(b"x")
    # Even cameras are still recorded (pid 100 + i writes), odd ones are only read.
    opened = {
        100 + i: [(f, os.O_WRONLY if i % 2 == 0 else os.O_RDONLY)] for i, f in enumerate(files)
    }
    proc = fake_proc(tmp_path, opened)
    barrier = threading.Barrier(len(files))
    answers: dict[int, writers.Writers] = {}

    def ask(i: int) -> None:
        barrier.wait()
        answers[i] = writers_of(str(files[i]), proc=str(proc))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(files))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert writers.shared_walk(str(proc)).looks == 1
    for i in range(len(files)):
        if i % 2 == 0:
            assert answers[i].state == WriterState.WRITING and answers[i].pids == (100 + i,)
        else:
            assert answers[i].state == WriterState.CLOSED


def test_a_shared_walk_does_not_keep_a_writer_that_closed_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk is shared, the descriptors it found on the file are read again: a
    recorder that closed since the walk is not a writer any more."""
    monkeypatch.setattr(writers, "SHARED_WALK_SECONDS", 5.0)
    path = tmp_path / "rec.mp4"
    path.write_bytes(b"x")
    proc = fake_proc(tmp_path, {200: [(path, os.O_RDWR)]})
    assert writers_of(str(path), proc=str(proc)).pids == (200,)
    (proc / "200" / "fd" / "3").unlink()  # the recorder closed it
    assert writers_of(str(path), proc=str(proc)).state == WriterState.CLOSED
    assert writers.shared_walk(str(proc)).looks == 1


def test_a_live_recordings_look_reads_one_descriptor_not_its_writers_fd_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tail loop looks on every quiet poll of every stream: once its recorder is
    known, a look stats the descriptor the recorder holds the file by and reads its
    flags; neither mountinfo nor the recorder's other descriptors are read again."""
    path = tmp_path / "rec.mp4"
    path.write_bytes(b"x")
    others = [tmp_path / f"other{i}.bin" for i in range(30)]
    for o in others:
        o.write_bytes(b"y")
    proc = fake_proc(tmp_path, {300: [*[(o, os.O_RDONLY) for o in others], (path, os.O_WRONLY)]})
    kept = writers.Remembered()
    first = writers_of(str(path), proc=str(proc), kept=kept)
    assert first.pids == (300,) and "rec300" in first.reason
    (proc / "self" / "mountinfo").unlink()  # read again, the answer would be "unknown"
    listed: list[str] = []
    listdir = os.listdir

    def counted(where: object) -> list[str]:
        listed.append(str(where))
        return listdir(where)  # type: ignore[arg-type]

    monkeypatch.setattr(writers.os, "listdir", counted)
    again = writers_of(str(path), proc=str(proc), known=first.pids, kept=kept)
    assert again == first
    assert listed == []


def test_a_writer_that_holds_the_file_by_another_descriptor_now_is_still_found(
    tmp_path: Path,
) -> None:
    """The remembered descriptor is a shortcut, not the answer: a recorder that
    reopened its file (a new descriptor) is found in its fd table, and one that
    closed it is not a writer."""
    path = tmp_path / "rec.mkv"
    path.write_bytes(b"x")
    proc = fake_proc(tmp_path, {400: [(path, os.O_WRONLY)]})
    kept = writers.Remembered()
    assert writers_of(str(path), proc=str(proc), kept=kept).pids == (400,)
    (proc / "400" / "fd" / "3").unlink()
    (proc / "400" / "fd" / "7").symlink_to(path)
    (proc / "400" / "fdinfo" / "7").write_text(f"pos:\t0\nflags:\t0{os.O_RDWR:o}\n")
    assert writers_of(str(path), proc=str(proc), known=(400,), kept=kept).pids == (400,)
    assert kept.descriptors[400][0] == "7"
    (proc / "400" / "fd" / "7").unlink()
    closed = writers_of(str(path), proc=str(proc), known=(400,), kept=kept)
    assert closed.state == WriterState.CLOSED


def test_a_recorder_that_closes_without_writing_again_is_seen_at_the_next_look(
    tmp_path: Path,
) -> None:
    """Its last bytes were seen while it still held the file; it closes it without a
    write (the file as it was): the next poll's look says so, not one a second
    later. A file nobody writes is not walked for again within the second."""
    path = tmp_path / "rec.mp4"
    path.write_bytes(b"x" * 10)
    state = (10, path.stat().st_mtime_ns)
    watch = writers.WriterWatch(str(path), enabled=True)
    proc = hold(path, "ab")
    try:
        assert watch.look(100.0, state).state == WriterState.WRITING
    finally:
        release(proc)
    assert watch.look(100.2, state).state == WriterState.CLOSED
    walks = writers.shared_walk().looks
    assert watch.look(100.4, state).state == WriterState.CLOSED
    assert writers.shared_walk().looks == walks


def test_a_watch_is_known_before_its_first_look_and_while_a_writer_holds_the_file(
    tmp_path: Path,
) -> None:
    """`known`: the loop may look at every poll (the first look, or a known writer's
    descriptor), not once a look found nobody writing (then only a quiet file is
    looked at, a /proc walk each)."""
    path = tmp_path / "rec.mp4"
    path.write_bytes(b"x" * 10)
    watch = writers.WriterWatch(str(path), enabled=True)
    assert watch.known
    proc = hold(path, "ab")
    try:
        assert watch.look(100.0).state == WriterState.WRITING
        assert watch.known
    finally:
        release(proc)
    assert watch.look(100.2).state == WriterState.CLOSED
    assert not watch.known
