"""flows/buffers.py: the process holds at most N part buffers, whatever the number
of streams asking, and reuses them."""

from __future__ import annotations

import threading
import time

from flows.buffers import PartBuffers


def test_no_more_than_count_buffers_are_lent_at_once_and_returned_ones_are_reused():
    buffers = PartBuffers(3)
    lock = threading.Lock()
    lent: set[int] = set()
    peak, seen = 0, set()

    def stream() -> None:
        nonlocal peak
        for _ in range(5):
            with buffers.borrow(1024) as buf:
                assert len(buf) >= 1024
                with lock:
                    lent.add(id(buf))
                    seen.add(id(buf))
                    peak = max(peak, len(lent))
                time.sleep(0.005)
                with lock:
                    lent.discard(id(buf))

    threads = [threading.Thread(target=stream) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert peak == 3  # 12 streams asked at once; 3 were lent
    assert len(seen) <= 3  # 60 borrows, 3 buffers


def test_a_larger_part_gets_a_buffer_big_enough_and_an_error_returns_the_buffer():
    buffers = PartBuffers(1)
    try:
        with buffers.borrow(10):
            raise ValueError("read failed")
    except ValueError:
        pass
    with buffers.borrow(100) as buf:  # the only slot was returned despite the error
        assert len(buf) >= 100


def test_a_stream_configured_for_more_parts_in_flight_raises_the_bound_to_its_own():
    buffers = PartBuffers(2)
    buffers.at_least(1)  # never lowered
    assert buffers.limit == 2
    held = threading.Barrier(4, timeout=10)
    done = threading.Event()

    def part() -> None:
        with buffers.borrow(16):
            held.wait()  # all four lent at once, or the barrier breaks
            done.wait(10)

    threads = [threading.Thread(target=part) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    assert held.n_waiting == 2  # the bound of 2 holds the other two back
    buffers.at_least(4)  # as a stream with max_parts_in_flight=4 does
    time.sleep(0.2)
    assert not held.broken and held.n_waiting == 0  # all four met
    done.set()
    for t in threads:
        t.join(10)


def test_a_part_that_fills_its_buffer_is_sent_from_it_and_a_short_one_as_a_copy(
    tmp_path, monkeypatch
):
    """boto3 takes the pool's bytearray itself for a full part (the part is held once,
    not twice); a part shorter than its buffer goes as bytes of its own length."""
    from types import SimpleNamespace

    from blocks.bucket import UploadedPart
    from flows import upload
    from flows.digest import FileSha256
    from flows.source import Owned
    from stream_ingest.records import StreamRecord

    data = bytes(range(256)) * 64  # 16 KiB: a full part of 8 KiB and a short one
    path = tmp_path / "rec.mkv"
    path.write_bytes(data[: 8192 + 5000])
    sent: list[tuple[object, bytes]] = []

    def upload_part(_key: str, _upload: str, number: int, body: object) -> UploadedPart:
        sent.append((body, bytes(body)))  # type: ignore[call-overload]
        return UploadedPart(number, f'"etag-{number}"', len(body), "")  # type: ignore[arg-type]

    ctx = SimpleNamespace(
        path=str(path),
        owned=Owned(str(tmp_path)),
        record=StreamRecord(stream_id="s", s3_key="k", s3_upload_id="u"),
        prior={},
        token="t",
        sha256=FileSha256(),
        bucket=SimpleNamespace(upload_part=upload_part),
        store=SimpleNamespace(record_part=lambda *_args: None),
        config=SimpleNamespace(lease_ttl_seconds=30),
    )
    # One buffer: the short part borrows the full part's.
    monkeypatch.setattr(upload, "BUFFERS", PartBuffers(1))
    upload._read_and_put(ctx, 1, 0, 8192)  # type: ignore[arg-type]
    upload._read_and_put(ctx, 2, 8192, 5000)  # type: ignore[arg-type]
    (full, full_bytes), (short, short_bytes) = sent
    assert isinstance(full, bytearray) and len(full) == 8192  # the buffer itself
    assert isinstance(short, bytes) and len(short) == 5000  # a copy of the part only
    assert full_bytes == data[:8192] and short_bytes == data[8192 : 8192 + 5000]
    assert ctx.sha256.covered == 8192 + 5000  # both fed the file's digest, in order
