"""A change made while another run holds the stream is not dropped: the run that found
the lease held asks the holder to look again, and the holder starts the change's run
once it lets go."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_ingest.blocks.bucket import StreamBucket
from stream_ingest.flows import follow_up
from stream_ingest.flows.ingest import stream_ingest
from stream_ingest.flows.runs import CreatedRun
from tests.flows.helpers import MIB, object_bytes, payload, run_in_thread

pytestmark = pytest.mark.usefixtures("registered")


def test_a_change_made_while_the_holder_completes_gets_its_run(registered, s3, store, monkeypatch):
    first, more = payload(6 * MIB, seed=71), payload(2 * MIB + 3, seed=72)
    src = Path(registered.watch_dir) / "patched-late.mp4"
    src.write_bytes(first)
    requested = []

    def create(request):
        requested.append(request)
        return CreatedRun("run-id", request.name)

    monkeypatch.setattr(follow_up, "create_stream_run", create)
    real_complete = StreamBucket.complete_multipart_upload
    looked: dict = {}

    def completing(self, *args, **kwargs):
        if not looked:  # after the holder's last look at the file, before its object
            with open(src, "ab") as fh:
                fh.write(more)
            sid = store.streams.list()[0].stream_id
            thread, looked["out"] = run_in_thread(src, stream_id=sid)  # the change's run
            thread.join(60)
        return real_complete(self, *args, **kwargs)

    monkeypatch.setattr(StreamBucket, "complete_multipart_upload", completing)
    result = stream_ingest(path=str(src))

    assert int(result["total_bytes"]) == len(first)  # the holder completed what it saw
    dropped = looked["out"]["state"].result()
    assert "being uploaded by another run" in dropped["message"]
    assert [r.stream_id for r in requested] == [result["stream_id"]]
    assert "revision" in requested[0].tags

    monkeypatch.setattr(StreamBucket, "complete_multipart_upload", real_complete)
    revised = stream_ingest(stream_id=requested[0].stream_id)  # the requested run
    assert int(revised["revision"]) == 2
    assert object_bytes(s3, registered.s3_bucket, revised["s3_key"]) == first + more
    assert not store.leases.take_ask_again(result["stream_id"])  # answered once
