"""Part planning against S3's multipart rules: 5 MiB..5 GiB parts, 10,000 parts, 5 TiB."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_ingest.parts import (
    MAX_OBJECT,
    MAX_PART,
    MAX_PARTS,
    MIB,
    MIN_PART,
    PartPlan,
    PartRange,
    TooManyParts,
    check_fits,
    final_plan,
    full_parts,
    part_offset,
    part_size,
)

TIB = 1024 * 1024 * MIB
bases = st.integers(MIN_PART, MAX_PART)
numbers = st.integers(1, MAX_PARTS)
# Sizes where the part count stays small enough for brute-force checks, plus the edges.
sizes = st.one_of(
    st.integers(0, 64 * MIB),
    st.integers(0, 200 * 1024 * MIB),
    st.sampled_from([0, 1, MIN_PART - 1, MIN_PART, MIN_PART + 1, 8 * MIB, 8 * MIB + 1]),
)


def test_s3_constants() -> None:
    assert (MIN_PART, MAX_PART, MAX_PARTS) == (5 * MIB, 5 * 1024 * MIB, 10_000)
    assert MAX_OBJECT == 5 * TIB


@given(base=bases, k=numbers)
def test_every_full_part_is_within_s3_part_limits(base: int, k: int) -> None:
    assert MIN_PART <= part_size(k, base) <= MAX_PART


@given(base=bases, k=st.integers(1, MAX_PARTS - 1))
def test_part_size_never_decreases(base: int, k: int) -> None:
    assert part_size(k, base) <= part_size(k + 1, base)


def test_first_part_is_the_base() -> None:
    assert part_size(1, MIN_PART) == MIN_PART
    assert part_size(1) == 8 * MIB  # the default base
    assert part_size(1, MAX_PART) == MAX_PART


@pytest.mark.parametrize("base", [MIN_PART, MIN_PART + 1, 8 * MIB, 100 * MIB, MAX_PART])
def test_ten_thousand_parts_cover_an_object_of_5_tib(base: int) -> None:
    total = sum(part_size(k, base) for k in range(1, MAX_PARTS + 1))
    assert total >= MAX_OBJECT


@settings(max_examples=30, deadline=None)
@given(base=bases)
def test_any_base_covers_5_tib(base: int) -> None:
    assert sum(part_size(k, base) for k in range(1, MAX_PARTS + 1)) >= MAX_OBJECT


@pytest.mark.parametrize(
    ("k", "base"),
    [
        (1, MIN_PART - 1),
        (1, 0),
        (1, MAX_PART + 1),
        (0, MIN_PART),
        (-1, MIN_PART),
        (MAX_PARTS + 1, MIN_PART),
    ],
)
def test_out_of_range_part_numbers_and_bases_raise(k: int, base: int) -> None:
    with pytest.raises(ValueError):
        part_size(k, base)
    with pytest.raises(ValueError):
        part_offset(k, base)


def test_boundary_part_numbers_are_accepted() -> None:
    assert part_size(MAX_PARTS, MIN_PART) >= MIN_PART
    assert part_offset(1, MIN_PART) == 0


@pytest.mark.parametrize("base", [MIN_PART, 8 * MIB, 1000 * MIB + 7, MAX_PART])
def test_part_offset_is_the_running_sum_for_every_part(base: int) -> None:
    running = 0
    for k in range(1, MAX_PARTS + 1):
        assert part_offset(k, base) == running, k
        running += part_size(k, base)


@settings(deadline=None)  # a brute-force sum of up to 10,000 parts
@given(base=bases, k=numbers)
def test_part_offset_matches_a_brute_force_sum(base: int, k: int) -> None:
    assert part_offset(k, base) == sum(part_size(j, base) for j in range(1, k))


@settings(max_examples=60, deadline=None)
@given(size=sizes, base=st.sampled_from([MIN_PART, 8 * MIB, 64 * MIB]))
def test_full_parts_are_contiguous_and_the_next_would_not_fit(size: int, base: int) -> None:
    parts = full_parts(size, base)
    assert [p.number for p in parts] == list(range(1, len(parts) + 1))
    offset = 0
    for p in parts:
        assert p.offset == offset
        assert p.size == part_size(p.number, base)
        offset = p.end
    assert offset <= size
    if len(parts) < MAX_PARTS:
        assert offset + part_size(len(parts) + 1, base) > size


def test_full_parts_at_exact_boundaries() -> None:
    assert full_parts(0, MIN_PART) == []
    assert full_parts(MIN_PART - 1, MIN_PART) == []
    assert full_parts(MIN_PART, MIN_PART) == [PartRange(1, 0, MIN_PART)]
    assert len(full_parts(2 * MIN_PART - 1, MIN_PART)) == 1
    assert len(full_parts(2 * MIN_PART, MIN_PART)) == 2


def test_full_parts_of_a_huge_size_stop_at_ten_thousand() -> None:
    parts = full_parts(100 * TIB, MIN_PART)
    assert len(parts) == MAX_PARTS
    assert parts[-1].end == part_offset(MAX_PARTS, MIN_PART) + part_size(MAX_PARTS, MIN_PART)


def _check_plan(size: int, base: int) -> list[PartRange]:
    plan = final_plan(size, base)
    assert plan, "a plan always has at least one part"
    assert plan[0].offset == 0
    for a, b in itertools.pairwise(plan):
        assert a.end == b.offset
    assert plan[-1].end == size
    assert [p.number for p in plan] == list(range(1, len(plan) + 1))
    assert len(plan) <= MAX_PARTS
    for p in plan[:-1]:  # every part but the last is a full planned part
        assert p == PartRange(p.number, part_offset(p.number, base), part_size(p.number, base))
    last = plan[-1]
    assert last.offset == part_offset(last.number, base)
    assert last.size <= part_size(last.number, base)
    assert last.size > 0 or size == 0
    return plan


@settings(max_examples=60, deadline=None)
@given(size=sizes, base=st.sampled_from([MIN_PART, 8 * MIB, 64 * MIB]))
def test_final_plan_covers_the_file_exactly(size: int, base: int) -> None:
    _check_plan(size, base)


@pytest.mark.parametrize(
    "size", [1, MIN_PART - 1, MIN_PART, MIN_PART + 1, 2 * MIN_PART, 900 * MIN_PART + 1]
)
def test_final_plan_boundaries(size: int) -> None:
    plan = _check_plan(size, MIN_PART)
    full = full_parts(size, MIN_PART)
    covered = full[-1].end if full else 0
    assert plan[: len(full)] == full
    assert len(plan) == len(full) + (covered < size)


def test_final_plan_after_the_first_doubling() -> None:
    plan = final_plan(900 * MIN_PART + 1, MIN_PART)
    assert plan[-1] == PartRange(901, 900 * MIN_PART, 1)
    assert part_size(901, MIN_PART) == 2 * MIN_PART


def test_final_plan_of_an_empty_file_is_one_empty_part() -> None:
    assert final_plan(0) == [PartRange(1, 0, 0)]
    assert final_plan(0, MIN_PART) == [PartRange(1, 0, 0)]


def test_final_plan_short_file_is_one_short_part() -> None:
    assert final_plan(123) == [PartRange(1, 0, 123)]


@pytest.mark.parametrize("base", [MIN_PART, 8 * MIB, MAX_PART])
def test_final_plan_at_5_tib_fits_and_one_byte_more_raises(base: int) -> None:
    plan = _check_plan(MAX_OBJECT, base)
    assert len(plan) <= MAX_PARTS
    with pytest.raises(ValueError, match="5 TiB"):
        final_plan(MAX_OBJECT + 1, base)


# The fixed policy (Cloudflare R2): every part but the last has the base size.
fixed_bases = st.sampled_from([MIN_PART, 8 * MIB, 100 * MIB, MAX_PART])


@given(base=fixed_bases, data=st.data())
def test_a_fixed_plan_cuts_every_part_but_the_last_at_the_base(base: int, data) -> None:
    plan = PartPlan(base, fixed=True)
    size = data.draw(st.one_of(st.integers(0, 64 * MIB), st.integers(0, plan.largest)))
    parts = final_plan(size, plan)
    assert len(parts) <= MAX_PARTS
    assert all(p.size == base for p in parts[:-1])
    assert 0 < parts[-1].size <= base or size == 0
    assert sum(p.size for p in parts) == size
    for p in parts:
        assert (p.offset, part_offset(p.number, plan)) == ((p.number - 1) * base,) * 2


@pytest.mark.parametrize("base", [MIN_PART, 8 * MIB, 100 * MIB])
def test_a_fixed_plan_holds_ten_thousand_parts_and_fails_one_byte_past(base: int) -> None:
    plan = PartPlan(base, fixed=True)
    assert plan.largest == MAX_PARTS * base
    parts = final_plan(plan.largest, plan)
    assert len(parts) == MAX_PARTS and {p.size for p in parts} == {base}
    assert len(full_parts(100 * TIB, plan)) == MAX_PARTS  # a growing file: never part 10,001
    with pytest.raises(TooManyParts) as err:
        final_plan(plan.largest + 1, plan)
    message = str(err.value)
    assert "\n" not in message
    assert "10,000 parts" in message and f"{plan.largest:,} bytes" in message
    with pytest.raises(TooManyParts):
        check_fits(plan.largest + 1, plan)
    check_fits(plan.largest, plan)


def test_the_largest_recording_of_each_policy() -> None:
    assert PartPlan(8 * MIB).largest == MAX_OBJECT  # growing: S3's own limit
    assert PartPlan(8 * MIB, fixed=True).largest == 80_000 * MIB
    assert PartPlan(MAX_PART, fixed=True).largest == MAX_OBJECT  # capped at 5 TiB
    assert PartPlan.of(8 * MIB, "fixed") == PartPlan(8 * MIB, True)
    assert PartPlan.of(8 * MIB, "") == PartPlan(8 * MIB)  # records from before policies


def test_a_bare_base_is_the_growing_plan() -> None:
    k = 901
    assert part_size(k, MIN_PART) == part_size(k, PartPlan(MIN_PART)) == 2 * MIN_PART
    assert part_size(k, PartPlan(MIN_PART, fixed=True)) == MIN_PART
