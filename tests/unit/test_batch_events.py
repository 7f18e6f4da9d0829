"""The events that announce a batch's files (stream_ingest/batch_events.py)."""

from __future__ import annotations

from stream_ingest.batch_events import PER_EVENT, batch_events


def _file(i: int) -> tuple[dict, dict]:
    row = {"path": f"/w/seg{i:03}.ts", "stream_id": f"s{i}"}
    resource = {
        "prefect.resource.id": f"stream-ingest.stream.s{i}",
        "prefect.resource.role": "stream",
    }
    return row, resource


def test_a_batch_is_one_event_with_each_file_related() -> None:
    rows, related = zip(*(_file(i) for i in range(3)), strict=True)
    [event] = batch_events("completed", "run-1", rows, related, {"stream-ingest.config": "c"})
    assert event["event"] == "stream-ingest.batch.completed"
    assert event["resource"] == {
        "prefect.resource.id": "stream-ingest.batch.run-1",
        "prefect.resource.name": "seg000.ts and 2 more",
        "stream-ingest.config": "c",
    }
    assert event["related"][0] == {
        "prefect.resource.id": "prefect.flow-run.run-1",
        "prefect.resource.role": "flow-run",
    }
    assert event["related"][1:] == list(related)
    assert event["payload"] == {"flow_run_id": "run-1", "files": list(rows)}


def test_a_large_batch_is_announced_within_prefects_limit_of_related_resources() -> None:
    """Prefect's server refuses an event with over 100 related resources."""
    count = 2 * PER_EVENT + 7
    rows, related = zip(*(_file(i) for i in range(count)), strict=True)
    events = list(batch_events("detected", "run-2", rows, related))
    assert len(events) == 3
    assert all(len(e["related"]) <= 100 for e in events)
    sent = [f["stream_id"] for e in events for f in e["payload"]["files"]]
    assert sent == [f"s{i}" for i in range(count)]
    assert [r for e in events for r in e["related"][1:]] == list(related)
