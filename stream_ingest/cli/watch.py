"""`stream-ingest streams watch`: every active stream of every host, redrawn in place
every `--interval` seconds until q (or Ctrl-C); `--json` prints one snapshot.

It reads the checkpoint store only (one round trip for the active set, one for the
records), so it works wherever Redis is reachable, over SSH as well: the keys are
read in cbreak mode (no Enter needed, Ctrl-C still interrupts) when stdin is a
terminal, and the terminal is restored on the way out. The table is built by
stream_ingest/cli/lag_view.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import termios
import threading
import time
import tty
from collections.abc import Callable, Iterator
from typing import IO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from stream_ingest.cli.lag_view import rows_of, snapshot, table
from stream_ingest.errors import StreamError
from stream_ingest.records import StreamRecord

QUIT_KEYS = frozenset("qQ")
Keys = Callable[[float], str]  # wait up to N seconds for a key; "" if none


def print_snapshot(load: Callable[[], list[StreamRecord]], threshold: float) -> None:
    now = time.time()
    print(json.dumps(snapshot(rows_of(load(), now, threshold), now), indent=2))


def run_watch(
    load: Callable[[], list[StreamRecord]],
    threshold: float,
    interval: float,
    console: Console,
    stdin: IO[str] | None = None,
) -> None:
    """Redraw the table every `interval` seconds until q or Ctrl-C."""
    stdin = stdin or sys.stdin
    try:
        with (
            _stopped_like_ctrl_c(),
            keys(stdin) as next_key,
            Live(console=console, auto_refresh=False) as live,
        ):
            hint = "q quits" if stdin.isatty() else "Ctrl-C quits"
            while True:
                live.update(_frame(load, threshold, hint), refresh=True)
                if next_key(interval) in QUIT_KEYS:
                    return
    except KeyboardInterrupt:
        return


def _frame(load: Callable[[], list[StreamRecord]], threshold: float, hint: str) -> Table:
    """The table now; if Redis cannot be read, an empty one that says why (the next
    refresh tries again)."""
    now = time.time()
    try:
        return table(rows_of(load(), now, threshold), now, threshold, hint)
    except StreamError as exc:  # CheckpointUnavailable: Redis restarting, unreachable
        return table([], now, threshold, f"cannot read the streams: {exc}; {hint}")


@contextlib.contextmanager
def _stopped_like_ctrl_c() -> Iterator[None]:
    """SIGTERM and SIGHUP (a closed SSH session) end the watch as Ctrl-C does, so the
    terminal mode and the cursor are put back instead of left as the view set them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    saved = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def keys(stdin: IO[str]) -> Iterator[Keys]:
    """A reader of single keys: cbreak mode on a terminal (restored on exit); where
    stdin is no terminal (a pipe, cron), no keys, only the wait."""
    if not stdin.isatty():
        yield lambda seconds: time.sleep(seconds) or ""
        return
    fd = stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd, termios.TCSANOW)  # not TCSAFLUSH: a q typed already still quits

    def next_key(seconds: float) -> str:
        ready, _, _ = select.select([fd], [], [], seconds)
        if not ready:
            return ""
        key = os.read(fd, 1)
        return key.decode(errors="replace") if key else "q"  # the terminal is gone

    try:
        yield next_key
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
