"""A batch run: finished small files, a task run each (stream_ingest/flows/batch.py),
against moto and a private Redis under the test Prefect server."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
)

import stream_ingest.flows.batch as batch_module
from stream_ingest.flows.batch import BatchIncomplete
from stream_ingest.flows.ingest import stream_ingest
from stream_ingest.flows.runs import CreatedRun, RunRequest
from stream_ingest.flows.source import snapshot
from stream_ingest.media import MANIFEST_SUFFIX
from stream_ingest.records import StreamRecord
from stream_ingest.states import Status
from tests.conftest import edit_config
from tests.flows.helpers import MIB, object_bytes, payload, until

pytestmark = pytest.mark.usefixtures("registered")


def _claimed(store, path: Path, watch_dir: str) -> str:
    """The stream the sensor claims for a new file, `detected`, without a run yet."""
    record = StreamRecord(
        stream_id=str(uuid.uuid4()),
        original_path=str(path),
        identity=str(snapshot(str(path)).identity),
        watch_dir=watch_dir,
        status=Status.DETECTED,
    )
    sid, created = store.identities.claim(record.identity, record)
    assert created
    return sid


def _files(registered, store, sizes: list[int]) -> dict[str, tuple[Path, bytes]]:
    out = {}
    for i, size in enumerate(sizes):
        path = Path(registered.watch_dir) / "segments" / f"seg{i:03}.ts"
        path.parent.mkdir(exist_ok=True)
        data = payload(size, seed=100 + i)
        path.write_bytes(data)
        out[_claimed(store, path, registered.watch_dir)] = (path, data)
    return out


def _handed_on(monkeypatch) -> list[RunRequest]:
    asked: list[RunRequest] = []

    def create(request: RunRequest, job_variables=None) -> CreatedRun:
        asked.append(request)
        return CreatedRun(str(uuid.uuid4()), request.name)

    monkeypatch.setattr(batch_module, "create_stream_run", create)
    return asked


def _table(flow_run_id: str) -> list[dict]:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(flow_run_id)])
            )
        )
    [artifact] = [a for a in artifacts if (a.key or "").startswith("batch-")]
    data = artifact.data
    return json.loads(data) if isinstance(data, str) else data


def test_every_file_of_a_batch_is_its_own_completed_take(registered, s3, store, events):
    files = _files(registered, store, [1, 4096, 700 * 1024, 5 * MIB, 123457])

    result = stream_ingest(stream_ids=list(files))

    assert result["files"] == result["completed"] == 5
    run_ids = set()
    for sid, (path, data) in files.items():
        record = store.streams.require(sid)
        assert record.status == Status.COMPLETED
        assert record.s3_key == f"rec/segments/{path.name}"
        assert object_bytes(s3, registered.s3_bucket, record.s3_key) == data
        assert record.sha256 == hashlib.sha256(data).hexdigest()
        tags = s3.get_object_tagging(Bucket=registered.s3_bucket, Key=record.s3_key)["TagSet"]
        assert {"Key": "sha256", "Value": record.sha256} in tags
        assert record.object_at_utc and record.completed_at_utc
        run_ids.add(record.flow_run_id)
    [run_id] = run_ids  # the batch's run is every stream's run
    rows = _table(run_id)
    assert sorted(r["stream_id"] for r in rows) == sorted(files)
    assert {r["outcome"] for r in rows} == {"completed"}
    with get_client(sync_client=True) as client:
        run_filter = FlowRunFilter(id=FlowRunFilterId(any_=[uuid.UUID(run_id)]))
        tasks = client.read_task_runs(flow_run_filter=run_filter)

        def summary_sent() -> list[str] | None:  # logs reach the API in the background
            logs = client.read_logs(LogFilter(flow_run_id={"any_": [run_id]}))
            lines = [log.message for log in logs]
            return lines if any("batch: 5 of 5 files completed" in x for x in lines) else None

        lines = until(summary_sent, 30, "the batch's summary line in the API")
    # What the server is told is per batch: no task run and no INFO line per file
    # (each costs the server more than a small file's upload), the summary line.
    assert tasks == []
    assert not any("new multipart upload" in line for line in lines)
    # One event says the batch's files completed (each costs the server about as much
    # as a small file's upload), each file a related resource and a row.
    assert not [e for e in events.sent if e["event"] == "stream-ingest.stream.completed"]
    [done] = [e for e in events.sent if e["event"] == "stream-ingest.batch.completed"]
    assert done["resource"]["prefect.resource.id"] == f"stream-ingest.batch.{run_id}"
    assert done["resource"]["stream-ingest.config"] == registered.config_block
    rows = {f["stream_id"]: f for f in done["payload"]["files"]}
    assert set(rows) == set(files)
    for sid, (_, data) in files.items():
        assert rows[sid]["bytes"] == len(data)
        assert rows[sid]["sha256"] == hashlib.sha256(data).hexdigest()
    streams = [r for r in done["related"] if r["prefect.resource.role"] == "stream"]
    assert {r["prefect.resource.id"] for r in streams} == {
        f"stream-ingest.stream.{s}" for s in files
    }


def test_files_a_batch_cannot_judge_are_handed_to_runs_of_their_own(
    registered, s3, store, monkeypatch
):
    asked = _handed_on(monkeypatch)
    files = _files(registered, store, [2048, 6 * MIB, 4096])
    written = list(files.values())[2][0]
    sids = list(files)
    with open(written, "ab") as recorder:  # a process still writes it
        result = stream_ingest(stream_ids=sids)

    assert result["completed"] == 1
    assert store.streams.require(sids[0]).status == Status.COMPLETED
    by_stream = {r.stream_id: r for r in asked}
    assert set(by_stream) == {sids[1], sids[2]}
    for sid in sids[1:]:
        request = by_stream[sid]
        # Keyed as the sensor keys a first run: asking again gives the same run.
        assert request == RunRequest.first(
            registered.deployment, str(files[sid][0]), sid, request.config
        )
        record = store.streams.require(sid)
        assert record.status != Status.COMPLETED
        assert record.flow_run_id != store.streams.require(sids[0]).flow_run_id
        assert not store.leases.holder(sid)  # let go of, for its own run
    outcomes = {
        r["stream_id"]: r["outcome"] for r in _table(store.streams.require(sids[0]).flow_run_id)
    }
    assert "larger than one part" in outcomes[sids[1]]
    assert "still written" in outcomes[sids[2]]
    assert recorder.closed


def test_a_file_gone_before_its_turn_ends_alone_and_the_batch_says_so(
    registered, s3, store, monkeypatch
):
    _handed_on(monkeypatch)
    files = _files(registered, store, [1000, 2000, 3000])
    sids = list(files)
    files[sids[1]][0].unlink()

    with pytest.raises(
        BatchIncomplete, match=r"1 of 3 files did not complete: seg001\.ts \(aborted\)"
    ):
        stream_ingest(stream_ids=sids)

    assert store.streams.require(sids[0]).status == Status.COMPLETED
    assert store.streams.require(sids[2]).status == Status.COMPLETED
    gone = store.streams.require(sids[1])
    # Nothing of it was uploaded: its stream ends as a run of its own would end it.
    assert gone.status == Status.ABORTED and "not found" in gone.error
    run_id = store.streams.require(sids[0]).flow_run_id
    rows = {r["stream_id"]: r["outcome"] for r in _table(run_id)}
    assert rows[sids[1]].startswith("aborted: ")
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(uuid.UUID(run_id))
    assert run.state.is_failed()


def test_a_batch_run_again_finishes_only_what_is_left(registered, s3, store):
    files = _files(registered, store, [1000, 2000])
    sids = list(files)
    first = stream_ingest(stream_ids=sids[:1])
    again = stream_ingest(stream_ids=sids)

    assert first["completed"] == 1 and again["completed"] == 1
    outcomes = [r["outcome"] for r in again["rows"]]
    assert outcomes == ["already completed", "completed"]
    for sid, (_, data) in files.items():
        record = store.streams.require(sid)
        assert object_bytes(s3, registered.s3_bucket, record.s3_key) == data


def test_a_batch_reads_no_media_facts(registered, s3, store):
    """ffprobe costs as much as the rest of a small file's upload: a batch skips it
    (a run of its own reads them; batch_small_files 0 gives every file one)."""
    edit_config(ffprobe_path="ffprobe")
    files = _files(registered, store, [1000, 2000])

    stream_ingest(stream_ids=list(files))

    listed = s3.list_objects_v2(Bucket=registered.s3_bucket)["Contents"]
    assert not [o["Key"] for o in listed if o["Key"].endswith(MANIFEST_SUFFIX)]
    for sid in files:
        record = store.streams.require(sid)
        assert record.status == Status.COMPLETED and record.media == ""
