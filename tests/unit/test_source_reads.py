"""stream_ingest/flows/source.py reads of a run's own file: a name swapped for a symlink after the
watch-folder check (the file itself, or a folder on the way) is never read through,
and a file other than the run's is never read at all."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_ingest.errors import SourceOutsideFolder, SourceReplaced
from stream_ingest.flows.source import (
    Owned,
    check_inside,
    let_go,
    read_into,
    read_range,
    snapshot,
)

MINE = b"the recording's own bytes " * 40
SECRET = b"another user's secret file" * 40  # as long: a read of it would not come short


@pytest.fixture
def folders(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """The watch folder and a folder outside it holding a secret file; what the
    test's reads kept open is closed after it."""
    import stream_ingest.flows.source as source

    watch, outside = tmp_path / "watch", tmp_path / "outside"
    watch.mkdir()
    outside.mkdir()
    (outside / "secret").write_bytes(SECRET)
    yield watch, outside
    source._HELD.release(lambda key: not key[0].startswith(str(tmp_path)))


def _owned(watch: Path, src: Path, known: bool = True, follow: bool = False) -> Owned:
    return Owned(str(watch), str(snapshot(str(src)).identity) if known else "", follow)


def _counted(monkeypatch: pytest.MonkeyPatch, name: str) -> list[str]:
    """The paths source.py's opener `name` is called with from now on."""
    import stream_ingest.flows.source as source

    opened: list[str] = []
    real = getattr(source, name)

    def counted(path: str, owned: Owned):
        opened.append(path)
        return real(path, owned)

    monkeypatch.setattr(source, name, counted)
    return opened


def _reads(src: Path, owned: Owned) -> list:
    """Every way a run reads its file: a range, into a reused buffer, a stat."""
    buf = bytearray(len(MINE))
    return [
        lambda: read_range(str(src), 0, len(MINE), owned),
        lambda: bytes(read_into(str(src), 0, len(MINE), buf, owned)),
        lambda: snapshot(str(src), owned),
    ]


@pytest.mark.parametrize("known", [True, False], ids=["identity-known", "identity-unknown"])
def test_the_file_swapped_for_a_link_out_of_the_folder_is_never_read(folders, known) -> None:
    watch, outside = folders
    src = watch / "cam.mp4"
    src.write_bytes(MINE)
    owned = _owned(watch, src, known)
    check_inside(str(src), str(watch), follow_symlinks=False)  # the run's check passes

    src.rename(watch / "cam.old")  # then the name leads out of the folder
    src.symlink_to(outside / "secret")

    for read in _reads(src, owned):
        with pytest.raises(SourceOutsideFolder, match="outside the watch folder"):
            read()


@pytest.mark.parametrize("known", [True, False], ids=["identity-known", "identity-unknown"])
def test_a_folder_on_the_way_swapped_for_a_link_is_never_read(folders, known) -> None:
    watch, outside = folders
    day = watch / "2024-05-01"
    day.mkdir()
    src = day / "cam.mp4"
    src.write_bytes(MINE)
    owned = _owned(watch, src, known)
    check_inside(str(src), str(watch), follow_symlinks=False)

    day.rename(watch / "moved")  # the folder's name now leads to one outside holding
    (outside / "cam.mp4").write_bytes(SECRET)  # a file of the same name
    day.symlink_to(outside)

    for read in _reads(src, owned):
        with pytest.raises(SourceOutsideFolder, match="outside the watch folder"):
            read()


def test_a_name_swapped_between_resolving_and_opening_is_never_read(folders, monkeypatch) -> None:
    """A path named through another name of the watch folder is resolved before it
    is opened: a swap right after that resolution is still refused by the open."""
    watch, outside = folders
    alias = watch.parent / "watch-alias"
    alias.symlink_to(watch)
    (watch / "cam.mp4").write_bytes(MINE)
    src = alias / "cam.mp4"
    owned = _owned(watch, src)
    real = os.path.realpath

    def resolve_then_swap(path, *args, **kwargs):
        resolved = real(path, *args, **kwargs)
        if str(path) == str(src) and not (watch / "cam.old").exists():
            (watch / "cam.mp4").rename(watch / "cam.old")
            (watch / "cam.mp4").symlink_to(outside / "secret")
        return resolved

    monkeypatch.setattr(os.path, "realpath", resolve_then_swap)
    with pytest.raises(SourceOutsideFolder, match="outside the watch folder"):
        read_range(str(src), 0, len(MINE), owned)


def test_another_file_renamed_over_the_name_is_never_read(folders) -> None:
    watch, _ = folders
    src = watch / "cam.mp4"
    src.write_bytes(MINE)
    owned = _owned(watch, src)
    other = watch / "other.mp4"
    other.write_bytes(SECRET)
    other.rename(src)

    for read in _reads(src, owned):
        with pytest.raises(SourceReplaced):
            read()


def test_a_link_that_stays_inside_the_folder_is_read(folders) -> None:
    """An alias of a recording inside the folder: the inside check takes it, and so
    do the reads."""
    watch, _ = folders
    (watch / "takes").mkdir()
    (watch / "takes" / "cam.mp4").write_bytes(MINE)
    alias = watch / "latest.mp4"
    alias.symlink_to(watch / "takes" / "cam.mp4")
    owned = _owned(watch, alias)

    assert read_range(str(alias), 0, len(MINE), owned) == MINE
    assert snapshot(str(alias), owned).size == len(MINE)


def test_with_follow_symlinks_a_link_is_followed_to_the_same_file_only(folders) -> None:
    watch, outside = folders
    src = watch / "cam.mp4"
    src.write_bytes(MINE)
    owned = _owned(watch, src, follow=True)
    src.rename(outside / "cam.mp4")  # the recording itself moved out, linked back:
    src.symlink_to(outside / "cam.mp4")  # following is what the operator allowed
    assert read_range(str(src), 0, len(MINE), owned) == MINE
    let_go(str(src))  # a run that opens the file anew (this one kept it open)

    src.unlink()
    src.symlink_to(outside / "secret")  # but never to another file
    for read in _reads(src, owned):
        with pytest.raises(SourceReplaced):
            read()


def test_a_look_at_the_runs_own_file_opens_nothing(folders, monkeypatch) -> None:
    """Every open is an IN_OPEN the sensor handles (a stat and a Redis read): the
    run's five looks a second go by name while the name leads to its own file."""
    import stream_ingest.flows.source as source

    watch, _ = folders
    src = watch / "cam.mp4"
    src.write_bytes(MINE)
    owned = _owned(watch, src)
    opened = _counted(monkeypatch, "_opened")
    assert snapshot(str(src), owned).size == len(MINE)
    assert opened == []
    # Where a stat may answer from a network client's cache, every look opens.
    monkeypatch.setattr(source, "_LOCAL", {os.stat(src).st_dev: False})
    assert snapshot(str(src), owned).size == len(MINE)
    assert opened == [str(src)]


def test_a_run_s_reads_of_its_own_file_open_it_once(folders, monkeypatch) -> None:
    """Each open is an IN_OPEN the sensor handles: a run's part reads share one
    descriptor until the run lets go of the file, which closes it."""
    import stream_ingest.flows.source as source

    watch, _ = folders
    src = watch / "cam.mp4"
    src.write_bytes(MINE)
    owned = _owned(watch, src)
    opened = _counted(monkeypatch, "_open_owned")
    before = len(source._HELD)
    buf = bytearray(len(MINE))
    for offset in (0, 100, 200):
        assert read_range(str(src), offset, 10, owned) == MINE[offset : offset + 10]
        assert bytes(read_into(str(src), offset, 10, buf, owned)) == MINE[offset : offset + 10]
    assert opened == [str(src)]
    assert len(source._HELD) == before + 1
    let_go(str(src))
    assert len(source._HELD) == before
    assert read_range(str(src), 0, 10, owned) == MINE[:10]
    assert opened == [str(src)] * 2
    let_go(str(src))


def test_a_kept_file_is_read_as_itself_after_its_name_is_swapped(folders) -> None:
    """What a run kept open is its own take: a name swapped since for a link to
    another file reads the take's bytes, never the other file's, and the run's next
    look at the name says it was replaced."""
    watch, outside = folders
    src = watch / "cam.mp4"
    src.write_bytes(MINE)
    owned = _owned(watch, src, follow=True)
    assert read_range(str(src), 0, len(MINE), owned) == MINE  # kept open from here
    src.rename(watch / "cam.old")
    src.symlink_to(outside / "secret")
    try:
        assert read_range(str(src), 0, len(MINE), owned) == MINE
        with pytest.raises(SourceReplaced):
            snapshot(str(src), owned)
    finally:
        let_go(str(src))


def test_on_a_network_filesystem_every_read_opens(folders, monkeypatch) -> None:
    """There an open revalidates what the client caches (close-to-open)."""
    import stream_ingest.flows.source as source

    watch, _ = folders
    src = watch / "cam.mp4"
    src.write_bytes(MINE)
    owned = _owned(watch, src)
    monkeypatch.setattr(source, "_LOCAL", {os.stat(src).st_dev: False})
    before = len(source._HELD)
    for _ in range(3):
        assert read_range(str(src), 0, 10, owned) == MINE[:10]
    assert len(source._HELD) == before
