"""The stream-ingest flow under prefect_test_harness, with a private redis-server
and a moto S3 server: growing files, head rewrites, empty and tiny files."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

import flows.finalize as finalize_module
from flows.ingest import stream_ingest
from tests.conftest import edit_config
from tests.flows.helpers import MIB, GrowingWriter, object_bytes, payload

pytestmark = pytest.mark.usefixtures("registered")


def _ingest(path: Path) -> dict:
    return stream_ingest(path=str(path))


def test_finished_file_is_uploaded_byte_identically(registered, s3, store, tmp_path):
    data = payload(17 * MIB + 12345, seed=1)
    src = Path(registered.watch_dir) / "cam 1" / "täst.mp4"
    src.parent.mkdir()
    src.write_bytes(data)

    result = _ingest(src)

    assert result["status"] == "completed"
    assert result["s3_key"] == "rec/cam 1/täst.mp4"
    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == data
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    assert int(result["total_bytes"]) == len(data)
    tags = s3.get_object_tagging(Bucket=registered.s3_bucket, Key=result["s3_key"])["TagSet"]
    assert {"Key": "sha256", "Value": result["sha256"]} in tags
    assert store.get(result["stream_id"]).status == "completed"
    assert result["stream_id"] not in {r.stream_id for r in store.active_streams()}


def test_file_growing_in_steps_is_uploaded_byte_identically(registered, s3, store):
    data = payload(23 * MIB + 777, seed=2)
    src = Path(registered.watch_dir) / "growing.mkv"
    src.touch()
    writer = GrowingWriter(src, data, steps=12, pause=0.15)
    writer.start()

    result = _ingest(src)
    writer.join(5)

    assert writer.done.is_set()
    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == data
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    parts = store.parts(result["stream_id"])
    assert len(parts) == 5  # four full 5 MiB parts while growing, then the tail
    assert sorted(p.offset for p in parts.values()) == [i * 5 * MIB for i in range(5)]


@pytest.mark.parametrize(
    ("patch_at", "patch"),
    [
        (0, b"\x00\x00\x00\x20ftypisom-PATCHED-AT-CLOSE"),  # MP4/MKV head at close
        (7 * MIB + 3, b"\x12\x34\x56\x78"),  # a 4-byte size field mid-file, in part 2
    ],
    ids=["head", "mid-file"],
)
def test_bytes_rewritten_at_close_are_uploaded_byte_identically(
    registered, s3, store, patch_at, patch
):
    """Finalize's CRC32 check finds a rewrite of parts that were already uploaded."""
    data = payload(16 * MIB + 99, seed=3)
    src = Path(registered.watch_dir) / "rewrite.mp4"
    src.touch()
    writer = GrowingWriter(src, data, steps=8, pause=0.15, head_patch=patch, patch_at=patch_at)
    writer.start()

    result = _ingest(src)
    writer.join(5)

    expected = data[:patch_at] + patch + data[patch_at + len(patch) :]
    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == expected
    assert result["sha256"] == hashlib.sha256(expected).hexdigest()
    assert int(result["reuploaded_parts"]) == 1  # the patched part changed after upload


def test_a_rewrite_during_finalize_is_caught(registered, s3, store, monkeypatch):
    """The file changes while finalize verifies it, in a part already verified: the
    stream goes back to tailing, and the next finalize uploads that part again."""
    edit_config(max_parts_in_flight=1)  # one part at a time: part 1 is read before 4
    data = payload(16 * MIB + 5, seed=4)
    src = Path(registered.watch_dir) / "during.mkv"
    src.write_bytes(data)
    real, rewritten = finalize_module._verify, threading.Event()

    def verify_and_rewrite(ctx, pr, known):
        if pr.number == 4 and not rewritten.is_set():  # the last part of the first pass
            with open(src, "r+b") as fh:
                fh.seek(MIB)  # inside part 1, verified by now
                fh.write(b"REWRITTEN")
            rewritten.set()
        return real(ctx, pr, known)

    monkeypatch.setattr(finalize_module, "_verify", verify_and_rewrite)
    result = _ingest(src)

    expected = data[:MIB] + b"REWRITTEN" + data[MIB + 9 :]
    assert rewritten.is_set()
    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == expected
    assert result["sha256"] == hashlib.sha256(expected).hexdigest()
    assert int(result["reuploaded_parts"]) == 1


@pytest.mark.parametrize("size", [0, 1, 5 * MIB - 1, 5 * MIB, 5 * MIB + 1])
def test_empty_tiny_and_boundary_sizes(registered, s3, size):
    data = payload(size, seed=size)
    src = Path(registered.watch_dir) / f"size-{size}.ts"
    src.write_bytes(data)

    result = _ingest(src)

    assert result["status"] == "completed"
    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == data
    assert int(result["total_bytes"]) == size


def test_rerun_of_completed_stream_is_a_noop(registered, s3, store):
    src = Path(registered.watch_dir) / "again.mp4"
    src.write_bytes(payload(MIB, seed=9))
    first = _ingest(src)

    second = stream_ingest(path=str(src), stream_id=first["stream_id"])
    third = _ingest(src)  # by path: same file identity, same stream

    assert second["message"] == "already completed"
    assert third["stream_id"] == first["stream_id"]
    assert third["message"] == "already completed"
