"""Descriptors kept open for a run's reads (stream_ingest/flows/held.py): one open per
file, closed when let go of or evicted, and never while a read uses it."""

from __future__ import annotations

from stream_ingest.flows.held import HeldFiles


class Fds:
    def __init__(self) -> None:
        self.opened: list[str] = []
        self.closed: list[int] = []

    def open(self, key: str) -> int:
        self.opened.append(key)
        return 100 + len(self.opened)

    def close(self, fd: int) -> None:
        self.closed.append(fd)


def test_a_file_is_opened_once_and_closed_when_let_go() -> None:
    fds = Fds()
    held = HeldFiles(fds.open, fds.close)
    for _ in range(3):
        with held.borrow("a") as fd:
            assert fd == 101
    assert fds.opened == ["a"]
    held.release(lambda key: key != "a")
    assert fds.closed == [101]
    assert len(held) == 0


def test_a_descriptor_in_use_is_closed_by_its_last_reader() -> None:
    """A closed number is reused by the next open: a read still using it would get
    another file's bytes."""
    fds = Fds()
    held = HeldFiles(fds.open, fds.close)
    with held.borrow("a"), held.borrow("a"):
        held.release(lambda key: False)
        assert fds.closed == []
    assert fds.closed == [101]
    with held.borrow("a") as fd:  # let go of: the next read opens it again
        assert fd == 102


def test_past_the_limit_the_least_recently_read_is_closed() -> None:
    fds = Fds()
    held = HeldFiles(fds.open, fds.close, limit=2)
    for key in ("a", "b", "a", "c"):
        with held.borrow(key):
            pass
    assert fds.closed == [102]  # "b": "a" was read after it
    assert len(held) == 2
    with held.borrow("c"), held.borrow("d"), held.borrow("e"):
        assert fds.closed == [102, 101]  # "a"; "c", in use, stays open past the limit...
    assert sorted(fds.closed) == [101, 102, 103]  # ...until its read ends


def test_reads_of_an_unopened_file_at_once_share_one_open() -> None:
    """Parts read in parallel find the file unopened together: one opens it (each
    open is an IN_OPEN the sensor handles), the others wait and share it."""
    import threading
    import time

    fds = Fds()

    def slow_open(key: str) -> int:
        time.sleep(0.05)  # every reader arrives while the first open is under way
        return fds.open(key)

    held = HeldFiles(slow_open, fds.close)
    start, got = threading.Barrier(8), []

    def read() -> None:
        start.wait()
        with held.borrow("a") as fd:
            got.append(fd)

    readers = [threading.Thread(target=read) for _ in range(8)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    assert fds.opened == ["a"] and got == [101] * 8
    held.release(lambda key: False)
    assert fds.closed == [101]
