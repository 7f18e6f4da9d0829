"""The events a stream's end sends, as the example automation sees them: a failure
carries the count of failures so far (the first says 1), a completion resets it, and
an operator's cancel or a worker's shutdown is announced as such, never counted and
never rerun. The automation is the one in automations/, matched by Prefect's own
server-side trigger."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from prefect._internal import control_listener
from prefect.exceptions import TerminationSignal

from stream_ingest.flows import ingest, report, stopping
from stream_ingest.flows.ingest import stream_ingest
from stream_ingest.flows.stopping import StopRequested
from tests.flows.automation import rerun_parameters, reruns


@pytest.fixture
def breaks(monkeypatch: pytest.MonkeyPatch):
    """`breaks(exc)`: every run from now on raises `exc` once its upload is open
    (`breaks(None)` mends it)."""
    real = ingest.tail_and_finalize

    def install(exc: BaseException | None) -> None:
        def broken(*args: Any, **kwargs: Any) -> Any:
            if exc is None:
                return real(*args, **kwargs)
            raise exc

        monkeypatch.setattr(ingest, "tail_and_finalize", broken)

    return install


def rerun_as_the_automation_does(event: dict[str, Any]) -> Any:
    """The automation's run-deployment action, the flow called with its parameters."""
    return stream_ingest(**rerun_parameters(event), return_state=True)


def test_a_stream_that_keeps_failing_is_rerun_exactly_three_times(
    registered, store, events, breaks
):
    """The automation reruns failures 1 to 3: a stream failing four times in a row is
    rerun three times (its first failure included) and waits for an operator after
    the fourth. A completion resets the count: the next failure is the first again."""
    src = Path(registered.watch_dir) / "flaky.mp4"
    src.write_bytes(b"x" * 1000)
    breaks(ConnectionError("S3 unreachable"))

    assert stream_ingest(path=str(src), return_state=True).is_failed()
    for _ in range(10):  # bounded: a matcher that always fired would not end
        if not (fired := reruns([events.last_end()])):
            break
        assert rerun_as_the_automation_does(fired[0]).is_failed()

    assert events.ends() == [("failed", "1"), ("failed", "2"), ("failed", "3"), ("failed", "4")]
    assert len(reruns(events.sent)) == 3
    [record] = store.streams.list()
    assert record.failures == 4 and record.status == "failed"

    breaks(None)
    # An operator reruns it (the same parameters) once S3 is back.
    assert rerun_as_the_automation_does(events.last_end()).is_completed()
    assert events.ends()[-1] == ("completed", "0")
    assert store.streams.require(record.stream_id).failures == 0

    with open(src, "ab") as fh:  # it grows: a revision of the stream
        fh.write(b"y" * 10)
    breaks(ConnectionError("S3 unreachable"))
    assert stream_ingest(stream_id=record.stream_id, return_state=True).is_failed()
    assert events.ends()[-1] == ("failed", "1")
    assert len(reruns(events.sent)) == 4


@pytest.mark.parametrize(
    ("reason", "announced"),
    [(stopping.CANCELLED, "cancelled"), (stopping.SHUTDOWN, "rescheduled")],
)
def test_a_warm_worker_s_stop_is_not_a_failure(
    registered, store, events, breaks, reason, announced
):
    """An operator's cancel (or the worker's shutdown, which reschedules the run
    itself) stops the stream resumable: announced as such, the count unchanged."""
    src = Path(registered.watch_dir) / "stopped.mp4"
    src.write_bytes(b"x" * 1000)
    breaks(ConnectionError("S3 unreachable"))
    stream_ingest(path=str(src), return_state=True)
    [record] = store.streams.list()

    breaks(StopRequested(reason))
    stream_ingest(stream_id=record.stream_id, return_state=True)

    assert events.ends() == [("failed", "1"), (announced, "1")]
    assert len(reruns(events.sent)) == 1  # the failure's, not the stop's
    stopped = store.streams.require(record.stream_id)
    assert stopped.failures == 1
    assert stopped.status == "failed" and stopped.error == f"stopped: {reason}"  # resumable


def test_a_process_worker_s_cancel_is_not_a_failure(registered, store, events, breaks):
    """A process worker tells the run it is cancelled over Prefect's control channel,
    then sends SIGTERM, which Prefect raises in the flow as TerminationSignal."""
    src = Path(registered.watch_dir) / "cancelled.mp4"
    src.write_bytes(b"x" * 1000)
    breaks(TerminationSignal(signal.SIGTERM))
    control_listener._set_intent("cancel")  # what the control channel's reader does
    try:
        with pytest.raises(TerminationSignal):
            stream_ingest(path=str(src))
    finally:
        control_listener.clear_intent()

    assert events.ends() == [("cancelled", "0")]
    assert reruns(events.sent) == []
    assert store.streams.list()[0].failures == 0


@pytest.mark.parametrize(
    ("intent", "announced"),
    [
        (None, "failed"),
        ("cancel", "cancelled"),
        ("reschedule", "rescheduled"),
        ("relinquish", "rescheduled"),
    ],
)
def test_a_sigterm_is_a_failure_unless_the_run_was_told_why(intent, announced):
    """A SIGTERM without an intent is a crash (the process killed from outside)."""
    if intent:
        control_listener._set_intent(intent)
    try:
        assert report.how_it_ended(TerminationSignal(signal.SIGTERM)) == announced
    finally:
        control_listener.clear_intent()


def test_a_stop_for_another_reason_and_any_other_error_are_failures():
    assert report.how_it_ended(StopRequested("stuck")) == "failed"
    assert report.how_it_ended(ConnectionError("S3 unreachable")) == "failed"
