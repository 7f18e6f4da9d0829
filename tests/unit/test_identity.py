"""File identity: (device, inode) of one incarnation of a path."""

from __future__ import annotations

import os
from pathlib import Path

from stream_ingest.flows.source import snapshot
from stream_ingest.flows.statx import birth_ns
from stream_ingest.identity import FileIdentity, same_file


def test_str_is_device_inode_and_birth() -> None:
    # The form stored in Redis's identity index and in events' resource ids.
    assert str(FileIdentity(2049, 131, 1_700_000_000_123_456_789)) == "2049:131:1700000000123456789"
    assert str(FileIdentity(2049, 131)) == "2049:131"  # no birth time on this filesystem


def test_an_identity_without_birth_time_matches_on_device_and_inode() -> None:
    assert same_file("2049:131", "2049:131:17")  # a record from before birth times
    assert same_file("2049:131:17", "2049:131:17")
    assert not same_file("2049:131:17", "2049:131:18")  # the inode was reused
    assert not same_file("2049:131", "2049:132:17")


def test_a_reused_inode_is_a_new_identity(tmp_path: Path) -> None:
    """Delete and create until the kernel hands out the freed inode again (ext4 and
    tmpfs do at once): the birth time tells the two files apart."""
    if not birth_ns(str(tmp_path)):
        raise AssertionError("this test needs a filesystem with birth times (statx)")
    path = tmp_path / "rec.mp4"
    path.write_bytes(b"one")
    first = snapshot(str(path)).identity
    for _ in range(50):
        path.unlink()
        path.write_bytes(b"two")
        second = snapshot(str(path)).identity
        if second.inode == first.inode:
            break
    else:
        raise AssertionError("the inode was never reused; cannot test")
    assert (second.device, second.inode) == (first.device, first.inode)
    assert second.born_ns > first.born_ns
    assert str(second) != str(first) and not same_file(str(first), str(second))


def test_of_stat_on_a_real_file(tmp_path: Path) -> None:
    path = tmp_path / "rec.mp4"
    path.write_bytes(b"x")
    st = os.stat(path)
    ident = FileIdentity.of_stat(st)
    assert ident == FileIdentity(st.st_dev, st.st_ino)
    path.write_bytes(b"more bytes")  # growth keeps the identity
    assert FileIdentity.of_stat(os.stat(path)) == ident


def test_identity_survives_a_rename(tmp_path: Path) -> None:
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    a.write_bytes(b"x")
    before = FileIdentity.of_stat(os.stat(a))
    a.rename(b)
    assert FileIdentity.of_stat(os.stat(b)) == before


def test_a_file_replacing_the_path_is_a_new_incarnation(tmp_path: Path) -> None:
    path, fresh = tmp_path / "rec.mp4", tmp_path / "rec.mp4.new"
    path.write_bytes(b"old")
    old = FileIdentity.of_stat(os.stat(path))
    fresh.write_bytes(b"new")  # both exist at once: their inodes must differ
    os.replace(fresh, path)
    assert FileIdentity.of_stat(os.stat(path)) != old


def test_delete_and_recreate_reports_the_new_file(tmp_path: Path) -> None:
    # Inodes may be reused after a delete, so only check that identity follows stat.
    path = tmp_path / "rec.mp4"
    path.write_bytes(b"one")
    first = FileIdentity.of_stat(os.stat(path))
    path.unlink()
    path.write_bytes(b"two")
    second = FileIdentity.of_stat(os.stat(path))
    st = os.stat(path)
    assert second == FileIdentity(st.st_dev, st.st_ino)
    assert second.device == first.device  # same folder, same filesystem
