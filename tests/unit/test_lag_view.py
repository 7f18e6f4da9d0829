"""What `streams watch` shows (stream_ingest/cli/lag_view.py), from records and a time:
the state of each stream, the rows' order, the table and the `--json` snapshot; and
the key reader of the live view (stream_ingest/cli/watch.py) on a pseudo-terminal."""

from __future__ import annotations

import dataclasses
import json
import os
import termios

from rich.console import Console

from stream_ingest.cli.lag_view import rows_of, snapshot, state_of, table, with_lag
from stream_ingest.cli.watch import keys
from stream_ingest.lag import STALE_AFTER_SECONDS, utc_text
from stream_ingest.records import StreamRecord
from stream_ingest.states import Status

NOW = 1_800_000_000.0
THRESHOLD = 60.0


def _live(sid: str, host: str, path: str, behind: int, age: float, **more: object) -> StreamRecord:
    values: dict[str, object] = {
        "status": Status.UPLOADING,
        "host": host,
        "original_path": path,
        "observed_bytes": 100_000_000,
        "observed_at_utc": utc_text(NOW - 2),
        "behind_bytes": behind,
        "behind_since_utc": utc_text(NOW - age) if behind else "",
        "bytes_uploaded": 100_000_000 - behind,
        "parts_count": 12,
        "upload_rate_bps": 5_000_000,
    }
    return dataclasses.replace(StreamRecord(sid), **(values | more))


def _text(renderable: object, width: int = 140) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_the_state_is_the_status_unless_lagging_or_silent() -> None:
    caught_up = _live("a", "h1", "/r/a.mp4", 4_000_000, 1.5)
    behind = _live("b", "h1", "/r/b.mp4", 90_000_000, 75.0)
    silent = _live("c", "h2", "/r/c.mp4", 1000, 1.0, observed_at_utc=utc_text(NOW - 31))
    finalizing = _live("d", "h2", "/r/d.mp4", 0, 0, status=Status.FINALIZING)
    detected = StreamRecord("e", status=Status.DETECTED)

    assert state_of(caught_up, 1.5, NOW, THRESHOLD) == "uploading"
    assert state_of(behind, 75.0, NOW, THRESHOLD) == "lagging"
    assert state_of(behind, 75.0, NOW, threshold=80) == "uploading"
    assert STALE_AFTER_SECONDS < 31
    assert state_of(silent, 200.0, NOW, THRESHOLD) == "silent"  # not "lagging": why matters
    assert state_of(finalizing, 0, NOW, THRESHOLD) == "finalizing"
    assert state_of(detected, 0, NOW, THRESHOLD) == "detected"


def test_rows_keep_their_place_by_host_and_path() -> None:
    records = [
        _live("z", "studio-b", "/r/a.mp4", 0, 0),
        _live("y", "studio-a", "/r/z.mp4", 10, 500),  # the worst lag is not moved up
        _live("x", "studio-a", "/r/b.mp4", 0, 0),
    ]
    rows = rows_of(records, NOW, THRESHOLD)
    assert [(r.host, r.path) for r in rows] == [
        ("studio-a", "/r/b.mp4"),
        ("studio-a", "/r/z.mp4"),
        ("studio-b", "/r/a.mp4"),
    ]
    assert (rows[1].lag_bytes, rows[1].lag_seconds, rows[1].state) == (10, 500.0, "lagging")


def test_the_table_has_a_row_per_stream_with_rate_parts_lag_and_state() -> None:
    records = [
        _live("aaaaaaaa-1111", "studio-a", "/r/cam1.mp4", 12_345_678, 3.25),
        _live("bbbbbbbb-2222", "studio-b", "/r/cam2.mkv", 90_000_000, 75.0),
    ]
    text = _text(table(rows_of(records, NOW, THRESHOLD), NOW, THRESHOLD, "q quits"))

    assert "2 active streams on 2 hosts, worst lag 75 s (alert at 60 s)" in text
    header = next(line for line in text.splitlines() if "HOST" in line)
    assert header.split() == [
        "HOST",
        "STREAM",
        "FILE",
        "STATE",
        "RATE",
        "PARTS",
        "UPLOADED",
        "LAG",
        "LAG",
        "S",
    ]
    cam1 = next(line for line in text.splitlines() if "cam1.mp4" in line).split()
    assert cam1 == [
        "studio-a",
        "aaaaaaaa",
        "cam1.mp4",
        "uploading",
        "5",
        "MB/s",
        "12",
        "87.7",
        "MB",
        "12.3",
        "MB",
        "3.2",
    ]
    cam2 = next(line for line in text.splitlines() if "cam2.mkv" in line)
    assert "lagging" in cam2 and cam2.split()[-1] == "75.0"
    assert "q quits" in text


def test_no_active_streams_says_so() -> None:
    text = _text(table([], NOW, THRESHOLD))
    assert "0 active streams on 0 hosts" in text and "no active streams" in text


def test_the_snapshot_is_json_with_the_time_and_every_row() -> None:
    rows = rows_of([_live("a", "h1", "/r/a.mp4", 500, 7.0)], NOW, THRESHOLD)
    data = json.loads(json.dumps(snapshot(rows, NOW)))

    assert data["at_utc"] == utc_text(NOW)
    [row] = data["streams"]
    assert row["lag_bytes"] == 500 and row["lag_seconds"] == 7.0
    assert row["host"] == "h1" and row["state"] == "uploading" and row["rate_bps"] == 5_000_000
    assert row["parts"] == 12 and row["stream_id"] == "a"


def test_list_and_show_objects_carry_the_lag() -> None:
    shown = with_lag(_live("a", "h1", "/r/a.mp4", 500, 7.04), NOW)
    assert (shown["lag_bytes"], shown["lag_seconds"]) == (500, 7.0)
    assert shown["host"] == "h1" and shown["status"] == "uploading"


def test_keys_are_read_one_at_a_time_and_the_terminal_is_restored() -> None:
    master, slave = os.openpty()
    try:
        with open(slave, closefd=False) as stdin:
            before = termios.tcgetattr(slave)
            assert before[3] & termios.ICANON
            with keys(stdin) as next_key:
                assert not termios.tcgetattr(slave)[3] & termios.ICANON  # cbreak: no Enter
                assert next_key(0.01) == ""
                os.write(master, b"q")
                assert next_key(5) == "q"
            assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


def test_without_a_terminal_there_are_no_keys(tmp_path) -> None:
    with open(tmp_path / "in", "w+") as stdin, keys(stdin) as next_key:
        assert next_key(0.01) == ""
