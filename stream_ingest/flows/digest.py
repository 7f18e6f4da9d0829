"""Content digests of parts, for telling whether a part's bytes changed on disk.

The change check needs speed, not a cryptographic hash: xxh3-128 runs at about
0.03 s/GiB here against SHA-256's 0.55 and zlib's CRC32's 0.26 (ISA-L's, which
the uploads use: stream_ingest/checksums.py, about 0.1), so re-reading a
recording at its close costs about what reading it costs. Checkpoints written before
this stored SHA-256 (64 hex digits) or only S3's CRC32: those are still compared.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable

import xxhash
from isal.isal_zlib import crc32

from stream_ingest.checksums import crc32_b64, crc32_value_b64
from stream_ingest.errors import StreamError
from stream_ingest.flows.buffers import aligned
from stream_ingest.records import PartRecord

Buffer = bytes | bytearray | memoryview

PREFIX = "xxh3-128:"
READ_CHUNK = 8 * 1024 * 1024
CATCH_UP_CHUNK = 1024 * 1024
CATCH_UP_LIMIT = 64 * 1024 * 1024  # bytes read again by one feed, at most (one part more)


def chunk_buffer(size: int, chunk: int = READ_CHUNK) -> bytearray:
    """A buffer to read `size` bytes into `chunk` at a time, reused: no longer than
    they are (a small file's is its size, not READ_CHUNK zeroed: in a batch of small
    files that was 5 % of the CPU) and aligned (buffers.aligned)."""
    return aligned(max(1, min(chunk, size)))


def part_digest(data: Buffer) -> str:
    return PREFIX + xxhash.xxh3_128_hexdigest(data)


def same_digest(stored: str, data: Buffer) -> bool:
    """Whether `data` has the digest `stored` (xxh3-128, or an older SHA-256)."""
    if stored.startswith(PREFIX):
        return stored == part_digest(data)
    return stored == hashlib.sha256(data).hexdigest()


def unchanged(known: PartRecord, data: Buffer) -> bool:
    """Whether `data` is what the uploaded part holds, by the fastest check the
    checkpoint allows: xxh3, else S3's CRC32, else the SHA-256 of older checkpoints."""
    if known.checksum.startswith(PREFIX) or not known.crc32:
        return same_digest(known.checksum, data)
    return known.crc32 == crc32_b64(data)


def unchanged_in_slices(
    known: PartRecord, read: Callable[[int, int], Buffer], slice_size: int
) -> bool:
    """As `unchanged`, for the part's `known.size` bytes read `slice_size` at a time by
    `read(offset_in_part, length)`: the check holds one slice, not the part."""
    if known.checksum.startswith(PREFIX) or not known.crc32:
        hasher = xxhash.xxh3_128() if known.checksum.startswith(PREFIX) else hashlib.sha256()
        for offset in range(0, known.size, slice_size):
            hasher.update(read(offset, min(slice_size, known.size - offset)))
        prefix = PREFIX if known.checksum.startswith(PREFIX) else ""
        return known.checksum == prefix + hasher.hexdigest()
    value = 0
    for offset in range(0, known.size, slice_size):
        value = crc32(read(offset, min(slice_size, known.size - offset)), value)
    return known.crc32 == crc32_value_b64(value)


class FileSha256:
    """A stream's file SHA-256, fed each part's bytes as they are read for upload.

    Only bytes that continue what was fed count. A part fed ahead of its turn (parts
    read in parallel: a run that starts behind its file) is remembered by its xxh3
    digest; once the parts before it are in, it is read again from the file (`read`,
    CATCH_UP_CHUNK at a time) and counted if its bytes are still the ones sent, else
    left for the end. A part fed again (read again: its bytes may have changed)
    starts the digest over. At the stream's end `finish` reads only the bytes past
    what counted: none for a recording whose parts went up in order, or were caught
    up, and were never rewritten (a live stream, MPEG-TS); the whole file for one whose
    head was patched at close (MP4, MKV). Either way the digest is of the bytes the
    object holds: every part fed was verified unchanged or uploaded again (which starts
    it over) before the object was completed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sha = hashlib.sha256()
        self.covered = 0  # bytes [0, covered) are in the digest
        self._ahead: dict[int, tuple[int, str]] = {}  # offset -> (size, xxh3) fed ahead

    def feed(
        self,
        offset: int,
        data: Buffer,
        digest: str = "",
        read: Callable[[int, int, bytearray], Buffer] | None = None,
    ) -> None:
        """Count `data`, the bytes at `offset`, if they continue the digest. `digest`
        (part_digest of `data`) keeps a part fed ahead for a catch-up; `read(offset,
        length, buf)` reads the file, for catching up with the parts fed ahead."""
        with self._lock:
            if offset == self.covered:
                self._sha.update(data)
                self.covered += len(data)
                self._ahead.pop(offset, None)  # what was sent before at this offset
            elif offset < self.covered:
                self._sha, self.covered = hashlib.sha256(), 0
                self._ahead.clear()
            elif digest.startswith(PREFIX):
                self._ahead[offset] = (len(data), digest)
            if read is not None and self.covered in self._ahead:
                self._catch_up(read)

    def _catch_up(self, read: Callable[[int, int, bytearray], Buffer]) -> None:
        """Count the parts fed ahead that now continue the digest, while their bytes
        in the file are still those sent (same xxh3), up to CATCH_UP_LIMIT bytes: the
        next feed goes on from there. The lock is held meanwhile, and a run that
        started the digest over (a part sent again) may find most of its file ahead.
        The file is read in small chunks: at the start of many recordings at once,
        each run may catch up."""
        buf: bytearray | None = None
        budget = CATCH_UP_LIMIT
        while budget > 0 and (ahead := self._ahead.pop(self.covered, None)) is not None:
            size, digest = ahead
            budget -= size
            buf = buf if buf is not None else chunk_buffer(size, CATCH_UP_CHUNK)
            sha, check = self._sha.copy(), xxhash.xxh3_128()
            try:
                for at in range(self.covered, self.covered + size, len(buf)):
                    chunk = read(at, min(len(buf), self.covered + size - at), buf)
                    sha.update(chunk)
                    check.update(chunk)
            except (OSError, StreamError):  # gone, replaced: `finish` says what it finds
                return
            if PREFIX + check.hexdigest() != digest:
                return  # rewritten since it was sent: it is sent again, or read by finish
            self._sha, self.covered = sha, self.covered + size

    def finish(
        self,
        size: int,
        read: Callable[[int, int], Buffer],
        beat: Callable[[], None] = lambda: None,
    ) -> str:
        """The SHA-256 of the first `size` bytes: what was fed, then the rest by
        `read(offset, length)`, calling `beat` after each 8 MiB read."""
        with self._lock:
            sha, start = (self._sha.copy(), self.covered) if self.covered <= size else (None, 0)
        sha = sha or hashlib.sha256()
        for offset in range(start, size, READ_CHUNK):
            sha.update(read(offset, min(READ_CHUNK, size - offset)))
            beat()
        return sha.hexdigest()
