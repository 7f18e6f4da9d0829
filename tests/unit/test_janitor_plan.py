"""The janitor's pure decisions: which uploads to abort and which streams to fail."""

from __future__ import annotations

from stream_ingest.janitor_plan import plan_streams, plan_uploads
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


def test_failed_stream_past_the_ttl_and_superseded_uploads_are_aborted() -> None:
    records = {"f": _rec("f", Status.FAILED, upload="cur"), "u": _rec("u", Status.UPLOADING, "new")}
    registry = {"cur": {"stream_id": "f"}, "stale": {"stream_id": "u"}}

    actions = plan_uploads(_pending("cur", "stale"), registry, records, set(), NOW, TTL)

    assert _targets(actions) == ["cur", "stale"]
    assert actions[0].reason == "failed stream past the upload TTL"
    assert actions[1].reason.startswith("stream is uploading with upload new")


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
