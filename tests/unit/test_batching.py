"""Which new streams share a flow run (stream_ingest/sensors/batching.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stream_ingest.sensors.batching import Waiting, any_batchable, plan_runs

PART = 8 * 1024 * 1024


def _w(sid: str, cause: str = "created", closed: bool = False) -> Waiting:
    return Waiting(f"/rec/{sid}.ts", sid, f"id-{sid}", cause, closed)  # type: ignore[arg-type]


def test_finished_small_files_are_batched_in_order_up_to_the_cap() -> None:
    waiting = [_w(str(i), "moved") for i in range(7)]
    singles, batches = plan_runs(waiting, {str(i): 1000 for i in range(7)}, PART, 3)
    assert [[w.stream_id for w in b] for b in batches] == [["0", "1", "2"], ["3", "4", "5"]]
    assert [w.stream_id for w in singles] == ["6"]  # a batch of one is a run of its own


def test_what_is_not_finished_small_and_present_gets_its_own_run() -> None:
    waiting = [
        _w("live"),  # created, no close seen, writers not said to be gone
        _w("big", "moved"),
        _w("empty", "moved"),
        _w("gone", "moved"),
        _w("a", "created", closed=True),
        _w("b", "scan"),
    ]
    sizes = {"live": 10, "big": PART + 1, "empty": 0, "a": 10, "b": PART}
    singles, batches = plan_runs(waiting, sizes, PART, 50)
    assert [[w.stream_id for w in b] for b in batches] == [["a", "b"]]
    assert [w.stream_id for w in singles] == ["live", "big", "empty", "gone"]


def test_one_candidate_or_batching_off_makes_no_batch() -> None:
    assert plan_runs([_w("a", "moved"), _w("live")], {"a": 1, "live": 1}, PART, 50)[1] == []
    two = [_w("a", "moved"), _w("b", "moved")]
    assert plan_runs(two, {"a": 1, "b": 1}, PART, 0) == (two, [])
    assert plan_runs(two, {"a": 1, "b": 1}, PART, 1) == (two, [])


def test_only_a_stream_that_may_be_finished_lingers() -> None:
    assert not any_batchable([_w("x", "opened"), _w("y", "new take")])
    assert any_batchable([_w("x", "opened"), _w("y", "created")])
    assert any_batchable([_w("x", "moved")])


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["created", "moved", "scan", "opened"]),
            st.booleans(),
            st.integers(-1, 20),
        ),
        max_size=40,
    ),
    st.integers(0, 6),
)
def test_every_stream_gets_exactly_one_run(specs, batch_max) -> None:
    waiting = [_w(str(i), cause, closed) for i, (cause, closed, _) in enumerate(specs)]
    sizes = {str(i): size for i, (_, _, size) in enumerate(specs) if size >= 0}
    singles, batches = plan_runs(waiting, sizes, 10, batch_max)
    ids = [w.stream_id for w in singles] + [w.stream_id for b in batches for w in b]
    assert sorted(ids) == sorted(w.stream_id for w in waiting)
    for batch in batches:
        assert 2 <= len(batch) <= batch_max
        assert all(w.finished and 0 < sizes[w.stream_id] <= 10 for w in batch)
