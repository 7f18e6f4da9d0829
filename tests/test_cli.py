"""`stream-ingest streams ...` against a private redis-server: the JSON shapes scripts
rely on, the human table, filters, and clear errors."""

from __future__ import annotations

import json

import pytest

from blocks.records import StreamRecord
from stream_ingest.cli import main
from stream_ingest.states import Status


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, redis_server, namespace) -> None:
    monkeypatch.setenv("STREAM_INGEST_REDIS_URL", redis_server.url)
    monkeypatch.setenv("STREAM_INGEST_REDIS_NAMESPACE", namespace)


@pytest.fixture
def three(store, cli_env) -> list[StreamRecord]:
    records = [
        StreamRecord(stream_id="s-done", original_path="/rec/a.mp4", status=Status.COMPLETED),
        StreamRecord(
            stream_id="s-fail", original_path="/rec/b.mkv", status=Status.FAILED, error="boom"
        ),
        StreamRecord(stream_id="s-up", original_path="/rec/c.ts", status=Status.UPLOADING),
    ]
    for rec in records:
        store.put(rec)
    return records


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_json_is_an_array_of_the_objects_show_prints(three, capsys) -> None:
    code, out, _ = _run(capsys, "streams", "list", "--json")
    listed = json.loads(out)

    assert code == 0
    assert [r["stream_id"] for r in listed] == ["s-done", "s-fail", "s-up"]
    for row in listed:
        _, shown, _ = _run(capsys, "streams", "show", row["stream_id"], "--json")
        assert json.loads(shown) == row
    for key in ("original_path", "status", "s3_bucket", "s3_key", "bytes_uploaded"):
        assert key in listed[0]
    for key in ("parts_count", "sha256", "flow_run_id", "error", "started_at_utc"):
        assert key in listed[0]


def test_list_filters_by_status(three, capsys) -> None:
    _, out, _ = _run(capsys, "streams", "list", "--status", "failed", "--json")

    assert [r["stream_id"] for r in json.loads(out)] == ["s-fail"]


def test_human_list_is_a_table_with_a_header(three, capsys) -> None:
    _, out, _ = _run(capsys, "streams", "list")
    lines = out.splitlines()

    assert lines[0].split()[:4] == ["STREAM_ID", "STATUS", "BYTES_UPLOADED", "PARTS_COUNT"]
    assert len(lines) == 4
    assert "s-fail" in lines[2] and "failed" in lines[2] and "boom" in lines[2]


def test_empty_list_says_so(cli_env, capsys) -> None:
    assert _run(capsys, "streams", "list") == (0, "no streams\n", "")
    assert json.loads(_run(capsys, "streams", "list", "--json")[1]) == []


def test_show_of_an_unknown_stream_fails_with_a_message(cli_env, capsys) -> None:
    code, _, err = _run(capsys, "streams", "show", "nope")

    assert code == 1
    assert err.strip() == "no stream with id nope"


def test_rerun_of_a_completed_stream_is_a_noop_that_says_so(three, capsys) -> None:
    code, out, _ = _run(capsys, "streams", "rerun", "s-done")

    assert code == 0
    assert out.strip() == "s-done: already completed; nothing to rerun"


def test_rerun_needs_an_id_or_failed(cli_env, capsys) -> None:
    code, _, err = _run(capsys, "streams", "rerun")

    assert code == 2 and "give a stream id or --failed" in err


def test_bad_setting_is_named_and_nothing_runs(monkeypatch, capsys) -> None:
    monkeypatch.setenv("STREAM_INGEST_PART_SIZE_MIB", "3")
    monkeypatch.setenv("STREAM_INGEST_AWS_SECRET_ACCESS_KEY", "very-secret-value")

    code, out, err = _run(capsys, "streams", "list")

    assert code == 2 and out == ""
    assert err.startswith("stream-ingest: invalid settings: STREAM_INGEST_PART_SIZE_MIB")
    assert "very-secret-value" not in err


def test_unreachable_redis_is_one_line_not_a_traceback(monkeypatch, capsys) -> None:
    from stream_ingest.services import free_port

    monkeypatch.setenv("STREAM_INGEST_REDIS_URL", f"redis://:hunter2@127.0.0.1:{free_port()}/0")

    code, _, err = _run(capsys, "streams", "list")

    assert code == 1
    assert err.startswith("stream-ingest: Redis checkpoint store unavailable")
    assert len(err.strip().splitlines()) == 1
    assert "hunter2" not in err
