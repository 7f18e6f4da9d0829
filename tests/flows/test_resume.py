"""Crash and resume: a run killed with SIGKILL after k parts, then rerun, uploads only
the parts that were not checkpointed (UploadPart calls counted in the S3 store's own
request log: moto's, or Ceph's gateway's)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from stream_ingest.flows.ingest import stream_ingest
from tests.conftest import edit_config
from tests.flows.helpers import (
    MIB,
    GrowingWriter,
    mark_crashed,
    payload,
    start_flow_process,
    upload_part_calls,
    wait_for_parts,
)

pytestmark = pytest.mark.usefixtures("registered")


# A flow process of its own, killed mid-stream: the full tier's, with the other crashes.
@pytest.mark.slow
@pytest.mark.on_ceph
def test_killed_run_resumes_uploading_only_missing_parts(
    registered, s3, store, s3_server, monkeypatch
):
    # A lease far longer than the test: the rerun must take it over from the crashed
    # run instead of waiting for it to expire.
    edit_config(lease_ttl_seconds=300)
    data = payload(41 * MIB + 4321, seed=11)
    src = Path(registered.watch_dir) / "crash.mp4"
    src.touch()
    writer = GrowingWriter(src, data, steps=24, pause=0.25)
    writer.start()
    child = start_flow_process(src)
    try:
        sid = wait_for_parts(store, 3)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    checkpointed = set(store.parts.get(sid))
    writer.join(30)
    assert writer.done.is_set()
    record = store.streams.get(sid)
    assert record.status == "uploading"  # what a crash leaves behind
    assert store.leases.holder(sid) == record.flow_run_id  # still held by the dead run
    mark_crashed(record.flow_run_id)
    log_start = Path(s3_server.log_path).stat().st_size

    result = stream_ingest(path=str(src), stream_id=sid)

    assert result["status"] == "completed"
    assert s3.get_object(Bucket=registered.s3_bucket, Key=result["s3_key"])["Body"].read() == data
    calls = upload_part_calls(Path(s3_server.log_path), log_start, record.s3_upload_id)
    total_parts = -(-len(data) // (5 * MIB))
    assert not set(calls) & checkpointed, "a checkpointed part was uploaded again"
    # As a set: a request the killed process had in flight may be logged by the store
    # only after `log_start` (a loaded machine), the rerun's upload of that part too.
    assert set(calls) == set(range(1, total_parts + 1)) - checkpointed
    assert len(checkpointed) >= 3
