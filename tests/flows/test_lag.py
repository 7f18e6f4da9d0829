"""A live stream's lag, as the running flow reports it: the figures in the stream's
record (what `streams watch` and the metrics read), the lagging / caught-up events,
the progress artifact's description; and a lag write that fails fails nothing."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from stream_ingest.blocks.store_streams import Streams
from stream_ingest.errors import CheckpointUnavailable
from stream_ingest.flows import report
from stream_ingest.lag import Lag, lag_of, parse_utc
from stream_ingest.records import StreamRecord
from tests.conftest import edit_config
from tests.flows.automation import Events
from tests.flows.helpers import MIB, payload, run_in_thread, until

pytestmark = pytest.mark.usefixtures("registered")


def _names(events: Events) -> list[str]:
    return [e["event"].removeprefix("stream-ingest.stream.") for e in events.sent]


class PausedWriter(threading.Thread):
    """Writes `first`, holds the file open until `go` is set, writes `rest`, closes."""

    def __init__(self, path: Path, first: bytes, rest: bytes) -> None:
        super().__init__(name="writer", daemon=True)
        self.path, self.first, self.rest = path, first, rest
        self.go = threading.Event()

    def run(self) -> None:
        with open(self.path, "wb") as fh:
            fh.write(self.first)
            fh.flush()
            os.fsync(fh.fileno())
            self.go.wait(120)
            fh.write(self.rest)


def test_a_stream_behind_reports_its_lag_and_announces_both_transitions(
    registered, store, events
) -> None:
    edit_config(lag_alert_seconds=0.3, lag_alert_grace_seconds=0.2)
    src = Path(registered.watch_dir) / "live.mp4"
    data = payload(11 * MIB, seed=3)
    # Part 1 (5 MiB) can go; the 1 MiB after it waits for part 2's bytes.
    writer = PausedWriter(src, data[: 6 * MIB], data[6 * MIB :])
    writer.start()
    until(src.exists, 10, "the file")
    flow, out = run_in_thread(src)
    try:
        until(lambda: "lagging" in _names(events), 60, "the lagging event")
        [lagging] = [e for e in events.sent if e["event"].endswith(".lagging")]
        assert lagging["payload"]["lag_bytes"] >= MIB  # 6 MiB if part 1 was still in flight
        assert lagging["payload"]["lag_seconds"] > 0.3

        def behind() -> StreamRecord | None:
            # Part 1 in S3, and the oldest byte after it over 0.3 s old when written
            # (at the transition, or the next write 10 s on).
            for r in store.streams.list():
                seen, since = parse_utc(r.observed_at_utc), parse_utc(r.behind_since_utc)
                if seen and since and seen - since > 0.3 and r.behind_bytes == MIB:
                    return r
            return None

        record = until(behind, 60, "the record to say 1 MiB is not in S3")
        assert record.host == socket.gethostname()
        assert record.observed_bytes == 6 * MIB
        lag = lag_of(record, time.time())
        assert lag.bytes == MIB and lag.seconds > 0.3
        assert lagging["resource"]["stream-ingest.stream-id"] == record.stream_id
    finally:
        writer.go.set()
        writer.join(10)
        flow.join(120)
    assert out["state"].is_completed()

    names = _names(events)
    assert names.index("lagging") < names.index("caught-up") < names.index("completed")
    assert names.count("lagging") == names.count("caught-up") >= 1
    done = store.streams.require(record.stream_id)
    assert (done.behind_bytes, done.behind_since_utc) == (0, "")
    assert done.observed_bytes == len(data)
    assert lag_of(done, time.time()) == Lag(0, 0.0)


def test_a_lag_write_that_fails_is_logged_and_the_stream_completes(
    registered, store, events, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Streams.update
    refused: list[str] = []

    def update(self: Streams, stream_id: str, **values: Any) -> None:
        if "behind_bytes" in values:
            refused.append(stream_id)
            raise CheckpointUnavailable("ConnectionError: Redis went away")
        real(self, stream_id, **values)

    monkeypatch.setattr(Streams, "update", update)
    src = Path(registered.watch_dir) / "done.mp4"
    src.write_bytes(payload(11 * MIB, seed=4))

    flow, out = run_in_thread(src)
    flow.join(120)

    assert out["state"].is_completed()
    assert refused  # it was tried, and refused
    [record] = store.streams.list()
    assert record.status == "completed" and record.host == ""


def test_the_progress_artifact_says_the_lag(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []
    created: list[dict[str, Any]] = []
    monkeypatch.setattr(report, "update_progress_artifact", lambda *a: calls.append(a))
    monkeypatch.setattr(
        report, "create_progress_artifact", lambda **kw: created.append(kw) or uuid.uuid4()
    )
    reporter = report.Reporter(StreamRecord("s-1", original_path="/rec/a.mp4"), "", "cfg")

    reporter.progress(5 * MIB, 12 * MIB, force=True, lag=Lag(7 * MIB, 42.0))
    reporter.progress(12 * MIB, 12 * MIB, force=True, lag=Lag(0, 0.0))

    assert [c["description"] for c in created] == [
        "Bytes of /rec/a.mp4 in S3; lag: 7.34 MB not in S3, the oldest for 42 s",
    ]
    assert [c[2] for c in calls] == ["Bytes of /rec/a.mp4 in S3; lag: every byte in S3"]


def test_the_progress_event_goes_at_most_once_per_interval(events) -> None:
    reporter = report.Reporter(StreamRecord("s"), "", "cfg")
    t0 = reporter.started
    for at in (1.0, 9.9, 10.0, 15.0, 19.9, 20.0, 20.1):
        reporter.alive(Lag(MIB, 2.0), 10.0, t0 + at)
    assert _names(events) == ["progress", "progress"]
    assert events.sent[0]["payload"] == {
        "stream_id": "s",
        "s3_key": "",
        "lag_bytes": MIB,
        "lag_seconds": 2.0,
    }


@pytest.mark.slow
def test_a_stalled_stream_still_sends_its_progress_event(registered, events) -> None:
    """A camera that stops writing is not a stuck run: the run keeps telling the
    stuck alert it is alive, with its lag (stuck_after_seconds 10: every 3.3 s)."""
    edit_config(stuck_after_seconds=10)
    src = Path(registered.watch_dir) / "stalled.mp4"
    writer = PausedWriter(src, payload(MIB, seed=4), b"")
    writer.start()
    until(src.exists, 10, "the file")
    flow, out = run_in_thread(src)
    try:
        until(lambda: _names(events).count("progress") >= 2, 30, "two progress events")
    finally:
        writer.go.set()
        writer.join(10)
        flow.join(120)
    assert out["state"].is_completed()
    progress = [e for e in events.sent if e["event"].endswith(".progress")]
    assert progress[0]["payload"]["lag_bytes"] == MIB  # under a part: none in S3 yet
    names = _names(events)
    assert names.index("started") < names.index("progress") < names.index("completed")
