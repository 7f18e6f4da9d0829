"""Stores whose ETags are not MD5s (AWS under SSE-KMS or SSE-C, GCS) and stores that
keep no checksums (Ceph's gateway), played by the fault proxy in front of moto: a
recording, its revision and a completion whose answer was lost all end completed and
byte-identical, proved by the parts' checksums or, without them, by the upload's mark."""

from __future__ import annotations

import pytest

from stream_ingest.flows.ingest import stream_ingest
from tests.faults.conftest import check_object, recorder
from tests.faults.proxy import FaultProxy
from tests.flows.helpers import MIB, payload, run_in_thread

pytestmark = pytest.mark.usefixtures("registered")

STORES = {
    "opaque ETags": {"opaque_etags": True},
    "opaque ETags, no checksums": {"opaque_etags": True, "without_checksums": True},
}


def _record(store, watch, name: str, data: bytes, head_patch: bytes = b"") -> dict:
    writer = recorder(store, watch / name, data, steps=4, head_patch=head_patch)
    writer.start()
    thread, out = run_in_thread(watch / name)
    thread.join(240)
    writer.join(10)
    assert not thread.is_alive(), "the run did not end"
    state = out["state"]
    assert state.is_completed(), state.message
    return state.result()


def _play(proxy: FaultProxy, how: dict[str, bool]) -> None:
    for name, value in how.items():
        setattr(proxy, name, value)


@pytest.mark.parametrize("how", list(STORES.values()), ids=list(STORES))
def test_a_recording_and_its_revision_complete(registered, s3, store, proxy, watch, how):
    _play(proxy, how)
    data = payload(11 * MIB + 7, seed=81)
    first = _record(store, watch, "opaque.mkv", data)
    assert first["status"] == "completed"
    check_object(s3, registered.s3_bucket, first["s3_key"], data)
    record = store.streams.require(first["stream_id"])
    # The record keeps the ETag the store showed (a revision's copy source), not an MD5.
    assert proxy.real(record.object_etag) != record.object_etag

    patched = b"HEAD" + data[4:] + payload(2 * MIB, seed=82)
    with open(watch / "opaque.mkv", "r+b") as fh:  # in place: a revision
        fh.write(patched[:4])
        fh.seek(len(data))
        fh.write(patched[len(data) :])
    second = stream_ingest(stream_id=first["stream_id"])
    assert second["status"] == "completed" and int(second["revision"]) == 2
    check_object(s3, registered.s3_bucket, first["s3_key"], patched)
    # The unchanged parts were copied (their If-Match named the opaque ETag, which held).
    assert store.revisions.list(first["stream_id"])[-1].parts_copied >= 1


@pytest.mark.parametrize("how", list(STORES.values()), ids=list(STORES))
def test_a_completion_whose_answer_is_lost(registered, s3, store, proxy, watch, how):
    """S3 completes the object but the answer never arrives: the retry finds the upload
    gone and must recognise the object as this upload's without an MD5 ETag."""
    _play(proxy, how)
    proxy.add("CompleteMultipartUpload", "drop_after", times=1)
    data = payload(6 * MIB + 3, seed=83)
    result = _record(store, watch, "lost answer.mkv", data)
    assert result["status"] == "completed"
    assert proxy.count("CompleteMultipartUpload", "drop_after") == 1
    check_object(s3, registered.s3_bucket, result["s3_key"], data)
