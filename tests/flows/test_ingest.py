"""The stream-ingest flow under prefect_test_harness, with a private redis-server
and a moto S3 server: growing files, head rewrites, empty and tiny files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from flows.ingest import stream_ingest
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
    assert result["stream_id"] not in store.active_ids()
