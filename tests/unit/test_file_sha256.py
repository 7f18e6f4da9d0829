"""stream_ingest/flows/digest.py FileSha256: the file's SHA-256 from the parts as they are read, and
at the end only the bytes that did not continue it in order."""

from __future__ import annotations

import hashlib
import os

from stream_ingest.flows.digest import CATCH_UP_CHUNK, READ_CHUNK, FileSha256, part_digest

PART = 5 * 1024 * 1024


def _reader(content: bytes, reads: list[tuple[int, int]]):
    def read(offset: int, size: int) -> bytes:
        reads.append((offset, size))
        return content[offset : offset + size]

    return read


def _parts(content: bytes) -> list[tuple[int, bytes]]:
    return [(at, content[at : at + PART]) for at in range(0, len(content), PART)]


def test_parts_fed_in_order_need_no_read_at_the_end() -> None:
    content = os.urandom(3 * PART + 123)
    digest, reads = FileSha256(), []
    for offset, data in _parts(content):
        digest.feed(offset, data)

    assert (
        digest.finish(len(content), _reader(content, reads)) == hashlib.sha256(content).hexdigest()
    )
    assert reads == []


def test_a_part_fed_ahead_of_its_turn_is_read_at_the_end() -> None:
    content = os.urandom(3 * PART + 123)
    (a, one), (b, two), (c, three), _ = _parts(content)
    digest, reads, beats = FileSha256(), [], []
    digest.feed(b, two)  # read in parallel, before part 1
    digest.feed(a, one)
    digest.feed(c, three)  # does not continue part 1: left for the end too

    result = digest.finish(len(content), _reader(content, reads), lambda: beats.append(1))

    assert result == hashlib.sha256(content).hexdigest()
    assert reads[0][0] == PART and sum(n for _, n in reads) == len(content) - PART
    assert len(beats) == len(reads) == -(-(len(content) - PART) // READ_CHUNK)


def test_a_part_fed_again_starts_the_digest_over() -> None:
    """Finalize uploads a part again when the recorder rewrote it (a patched head):
    what was fed before holds the old bytes, so the whole file is read."""
    content = os.urandom(2 * PART + 7)
    (a, one), (b, two), (c, three) = _parts(content)
    digest, reads = FileSha256(), []
    for offset, data in ((a, one), (b, two), (c, three)):
        digest.feed(offset, data)
    patched = b"PATCHED" + content[7:]
    digest.feed(0, patched[:PART])

    assert (
        digest.finish(len(patched), _reader(patched, reads)) == hashlib.sha256(patched).hexdigest()
    )
    assert sum(n for _, n in reads) == len(patched) and reads[0][0] == 0


def test_a_digest_past_the_size_asked_for_is_read_again_from_the_start() -> None:
    content = os.urandom(PART + 10)
    digest, reads = FileSha256(), []
    digest.feed(0, content)

    assert (
        digest.finish(PART, _reader(content, reads)) == hashlib.sha256(content[:PART]).hexdigest()
    )
    assert sum(n for _, n in reads) == PART
    assert FileSha256().finish(0, _reader(b"", reads)) == hashlib.sha256(b"").hexdigest()


def test_the_digest_reads_a_small_file_into_a_buffer_of_its_size(tmp_path, monkeypatch) -> None:
    """A batch digests many small files: a READ_CHUNK buffer zeroed for each was
    5 % of its CPU. The reader's buffer is the file's size, up to READ_CHUNK."""
    from types import SimpleNamespace

    from stream_ingest.flows.completed import _reader
    from stream_ingest.flows.stored import file_sha256

    small = tmp_path / "seg.ts"
    small.write_bytes(os.urandom(1000))
    ctx = SimpleNamespace(path=str(small), owned=None)
    assert len(_reader(ctx, 1000)(0, 1000).obj) == 1000
    assert len(_reader(ctx, 3 * READ_CHUNK)(0, 1000).obj) == READ_CHUNK
    import stream_ingest.flows.stored as stored

    buffers: list[int] = []
    real = stored.read_into

    def read_into(path, at, n, buf, owned=None):
        buffers.append(len(buf))
        return real(path, at, n, buf, owned)

    monkeypatch.setattr(stored, "read_into", read_into)
    assert file_sha256(str(small), 1000) == hashlib.sha256(small.read_bytes()).hexdigest()
    assert buffers == [1000]


def _file(content: bytearray, reads: list[tuple[int, int]]):
    """`read(offset, length, buf)` over `content`, as the flow reads its file."""

    def read(offset: int, size: int, buf: bytearray) -> memoryview:
        reads.append((offset, size))
        view = memoryview(buf)[:size]
        view[:] = content[offset : offset + size]
        return view

    return read


def test_parts_fed_ahead_are_caught_up_once_their_turn_comes() -> None:
    """A run that starts behind its file sends its first parts in parallel: those fed
    before their turn are read again (in small chunks) when the parts before them are
    in, and the digest goes on in order; nothing is left for the end."""
    content = bytearray(os.urandom(4 * PART + 123))
    (a, one), (b, two), (c, three), (d, four), (e, five) = _parts(bytes(content))
    digest, caught, reads = FileSha256(), [], []
    read = _file(content, caught)
    digest.feed(c, three, part_digest(three), read)
    digest.feed(b, two, part_digest(two), read)
    digest.feed(a, one, part_digest(one), read)  # parts 2 and 3 follow it now
    digest.feed(d, four, part_digest(four), read)  # in turn
    digest.feed(e, five, part_digest(five), read)

    assert (
        digest.finish(len(content), _reader(bytes(content), reads))
        == hashlib.sha256(content).hexdigest()
    )
    assert reads == []
    assert sum(n for _, n in caught) == 2 * PART and caught[0][0] == PART
    assert max(n for _, n in caught) == CATCH_UP_CHUNK


def test_a_part_rewritten_since_it_was_sent_is_not_caught_up() -> None:
    """The file's bytes of a part fed ahead changed after it was read for upload (a
    head patched, a take rewritten): the catch-up stops there, and the end reads
    from there, whatever the file holds then."""
    content = bytearray(os.urandom(3 * PART))
    (a, one), (b, two), (c, three) = _parts(bytes(content))
    digest, caught, reads = FileSha256(), [], []
    read = _file(content, caught)
    digest.feed(b, two, part_digest(two), read)
    content[b + 10] ^= 0xFF  # rewritten after part 2 went
    digest.feed(a, one, part_digest(one), read)
    digest.feed(c, three, part_digest(three), read)  # not in turn: part 2 is missing

    assert digest.covered == PART
    result = digest.finish(len(content), _reader(bytes(content), reads))
    assert result == hashlib.sha256(content).hexdigest()
    assert reads[0][0] == PART and sum(n for _, n in reads) == 2 * PART


def test_a_catch_up_that_cannot_read_leaves_the_rest_to_the_end() -> None:
    from stream_ingest.errors import SourceReplaced

    content = os.urandom(2 * PART)
    (a, one), (b, two) = _parts(content)
    digest, reads = FileSha256(), []

    def replaced(offset: int, size: int, buf: bytearray) -> memoryview:
        raise SourceReplaced("/rec/cam.mp4")

    digest.feed(b, two, part_digest(two), replaced)
    digest.feed(a, one, part_digest(one), replaced)

    assert digest.covered == PART
    assert (
        digest.finish(len(content), _reader(content, reads)) == hashlib.sha256(content).hexdigest()
    )
    assert reads[0][0] == PART


def test_a_catch_up_reads_at_most_its_limit_per_feed(monkeypatch) -> None:
    """A part sent again mid-stream starts the digest over, and every later part is
    fed ahead: when the first part comes again (a head patched at close) the file
    is not read whole under the lock, only CATCH_UP_LIMIT of it (one part more);
    each later feed goes on from there."""
    import stream_ingest.flows.digest as digest_module

    monkeypatch.setattr(digest_module, "CATCH_UP_LIMIT", 2 * PART)
    content = bytearray(os.urandom(6 * PART))
    parts = _parts(bytes(content))
    digest, caught, reads = FileSha256(), [], []
    read = _file(content, caught)
    digest.feed(*parts[0], part_digest(parts[0][1]), read)
    digest.feed(*parts[0], part_digest(parts[0][1]), read)  # a retry: over again
    for offset, data in parts[1:]:
        digest.feed(offset, data, part_digest(data), read)
    assert digest.covered == 0 and caught == []

    digest.feed(*parts[0], part_digest(parts[0][1]), read)
    assert digest.covered == 3 * PART and sum(n for _, n in caught) == 2 * PART
    digest.feed(*parts[4], part_digest(parts[4][1]), read)  # fed again, ahead: goes on
    assert digest.covered == 5 * PART and sum(n for _, n in caught) == 4 * PART
    digest.feed(*parts[5], part_digest(parts[5][1]), read)  # fed again, in turn
    assert digest.covered == 6 * PART

    result = digest.finish(len(content), _reader(bytes(content), reads))
    assert result == hashlib.sha256(content).hexdigest() and reads == []


def test_a_caught_up_part_sent_again_starts_the_digest_over() -> None:
    content = bytearray(os.urandom(2 * PART))
    (a, one), (b, two) = _parts(bytes(content))
    digest, caught, reads = FileSha256(), [], []
    read = _file(content, caught)
    digest.feed(b, two, part_digest(two), read)
    digest.feed(a, one, part_digest(one), read)
    assert digest.covered == 2 * PART
    content[b] ^= 0xFF  # rewritten: finalize sends it again
    digest.feed(b, bytes(content[b:]), part_digest(bytes(content[b:])), read)

    assert digest.covered == 0
    result = digest.finish(len(content), _reader(bytes(content), reads))
    assert result == hashlib.sha256(content).hexdigest() and sum(n for _, n in reads) == 2 * PART


def test_what_was_fed_ahead_before_a_part_went_in_turn_is_forgotten() -> None:
    """Part 2 fed ahead with bytes A, then in turn with bytes B: the object holds B.
    After the digest starts over, a file holding A there again must not let the old
    record of A count for part 2."""
    content = bytearray(os.urandom(2 * PART))
    (a, one), (b, old) = _parts(bytes(content))
    new = os.urandom(PART)
    digest, caught = FileSha256(), []
    read = _file(content, caught)
    digest.feed(b, old, part_digest(old), read)  # ahead: remembered as A
    digest.feed(a, one)  # in turn, no catch-up asked for
    digest.feed(b, new, part_digest(new), read)  # in turn: B counts
    digest.feed(a, one, part_digest(one), read)  # sent again: over again

    assert digest.covered == 0
    digest.feed(a, one, part_digest(one), read)
    assert digest.covered == PART and caught == []  # the file's A is not B
