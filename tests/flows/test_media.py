"""What each recording is: ffprobe's facts, read after the stream is completed, in
the record, the manifest beside the object and the summary artifact; a recording
ffprobe cannot read, a missing ffprobe and a file changed under it leave the stream
completed."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import time
from pathlib import Path

import pytest

import stream_ingest.flows.media as media_module
from stream_ingest.flows.ingest import stream_ingest
from stream_ingest.media import MediaReport
from stream_ingest.states import Status
from tests.conftest import edit_config
from tests.flows.helpers import object_bytes, payload

pytestmark = [
    pytest.mark.usefixtures("registered"),
    pytest.mark.needs("ffmpeg", "ffprobe"),
]


@pytest.fixture
def probing(registered) -> None:
    edit_config(ffprobe_path="ffprobe")  # the tests' settings turn it off (tests/conftest.py)


def _recording(path: Path) -> bytes:
    """Two seconds of 320x240 video at 25 fps with a sine tone, as ffmpeg makes them."""
    subprocess.run(
        [
            *("ffmpeg", "-v", "error", "-y"),
            *("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2"),
            *("-f", "lavfi", "-i", "sine=frequency=440:duration=2"),
            *("-c:v", "libx264", "-c:a", "aac", "-shortest", str(path)),
        ],
        check=True,
    )
    return path.read_bytes()


def _manifest(s3, bucket: str, key: str) -> dict:
    return json.loads(object_bytes(s3, bucket, key + ".media.json"))


def _summary_row(stream_id: str) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"stream-{stream_id[:8]}"]))
        )
    [artifact] = found
    data = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    [row] = data
    return row


def test_a_recording_s_facts_are_in_the_record_the_manifest_and_the_summary(
    probing, registered, s3, store
):
    src = Path(registered.watch_dir) / "cam1" / "take.mp4"
    src.parent.mkdir()
    data = _recording(src)

    result = stream_ingest(path=str(src))

    assert result["status"] == "completed"
    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == data
    media = store.streams.require(result["stream_id"]).media
    report = MediaReport.from_json(media)
    assert report is not None and report.facts is not None
    facts = report.facts
    assert (facts.video_codec, facts.width, facts.height, facts.frame_rate) == (
        "h264",
        320,
        240,
        25.0,
    )
    assert facts.audio_codec == "aac" and "mp4" in facts.container
    assert facts.duration_s == pytest.approx(2.0, abs=0.1) and facts.bitrate
    assert (report.revision, report.size) == (1, len(data))
    # `streams show --json` has the fields; the flow's result is that shape.
    assert result["media"] == json.loads(media)

    manifest = _manifest(s3, registered.s3_bucket, result["s3_key"])
    assert manifest["object"] == result["s3_key"]
    assert manifest["stream_id"] == result["stream_id"]
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["video_codec"] == "h264" and manifest["width"] == 320
    head = s3.head_object(Bucket=registered.s3_bucket, Key=result["s3_key"] + ".media.json")
    assert head["ContentType"] == "application/json"

    row = _summary_row(result["stream_id"])
    assert row["media"] == report.summary()
    assert "h264 320x240 25 fps" in row["media"]


def test_a_recording_ffprobe_cannot_read_is_reported_not_failed(probing, registered, s3, store):
    src = Path(registered.watch_dir) / "noise.mp4"
    data = payload(300_000, seed=5)
    src.write_bytes(data)

    state = stream_ingest(path=str(src), return_state=True)

    assert state.is_completed(), state.message
    result = state.result()
    assert object_bytes(s3, registered.s3_bucket, result["s3_key"]) == data
    record = store.streams.require(result["stream_id"])
    assert record.status == Status.COMPLETED and record.error == ""
    report = MediaReport.from_json(record.media)
    assert report is not None and report.facts is None
    # ffprobe's own reason, in one line, without its path.
    assert "Invalid data found when processing input" in report.unreadable
    assert "\n" not in report.unreadable and str(src) not in report.unreadable
    assert _manifest(s3, registered.s3_bucket, result["s3_key"])["unreadable"] == report.unreadable
    assert _summary_row(result["stream_id"])["media"].startswith("unreadable: ")


def test_without_ffprobe_a_recording_completes_without_facts(registered, s3, store, caplog):
    edit_config(ffprobe_path="/nowhere/ffprobe")
    src = Path(registered.watch_dir) / "plain.mp4"
    _recording(src)

    with caplog.at_level(logging.INFO):
        result = stream_ingest(path=str(src))

    assert result["status"] == "completed" and result["media"] is None
    assert store.streams.require(result["stream_id"]).media == ""
    assert "no ffprobe (/nowhere/ffprobe)" in caplog.text
    listed = s3.list_objects_v2(Bucket=registered.s3_bucket)["Contents"]
    assert [o["Key"] for o in listed] == [result["s3_key"]]  # no manifest
    assert "media" not in _summary_row(result["stream_id"])


def test_a_file_changed_while_ffprobe_reads_it_is_not_probed(
    probing, registered, s3, store, monkeypatch
):
    src = Path(registered.watch_dir) / "appended.mp4"
    _recording(src)
    run = media_module._run

    def appended_meanwhile(*args, **kwargs):
        with src.open("ab") as fh:
            fh.write(b"more")
        return run(*args, **kwargs)

    monkeypatch.setattr(media_module, "_run", appended_meanwhile)

    result = stream_ingest(path=str(src))

    assert result["status"] == "completed"
    report = MediaReport.from_json(store.streams.require(result["stream_id"]).media)
    assert report is not None and report.facts is None
    assert report.not_probed == "the file changed while ffprobe read it"


def test_an_ffprobe_past_its_timeout_is_killed_and_reported(
    probing, registered, s3, store, tmp_path
):
    slow = tmp_path / "slow-ffprobe"
    slow.write_text("#!/bin/sh\nexec sleep 90\n")
    slow.chmod(0o755)
    edit_config(ffprobe_path=str(slow), ffprobe_timeout_seconds=1.5)
    src = Path(registered.watch_dir) / "slow.mp4"
    _recording(src)
    began = time.monotonic()

    result = stream_ingest(path=str(src))

    assert time.monotonic() - began < 60  # killed, not waited for
    assert result["status"] == "completed"
    report = MediaReport.from_json(store.streams.require(result["stream_id"]).media)
    assert report is not None and report.not_probed == "ffprobe did not answer within 1.5 s"
