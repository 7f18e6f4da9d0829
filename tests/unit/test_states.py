"""The stream state machine, as behaviour: the lifecycle's paths are open, the
shortcuts and the ways back out of an end are closed. (No copy of the table: each
test asks `transition` and checks what a stream's life needs.)"""

from __future__ import annotations

import itertools
from collections import deque

import pytest

from stream_ingest.states import ACTIVE, TERMINAL, IllegalTransition, Status, transition

D, U, FIN, C, F, A, S, V = (
    Status.DETECTED,
    Status.UPLOADING,
    Status.FINALIZING,
    Status.COMPLETED,
    Status.FAILED,
    Status.ABORTED,
    Status.SKIPPED,
    Status.SALVAGED,
)


def legal(current: Status, target: Status) -> bool:
    try:
        transition(current, target)
    except IllegalTransition:
        return False
    return True


def reachable(start: Status, avoiding: frozenset[Status] = frozenset()) -> set[Status]:
    seen, todo = {start}, deque([start])
    while todo:
        cur = todo.popleft()
        for nxt in Status:
            if nxt not in seen and nxt not in avoiding and legal(cur, nxt):
                seen.add(nxt)
                todo.append(nxt)
    return seen


@pytest.mark.parametrize(
    "path",
    [
        [D, U, FIN, C],  # a recording
        [D, U, U, FIN, U, FIN, C],  # retried steps, a file that changed while finalizing
        [D, U, F, U, FIN, F, U, FIN, C],  # failures resumed by reruns
        [D, F, U, FIN, C],  # failed before its first part
        [D, U, A],  # source deleted or truncated
        [D, U, F, A],  # a rerun finds the source gone
        [D, U, FIN, C, U, FIN, C, U, FIN, C],  # revisions: the file grew after completion
        [D, U, FIN, C, U, F, U, FIN, C],  # a revision that failed and was resumed
        [D, S],  # on_existing=skip: the key belongs to another take
        [D, U, FIN, S],  # ... found taken at completion
        [D, U, V],  # source deleted mid-recording: its parts kept as a partial object
        [D, U, FIN, V],  # ... while finalizing
        [D, U, F, V],  # the janitor or an operator salvages a failed stream
    ],
)
def test_the_lifecycles_paths_are_legal(path: list[Status]) -> None:
    for cur, nxt in itertools.pairwise(path):
        assert transition(cur, nxt) is nxt
        assert transition(str(cur), str(nxt)) is nxt  # as read from Redis


@pytest.mark.parametrize("end", [A, S, V])
def test_an_ended_stream_has_no_way_out(end: Status) -> None:
    for target in Status:
        with pytest.raises(IllegalTransition) as info:
            transition(end, target)
        assert (info.value.current, info.value.target) == (end, target)
        assert f"{end} -> {target}" in str(info.value)


def test_only_a_stream_with_an_upload_is_salvaged() -> None:
    assert V in TERMINAL
    assert [t for t in Status if legal(t, V)] == [U, FIN, F]


def test_completed_needs_finalizing_and_finalizing_needs_uploading() -> None:
    assert C not in reachable(D, avoiding=frozenset({FIN}))
    assert FIN not in reachable(D, avoiding=frozenset({U}))
    assert not legal(F, C) and not legal(F, FIN)  # a resumed stream uploads first


def test_every_live_state_can_fail_be_aborted_and_still_complete() -> None:
    for state in ACTIVE | {F}:
        assert legal(state, F) and legal(state, A)
        assert C in reachable(state)
    assert ACTIVE.isdisjoint(TERMINAL) and F not in ACTIVE | TERMINAL


def test_a_completed_stream_only_opens_again_as_a_revision() -> None:
    assert C in TERMINAL  # for its take: runs of it have nothing to do...
    assert [t for t in Status if legal(C, t)] == [U]  # ...unless its file changed


def test_nothing_goes_back_to_detected() -> None:
    assert not any(legal(state, D) for state in Status)


def test_unknown_status_is_rejected() -> None:
    with pytest.raises(ValueError):
        transition("uploading", "paused")
    with pytest.raises(ValueError):
        transition("bogus", "uploading")
