"""The stream state machine: every pair of states, legal or not."""

from __future__ import annotations

import itertools

import pytest

from stream_ingest.states import ACTIVE, TERMINAL, IllegalTransition, Status, transition

D, U, FIN, C, F, A = (
    Status.DETECTED,
    Status.UPLOADING,
    Status.FINALIZING,
    Status.COMPLETED,
    Status.FAILED,
    Status.ABORTED,
)
# The documented edges: detected -> uploading -> finalizing -> completed; finalizing ->
# uploading when the file changes while finalizing; failed is resumable (-> uploading);
# anything not terminal can fail or be aborted; a retried step may repeat its own
# status (uploading, finalizing, failed).
LEGAL = {
    (D, U),
    (D, F),
    (D, A),
    (U, U),
    (U, FIN),
    (U, F),
    (U, A),
    (FIN, U),
    (FIN, FIN),
    (FIN, C),
    (FIN, F),
    (FIN, A),
    (F, U),
    (F, F),
    (F, A),
}
ALL_PAIRS = list(itertools.product(Status, Status))


def test_the_six_states() -> None:
    assert {s.value for s in Status} == {
        "detected",
        "uploading",
        "finalizing",
        "completed",
        "failed",
        "aborted",
    }
    assert {C, A} == TERMINAL
    assert {D, U, FIN} == ACTIVE


@pytest.mark.parametrize(("current", "target"), ALL_PAIRS, ids=lambda s: str(s))
def test_transition_accepts_exactly_the_documented_edges(current: Status, target: Status) -> None:
    if (current, target) in LEGAL:
        assert transition(current, target) is target
        assert transition(str(current), str(target)) is target  # as read from Redis
    else:
        with pytest.raises(IllegalTransition) as info:
            transition(current, target)
        assert (info.value.current, info.value.target) == (current, target)
        assert f"{current} -> {target}" in str(info.value)


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_terminal_states_have_no_way_out(terminal: Status) -> None:
    for target in Status:
        with pytest.raises(IllegalTransition):
            transition(terminal, target)


def test_every_non_terminal_state_can_fail_and_be_aborted() -> None:
    for state in set(Status) - TERMINAL:
        assert transition(state, F) is F
        assert transition(state, A) is A


def test_completed_is_only_reached_from_finalizing() -> None:
    assert {cur for cur in Status if (cur, C) in LEGAL} == {FIN}


def test_unknown_status_is_rejected() -> None:
    with pytest.raises(ValueError):
        transition("uploading", "paused")
    with pytest.raises(ValueError):
        transition("bogus", "uploading")
