"""`stream-ingest streams salvage|abort ID` against the test Prefect server, moto and a
private redis-server: a dry run prints what it would do and changes nothing; without
--yes it asks, and refuses without a terminal; one-line errors for an unknown id or
a stream in the wrong state."""

from __future__ import annotations

import io

import pytest

from stream_ingest.cli.main import main
from stream_ingest.records import StreamRecord
from stream_ingest.states import Status
from tests.flows.helpers import MIB, failed_stream, object_bytes, payload


class _Terminal(io.StringIO):
    """stdin as a terminal where the operator types `answer`."""

    def isatty(self) -> bool:
        return True


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out.strip(), err.strip()


def _pending(s3, bucket: str) -> set[str]:
    return {u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])}


@pytest.fixture
def stream(registered, s3, store) -> tuple[StreamRecord, bytes]:
    data = payload(7 * MIB, seed=9)
    return failed_stream(s3, store, registered, data, 2), data


def test_a_dry_run_prints_what_it_would_do_and_changes_nothing(
    stream, registered, s3, store, capsys
) -> None:
    rec, _ = stream
    bucket = registered.s3_bucket

    code, out, _ = _run(capsys, "streams", "salvage", rec.stream_id, "--dry-run")
    assert code == 0
    assert out == (
        f"would salvage stream {rec.stream_id}: 7,340,032 bytes into "
        f"s3://{bucket}/rec/cam1/take.partial.mkv: nothing changed"
    )
    code, out, _ = _run(capsys, "streams", "abort", rec.stream_id, "--dry-run")
    assert code == 0
    assert out == (
        f"would abort stream {rec.stream_id} (2 parts, 7,340,032 bytes, discarded): nothing changed"
    )
    assert store.streams.get(rec.stream_id) == rec
    assert _pending(s3, bucket) == {rec.s3_upload_id}
    assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []


def test_without_yes_it_refuses_a_stdin_that_is_not_a_terminal(
    stream, registered, s3, store, capsys, monkeypatch
) -> None:
    rec, _ = stream
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))

    code, _, err = _run(capsys, "streams", "abort", rec.stream_id)

    assert code == 1
    assert err == "stream-ingest: not confirmed: stdin is not a terminal (pass --yes to abort)"
    assert store.streams.get(rec.stream_id).status == "failed"
    assert _pending(s3, registered.s3_bucket) == {rec.s3_upload_id}


def test_it_asks_and_a_no_changes_nothing(stream, registered, s3, store, capsys, monkeypatch):
    rec, _ = stream
    monkeypatch.setattr("sys.stdin", _Terminal("n\n"))

    code, out, _ = _run(capsys, "streams", "salvage", rec.stream_id)

    assert code == 1
    assert out.startswith(f"salvage stream {rec.stream_id}: 7,340,032 bytes into")
    assert out.endswith("nothing changed")
    assert store.streams.get(rec.stream_id).status == "failed"
    assert _pending(s3, registered.s3_bucket) == {rec.s3_upload_id}


def test_a_yes_salvages(stream, registered, s3, store, capsys, monkeypatch) -> None:
    rec, data = stream
    monkeypatch.setattr("sys.stdin", _Terminal("y\n"))

    code, out, _ = _run(capsys, "streams", "salvage", rec.stream_id)

    assert code == 0
    key = "rec/cam1/take.partial.mkv"
    assert out.endswith(
        f"stream {rec.stream_id} salvaged: 7,340,032 bytes kept in s3://{registered.s3_bucket}/{key}"
    )
    salvaged = store.streams.get(rec.stream_id)
    assert (salvaged.status, salvaged.salvage_key) == ("salvaged", key)
    assert salvaged.error == "salvaged by an operator"
    assert object_bytes(s3, registered.s3_bucket, key) == data
    assert _pending(s3, registered.s3_bucket) == set()


def test_abort_with_yes_discards_the_parts(stream, registered, s3, store, capsys) -> None:
    rec, _ = stream

    code, out, _ = _run(capsys, "streams", "abort", rec.stream_id, "--yes")

    assert code == 0
    assert (
        out
        == f"stream {rec.stream_id} aborted: upload aborted: 2 parts, 7,340,032 bytes, discarded"
    )
    aborted = store.streams.get(rec.stream_id)
    assert aborted.status == "aborted"
    assert aborted.error == "aborted by an operator; 2 parts, 7,340,032 bytes, discarded"
    assert _pending(s3, registered.s3_bucket) == set()


def test_clear_errors_for_an_unknown_id_a_wrong_state_or_a_held_stream(
    stream, store, capsys
) -> None:
    rec, _ = stream
    store.streams.put(StreamRecord("done", status=Status.COMPLETED))

    assert _run(capsys, "streams", "salvage", "nope", "--yes")[1:] == (
        "",
        "stream-ingest: no stream with id nope",
    )
    assert _run(capsys, "streams", "salvage", "done", "--yes")[1:] == (
        "",
        "stream-ingest: stream done is completed: nothing to salvage",
    )
    assert store.leases.acquire(rec.stream_id, "a-run", 60)
    code, _, err = _run(capsys, "streams", "abort", rec.stream_id, "--yes")
    assert code == 1
    assert err == f"stream-ingest: stream {rec.stream_id} is held by a run; not touching it"
    assert store.streams.get(rec.stream_id).status == "failed"
