"""A recording's name swapped for a symlink to a file outside the watch folder after
the run checked it: the stream ends with the reason, and not one byte of the outside
file reaches S3 (flow under the test harness)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import stream_ingest.flows.upload as upload_module
from stream_ingest.blocks.bucket import StreamBucket
from stream_ingest.flows.ingest import stream_ingest
from stream_ingest.states import Status
from tests.flows.helpers import MIB, payload

pytestmark = pytest.mark.usefixtures("registered")


class _SwapBeforeFirstRead:
    """The process's part buffers, swapping the file just before the first part is
    read: after every check the run makes by name, before its read."""

    def __init__(self, buffers, swap) -> None:
        self._buffers, self._swap = buffers, swap
        self._lock = threading.Lock()
        self.swapped = False

    @contextmanager
    def borrow(self, size: int) -> Iterator[bytearray]:
        with self._lock:
            if not self.swapped:
                self._swap()
                self.swapped = True
        with self._buffers.borrow(size) as buf:
            yield buf

    def __getattr__(self, name: str):
        return getattr(self._buffers, name)


def test_a_name_swapped_for_a_link_out_of_the_folder_uploads_none_of_its_bytes(
    registered, s3, store, tmp_path, monkeypatch
):
    data = payload(11 * MIB + 7, seed=94)
    secret = tmp_path / "outside" / "secret.mp4"
    secret.parent.mkdir()
    secret.write_bytes(payload(len(data), seed=95))  # as long: every read would succeed
    src = Path(registered.watch_dir) / "swapped.mp4"
    src.write_bytes(data)

    def swap() -> None:
        src.rename(src.with_suffix(".old"))
        src.symlink_to(secret)

    sent: list[tuple[int, bytes]] = []
    upload_part = StreamBucket.upload_part

    def recording(self, key, upload_id, number, body):
        sent.append((number, bytes(body)))
        return upload_part(self, key, upload_id, number, body)

    swapper = _SwapBeforeFirstRead(upload_module.BUFFERS, swap)
    monkeypatch.setattr(upload_module, "BUFFERS", swapper)
    monkeypatch.setattr(StreamBucket, "upload_part", recording)

    state = stream_ingest(path=str(src), return_state=True)

    assert swapper.swapped
    for number, body in sent:  # a part read before the swap is the recording's own
        offset = (number - 1) * 5 * MIB
        assert body == data[offset : offset + len(body)], f"part {number} is not the file's"
    assert s3.list_objects_v2(Bucket=registered.s3_bucket).get("KeyCount", 0) == 0
    assert state.is_failed()
    assert "outside the watch folder" in state.message and str(secret) in state.message
    [record] = store.streams.list()
    assert record.status == Status.FAILED and "outside the watch folder" in record.error
