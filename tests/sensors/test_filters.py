"""The pure path filter, the handler that turns watchdog events into sensor events,
and the event types a real observer delivers."""

from __future__ import annotations

import queue
import time
from pathlib import PurePath

import pytest
from hypothesis import given
from hypothesis import strategies as st
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.polling import PollingObserver

from stream_ingest.sensors.events import (
    DirGone,
    FileAppeared,
    FileClosed,
    FileFilter,
    FileGone,
    FileOpened,
    SensorEvent,
    watch_root,
)
from stream_ingest.sensors.watcher import EVENT_TYPES, EnqueueHandler, make_observer
from stream_ingest.settings import load_settings

ROOT = PurePath("/rec")
DEFAULT = FileFilter.of(load_settings(), watch_root("/rec"))


@pytest.mark.parametrize(
    "path",
    [
        "/rec/a.mp4",
        "/rec/A.MP4",
        "/rec/cam1/2024/take.Mkv",
        "/rec/x.ts",
        "/rec/with space.webm",
        "/rec/a.b.mov",
        "/rec/dot.in.name.mp4",
    ],
)
def test_accepts_videos_under_the_watch_folder(path: str) -> None:
    assert DEFAULT.wants(path)


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/rec/a.txt", "not a video extension"),
        ("/rec/mp4", "no extension"),
        ("/rec/a.mp4.part", "partial download"),
        ("/rec/a.mp4.crdownload", "browser partial"),
        ("/rec/a.mp4~", "editor backup"),
        ("/rec/a.mp4.tmp", "temporary"),
        ("/rec/.a.mp4", "hidden file"),
        ("/rec/.mp4", "hidden, and no stem"),
        ("/rec/.cache/a.mp4", "inside a hidden folder"),
        ("/rec/cam/.partial/a.mp4", "hidden folder deeper down"),
        ("/other/a.mp4", "outside the watch folder"),
        ("/rec2/a.mp4", "sibling folder sharing the prefix"),
        ("/rec/../etc/a.mp4", "climbs out with .."),
        ("/rec", "the watch folder itself"),
    ],
)
def test_rejects(path: str, why: str) -> None:
    assert not DEFAULT.wants(path), why


def test_hidden_parent_of_the_watch_folder_does_not_count() -> None:
    f = FileFilter(PurePath("/home/u/.local/rec"), frozenset({".mp4"}))
    assert f.wants("/home/u/.local/rec/a.mp4")
    assert not f.wants("/home/u/.local/rec/.a.mp4")


def test_settings_patterns_and_extensions_are_case_insensitive() -> None:
    settings = load_settings(
        watch_dir="/rec", video_extensions="MP4, mkv", ignore_patterns="*-PARTIAL.*,tmp_*"
    )
    f = FileFilter.of(settings, watch_root(settings.watch_dir))
    assert f.extensions == {".mp4", ".mkv"}
    assert f.wants("/rec/a.MKV")
    assert not f.wants("/rec/a.mov")
    assert not f.wants("/rec/take-partial.mp4")
    assert not f.wants("/rec/TMP_take.mp4")
    # Custom patterns replace the defaults: a hidden file is still rejected.
    assert not f.wants("/rec/.take.mp4")


@given(
    st.lists(st.text("abc.", min_size=1, max_size=4), min_size=0, max_size=3),
    st.text("abc", min_size=1, max_size=4),
)
def test_any_hidden_component_is_rejected(folders: list[str], stem: str) -> None:
    parts = [*folders, f".{stem}", f"{stem}.mp4"]
    assert not DEFAULT.wants(ROOT.joinpath(*parts))
    visible = [p for p in folders if not p.startswith(".")]
    assert DEFAULT.wants(ROOT.joinpath(*visible, f"{stem}.mp4"))


# -- handler ------------------------------------------------------------------


def dispatched(*watchdog_events: object) -> list[SensorEvent]:
    q: queue.Queue[SensorEvent] = queue.Queue()
    handler = EnqueueHandler(q, DEFAULT)
    for event in watchdog_events:
        handler.dispatch(event)  # type: ignore[arg-type]
    return [q.get_nowait() for _ in range(q.qsize())]


def test_handler_turns_created_opened_closed_deleted_into_events() -> None:
    assert dispatched(
        FileCreatedEvent("/rec/a.mp4"),
        FileOpenedEvent("/rec/a.mp4"),
        FileClosedEvent("/rec/a.mp4"),
        FileDeletedEvent("/rec/a.mp4"),
    ) == [
        FileAppeared("/rec/a.mp4", "created"),
        FileOpened("/rec/a.mp4"),
        FileClosed("/rec/a.mp4"),
        FileGone("/rec/a.mp4"),
    ]


def test_handler_ignores_unwanted_and_uninteresting_events() -> None:
    assert (
        dispatched(
            FileCreatedEvent("/rec/a.txt"),
            FileCreatedEvent("/rec/.a.mp4"),
            DirCreatedEvent("/rec/cam.mp4"),
            FileModifiedEvent("/rec/a.mp4"),
            FileOpenedEvent("/rec/a.txt"),
            # A reader closing (the flow itself) is not the end of a recording.
            FileClosedNoWriteEvent("/rec/a.mp4"),
            DirMovedEvent("/rec/cam1", "/rec/cam2"),
        )
        == []
    )


def test_rename_from_a_temporary_name_is_a_new_file() -> None:
    assert dispatched(FileMovedEvent("/rec/a.mp4.part", "/rec/a.mp4")) == [
        FileAppeared("/rec/a.mp4", "moved")
    ]


def test_rename_between_video_names_is_gone_then_appeared() -> None:
    assert dispatched(FileMovedEvent("/rec/a.mp4", "/rec/b.mp4")) == [
        FileGone("/rec/a.mp4", moved_to="/rec/b.mp4"),
        FileAppeared("/rec/b.mp4", "moved"),
    ]


def test_rename_to_a_hidden_name_is_gone() -> None:
    assert dispatched(FileMovedEvent("/rec/a.mp4", "/rec/.trash/a.mp4")) == [
        FileGone("/rec/a.mp4", moved_to="/rec/.trash/a.mp4")
    ]


def test_directory_deleted_or_moved_out_is_dir_gone() -> None:
    assert dispatched(DirDeletedEvent("/rec/cam1")) == [DirGone("/rec/cam1")]


def test_make_observer_picks_polling_or_native() -> None:
    polling = make_observer(use_polling=True, poll_seconds=0.5)
    native = make_observer(use_polling=False)
    assert isinstance(polling, PollingObserver)
    assert not isinstance(native, PollingObserver)
    assert polling.name.startswith("sensor") and native.name.startswith("sensor")


def test_watch_folder_is_made_absolute_like_the_flow_does() -> None:
    f = FileFilter.of(load_settings(), watch_root("/rec/cam/.."))
    assert f.watch_dir == PurePath("/rec")
    assert f.wants("/rec/a.mp4")


class Recorder(FileSystemEventHandler):
    """Records every event the observer delivers, before any filtering of ours."""

    def __init__(self) -> None:
        self.seen: list[FileSystemEvent] = []

    def dispatch(self, event: FileSystemEvent) -> None:
        self.seen.append(event)


def test_the_observer_delivers_only_the_event_types_the_sensor_uses(tmp_path) -> None:
    """EVENT_TYPES narrows the inotify mask: a recorder's every write (IN_MODIFY) and a
    reader's close never reach Python; create, open (once per open, not per write),
    close-after-write, move and delete do."""
    recorder = Recorder()
    observer = make_observer(use_polling=False)
    observer.schedule(recorder, str(tmp_path), recursive=True, event_filter=EVENT_TYPES)
    path = tmp_path / "a.mp4"
    with observer:
        with open(path, "wb") as fh:
            for _ in range(20):
                fh.write(b"x" * 1000)
                fh.flush()
        path.read_bytes()  # a reader: opened, closed without writing
        path.rename(tmp_path / "b.mp4")
        (tmp_path / "b.mp4").unlink()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
            isinstance(e, FileDeletedEvent) for e in recorder.seen
        ):
            time.sleep(0.05)
    kinds = {type(e) for e in recorder.seen}
    assert {FileCreatedEvent, FileClosedEvent, FileMovedEvent, FileDeletedEvent} <= kinds
    assert kinds <= set(EVENT_TYPES), kinds - set(EVENT_TYPES)
    # two opens (the writer, the reader) for twenty writes: no per-write events
    assert sum(isinstance(e, FileOpenedEvent) for e in recorder.seen) == 2
