"""Takes and revisions under the test harness: a completed file that grows or is
patched later gets a revision (unchanged parts copied server-side); a new take at a
path whose key another take's object holds never overwrites it (on_existing)."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from stream_ingest.blocks.bucket import StreamBucket
from stream_ingest.flows import report
from stream_ingest.flows.ingest import stream_ingest
from stream_ingest.states import Status
from tests.conftest import edit_config
from tests.flows.automation import Events
from tests.flows.helpers import MIB, object_bytes, payload, run_in_thread

pytestmark = pytest.mark.usefixtures("registered")


@pytest.fixture
def s3_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many parts the flow sent and how many it copied (a spy: the real calls run)."""
    calls: Counter[str] = Counter()
    for name in ("upload_part", "copy_part"):
        real = getattr(StreamBucket, name)

        def spy(self, *args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(StreamBucket, name, spy)
    return calls


def _keys(s3, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


@pytest.mark.on_ceph
def test_a_completed_file_that_grows_and_is_patched_gets_a_revision(
    registered, s3, store, s3_calls
):
    """A tool patches the head and appends after the recording completed: the same
    key, byte-identical to the file, only the changed and new parts sent."""
    data = payload(16 * MIB + 321, seed=41)  # parts: 5, 5, 5, 1 MiB + 321
    src = Path(registered.watch_dir) / "later.mp4"
    src.write_bytes(data)
    first = stream_ingest(path=str(src))
    assert first["status"] == "completed" and s3_calls["copy_part"] == 0
    sid, key = first["stream_id"], first["s3_key"]

    patched = b"PATCHED-HEAD" + data[12:] + payload(3 * MIB, seed=42)
    with open(src, "r+b") as fh:  # in place: the same file, a revision, not a take
        fh.write(patched[:12])
        fh.seek(len(data))
        fh.write(patched[len(data) :])
    s3_calls.clear()

    second = stream_ingest(stream_id=sid)  # the run the sensor starts (or `rerun`)

    assert second["status"] == "completed" and second["s3_key"] == key
    assert int(second["revision"]) == 2
    assert object_bytes(s3, registered.s3_bucket, key) == patched
    assert second["sha256"] == hashlib.sha256(patched).hexdigest()
    # part 1 changed (head), parts 2-3 unchanged: copied; part 4 grew, part 5 is new
    assert s3_calls == Counter(copy_part=2, upload_part=2)
    revisions = store.revisions.list(sid)
    assert [(r.number, r.size, r.parts_copied, r.parts_uploaded) for r in revisions] == [
        (1, len(data), 0, 4),
        (2, len(patched), 2, 2),
    ]
    assert revisions[0].sha256 == first["sha256"] and revisions[1].sha256 == second["sha256"]
    assert _keys(s3, registered.s3_bucket) == [key]

    again = stream_ingest(stream_id=sid)  # nothing changed since: nothing to do
    assert again["message"] == "already completed" and int(again["revision"]) == 2


def test_a_first_take_is_completed_by_one_request(registered, s3, store, monkeypatch):
    """The end of a recording waits on S3 for each request: a first take's completion is
    the conditional Complete alone (its answer names our parts' ETag), with no HEAD
    before or after it; the only HEAD is the key's check when the upload is created."""
    calls: list[str] = []
    for name in ("head_object", "complete_multipart_upload"):
        real = getattr(StreamBucket, name)

        def spy(self, *args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(StreamBucket, name, spy)
    data = payload(9 * MIB + 7, seed=49)
    src = Path(registered.watch_dir) / "first.mp4"
    src.write_bytes(data)

    result = stream_ingest(path=str(src))

    assert result["status"] == "completed"
    assert object_bytes(s3, registered.s3_bucket, "rec/first.mp4") == data
    assert calls == ["head_object", "complete_multipart_upload"]
    assert (
        store.streams.require(result["stream_id"]).object_etag
        == (s3.head_object(Bucket=registered.s3_bucket, Key="rec/first.mp4")["ETag"])
    )


def test_a_new_take_over_a_completed_file_keeps_both(registered, s3, store):
    """`ffmpeg -y` truncates the completed file and records again: a new stream whose
    object is `name (2).ext`; the first take's object is untouched."""
    take1, take2 = payload(7 * MIB, seed=43), payload(6 * MIB + 5, seed=44)
    src = Path(registered.watch_dir) / "cam1.mp4"
    src.write_bytes(take1)
    first = stream_ingest(path=str(src))
    with open(src, "wb") as fh:  # O_TRUNC: same inode, same birth time
        fh.write(take2)

    second = stream_ingest(path=str(src))

    assert second["stream_id"] != first["stream_id"]
    assert second["s3_key"] == "rec/cam1 (2).mp4"
    assert object_bytes(s3, registered.s3_bucket, "rec/cam1.mp4") == take1
    assert object_bytes(s3, registered.s3_bucket, "rec/cam1 (2).mp4") == take2
    assert store.streams.require(first["stream_id"]).status is Status.COMPLETED
    assert store.identities.stream_for(second["identity"]) == second["stream_id"]


def test_the_same_path_recorded_again_later_with_skip_and_overwrite(
    registered, s3, store, monkeypatch
):
    events = Events()
    monkeypatch.setattr(report, "emit_event", events)
    src = Path(registered.watch_dir) / "daily.mp4"
    src.write_bytes(payload(MIB, seed=45))
    stream_ingest(path=str(src))
    first = object_bytes(s3, registered.s3_bucket, "rec/daily.mp4")

    edit_config(on_existing="skip")
    src.unlink()  # a new file at the same path, the next day
    src.write_bytes(payload(2 * MIB, seed=46))
    skipped = stream_ingest(path=str(src))
    assert skipped["status"] == "skipped" and "on_existing=skip" in skipped["error"]
    assert events.ends()[-1][0] == "skipped"  # announced: it started, and it ended
    assert _keys(s3, registered.s3_bucket) == ["rec/daily.mp4"]
    assert object_bytes(s3, registered.s3_bucket, "rec/daily.mp4") == first
    assert not s3.list_multipart_uploads(Bucket=registered.s3_bucket).get("Uploads")

    edit_config(on_existing="overwrite")
    src.unlink()
    third = payload(3 * MIB, seed=47)
    src.write_bytes(third)
    replaced = stream_ingest(path=str(src))
    assert replaced["status"] == "completed" and replaced["s3_key"] == "rec/daily.mp4"
    assert object_bytes(s3, registered.s3_bucket, "rec/daily.mp4") == third


@pytest.mark.on_ceph
def test_a_key_taken_during_the_upload_is_not_overwritten(registered, s3, store):
    """Another writer puts an object at the key after the upload began: the
    conditional completion refuses, and the take is uploaded under the next key."""
    data = payload(12 * MIB + 1, seed=48)
    src = Path(registered.watch_dir) / "race.mp4"
    release = threading.Event()

    def recorder() -> None:
        with open(src, "wb") as fh:
            fh.write(data[: 6 * MIB])
            fh.flush()
            release.wait(60)
            fh.write(data[6 * MIB :])

    writer = threading.Thread(target=recorder, name="writer")
    writer.start()
    while not src.exists():
        time.sleep(0.01)
    thread, out = run_in_thread(src)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(r.s3_upload_id for r in store.streams.list()):
        time.sleep(0.05)
    s3.put_object(Bucket=registered.s3_bucket, Key="rec/race.mp4", Body=b"someone else's")
    release.set()
    writer.join(30)
    thread.join(120)

    result = out["state"].result()
    assert result["status"] == "completed" and result["s3_key"] == "rec/race (2).mp4"
    assert object_bytes(s3, registered.s3_bucket, "rec/race (2).mp4") == data
    assert object_bytes(s3, registered.s3_bucket, "rec/race.mp4") == b"someone else's"
    assert not s3.list_multipart_uploads(Bucket=registered.s3_bucket).get("Uploads")


def test_a_reused_inode_is_a_new_stream(registered, s3, store):
    """Deleted while nobody looked, and the kernel gave its inode to the next file:
    the birth time tells them apart, and both recordings land."""
    src = Path(registered.watch_dir) / "reuse.mp4"
    one = payload(MIB, seed=49)
    src.write_bytes(one)
    first = stream_ingest(path=str(src))
    ino = os.stat(src).st_ino
    src.unlink()
    # A new file takes the lowest free inode of its folder's group (ext4): where a
    # lower one was freed meanwhile (pytest cleaning old temp folders), deleting and
    # creating again would take that one every time. Files created are kept aside
    # until one gets the deleted file's inode.
    fillers = []
    for i in range(10_000):
        with open(src, "xb"):
            pass
        if os.stat(src).st_ino == ino:
            break
        fillers.append(src.rename(src.with_name(f"filler-{i}")))
    else:
        raise AssertionError("the inode was never reused; cannot test")
    for filler in fillers:
        filler.unlink()
    src.write_bytes(payload(MIB + 7, seed=50))

    second = stream_ingest(path=str(src))

    assert second["stream_id"] != first["stream_id"] and second["status"] == "completed"
    assert second["s3_key"] == "rec/reuse (2).mp4"
    assert object_bytes(s3, registered.s3_bucket, "rec/reuse.mp4") == one


def test_a_longer_new_take_seen_only_at_its_end_is_not_a_revision(registered, s3, store):
    """With polling (no open event), `ffmpeg -y` may have outgrown the first take before
    anyone looks: nothing of the completed object is in the file, so it is a new take,
    not a revision that would replace take 1."""
    take1, take2 = payload(11 * MIB, seed=51), payload(13 * MIB, seed=52)
    src = Path(registered.watch_dir) / "longer.mp4"
    src.write_bytes(take1)
    first = stream_ingest(path=str(src))
    with open(src, "wb") as fh:
        fh.write(take2)

    looked = stream_ingest(stream_id=first["stream_id"])  # the run a change starts

    assert "new take" in looked["message"]
    kept = store.streams.require(first["stream_id"])
    assert (kept.status, kept.revision) == (Status.COMPLETED, 1)
    assert object_bytes(s3, registered.s3_bucket, "rec/longer.mp4") == take1
    new_sid = store.identities.stream_for(first["identity"])
    assert new_sid and new_sid != first["stream_id"]

    second = stream_ingest(stream_id=new_sid)  # its run (the sensor's, in production)
    assert second["status"] == "completed" and second["s3_key"] == "rec/longer (2).mp4"
    assert object_bytes(s3, registered.s3_bucket, "rec/longer (2).mp4") == take2


def _open_uploads(s3, bucket: str) -> list[str]:
    return [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def test_a_touched_completed_file_opens_no_upload(registered, s3, store, s3_calls):
    """`touch`, chmod, a backup tool or a thumbnailer that opens it for writing: the
    bytes are the object's, so nothing is uploaded or left open, however often."""
    data = payload(12 * MIB + 7, seed=61)  # three parts
    src = Path(registered.watch_dir) / "touched.mp4"
    src.write_bytes(data)
    first = stream_ingest(path=str(src))
    etag = s3.head_object(Bucket=registered.s3_bucket, Key=first["s3_key"])["ETag"]
    s3_calls.clear()

    for bump in (5, 10):
        os.utime(src, ns=(time.time_ns(), time.time_ns() + bump * 10**9))
        again = stream_ingest(stream_id=first["stream_id"])  # the run the close starts
        assert again["status"] == "completed"

    assert _open_uploads(s3, registered.s3_bucket) == []
    assert s3_calls == Counter()
    record = store.streams.require(first["stream_id"])
    assert (record.status, record.revision) == (Status.COMPLETED, 1)
    assert s3.head_object(Bucket=registered.s3_bucket, Key=first["s3_key"])["ETag"] == etag
    assert object_bytes(s3, registered.s3_bucket, first["s3_key"]) == data


def test_a_revision_that_finds_its_bytes_unchanged_leaves_no_upload(
    registered, s3, store, monkeypatch
):
    """Should a revision reach its end with the object's very parts (the bytes were
    changed and changed back meanwhile), its upload is aborted, not left open."""
    from stream_ingest.flows import opening
    from stream_ingest.takes import Change

    monkeypatch.setattr(opening, "_by_content", lambda *_: Change.REVISION)
    data = payload(11 * MIB, seed=62)
    src = Path(registered.watch_dir) / "same.mp4"
    src.write_bytes(data)
    first = stream_ingest(path=str(src))
    os.utime(src, ns=(time.time_ns(), time.time_ns() + 5 * 10**9))

    again = stream_ingest(stream_id=first["stream_id"])

    assert again["status"] == "completed"
    assert _open_uploads(s3, registered.s3_bucket) == []
    assert object_bytes(s3, registered.s3_bucket, first["s3_key"]) == data


def test_a_one_part_take_recorded_over_in_place_keeps_both(registered, s3, store):
    """A 3 MiB take (one part: nothing full to compare) lands; with the sensor down the
    file is truncated and a 14 MiB take recorded in place (same inode). Its bytes are
    not the first take's: a new take, and both objects stay."""
    take1, take2 = payload(3 * MIB, seed=63), payload(14 * MIB, seed=64)
    src = Path(registered.watch_dir) / "short.mp4"
    src.write_bytes(take1)
    first = stream_ingest(path=str(src))
    with open(src, "r+b") as fh:  # O_TRUNC in place, as `ffmpeg -y` does
        fh.truncate(0)
        fh.write(take2)

    looked = stream_ingest(stream_id=first["stream_id"])  # the catch-up scan's run

    assert "new take" in looked["message"]
    kept = store.streams.require(first["stream_id"])
    assert (kept.status, kept.revision) == (Status.COMPLETED, 1)
    assert object_bytes(s3, registered.s3_bucket, "rec/short.mp4") == take1
    second = stream_ingest(stream_id=store.identities.stream_for(first["identity"]))
    assert second["s3_key"] == "rec/short (2).mp4"
    assert object_bytes(s3, registered.s3_bucket, "rec/short (2).mp4") == take2


def test_a_one_part_take_patched_in_place_and_extended_is_a_revision(registered, s3, store):
    """A 3 MiB take (one part) whose head a tool patches and to which it appends, seen
    after the take completed: its blocks past the head are the object's, so it is the
    same take, and the object is replaced by its revision."""
    take = payload(3 * MIB, seed=65)
    src = Path(registered.watch_dir) / "patched.mkv"
    src.write_bytes(take)
    first = stream_ingest(path=str(src))
    final = take[:64] + b"PATCHED" + take[71:] + bytes(4096)
    with open(src, "r+b") as fh:  # in place: the same inode
        fh.seek(64)
        fh.write(b"PATCHED")
        fh.seek(0, os.SEEK_END)
        fh.write(bytes(4096))

    second = stream_ingest(stream_id=first["stream_id"])

    assert second["status"] == "completed" and int(second["revision"]) == 2
    assert second["s3_key"] == first["s3_key"]
    assert object_bytes(s3, registered.s3_bucket, first["s3_key"]) == final
    assert _keys(s3, registered.s3_bucket) == [first["s3_key"]]


def test_a_take_and_its_revision_get_the_object_options(registered, s3, store):
    """Set in the bucket block: the Content-Type from the extension, the storage class,
    SSE, the extra metadata (the upload mark survives it) and the extra tags (ours win
    on a conflict), on the first take's object and again on its revision's."""
    block = StreamBucket.load(registered.config_block)
    block.storage_class = "STANDARD_IA"
    block.server_side_encryption = "AES256"
    block.extra_metadata = {"project": "evening-news"}
    block.extra_tags = {"team": "news", "revision": "theirs"}
    block.save(registered.config_block, overwrite=True)
    data = payload(6 * MIB + 5, seed=43)
    src = Path(registered.watch_dir) / "opts.mkv"
    src.write_bytes(data)

    seen = []
    first = stream_ingest(path=str(src))
    for result in (first, None):
        result = result or stream_ingest(stream_id=first["stream_id"])
        key = result["s3_key"]
        head = s3.head_object(Bucket=registered.s3_bucket, Key=key)
        tags = s3.get_object_tagging(Bucket=registered.s3_bucket, Key=key)["TagSet"]
        seen.append((result, head, {t["Key"]: t["Value"] for t in tags}))
        with open(src, "ab") as fh:  # grown after completion: the next run is a revision
            fh.write(payload(MIB, seed=44))

    assert [int(result["revision"]) for result, _, _ in seen] == [1, 2]
    for result, head, tags in seen:
        assert head["ContentType"] == "video/x-matroska"
        assert head["StorageClass"] == "STANDARD_IA"
        assert head["ServerSideEncryption"] == "AES256"
        assert head["Metadata"]["project"] == "evening-news"
        assert head["Metadata"]["upload-mark"] == result["upload_mark"]
        assert tags["team"] == "news" and tags["revision"] == str(result["revision"])
        assert tags["stream-id"] == first["stream_id"]
