"""stream_ingest/flows/buffers.py aligned: every buffer the recording is read into starts on
a 64-byte boundary, where the kernel's copy into it costs a quarter of what it costs
16 bytes past a page (where every large bytearray starts)."""

from __future__ import annotations

import contextlib
import ctypes
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from stream_ingest.flows.buffers import ALIGN, PartBuffers, aligned
from stream_ingest.flows.digest import READ_CHUNK, chunk_buffer
from stream_ingest.flows.finalize import CHECK_SLICE, _check_slice

MIB = 1024 * 1024


def _start(buf: bytearray) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(buf))


# Sizes malloc maps (a block of its own, 16 bytes past a page): a heap block would
# start on the boundary by chance one time in four.
@pytest.mark.parametrize("size", [128 * 1024, 5 * MIB + 7, 8 * MIB, 64 * MIB])
def test_an_aligned_buffer_has_its_size_zeroed_and_starts_on_the_boundary(size: int) -> None:
    buf = aligned(size)

    assert len(buf) == size
    assert _start(buf) % ALIGN == 0
    assert buf.count(0) == size
    buf[-1:] = b"x"  # writable to its last byte
    assert buf[-1:] == b"x" and len(buf) == size


@pytest.mark.parametrize("size", [0, 1, ALIGN - 1, ALIGN, ALIGN + 1])
def test_a_small_aligned_buffer_has_its_size_zeroed(size: int) -> None:
    buf = aligned(size)

    assert len(buf) == size and buf.count(0) == size


def test_part_buffers_check_slices_and_digest_reads_are_aligned() -> None:
    # Eight of each, kept alive: a heap block starts on a 64-byte boundary one time
    # in four by chance, eight in a row hardly ever.
    pool = PartBuffers(16)
    with contextlib.ExitStack() as lent:
        parts = [lent.enter_context(pool.borrow(8 * MIB - k)) for k in range(8)]
        assert [_start(b) % ALIGN for b in parts] == [0] * 8
        assert [len(b) for b in parts] == [8 * MIB - k for k in range(8)]
    with ThreadPoolExecutor(8) as pool_of_threads:
        barrier = threading.Barrier(8, timeout=30)

        def check() -> bytearray:
            barrier.wait()  # eight threads at once: eight slices of their own
            return _check_slice()

        checks = list(pool_of_threads.map(lambda _: check(), range(8)))
    assert len({id(b) for b in checks}) == 8
    assert [_start(b) % ALIGN for b in checks] == [0] * 8
    assert [len(b) for b in checks] == [CHECK_SLICE] * 8
    for size in (1000, 3 * MIB, 20 * MIB):
        bufs = [chunk_buffer(size - k) for k in range(8)]
        assert [_start(b) % ALIGN for b in bufs] == [0] * 8
        assert [len(b) for b in bufs] == [min(size - k, READ_CHUNK) for k in range(8)]
