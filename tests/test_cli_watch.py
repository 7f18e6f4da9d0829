"""Lag on the command line, against the test Prefect server and a private
redis-server: `streams list|show` carry it, `streams watch --json` is a snapshot of the
active streams of every host, and `streams watch` on a real pseudo-terminal draws its
table, redraws it, and quits on q with the terminal as it was."""

from __future__ import annotations

import dataclasses
import json
import os
import select
import signal
import sys
import termios
import time

import pytest

from stream_ingest.cli.main import main
from stream_ingest.lag import utc_text
from stream_ingest.records import StreamRecord
from stream_ingest.states import Status
from tests.flows.helpers import api_url


def _stream(sid: str, host: str, name: str, behind: int, age: float, **more: object):
    now = time.time()
    return dataclasses.replace(
        StreamRecord(sid, original_path=f"/rec/{name}", status=Status.UPLOADING),
        host=host,
        observed_bytes=50_000_000,
        observed_at_utc=utc_text(now - 1),
        behind_bytes=behind,
        behind_since_utc=utc_text(now - age) if behind else "",
        bytes_uploaded=50_000_000 - behind,
        parts_count=6,
        upload_rate_bps=4_000_000,
        **more,
    )


@pytest.fixture
def streams(store, registered) -> list[StreamRecord]:
    records = [
        _stream("s-cam1", "studio-a", "cam1.mp4", 2_000_000, 1.0),
        _stream("s-cam2", "studio-b", "cam2.mkv", 45_000_000, 120.0),
        dataclasses.replace(
            _stream("s-old", "studio-a", "old.mp4", 7, 500.0), status=Status.COMPLETED
        ),
    ]
    for record in records:
        store.streams.put(record)
    return records


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_list_and_show_say_each_stream_s_lag(streams, capsys) -> None:
    _, out = _run(capsys, "streams", "list", "--json")
    listed = {r["stream_id"]: r for r in json.loads(out)}

    assert listed["s-cam2"]["lag_bytes"] == 45_000_000
    assert 120 <= listed["s-cam2"]["lag_seconds"] < 180
    assert (listed["s-old"]["lag_bytes"], listed["s-old"]["lag_seconds"]) == (0, 0.0)
    _, shown = _run(capsys, "streams", "show", "s-cam2", "--json")
    assert json.loads(shown)["lag_bytes"] == 45_000_000
    assert json.loads(shown)["host"] == "studio-b"

    _, human = _run(capsys, "streams", "list")
    header, *rows = [line.split() for line in human.splitlines() if line.strip()]
    assert header[4:6] == ["LAG_BYTES", "LAG_SECONDS"]
    cam2 = next(r for r in rows if r[0] == "s-cam2")
    assert cam2[4] == "45000000" and float(cam2[5]) >= 120


def test_watch_json_is_one_snapshot_of_the_active_streams(streams, capsys) -> None:
    code, out = _run(capsys, "streams", "watch", "--json")

    assert code == 0
    data = json.loads(out)
    rows = {r["stream_id"]: r for r in data["streams"]}
    assert set(rows) == {"s-cam1", "s-cam2"}  # the completed one is not active
    assert rows["s-cam2"]["state"] == "lagging"  # past lag_alert_seconds (60)
    assert rows["s-cam1"]["state"] == "uploading"
    assert rows["s-cam1"]["host"] == "studio-a" and rows["s-cam2"]["host"] == "studio-b"
    assert rows["s-cam2"]["lag_bytes"] == 45_000_000 and rows["s-cam2"]["rate_bps"] == 4_000_000


def _read_until(fd: int, wanted: bytes, timeout: float) -> bytes:
    """What the terminal showed until `wanted` appeared (or the time ran out)."""
    seen = b""
    end = time.monotonic() + timeout
    while wanted not in seen and time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child exited and closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    return seen


def _exit_status(pid: int, fd: int, timeout: float) -> int | None:
    """The child's wait status once it exits, reading what it draws meanwhile (a full
    terminal would block it); None if it is still running after `timeout`."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        _read_until(fd, b"\x00never", 0.2)
    return None


def test_watch_on_a_terminal_redraws_and_quits_on_q(streams, store) -> None:
    """The command as an operator runs it over SSH: a pseudo-terminal for its stdin
    and stdout. It draws the table, redraws it with what changed, and q ends it
    (exit status 0) without Enter."""
    import pty

    env = {**os.environ, "PREFECT_API_URL": api_url(), "COLUMNS": "140", "LINES": "40"}
    code = "import sys; from stream_ingest.cli.main import main; sys.exit(main())"
    argv = [sys.executable, "-c", code, "streams", "watch", "--interval", "0.3"]
    pid, fd = pty.fork()
    if pid == 0:  # the child: its terminal is the pty
        os.execvpe(argv[0], argv, env)
    try:
        first = _read_until(fd, b"cam2.mkv", 60)
        assert b"2 active streams on 2 hosts" in first, first[-2000:]
        assert b"lagging" in first and b"q quits" in first

        store.streams.put(_stream("s-cam3", "studio-c", "cam3.ts", 0, 0))
        redrawn = _read_until(fd, b"cam3.ts", 30)
        assert b"3 active streams on 3 hosts" in redrawn, redrawn[-2000:]

        os.write(fd, b"q")  # no Enter: the keys are read one at a time
        status = _exit_status(pid, fd, 20)
        assert status is not None, "q did not end the watch"
        pid = 0
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        if pid:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)


def test_the_live_loop_leaves_the_terminal_as_it_found_it(streams, monkeypatch) -> None:
    """In this process, stdin a pseudo-terminal: cbreak while it runs, restored after q."""
    from rich.console import Console

    from stream_ingest.cli.watch import run_watch

    master, slave = os.openpty()
    with open(slave, closefd=False) as stdin, open(os.devnull, "w") as sink:
        before = termios.tcgetattr(slave)
        os.write(master, b"q")
        loads: list[int] = []

        def load() -> list[StreamRecord]:
            loads.append(1)
            if len(loads) > 5:  # ends a loop that never reads the q
                raise AssertionError("q was not read")
            return [streams[0]]

        run_watch(load, 60.0, 0.2, Console(file=sink), stdin=stdin)
        assert termios.tcgetattr(slave) == before
        assert loads == [1]  # drew once, then read the q
    os.close(master)
    os.close(slave)


def test_a_terminated_watch_puts_the_terminal_back(streams, store) -> None:
    """SIGTERM (or a hang-up) ends the watch as q does: exit status 0, and the
    terminal back in its line mode, not left in the view's cbreak."""
    import pty

    env = {**os.environ, "PREFECT_API_URL": api_url(), "COLUMNS": "140", "LINES": "40"}
    code = "import sys; from stream_ingest.cli.main import main; sys.exit(main())"
    argv = [sys.executable, "-c", code, "streams", "watch", "--interval", "0.3"]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(argv[0], argv, env)
    try:
        assert b"q quits" in _read_until(fd, b"q quits", 60)
        os.kill(pid, signal.SIGTERM)
        status = _exit_status(pid, fd, 20)
        assert status is not None, "SIGTERM did not end the watch"
        pid = 0
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        assert termios.tcgetattr(fd)[3] & termios.ICANON, "left in cbreak"
    finally:
        if pid:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)
