"""What a salvage keeps (pure): the key of the partial object, the parts that make
the file's first bytes, when an upload is redundant, who may be salvaged."""

from __future__ import annotations

import pytest

from stream_ingest.errors import KeyTooLong
from stream_ingest.parts import MIB, PartPlan, part_size
from stream_ingest.records import PartRecord, StreamRecord, UploadedPart
from stream_ingest.salvage import copy_ranges, endable, in_completed, partial_key, prefix_parts
from stream_ingest.states import Status

BASE = 5 * MIB


def _part(n: int, size: int = BASE, etag: str = "") -> UploadedPart:
    return UploadedPart(n, etag or f'"e{n}"', size)


@pytest.mark.parametrize(
    ("key", "n", "partial"),
    [
        ("rec/cam1/take.mkv", 1, "rec/cam1/take.partial.mkv"),
        ("rec/cam1/take.mkv", 2, "rec/cam1/take.partial (2).mkv"),
        ("take.tar.mp4", 1, "take.tar.partial.mp4"),
        ("rec/notes", 1, "rec/notes.partial"),
        ("rec/notes", 3, "rec/notes.partial (3)"),
        ("rec/.hidden", 1, "rec/.hidden.partial"),
        ("rec/cam1 (2).mp4", 1, "rec/cam1 (2).partial.mp4"),
    ],
)
def test_the_partial_key_sits_beside_the_stream_s_key(key: str, n: int, partial: str) -> None:
    assert partial_key(key, n) == partial


def test_a_partial_key_past_s3_s_limit_is_refused() -> None:
    with pytest.raises(KeyTooLong):
        partial_key("a/" + "x" * 1018 + ".mkv")


def test_the_prefix_is_every_part_up_to_the_first_gap() -> None:
    parts = [_part(1), _part(2), _part(4), _part(5)]
    assert [p.number for p in prefix_parts(parts, BASE)] == [1, 2]


def test_a_short_part_is_the_last_of_the_prefix() -> None:
    """A part shorter than planned is where the file ended when it was read: what
    follows cannot sit right after it (and S3 refuses a short part that is not last)."""
    parts = [_part(3), _part(2, 1000), _part(1)]
    assert [(p.number, p.size) for p in prefix_parts(parts, BASE)] == [(1, BASE), (2, 1000)]


def test_no_first_part_or_no_upload_keeps_nothing() -> None:
    assert prefix_parts([_part(2), _part(3)], BASE) == []
    assert prefix_parts([_part(1)], 0) == []  # a record with no upload opened
    assert prefix_parts([_part(1, BASE + 1)], BASE) == []  # not this plan's part


def test_under_a_fixed_plan_the_prefix_is_parts_of_the_base() -> None:
    """What a fixed stream salvages is parts of one size but the last, as R2 needs."""
    fixed = PartPlan(BASE, fixed=True)
    parts = [_part(k) for k in range(1, 903)] + [_part(903, 7)]
    kept = prefix_parts(parts, fixed)
    assert len(kept) == 903 and {p.size for p in kept[:-1]} == {BASE}
    assert prefix_parts([_part(1), _part(2, 2 * BASE)], fixed) == [_part(1)]


def test_the_prefix_follows_the_doubling_part_sizes() -> None:
    parts = [_part(k, part_size(k, BASE)) for k in range(1, 903)]
    assert len(prefix_parts(parts, BASE)) == 902
    assert parts[900].size == 2 * BASE


def test_an_upload_is_redundant_only_if_every_part_is_in_the_completed_object() -> None:
    done = {n: PartRecord(n, f'"e{n}"', (n - 1) * BASE, BASE, "x") for n in (1, 2, 3)}

    assert in_completed([_part(1), _part(3)], done)
    assert in_completed([_part(1, etag="e1")], done)  # quoted or not, as S3 gives it
    assert not in_completed([_part(1), _part(4)], done)  # new bytes past the object
    assert not in_completed([_part(2, etag='"changed"')], done)  # a patched part
    assert not in_completed([_part(3, 1000)], done)


def test_copy_ranges_keep_the_parts_sizes_end_to_end() -> None:
    ranges = copy_ranges([BASE, BASE, 7])
    assert [(r.number, r.offset, r.size) for r in ranges] == [
        (1, 0, BASE),
        (2, BASE, BASE),
        (3, 2 * BASE, 7),
    ]


@pytest.mark.parametrize(
    ("status", "allowed"),
    [
        (Status.FAILED, True),
        (Status.UPLOADING, False),
        (Status.DETECTED, False),
        (Status.COMPLETED, False),
        (Status.SALVAGED, False),
        (Status.ABORTED, False),
    ],
)
def test_only_a_failed_stream_is_salvaged_or_aborted_by_hand(status: Status, allowed: bool) -> None:
    refusal = endable(StreamRecord("s1", status=status), "salvage")
    assert (refusal is None) is allowed
    if status == Status.COMPLETED:
        assert refusal == "stream s1 is completed: nothing to salvage"
    if status == Status.UPLOADING:
        assert (
            refusal == "stream s1 is uploading: only a failed stream is salvaged (its run is over)"
        )
