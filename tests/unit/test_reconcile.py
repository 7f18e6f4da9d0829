"""Reconciling the Redis checkpoint with S3's ListParts (pure part; the multipart ETag
is also checked against a real completed upload in tests/blocks)."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_ingest.parts import MIN_PART, part_offset, part_size
from stream_ingest.reconcile import reconcile
from stream_ingest.records import PartRecord, UploadedPart
from stream_ingest.verify import multipart_etag

BASE = MIN_PART


def etag(n: int, salt: str = "") -> str:
    return '"' + hashlib.md5(f"{n}{salt}".encode()).hexdigest() + '"'


def rec(n: int, **over: object) -> PartRecord:
    values: dict[str, object] = dict(
        number=n,
        etag=etag(n),
        offset=part_offset(n, BASE),
        size=part_size(n, BASE),
        checksum=f"sha{n}",
    )
    values.update(over)
    return PartRecord(**values)  # type: ignore[arg-type]


def held(r: PartRecord, **over: object) -> UploadedPart:
    values: dict[str, object] = dict(number=r.number, etag=r.etag, size=r.size)
    values.update(over)
    return UploadedPart(**values)  # type: ignore[arg-type]


def test_parts_both_sides_agree_on_are_kept_in_order() -> None:
    cp = {3: rec(3), 1: rec(1), 2: rec(2)}
    assert reconcile(cp, [held(cp[2]), held(cp[1]), held(cp[3])], BASE) == [cp[1], cp[2], cp[3]]


def test_s3s_checksum_is_kept_and_fills_a_checkpoint_without_one() -> None:
    cp = {1: rec(1), 2: rec(2, crc32="AAAAAg==")}
    kept = reconcile(cp, [held(cp[1], crc32="AAAAAQ=="), held(cp[2], crc32="AAAAAg==")], BASE)
    assert [p.crc32 for p in kept] == ["AAAAAQ==", "AAAAAg=="]
    assert kept[0] == PartRecord(1, cp[1].etag, cp[1].offset, cp[1].size, "sha1", "AAAAAQ==")


def test_a_part_missing_from_s3_is_dropped() -> None:
    cp = {1: rec(1), 2: rec(2)}
    assert reconcile(cp, [held(cp[1])], BASE) == [cp[1]]


def test_a_part_only_s3_holds_is_not_invented() -> None:
    cp = {1: rec(1)}
    assert reconcile(cp, [held(cp[1]), held(rec(2))], BASE) == [cp[1]]


def test_etag_or_size_disagreement_drops_the_part() -> None:
    cp = {1: rec(1), 2: rec(2)}
    assert reconcile(cp, [held(cp[1], etag=etag(1, "x")), held(cp[2])], BASE) == [cp[2]]
    assert reconcile(cp, [held(cp[1]), held(cp[2], size=cp[2].size - 1)], BASE) == [cp[1]]


def test_a_part_off_its_planned_offset_is_dropped() -> None:
    moved = rec(2, offset=part_offset(2, BASE) + 1)
    assert reconcile({2: moved}, [held(moved)], BASE) == []


def test_a_part_larger_than_planned_is_dropped() -> None:
    big = rec(1, size=BASE + 1)
    assert reconcile({1: big}, [held(big)], BASE) == []


def test_a_short_part_at_its_offset_is_kept_for_finalize_to_judge() -> None:
    short = rec(4, size=123)
    assert reconcile({4: short}, [held(short)], BASE) == [short]


def test_reconcile_with_a_different_base_drops_everything_misplaced() -> None:
    cp = {2: rec(2)}  # planned with 5 MiB parts
    assert reconcile(cp, [held(cp[2])], 8 * 1024 * 1024) == []


@settings(deadline=None)
@given(
    numbers=st.sets(st.integers(1, 2000), max_size=25),
    faults=st.lists(st.sampled_from(["ok", "gone", "etag", "size", "offset", "big"]), min_size=25),
)
def test_reconcile_keeps_exactly_the_agreeing_planned_parts(
    numbers: set[int], faults: list[str]
) -> None:
    cp: dict[int, PartRecord] = {}
    s3: list[UploadedPart] = []
    good: list[PartRecord] = []
    for n, fault in zip(sorted(numbers), faults, strict=False):
        r = rec(n)
        if fault == "offset":
            r = rec(n, offset=r.offset + 5)
        if fault == "big":
            r = rec(n, size=r.size + 1)
        cp[n] = r
        if fault == "gone":
            continue
        s3.append(
            held(r, etag=etag(n, "other"))
            if fault == "etag"
            else held(r, size=r.size - 1)
            if fault == "size"
            else held(r)
        )
        if fault == "ok":
            good.append(r)
    assert reconcile(cp, s3, BASE) == good


def test_multipart_etag_is_md5_of_the_part_digests() -> None:
    parts = [b"first part", b"second", b"3"]
    etags = ['"' + hashlib.md5(p).hexdigest() + '"' for p in parts]
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    assert multipart_etag(etags) == f'"{hashlib.md5(joined).hexdigest()}-3"'
    assert multipart_etag([e.strip('"') for e in etags]) == multipart_etag(etags)
    assert multipart_etag(etags[:1]).endswith('-1"')
    assert multipart_etag(etags) != multipart_etag(list(reversed(etags)))
