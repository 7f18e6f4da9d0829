"""stream_ingest/flows/digest.py: a part checked slice by slice is judged as a part
checked whole, for every kind of checkpoint (xxh3, CRC32 only, older SHA-256)."""

from __future__ import annotations

import hashlib
import os

import pytest

from stream_ingest.checksums import crc32_b64
from stream_ingest.flows.digest import part_digest, unchanged, unchanged_in_slices
from stream_ingest.records import PartRecord

SIZE = 300_001  # no slice size below divides it


def _kinds(data: bytes) -> dict[str, PartRecord]:
    return {
        "xxh3": PartRecord(1, '"e"', 0, len(data), part_digest(data), crc32_b64(data)),
        "crc32": PartRecord(1, '"e"', 0, len(data), "", crc32_b64(data)),
        "sha256": PartRecord(1, '"e"', 0, len(data), hashlib.sha256(data).hexdigest()),
    }


def _reader(data: bytes, reads: list[int]):
    def read(offset: int, length: int) -> memoryview:
        reads.append(length)
        return memoryview(data)[offset : offset + length]

    return read


@pytest.mark.parametrize("kind", ["xxh3", "crc32", "sha256"])
@pytest.mark.parametrize("slice_size", [7, 4096, 65536, SIZE, 2 * SIZE])
def test_slices_judge_a_part_as_the_whole_does(kind: str, slice_size: int) -> None:
    data = os.urandom(SIZE)
    known = _kinds(data)[kind]
    changed = bytearray(data)
    changed[SIZE - 1] ^= 1  # the last byte, in the last (short) slice
    for on_disk in (data, bytes(changed)):
        reads: list[int] = []
        judged = unchanged_in_slices(known, _reader(on_disk, reads), slice_size)
        assert judged == unchanged(known, on_disk) == (on_disk == data)
        assert sum(reads) == SIZE and max(reads) <= slice_size
