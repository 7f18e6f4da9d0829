"""An upload S3 created for a run that died before the registry named it
(stream_ingest/flows/creation.py): found and aborted, by the stream's next creation
or by the janitor."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_ingest.blocks.bucket import StreamBucket
from stream_ingest.flows.ingest import stream_ingest
from stream_ingest.flows.janitor import janitor
from tests.conftest import edit_config


def _dies_after_creating(monkeypatch: pytest.MonkeyPatch, video: Path) -> None:
    real = StreamBucket.create_multipart_upload

    def answer_lost(self, *args, **kwargs):
        real(self, *args, **kwargs)
        raise RuntimeError("the worker died")

    with monkeypatch.context() as dying:
        dying.setattr(StreamBucket, "create_multipart_upload", answer_lost)
        assert stream_ingest(path=str(video), return_state=True).is_failed()


def test_the_janitor_aborts_an_upload_its_run_never_registered(
    registered, s3, store, monkeypatch
) -> None:
    video = Path(registered.watch_dir) / "a.mp4"
    video.write_bytes(b"take one")
    _dies_after_creating(monkeypatch, video)
    assert len(s3.list_multipart_uploads(Bucket=registered.s3_bucket)["Uploads"]) == 1
    assert store.parts.uploads() == {}

    janitor()  # within the upload TTL: an announcement may be a creation under way
    assert len(s3.list_multipart_uploads(Bucket=registered.s3_bucket)["Uploads"]) == 1
    edit_config(upload_ttl_hours=1e-6)
    janitor()

    assert not s3.list_multipart_uploads(Bucket=registered.s3_bucket).get("Uploads")
    assert store.parts.creations() == []


def test_a_creation_that_ends_leaves_no_announcement(registered, s3, store) -> None:
    video = Path(registered.watch_dir) / "a.mp4"
    video.write_bytes(b"take one")
    assert stream_ingest(path=str(video))["status"] == "completed"
    assert store.parts.creations() == []
