"""How finalize completes when an object already holds the stream's key
(stream_ingest/flows/finalize.py _completion): the object's HEAD decides."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from stream_ingest.blocks.bucket import STREAM_ID, UPLOAD_MARK
from stream_ingest.errors import KeyTaken
from stream_ingest.flows.finalize import _completion
from stream_ingest.records import PartRecord, StreamRecord

PART = PartRecord(1, '"' + "a" * 32 + '"', 0, 10, "")


def _ctx(head: dict | None, revision: int = 1) -> SimpleNamespace:
    record = StreamRecord(
        "s1", s3_key="rec/a.mp4", upload_mark="mark-now", revision=revision, object_etag=""
    )
    return SimpleNamespace(
        record=record,
        config=SimpleNamespace(on_existing="keep-both"),
        bucket=SimpleNamespace(head_object=lambda key: head),
        prior={},
    )


def _head(owner: str, mark: str) -> dict:
    return {
        "ETag": '"' + "b" * 32 + '-2"',
        "ContentLength": 7,
        "Metadata": {STREAM_ID: owner, UPLOAD_MARK: mark},
    }


def test_a_free_key_is_completed_only_while_it_stays_free() -> None:
    assert _completion(_ctx(None), [PART]) == "if-absent"


def test_this_uploads_own_earlier_completion_is_replaced() -> None:
    assert _completion(_ctx(_head("s1", "mark-now")), [PART]) == "replace"


@pytest.mark.parametrize(
    ("owner", "mark"),
    [
        ("s1", "mark-before"),  # the stream's object from another upload: maybe another take
        ("s2", "mark-now"),  # another stream's
    ],
)
def test_an_object_of_another_upload_is_never_replaced_by_a_first_take(
    owner: str, mark: str
) -> None:
    with pytest.raises(KeyTaken):
        _completion(_ctx(_head(owner, mark)), [PART])
