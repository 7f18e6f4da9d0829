"""The janitor's pure decisions: which uploads to abort and which streams to fail."""

from __future__ import annotations

import dataclasses

from stream_ingest.janitor_plan import plan_streams, plan_unfinished, plan_uploads
from stream_ingest.records import PendingUpload, StreamRecord
from stream_ingest.states import Status

NOW = 1_000_000.0
TTL = 3600.0
OLD = NOW - 2 * TTL
RECENT_ISO = "1970-01-12T13:46:30+00:00"  # NOW - 10 s
ANCIENT_ISO = "1970-01-01T00:00:00+00:00"


def _rec(sid: str, status: Status, upload: str = "", run: str = "", last: str = "") -> StreamRecord:
    return StreamRecord(
        stream_id=sid,
        status=status,
        s3_upload_id=upload,
        flow_run_id=run,
        last_activity_at_utc=last,
    )


def _pending(*ids: str, initiated: float = OLD) -> list[PendingUpload]:
    return [PendingUpload(f"rec/{i}.mp4", i, initiated) for i in ids]


def _targets(actions) -> list[str]:
    return [a.target for a in actions]


def test_only_registered_uploads_past_the_ttl_are_candidates() -> None:
    registry = {"ours-old": {"stream_id": "gone"}, "ours-new": {"stream_id": "gone"}}
    pending = _pending("ours-old", "foreign") + _pending("ours-new", initiated=NOW - 5)

    actions = plan_uploads(pending, registry, {}, set(), NOW, TTL)

    assert _targets(actions) == ["ours-old"]
    assert actions[0].reason == "no stream record"


def test_our_record_of_the_creation_wins_over_an_old_initiated_date() -> None:
    """moto reports every upload as initiated in 2010; a clock-skewed server may too."""
    registry = {"young": {"stream_id": "gone", "created": NOW - 5}, "old": {"stream_id": "gone"}}
    pending = _pending("young", "old", initiated=0.0)

    assert _targets(plan_uploads(pending, registry, {}, set(), NOW, TTL)) == ["old"]


def test_a_leased_stream_keeps_its_upload_whatever_its_age_or_status() -> None:
    records = {"s": _rec("s", Status.FAILED, upload="u")}
    registry = {"u": {"stream_id": "s"}}

    assert plan_uploads(_pending("u"), registry, records, {"s"}, NOW, TTL) == []


def test_active_streams_keep_their_current_upload() -> None:
    for status in (Status.DETECTED, Status.UPLOADING, Status.FINALIZING):
        records = {"s": _rec("s", status, upload="u")}
        assert (
            plan_uploads(_pending("u"), {"u": {"stream_id": "s"}}, records, set(), NOW, TTL) == []
        )


def test_superseded_uploads_are_aborted() -> None:
    records = {"u": _rec("u", Status.UPLOADING, "new"), "c": _rec("c", Status.COMPLETED, "cur")}
    registry = {"stale": {"stream_id": "u"}, "cur": {"stream_id": "c"}}

    actions = plan_uploads(_pending("stale", "cur"), registry, records, set(), NOW, TTL)

    assert [(a.kind, a.target) for a in actions] == [
        ("abort-upload", "stale"),
        ("abort-upload", "cur"),
    ]
    assert actions[0].reason.startswith("stream is uploading with upload new")
    assert actions[1].reason.startswith("stream is completed with upload cur")


def test_a_failed_stream_is_never_aborted_for_its_age() -> None:
    """Its file still readable: resumable, kept. Its file gone: salvaged, not aborted."""
    records = {"f": _rec("f", Status.FAILED, upload="cur"), "g": _rec("g", Status.FAILED, "up")}
    registry = {"cur": {"stream_id": "f"}, "up": {"stream_id": "g"}}
    lost = {"g": "source file not found: /w/g.mkv"}

    actions = plan_uploads(_pending("cur", "up"), registry, records, set(), NOW, TTL, lost)

    assert [(a.kind, a.target) for a in actions] == [("keep-upload", "cur"), ("salvage", "up")]
    assert actions[0].reason == "failed stream whose file is still readable: resumable"
    assert actions[1].reason == "source file not found: /w/g.mkv"


def test_age_counts_from_the_last_progress_not_the_creation() -> None:
    """A recording longer than the TTL, or a failure found late: its upload was
    created long ago, its last part went up a moment ago."""
    records = {"f": _rec("f", Status.FAILED, upload="u", last=RECENT_ISO)}
    registry = {"u": {"stream_id": "f", "created": OLD}}
    lost = {"f": "source file not found: /w/f.mkv"}

    assert plan_uploads(_pending("u"), registry, records, set(), NOW, TTL, lost) == []
    late = {"f": _rec("f", Status.FAILED, upload="u", last=ANCIENT_ISO)}
    assert _targets(plan_uploads(_pending("u"), registry, late, set(), NOW, TTL, lost)) == ["u"]


def test_streams_whose_run_ended_are_failed_detected_included() -> None:
    records = {
        "d": _rec("d", Status.DETECTED, run="r1"),
        "u": _rec("u", Status.UPLOADING, run="r2", last=RECENT_ISO),
        "f": _rec("f", Status.FINALIZING, run="r3", last=RECENT_ISO),
        "c": _rec("c", Status.COMPLETED, run="r4"),
        "x": _rec("x", Status.FAILED, run="r5"),
    }

    actions = plan_streams(records, {"u"}, {"r1", "r2", "r4", "r5"}, NOW, 60)

    assert [(a.stream_id, a.target) for a in actions] == [("d", "detected"), ("u", "uploading")]
    assert all(a.kind == "mark-failed" and "ended without finishing" in a.reason for a in actions)


def test_unleased_streams_without_progress_are_failed_but_a_waiting_detected_one_is_not() -> None:
    records = {
        "stale": _rec("stale", Status.UPLOADING, run="live", last=ANCIENT_ISO),
        "fresh": _rec("fresh", Status.UPLOADING, run="live", last=RECENT_ISO),
        "queued": _rec("queued", Status.DETECTED, run="scheduled", last=ANCIENT_ISO),
        "held": _rec("held", Status.FINALIZING, run="live", last=ANCIENT_ISO),
    }

    actions = plan_streams(records, {"held"}, set(), NOW, 60)

    assert [a.stream_id for a in actions] == ["stale"]
    assert actions[0].reason == "lease lost, no progress"


def test_a_failed_stream_whose_salvage_began_is_finished_whatever_s3_lists() -> None:
    """Its upload may be completed (S3 no longer lists it) or not, old or not: the
    salvage is finished once no run holds the stream, and only by plan_unfinished."""
    cut = dataclasses.replace(
        _rec("s", Status.FAILED, upload="u", last=RECENT_ISO), salvage_key="rec/a.partial.mp4"
    )
    records = {
        "s": cut,
        "held": dataclasses.replace(cut, stream_id="held"),
        "live": dataclasses.replace(cut, stream_id="live", status=Status.UPLOADING),
        "plain": _rec("plain", Status.FAILED, upload="p"),
    }

    [action] = plan_unfinished(records, {"held"})

    assert (action.kind, action.stream_id, action.target) == ("salvage", "s", "u")
    assert "rec/a.partial.mp4" in action.reason
    registry = {"u": {"stream_id": "s"}}
    assert plan_uploads(_pending("u"), registry, {"s": cut}, set(), NOW, 0.0, {"s": "gone"}) == []
