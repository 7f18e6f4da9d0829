"""stream_ingest/flows/digest.py FileSha256: the file's SHA-256 from the parts as they are read, and
at the end only the bytes that did not continue it in order."""

from __future__ import annotations

import hashlib
import os
import threading
import time

from stream_ingest.flows.digest import READ_CHUNK, FileSha256

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


class InTurn:
    """A feed in turn from another thread, as put_part makes it after the upload."""

    def __init__(self, digest: FileSha256, offset: int, data: bytes, ticket: int) -> None:
        self.fed: list[bool] = []
        self._thread = threading.Thread(
            target=lambda: self.fed.append(digest.feed_in_turn(offset, data, ticket, 10))
        )
        self._thread.start()
        time.sleep(0.05)  # it waits for its turn

    def result(self) -> list[bool]:
        self._thread.join(5)
        return self.fed


def test_a_part_ahead_of_its_turn_is_fed_in_turn_once_the_one_before_is() -> None:
    """Parts read in parallel: the one read first but ahead of its turn is fed again
    after it went up, once the part before it is in: nothing is read at the end."""
    content = os.urandom(3 * PART + 123)
    (a, one), (b, two), (c, three), (d, four) = _parts(content)
    digest, reads = FileSha256(), []
    ticket = digest.feed(b, two)  # read before part 1
    assert ticket
    waiting = InTurn(digest, b, two, ticket)
    assert digest.feed(a, one) == 0
    assert waiting.result() == [True]
    for offset, data in ((c, three), (d, four)):
        assert digest.feed(offset, data) == 0

    assert (
        digest.finish(len(content), _reader(content, reads)) == hashlib.sha256(content).hexdigest()
    )
    assert reads == []


def test_a_part_whose_turn_does_not_come_is_read_at_the_end() -> None:
    content = os.urandom(2 * PART + 5)
    (a, one), (b, two), _ = _parts(content)
    digest, reads = FileSha256(), []
    ticket = digest.feed(b, two)
    assert digest.feed_in_turn(b, two, ticket, 0.05) is False  # part 1 never came in time
    digest.feed(a, one)

    result = digest.finish(len(content), _reader(content, reads))

    assert result == hashlib.sha256(content).hexdigest()
    assert reads and reads[0][0] == PART


def test_feeding_in_turn_never_starts_the_digest_over() -> None:
    """A part fed again in turn after the digest moved past it is not fed (the
    first feed's reset is for a part read again, not for a late one)."""
    content = os.urandom(2 * PART + 5)
    (a, one), (b, two), _ = _parts(content)
    digest, reads = FileSha256(), []
    digest.feed(a, one)
    digest.feed(b, two)
    assert digest.feed_in_turn(a, one, 1, 0.05) is False

    assert digest.covered == 2 * PART
    assert (
        digest.finish(len(content), _reader(content, reads)) == hashlib.sha256(content).hexdigest()
    )
    assert sum(n for _, n in reads) == 5


def test_a_part_read_again_voids_the_earlier_read_waiting_for_its_turn() -> None:
    """Part 2 is read, then changes and is read (and uploaded) again, both ahead of
    part 1: S3 keeps the second read, so only it may count once part 1 is in."""
    content = os.urandom(2 * PART + 5)
    (a, one), (b, two), _ = _parts(content)
    stale = os.urandom(len(two))
    digest, reads = FileSha256(), []
    first = digest.feed(b, stale)
    early = InTurn(digest, b, stale, first)
    second = digest.feed(b, two)  # its upload is still going
    digest.feed(a, one)
    assert early.result() == [False]
    assert digest.feed_in_turn(b, two, second, 1) is True  # its upload is done
    assert (
        digest.finish(len(content), _reader(content, reads)) == hashlib.sha256(content).hexdigest()
    )
    assert sum(n for _, n in reads) == 5


def test_a_stale_read_never_counts_after_the_digest_started_over() -> None:
    """Part 2's first read waits for its turn; part 1 is fed, part 2 read again in
    turn, then part 1 read again (the digest starts over) and fed: the first read of
    part 2 finds its turn again but its ticket is void."""
    content = os.urandom(2 * PART + 5)
    (a, one), (b, two), _ = _parts(content)
    stale = os.urandom(len(two))
    digest = FileSha256()
    first = digest.feed(b, stale)
    assert digest.feed(a, one) == 0  # wakes nobody yet: the waiter is not started
    assert digest.feed(b, two) == 0  # in turn: counted, the stale ticket void
    assert digest.feed(a, one) == 0  # read again: the digest starts over
    assert digest.feed(a, one) == 0  # and counts part 1 again

    assert digest.feed_in_turn(b, stale, first, 0.05) is False
    assert digest.covered == PART
