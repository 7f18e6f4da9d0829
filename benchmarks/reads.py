"""What reading the recording costs, by where the bytes land.

No S3 and no server: a file of SIZE_MIB (written once, in the page cache, as a
recording being uploaded is) is read whole with `os.preadv` into one reused buffer,
as the product reads parts (8 MiB), checks them at a recording's end (128 KiB
slices) and finishes its SHA-256 (8 MiB): into a buffer 16 bytes past a page (where
glibc places every block it maps for a large malloc, so where a large bytearray
starts; the line shows where this process's fresh ones started) and into one of
stream_ingest/flows/buffers.py `aligned`. Each read is timed ROUNDS times and the
least CPU kept (the process's user + system seconds; this machine is shared). One
JSON line: CPU-s per GiB for each, the ratio, and the same with each read's bytes
fed to SHA-256.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import MIB, emit, ratio
from stream_ingest.flows.buffers import address, aligned

SIZE_MIB = 512
ROUNDS = 5
GIB = 1024 * MIB
PAGE = mmap.PAGESIZE
GLIBC_OFFSET = 16  # a mapped malloc block's header


def run(size_mib: int = SIZE_MIB) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="si-bench-reads-") as workdir:
        path = os.path.join(workdir, "recording.mp4")
        with open(path, "wb") as fh:
            for _ in range(size_mib):
                fh.write(os.urandom(MIB))
        fd = os.open(path, os.O_RDONLY)
        try:
            out: dict[str, Any] = {
                "bench": "reads",
                "size_mib": size_mib,
                "rounds": ROUNDS,
                "fresh_bytearray_page_offsets": {
                    str(n): [address(b) % PAGE for b in [bytearray(n) for _ in range(4)]]
                    for n in (8 * MIB, 128 * 1024)
                },
            }
            mapped = mmap.mmap(-1, 8 * MIB + 2 * PAGE)
            for name, chunk in (("part_8mib", 8 * MIB), ("check_slice_128kib", 128 * 1024)):
                past_page = memoryview(mapped)[GLIBC_OFFSET : GLIBC_OFFSET + chunk]
                ours = aligned(chunk)
                for digest in (False, True):
                    slow = _least_cpu(fd, past_page, digest)
                    fast = _least_cpu(fd, memoryview(ours), digest)
                    out[name + ("_sha256" if digest else "")] = {
                        "past_page_cpu_s_per_gib": round(slow * GIB / (size_mib * MIB), 3),
                        "aligned_cpu_s_per_gib": round(fast * GIB / (size_mib * MIB), 3),
                        "aligned_page_offset": address(ours) % PAGE,
                        "ratio_past_page_vs_aligned": ratio(slow, fast),
                    }
                past_page.release()
            mapped.close()
            return out
        finally:
            os.close(fd)


def _least_cpu(fd: int, buf: memoryview, digest: bool) -> float:
    return min(_cpu(lambda: _read_all(fd, buf, digest)) for _ in range(ROUNDS))


def _read_all(fd: int, view: memoryview, digest: bool) -> None:
    size = os.fstat(fd).st_size
    sha = hashlib.sha256() if digest else None
    for offset in range(0, size, len(view)):
        n = os.preadv(fd, [view], offset)
        if sha is not None:
            sha.update(view[:n])


def _cpu(action: Callable[[], None]) -> float:
    before = time.process_time()
    action()
    return time.process_time() - before


if __name__ == "__main__":
    emit(run())
