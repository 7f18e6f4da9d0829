"""Tail-loop decisions with plain numbers as the clock: no sleeps."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_ingest import parts, tail
from stream_ingest.parts import MIB, MIN_PART, PartRange, full_parts, part_size
from stream_ingest.records import PartRecord
from stream_ingest.tail import (
    BATCH_PARTS,
    MTIME_GRANULARITY_NS,
    WINDOW_PARTS,
    Growth,
    PartPlanner,
    WriterState,
    ask_writers,
    plan_tasks,
    settled_state,
    stream_ended,
    trusted_parts,
    window_for,
)

BASE = MIN_PART


def part(k: int) -> PartRange:
    """Part k counted out by hand: the sizes of the parts before it, added up."""
    return PartRange(k, sum(part_size(j, BASE) for j in range(1, k)), part_size(k, BASE))


def test_ready_waits_for_a_whole_part() -> None:
    planner = PartPlanner(BASE)
    assert planner.ready(0, 4) == []
    assert planner.ready(BASE - 1, 4) == []
    assert planner.ready(BASE, 4) == [PartRange(1, 0, BASE)]
    assert planner.ready(3 * BASE + 1, 4) == [part(k) for k in (1, 2, 3)]


def test_ready_respects_the_limit_and_skips_done_and_in_flight() -> None:
    planner = PartPlanner(BASE, done={1, 3}, in_flight={2})
    size = 10 * BASE
    assert planner.ready(size, 2) == [part(4), part(5)]
    assert planner.ready(size, 0) == []
    assert [p.number for p in planner.ready(size, 100)] == list(range(4, 11))


@settings(deadline=None)
@given(
    size=st.integers(0, 40 * BASE),
    limit=st.integers(0, 12),
    done=st.sets(st.integers(1, 45)),
    in_flight=st.sets(st.integers(1, 45)),
)
def test_ready_is_the_lowest_full_parts_not_yet_taken(
    size: int, limit: int, done: set[int], in_flight: set[int]
) -> None:
    planner = PartPlanner(BASE, done=set(done), in_flight=set(in_flight))
    ready = planner.ready(size, limit)
    numbers = [p.number for p in ready]
    assert len(ready) <= limit
    assert numbers == sorted(numbers) and not set(numbers) & (done | in_flight)
    assert all(p == part(p.number) and p.end <= size for p in ready)
    # Nothing lower was skipped: every free part below the last one returned is in it.
    free_below = {k for k in range(1, max(numbers, default=0)) if k not in done | in_flight}
    assert free_below <= set(numbers)
    if len(ready) < limit:  # fewer than asked: no other free full part fits
        fits = {k for k in range(1, 46) if part(k).end <= size}
        assert fits - done - in_flight == set(numbers)


def test_covered() -> None:
    assert PartPlanner(BASE).covered() == 0
    assert PartPlanner(BASE, done={1, 2}).covered() == 2 * BASE
    assert PartPlanner(BASE, done={1}, in_flight={3}).covered() == part(3).end


@settings(deadline=None)
@given(taken=st.sets(st.integers(1, 2000), max_size=20), split=st.integers(0, 20))
def test_covered_is_the_end_of_the_highest_taken_part(taken: set[int], split: int) -> None:
    ordered = sorted(taken)
    planner = PartPlanner(BASE, done=set(ordered[:split]), in_flight=set(ordered[split:]))
    expected = part(max(taken)).end if taken else 0
    assert planner.covered() == expected


def test_a_long_recordings_poll_costs_what_is_in_flight_not_what_is_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The tail loop asks on every poll: with 1,500 parts done, one more part ready
    must not walk the plan from part 1 (4 ms a poll, per stream, at that length)."""
    calls, real = 0, part_size

    def counted(k: int, plan: object = BASE) -> int:
        nonlocal calls
        calls += 1
        return real(k, plan)  # type: ignore[arg-type]

    monkeypatch.setattr(tail, "part_size", counted)
    monkeypatch.setattr(parts, "part_size", counted)
    planner = PartPlanner(BASE, done=set(range(1, 1501)))
    size = part(1502).end
    assert planner.ready(size, 4) == [part(1501), part(1502)]
    assert planner.covered() == part(1500).end
    planner.done.add(1501)  # as the loop takes a finished part
    assert planner.ready(size, 4) == [part(1502)]
    assert planner.covered() == part(1501).end
    assert calls < 20


@settings(deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["done", "flight", "land", "settle"]), st.integers(1, 30)),
        max_size=40,
    ),
    size=st.integers(0, 32 * BASE),
)
def test_ready_and_covered_follow_a_planner_changed_in_place(
    steps: list[tuple[str, int]], size: int
) -> None:
    """The same answers as a walk of the whole plan, however the loop changed `done`
    and `in_flight` since the last question (the planner keeps where it got to)."""
    planner = PartPlanner(BASE)
    for op, k in steps:
        if op == "done":
            planner.done.add(k)
        elif op == "flight":
            planner.in_flight.add(k)
        elif op == "land":  # an in-flight part finished
            planner.in_flight.discard(k)
            planner.done.add(k)
        else:  # finalize went back to tailing with these parts
            planner.settle({n: record(n) for n in range(k, k + 3)})
        taken = planner.done | planner.in_flight
        free = [p for p in full_parts(size, BASE) if p.number not in taken]
        assert planner.ready(size, 5) == free[:5]
        top = max(taken, default=0)
        assert planner.covered() == (part(top).end if top else 0)


def record(k: int) -> PartRecord:
    p = part(k)
    return PartRecord(k, f"etag-{k}", p.offset, p.size, "c", "crc")


def ended(
    now: float,
    last: float,
    closed: bool,
    settle: float = 1.0,
    idle: float = 30.0,
    writers: WriterState = WriterState.UNKNOWN,
) -> bool:
    return stream_ended(
        now=now,
        last_change=last,
        closed_hint=closed,
        writers=writers,
        settle_seconds=settle,
        idle_timeout_seconds=idle,
    )


def test_a_file_open_for_writing_never_ends_however_quiet() -> None:
    for quiet in (0.0, 1.0, 30.0, 3600.0):
        assert not ended(1000.0 + quiet, 1000.0, closed=True, writers=WriterState.WRITING)


def test_no_writer_ends_it_after_the_settle_even_without_a_close_hint() -> None:
    assert not ended(100.5, 100.0, closed=False, writers=WriterState.CLOSED)
    assert ended(101.0, 100.0, closed=False, writers=WriterState.CLOSED)


def test_eager_ends_a_file_nobody_writes_before_the_settle() -> None:
    """Finalize waits out the settle itself while it verifies: the loop hands over at
    the look that saw the last bytes, but only when the OS says nobody writes the
    file."""

    def eager(now: float, writers: WriterState, closed: bool = True) -> bool:
        return stream_ended(
            now=now, last_change=100.0, closed_hint=closed, writers=writers,
            settle_seconds=1.0, idle_timeout_seconds=30.0, eager=True,
        )  # fmt: skip

    assert eager(100.2, WriterState.CLOSED, closed=False)
    assert eager(100.0, WriterState.CLOSED)  # its last bytes came at this very look
    assert not eager(100.2, WriterState.WRITING)
    assert not eager(100.2, WriterState.UNKNOWN)  # a hint alone still needs the settle
    assert eager(101.0, WriterState.UNKNOWN)


def test_an_eager_loop_asks_about_writers_at_every_poll_while_one_is_known() -> None:
    """Asking about a known writer is cheap: the eager loop sees a recorder's close at
    the poll that sees its last bytes (quiet 0), not a poll later; otherwise it asks
    only once the file is quiet (eager) or settled (after a premature end)."""
    assert ask_writers(0.0, eager=True, settle_seconds=0.25, known=True)
    assert not ask_writers(0.0, eager=True, settle_seconds=0.25, known=False)
    assert ask_writers(0.2, eager=True, settle_seconds=0.25, known=False)
    assert not ask_writers(0.0, eager=False, settle_seconds=0.25, known=True)
    assert not ask_writers(0.2, eager=False, settle_seconds=0.25, known=True)
    assert ask_writers(0.25, eager=False, settle_seconds=0.25, known=False)


def test_a_live_stream_gets_one_task_run_per_part() -> None:
    ready = [part(7), part(8)]
    assert plan_tasks(ready, free=8, width=4) == [[part(7)], [part(8)]]
    assert plan_tasks([], free=8, width=4) == []


def test_a_file_far_ahead_goes_up_in_batches_of_consecutive_parts() -> None:
    ready = [part(k) for k in range(1, 41)]
    tasks = plan_tasks(ready, free=8, width=4)
    # Two batches of BATCH_PARTS, four slots each: the slots are full.
    assert [[p.number for p in t] for t in tasks] == [
        list(range(1, BATCH_PARTS + 1)),
        list(range(BATCH_PARTS + 1, 2 * BATCH_PARTS + 1)),
    ]
    # A gap (a part already done or in flight) starts a new batch: a batch task
    # uploads every number from its first to its last.
    gapped = [part(k) for k in (1, 2, 3, 5, 6, 7, 8, 9, 10)]
    assert [[p.number for p in t] for t in plan_tasks(gapped, free=4, width=2)] == [
        [1, 2, 3],
        [5, 6, 7, 8, 9, 10],
    ]
    assert plan_tasks(ready, free=3, width=4) == []  # no room for a batch: wait


@given(
    numbers=st.lists(st.integers(1, 200), unique=True, max_size=120),
    free=st.integers(0, 16),
    width=st.integers(1, 8),
)
def test_plan_tasks_properties(numbers: list[int], free: int, width: int) -> None:
    ready = [part(k) for k in sorted(numbers)]
    tasks = plan_tasks(ready, free, width)
    planned = [p for t in tasks for p in t]
    assert planned == ready[: len(planned)]  # in order, none twice, none skipped
    for t in tasks:  # each task is a run of consecutive numbers
        assert [p.number for p in t] == list(range(t[0].number, t[0].number + len(t)))
        assert len(t) <= BATCH_PARTS
    assert sum(min(len(t), width) for t in tasks) <= free  # memory stays bounded


def test_a_part_read_after_the_last_change_is_final() -> None:
    old = 1_000_000_000_000
    # An mtime older than the timestamp granularity: any later write would move it.
    state = settled_state(10, old, old + MTIME_GRANULARITY_NS + 1)
    assert state == (10, old)
    # A recent mtime cannot vouch: a write in the same clock tick keeps it.
    assert settled_state(10, old, old + MTIME_GRANULARITY_NS) is None
    assert settled_state(10, old, old) is None
    read_at = {1: (10, old), 2: (10, old), 3: (12, old + 5)}
    assert trusted_parts(read_at, (10, old)) == {1, 2}
    assert trusted_parts(read_at, (10, old + 1)) == set()  # rewritten in place since
    assert trusted_parts(read_at, (12, old + 5)) == {3}


def test_an_empty_file_nobody_writes_waits_for_the_idle_timeout() -> None:
    """Created first, opened for writing later: not a finished empty recording yet."""
    closed = WriterState.CLOSED
    assert not stream_ended(
        now=105.0, last_change=100.0, closed_hint=False, writers=closed,
        settle_seconds=1.0, idle_timeout_seconds=30.0, empty=True,
    )  # fmt: skip
    assert stream_ended(
        now=130.0, last_change=100.0, closed_hint=False, writers=closed,
        settle_seconds=1.0, idle_timeout_seconds=30.0, empty=True,
    )  # fmt: skip


def test_unknown_writers_fall_back_to_the_hint_and_the_idle_timeout() -> None:
    assert ended(101.0, 100.0, closed=True, writers=WriterState.UNKNOWN)
    assert not ended(101.0, 100.0, closed=False, writers=WriterState.UNKNOWN)
    assert ended(130.0, 100.0, closed=False, writers=WriterState.UNKNOWN)


def test_a_close_hint_needs_a_settle_of_no_growth() -> None:
    assert not ended(100.0, 100.0, closed=True)
    assert not ended(100.9, 100.0, closed=True)
    assert ended(101.0, 100.0, closed=True)
    assert not ended(101.0, 100.0, closed=False)  # no hint: only the idle timeout ends it


def test_idle_timeout_ends_a_stream_without_a_close() -> None:
    assert not ended(129.9, 100.0, closed=False)
    assert ended(130.0, 100.0, closed=False)
    assert ended(130.0, 100.0, closed=True, settle=60.0)


@given(
    quiet=st.floats(0, 1000, allow_nan=False),
    more=st.floats(0, 1000, allow_nan=False),
    settle=st.floats(0, 100, allow_nan=False),
    idle=st.floats(0.001, 500, allow_nan=False),
)
def test_stream_ended_properties(quiet: float, more: float, settle: float, idle: float) -> None:
    # Longer quiet never un-ends a stream, and a close hint never makes it end later.
    for closed in (False, True):
        if ended(1000.0 + quiet, 1000.0, closed, settle, idle):
            assert ended(1000.0 + quiet + more, 1000.0, closed, settle, idle)
    if ended(1000.0 + quiet, 1000.0, False, settle, idle):
        assert ended(1000.0 + quiet, 1000.0, True, settle, idle)
    # Nothing ends while the file is still changing, unless settle is zero.
    if settle > 0:
        assert not ended(1000.0, 1000.0, True, settle, idle)


def test_settle_resumes_the_full_parts_only() -> None:
    planner = PartPlanner(BASE, done={9})
    planner.settle(
        {
            1: PartRecord(1, "e1", 0, BASE, "c"),
            2: PartRecord(2, "e2", BASE, BASE, "c"),
            3: PartRecord(3, "e3", 2 * BASE, 17, "c"),  # finalize's short last part
        }
    )
    assert planner.done == {1, 2}


def test_growth_resets_the_quiet_time() -> None:
    growth = Growth()
    clock = 0.0
    assert growth.observe(10 * MIB, 1, clock)  # the first look is a change
    for clock in (0.3, 0.6, 0.9):
        assert not growth.observe(10 * MIB, 1, clock)
    assert growth.changed_at == 0.0
    assert ended(1.0, growth.changed_at, closed=True)
    assert growth.observe(11 * MIB, 2, 0.95)  # it grew after all
    assert not ended(1.0, growth.changed_at, closed=True)
    assert not ended(1.9, growth.changed_at, closed=True)
    assert ended(1.95, growth.changed_at, closed=True)


def test_growth_counts_an_mtime_only_change() -> None:
    # A muxer rewriting the head at close changes mtime, not size.
    growth = Growth()
    growth.observe(100, 1_000, 5.0)
    assert growth.observe(100, 2_000, 7.0)
    assert (growth.size, growth.mtime_ns, growth.changed_at) == (100, 2_000, 7.0)
    assert not growth.observe(100, 2_000, 9.0)
    assert growth.changed_at == 7.0


def test_growth_counts_a_shrink_as_a_change() -> None:
    growth = Growth()
    growth.observe(100, 1, 0.0)
    assert growth.observe(50, 1, 1.0)
    assert growth.changed_at == 1.0


@pytest.mark.parametrize("limit", [1, 3])
def test_the_planner_walks_the_plan_in_order(limit: int) -> None:
    planner = PartPlanner(BASE)
    size, seen = 7 * BASE + 5, []
    while batch := planner.ready(size, limit):
        assert len(batch) <= limit
        seen += batch
        planner.in_flight |= {p.number for p in batch}
        planner.done |= planner.in_flight
        planner.in_flight.clear()
    assert seen == full_parts(size, BASE)
    assert planner.covered() == 7 * BASE


def _ready(*numbers: int) -> list[PartRange]:
    base = MIN_PART
    return [PartRange(n, (n - 1) * base, base) for n in numbers]


def test_a_caught_up_stream_gets_a_window_of_parts() -> None:
    assert window_for(_ready(5), in_flight=0) == range(5, 5 + WINDOW_PARTS)


def test_a_window_stops_before_a_part_already_done() -> None:
    # A crashed run's checkpoint with a hole (part 1 was still in flight): the rerun's
    # window sends part 1, not 2-5 again.
    assert window_for(_ready(1), in_flight=0, done={2, 3, 4, 5}) == range(1, 2)
    assert window_for(_ready(5), in_flight=0, done={1, 2, 3, 4}) == range(5, 5 + WINDOW_PARTS)
    assert window_for(_ready(5), in_flight=0, done={9}) == range(5, 9)


def test_no_window_while_tasks_run_or_when_the_file_is_ahead() -> None:
    assert window_for(_ready(5), in_flight=1) is None  # one window (or task) at a time
    assert window_for(_ready(5, 6), in_flight=0) is None  # ahead: parallel tasks instead
    assert window_for([], in_flight=0) is None  # nothing to send yet: no empty task run


def test_a_stream_a_few_parts_behind_gets_one_window_not_a_task_run_per_part() -> None:
    """A live stream that fell behind by no more parts than a window sends at once
    catches up in one window task run (its parts in parallel), not in one task run
    each; further behind, parallel tasks as before."""
    assert window_for(_ready(5, 6, 7), in_flight=0, width=4) == range(5, 5 + WINDOW_PARTS)
    assert window_for(_ready(5, 6, 7, 8), in_flight=0, width=4) == range(5, 5 + WINDOW_PARTS)
    assert window_for(_ready(5, 6, 7, 8, 9), in_flight=0, width=4) is None
    assert window_for(_ready(5, 6), in_flight=1, width=4) is None
    assert window_for(_ready(5, 6), in_flight=0, done={7}, width=4) == range(5, 7)


def test_reserved_parts_are_not_planned_nor_required_of_the_file() -> None:
    planner = PartPlanner(MIN_PART)
    planner.in_flight.add(1)
    planner.reserved.update(range(2, 9))
    assert [p.number for p in planner.ready(10 * MIN_PART, 16)] == [9, 10]
    assert planner.covered() == MIN_PART  # part 1 only: 2..8 may not exist yet
