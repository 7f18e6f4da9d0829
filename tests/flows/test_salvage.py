"""The janitor never destroys the only copy: a failed stream is judged by its last
progress, kept while its file can be read, salvaged into `<stem>.partial<ext>` once
it cannot; only an upload with nothing to keep, or whose bytes are all in the
completed object, is aborted."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_ingest.flows.janitor import janitor
from stream_ingest.records import PartRecord, utc_now
from tests.conftest import edit_config
from tests.flows.helpers import MIB, failed_stream, janitor_runs_later, object_bytes, payload

pytestmark = pytest.mark.usefixtures("registered")


@pytest.fixture
def two_hours_later(monkeypatch: pytest.MonkeyPatch) -> None:
    janitor_runs_later(monkeypatch, hours=2)


@pytest.fixture(autouse=True)
def one_hour_ttl(registered) -> None:
    edit_config(upload_ttl_hours=1.0)


def _pending(s3, bucket: str) -> set[str]:
    return {u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])}


def _keys(s3, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_a_failed_stream_with_recent_progress_is_kept_however_old_its_upload(registered, s3, store):
    """A recording longer than the TTL, or a failure found late: the upload was
    created two days ago, its last part went up a moment ago. Not even its file's
    absence makes it old."""
    rec = failed_stream(s3, store, registered, payload(6 * MIB), 1, last_activity=utc_now())

    actions = janitor()

    assert actions == []
    assert _pending(s3, registered.s3_bucket) == {rec.s3_upload_id}
    assert store.streams.get(rec.stream_id).status == "failed"


def test_a_failed_stream_whose_file_is_readable_is_resumable_not_aborted(registered, s3, store):
    data = payload(6 * MIB, seed=1)
    rec = failed_stream(s3, store, registered, data, 1)
    Path(rec.original_path).parent.mkdir(parents=True)
    Path(rec.original_path).write_bytes(data)

    [action] = janitor()

    assert action["kind"] == "keep-upload" and "resumable" in action["reason"]
    assert _pending(s3, registered.s3_bucket) == {rec.s3_upload_id}
    assert store.streams.get(rec.stream_id).status == "failed"


@pytest.mark.on_ceph
@pytest.mark.usefixtures("two_hours_later")
def test_a_failed_stream_whose_file_is_gone_is_salvaged(registered, s3, store, events, s3_server):
    """Parts 1 and 2 full, part 3 short, part 5 after a gap: the first three make the
    file's first 12 MiB, byte for byte, at the first free partial key (another
    object holds `take.partial.mkv`: it is left alone). Ceph's gateway completes an
    upload only from all of its parts: there the upload is kept, and the report says
    why."""
    bucket = registered.s3_bucket
    data = payload(22 * MIB, seed=2)
    rec = failed_stream(s3, store, registered, data[: 12 * MIB], 3)
    s3.upload_part(
        Bucket=bucket, Key=rec.s3_key, UploadId=rec.s3_upload_id, PartNumber=5, Body=data[:5]
    )
    s3.put_object(Bucket=bucket, Key="rec/cam1/take.partial.mkv", Body=b"someone else's")

    [action] = janitor()

    if s3_server.name == "ceph":
        assert action["kind"] == "keep-upload"
        assert "without the 1 parts after its gap (InvalidPart); upload kept" in action["reason"]
        kept = store.streams.get(rec.stream_id)
        assert kept.status == "failed" and kept.salvage_key == ""
        assert _pending(s3, bucket) == {rec.s3_upload_id}
        assert _keys(s3, bucket) == ["rec/cam1/take.partial.mkv"]
        return

    salvaged = store.streams.get(rec.stream_id)
    assert salvaged.status == "salvaged"
    assert salvaged.salvage_key == "rec/cam1/take.partial (2).mkv"
    assert salvaged.salvaged_bytes == 12 * MIB
    assert salvaged.error == f"janitor: source file not found: {rec.original_path}"
    assert object_bytes(s3, bucket, salvaged.salvage_key) == data[: 12 * MIB]
    assert object_bytes(s3, bucket, "rec/cam1/take.partial.mkv") == b"someone else's"
    assert _keys(s3, bucket) == ["rec/cam1/take.partial (2).mkv", "rec/cam1/take.partial.mkv"]
    assert _pending(s3, bucket) == set() and store.parts.uploads() == {}
    assert (action["kind"], action["target"]) == ("salvaged", salvaged.salvage_key)
    [event] = events.sent
    assert event["event"] == "stream-ingest.stream.salvaged"
    assert event["resource"]["stream-ingest.stream-id"] == rec.stream_id
    assert event["payload"]["salvage_key"] == salvaged.salvage_key
    assert event["payload"]["bytes"] == 12 * MIB and event["payload"]["left_out_parts"] == 1


@pytest.mark.on_ceph
@pytest.mark.usefixtures("two_hours_later")
def test_a_failed_stream_without_a_gap_is_salvaged(registered, s3, store):
    """Two full parts and a short one, nothing after: the object at the partial key
    is the file's first 12 MiB, byte for byte, on every store."""
    bucket = registered.s3_bucket
    data = payload(12 * MIB, seed=5)
    rec = failed_stream(s3, store, registered, data, 3)

    [action] = janitor()

    salvaged = store.streams.get(rec.stream_id)
    assert (salvaged.status, action["kind"]) == ("salvaged", "salvaged")
    assert salvaged.salvage_key == "rec/cam1/take.partial.mkv"
    assert object_bytes(s3, bucket, salvaged.salvage_key) == data
    assert _keys(s3, bucket) == ["rec/cam1/take.partial.mkv"]
    assert _pending(s3, bucket) == set() and store.parts.uploads() == {}


def test_an_upload_with_nothing_to_keep_is_aborted_with_the_reason(registered, s3, store, events):
    rec = failed_stream(s3, store, registered, b"", 0)

    [action] = janitor()

    aborted = store.streams.get(rec.stream_id)
    assert aborted.status == "aborted" and aborted.error.endswith("; no part was uploaded")
    assert action["kind"] == "abort-upload"
    assert _pending(s3, registered.s3_bucket) == set()
    assert [e["event"] for e in events.sent] == ["stream-ingest.stream.aborted"]


def _revision_of(s3, store, registered, data: bytes, parts: int):
    """Revision 2 of a completed two-part object, failed with `parts` parts of
    `data` uploaded, its file gone."""
    import dataclasses

    bucket = registered.s3_bucket
    first = payload(10 * MIB, seed=3)
    rec = failed_stream(s3, store, registered, data, parts)
    done = s3.create_multipart_upload(Bucket=bucket, Key=rec.s3_key)["UploadId"]
    etags = [
        s3.upload_part(
            Bucket=bucket,
            Key=rec.s3_key,
            UploadId=done,
            PartNumber=k,
            Body=first[(k - 1) * 5 * MIB : k * 5 * MIB],
        )["ETag"]
        for k in (1, 2)
    ]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key=rec.s3_key,
        UploadId=done,
        MultipartUpload={
            "Parts": [{"PartNumber": k, "ETag": e} for k, e in [(1, etags[0]), (2, etags[1])]]
        },
    )
    # What the flow records: the object's ETag by its HEAD (Ceph's completion answers none).
    etag = s3.head_object(Bucket=bucket, Key=rec.s3_key)["ETag"]
    prior = {k: PartRecord(k, etags[k - 1], (k - 1) * 5 * MIB, 5 * MIB, "x") for k in (1, 2)}
    store.redis_client.hset(
        store.space.prior_key(rec.stream_id), mapping={k: p.to_json() for k, p in prior.items()}
    )
    revised = dataclasses.replace(rec, revision=2, object_etag=etag)
    store.streams.put(revised)
    return revised, first


@pytest.mark.on_ceph
@pytest.mark.usefixtures("two_hours_later")
def test_a_revision_whose_bytes_are_all_in_the_completed_object_is_aborted(registered, s3, store):
    bucket = registered.s3_bucket
    rec, first = _revision_of(s3, store, registered, payload(10 * MIB, seed=3), 2)

    [action] = janitor()

    aborted = store.streams.get(rec.stream_id)
    assert aborted.status == "aborted" and "in the object of revision 1" in aborted.error
    assert action["kind"] == "abort-upload"
    assert _pending(s3, bucket) == set()
    assert object_bytes(s3, bucket, rec.s3_key) == first  # revision 1 untouched


@pytest.mark.on_ceph
@pytest.mark.usefixtures("two_hours_later")
def test_a_revision_with_new_bytes_is_never_aborted(registered, s3, store):
    """Its key holds revision 1, which a salvage must not replace: the upload is kept
    for an operator, and the report says why."""
    bucket = registered.s3_bucket
    rec, first = _revision_of(s3, store, registered, payload(10 * MIB, seed=4), 2)

    [action] = janitor()

    assert action["kind"] == "keep-upload" and "holds its key" in action["reason"]
    assert _pending(s3, bucket) == {rec.s3_upload_id}
    assert store.streams.get(rec.stream_id).status == "failed"
    assert store.streams.get(rec.stream_id).salvage_key == ""
    assert object_bytes(s3, bucket, rec.s3_key) == first


@pytest.mark.parametrize("replaced", [False, True], ids=["own-object", "another-take-at-key"])
@pytest.mark.usefixtures("two_hours_later")
def test_a_salvage_cut_short_before_its_delete_is_finished_by_the_next_sweep(
    registered, s3, store, monkeypatch, replaced
):
    """The janitor's salvage died after copying the prefix to the partial key: S3
    lists no upload of the stream any more. The next sweep finishes it: the stream
    ends salvaged, the object at its key deleted only while it is the stream's own
    (another take's object there is left as it is)."""
    from stream_ingest.blocks.bucket import STREAM_ID, StreamBucket

    bucket = registered.s3_bucket
    data = payload(12 * MIB, seed=6)
    rec = failed_stream(s3, store, registered, data, 3)

    def killed(self, key, etag):
        raise RuntimeError("the janitor's process is killed")

    with monkeypatch.context() as dying:
        dying.setattr(StreamBucket, "delete_object", killed)
        assert janitor(return_state=True).is_failed()
    cut = store.streams.get(rec.stream_id)
    assert (cut.status, cut.salvage_key) == ("failed", "rec/cam1/take.partial.mkv")
    assert _keys(s3, bucket) == ["rec/cam1/take.mkv", "rec/cam1/take.partial.mkv"]
    assert _pending(s3, bucket) == set()
    if replaced:
        s3.put_object(Bucket=bucket, Key=rec.s3_key, Body=b"take", Metadata={STREAM_ID: "other"})

    [action] = janitor()

    salvaged = store.streams.get(rec.stream_id)
    assert (salvaged.status, action["kind"]) == ("salvaged", "salvaged")
    assert salvaged.salvage_key == action["target"] == "rec/cam1/take.partial.mkv"
    assert salvaged.salvaged_bytes == 12 * MIB
    assert object_bytes(s3, bucket, salvaged.salvage_key) == data
    if replaced:
        assert object_bytes(s3, bucket, rec.s3_key) == b"take"
    else:
        assert _keys(s3, bucket) == ["rec/cam1/take.partial.mkv"]
    assert store.parts.uploads() == {}


@pytest.mark.usefixtures("two_hours_later")
def test_a_salvage_whose_key_another_take_holds_keeps_the_upload_until_the_key_is_free(
    registered, s3, store
):
    """S3 completes an upload only at its own key, and another take's object holds
    it: the parts can become no object without replacing that take, so the upload is
    kept, the stream and the registry still naming it (an operator sees it in the
    report; `streams abort` is theirs to run). Once the key is free, the next sweep
    salvages it."""
    from stream_ingest.blocks.bucket import STREAM_ID

    bucket = registered.s3_bucket
    data = payload(12 * MIB, seed=7)
    rec = failed_stream(s3, store, registered, data, 3)
    s3.put_object(Bucket=bucket, Key=rec.s3_key, Body=b"take", Metadata={STREAM_ID: "other"})

    [action] = janitor()

    assert action["kind"] == "keep-upload" and "an object holds its key" in action["reason"]
    kept = store.streams.get(rec.stream_id)
    assert (kept.status, kept.s3_upload_id, kept.salvage_key) == ("failed", rec.s3_upload_id, "")
    assert _pending(s3, bucket) == {rec.s3_upload_id}
    assert store.parts.uploads()[rec.s3_upload_id]["stream_id"] == rec.stream_id
    assert _keys(s3, bucket) == [rec.s3_key] and object_bytes(s3, bucket, rec.s3_key) == b"take"

    s3.delete_object(Bucket=bucket, Key=rec.s3_key)
    [action] = janitor()

    assert (action["kind"], action["target"]) == ("salvaged", "rec/cam1/take.partial.mkv")
    assert object_bytes(s3, bucket, action["target"]) == data
    assert _keys(s3, bucket) == [action["target"]] and _pending(s3, bucket) == set()


@pytest.mark.parametrize(
    ("policy", "salvager"),
    [("keep-both", "janitor"), ("overwrite", "rerun"), ("skip", "janitor")],
)
def test_a_new_take_never_completes_at_the_key_of_an_unfinished_take(
    registered, s3, store, monkeypatch, policy, salvager
):
    """A take's run crashed after S3 took its parts, its stream failed with the upload
    open at `rec/cam1/take.mkv`, and a new file came to the same path. No object is at
    that key, but the old take's upload can complete nowhere else: the new take gets
    the next free key (overwrite and skip too: there is no object to replace or to
    skip for, and skipping would leave the new take nowhere once the old one is
    salvaged), and the old take's salvage, the janitor's or its rerun's, then lands
    its `.partial`."""
    from stream_ingest.errors import SourceReplaced
    from stream_ingest.flows.ingest import stream_ingest

    edit_config(on_existing=policy)
    bucket = registered.s3_bucket
    old, new = payload(12 * MIB, seed=11), payload(7 * MIB, seed=12)
    rec = failed_stream(s3, store, registered, old, 3)
    store.streams.update(rec.stream_id, identity="1:1:1")  # the file it was
    src = Path(rec.original_path)
    src.parent.mkdir(parents=True)
    src.write_bytes(new)

    taken = stream_ingest(path=str(src))

    assert taken["status"] == "completed"
    if salvager == "janitor":
        janitor_runs_later(monkeypatch, hours=2)
        [action] = janitor()
        assert (action["kind"], action["target"]) == ("salvaged", "rec/cam1/take.partial.mkv")
    else:
        with pytest.raises(SourceReplaced):  # the rerun salvages, and its run fails
            stream_ingest(stream_id=rec.stream_id)
    salvaged = store.streams.require(rec.stream_id)
    assert (salvaged.status, salvaged.salvage_key) == ("salvaged", "rec/cam1/take.partial.mkv")
    assert object_bytes(s3, bucket, "rec/cam1/take.partial.mkv") == old
    assert _pending(s3, bucket) == set() and store.parts.uploads() == {}
    assert taken["s3_key"] == "rec/cam1/take (2).mkv"
    assert object_bytes(s3, bucket, "rec/cam1/take (2).mkv") == new
    assert _keys(s3, bucket) == ["rec/cam1/take (2).mkv", "rec/cam1/take.partial.mkv"]
