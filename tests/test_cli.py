"""`stream-ingest` against the test Prefect server and a private redis-server: the JSON
shapes scripts rely on, the human tables, filters, `doctor`, and clear errors."""

from __future__ import annotations

import json

import pytest
from prefect_redis import RedisDatabase

from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.cli.main import main
from stream_ingest.devstack.services import free_port
from stream_ingest.media import MediaFacts, MediaReport
from stream_ingest.records import Revision, StreamRecord
from stream_ingest.states import Status
from tests.conftest import edit_config


@pytest.fixture
def three(store, registered) -> list[StreamRecord]:
    records = [
        StreamRecord(stream_id="s-done", original_path="/rec/a.mp4", status=Status.COMPLETED),
        StreamRecord(
            stream_id="s-fail", original_path="/rec/b.mkv", status=Status.FAILED, error="boom"
        ),
        StreamRecord(stream_id="s-up", original_path="/rec/c.ts", status=Status.UPLOADING),
    ]
    for rec in records:
        store.streams.put(rec)
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
        record = json.loads(shown)
        assert record.pop("revisions") == []  # show adds the object's revisions
        assert record == row
    for key in ("original_path", "status", "s3_bucket", "s3_key", "bytes_uploaded"):
        assert key in listed[0]
    for key in ("parts_count", "sha256", "flow_run_id", "error", "started_at_utc"):
        assert key in listed[0]


def test_show_lists_the_revisions_with_sizes_and_sha256(three, store, capsys) -> None:
    store.revisions.add("s-done", Revision(1, 1000, "a" * 64, "2026-11-30T10:00:00", 1))
    store.revisions.add("s-done", Revision(2, 25_000_000, "b" * 64, "2026-11-30T11:00:00", 1, 2))

    _, out, _ = _run(capsys, "streams", "show", "s-done", "--json")
    revisions = json.loads(out)["revisions"]
    assert [(r["number"], r["size"], r["sha256"]) for r in revisions] == [
        (1, 1000, "a" * 64),
        (2, 25_000_000, "b" * 64),
    ]
    assert revisions[1]["parts_copied"] == 2 and revisions[1]["parts_uploaded"] == 1

    _, human, _ = _run(capsys, "streams", "show", "s-done")
    rows = [line.replace("│", " ").split() for line in human.splitlines() if "b" * 64 in line]
    assert rows and rows[0][:2] == ["2", "25,000,000"]


def test_show_says_what_the_recording_is(three, store, capsys) -> None:
    facts = MediaFacts("mov,mp4,m4a,3gp,3g2,mj2", 2.0, "h264", 320, 240, 25.0, 352700, "aac")
    store.streams.update("s-done", media=MediaReport(1, 88175, facts).to_json())

    _, human, _ = _run(capsys, "streams", "show", "s-done")
    rows = dict(line.strip().partition(" ")[::2] for line in human.splitlines() if line.strip())
    assert rows["media"].strip() == (
        "revision 1: mov,mp4,m4a,3gp,3g2,mj2, 2.00 s, h264 320x240 25 fps, aac, 353 kb/s"
    )
    _, shown, _ = _run(capsys, "streams", "show", "s-done", "--json")
    assert json.loads(shown)["media"]["video_codec"] == "h264"

    store.streams.update(
        "s-done", media=MediaReport(2, 9, unreadable="moov atom not found").to_json()
    )
    _, human, _ = _run(capsys, "streams", "show", "s-done")
    assert "revision 2: unreadable: moov atom not found" in human


def test_doctor_says_whether_ffprobe_is_found(registered, tmp_path) -> None:
    from stream_ingest.blocks.config import load_config
    from stream_ingest.cli.doctor import media_check

    # A stand-in that answers -version as ffprobe does: the fast tier runs on hosts
    # without ffmpeg (the full tier installs it).
    fake = tmp_path / "ffprobe"
    fake.write_text("#!/bin/sh\necho 'ffprobe version 9.9 Copyright (c) the authors'\n")
    fake.chmod(0o755)
    config = load_config()
    config.ffprobe_path = str(fake)
    found = media_check(config)
    assert found.ok and f"{fake} (ffprobe version 9.9)" in found.detail
    config.ffprobe_path = "/nowhere/ffprobe"
    missing = media_check(config)
    assert missing.ok and "/nowhere/ffprobe not found" in missing.detail
    config.ffprobe_path = ""
    assert media_check(config).detail.startswith("off")


def test_list_filters_by_status(three, capsys) -> None:
    _, out, _ = _run(capsys, "streams", "list", "--status", "failed", "--json")

    assert [r["stream_id"] for r in json.loads(out)] == ["s-fail"]


def test_human_list_is_a_table_with_a_header(three, capsys) -> None:
    _, out, _ = _run(capsys, "streams", "list")
    lines = [line for line in out.splitlines() if line.strip()]

    assert lines[0].split()[:4] == ["STREAM_ID", "STATUS", "BYTES_UPLOADED", "PARTS_COUNT"]
    assert len(lines) == 4
    assert "s-fail" in lines[2] and "failed" in lines[2] and "boom" in lines[2]


def test_human_show_lists_every_field(three, capsys) -> None:
    code, out, _ = _run(capsys, "streams", "show", "s-fail")

    assert code == 0
    rows = dict(line.strip().partition(" ")[::2] for line in out.splitlines() if line.strip())
    assert rows["status"].strip() == "failed" and rows["error"].strip() == "boom"
    assert rows["original_path"].strip() == "/rec/b.mkv"


def test_empty_list_says_so(registered, capsys) -> None:
    assert _run(capsys, "streams", "list") == (0, "no streams\n", "")
    assert json.loads(_run(capsys, "streams", "list", "--json")[1]) == []


def test_show_of_an_unknown_stream_fails_with_a_message(registered, capsys) -> None:
    code, _, err = _run(capsys, "streams", "show", "nope")

    assert code == 1
    assert err.strip() == "stream-ingest: no stream with id nope"


def test_rerun_of_a_completed_stream_is_a_noop_that_says_so(three, capsys) -> None:
    code, out, _ = _run(capsys, "streams", "rerun", "s-done")

    assert code == 0
    assert out.strip() == "s-done: already completed; nothing to rerun"


@pytest.mark.parametrize("args", [[], ["s-fail", "--failed"]])
def test_rerun_needs_an_id_or_failed(registered, capsys, args) -> None:
    code, _, err = _run(capsys, "streams", "rerun", *args)

    assert code == 2 and "give a stream id or --failed" in err


def test_config_option_and_variable_pick_the_block(registered, capsys, monkeypatch) -> None:
    code, _, err = _run(capsys, "--config", "no-such-config", "streams", "list")
    assert code == 1 and "ingest-config/no-such-config not found" in err
    assert "stream-ingest blocks register" in err
    monkeypatch.setenv("STREAM_INGEST_CONFIG_BLOCK", "another-missing")
    code, _, err = _run(capsys, "streams", "list")
    assert code == 1 and "ingest-config/another-missing not found" in err


def test_bad_setting_is_named_and_nothing_is_saved(registered, monkeypatch, capsys) -> None:
    monkeypatch.setenv("STREAM_INGEST_PART_SIZE_MIB", "3")
    monkeypatch.setenv("STREAM_INGEST_AWS_SECRET_ACCESS_KEY", "very-secret-value")

    code, out, err = _run(capsys, "blocks", "register")

    assert code == 2 and out == ""
    assert err.startswith("stream-ingest: invalid settings: STREAM_INGEST_PART_SIZE_MIB")
    assert "very-secret-value" not in err


def test_unreachable_redis_is_one_line_not_a_traceback(registered, capsys) -> None:
    dead = RedisDatabase.from_connection_string(f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    edit_config(checkpoints=CheckpointStore(redis=dead, namespace="x"))

    code, _, err = _run(capsys, "streams", "list")

    assert code == 1
    assert err.startswith("stream-ingest: Redis checkpoint store unavailable")
    assert len(err.strip().splitlines()) == 1
    assert "hunter2" not in err


def _doctor(capsys) -> tuple[int, dict[str, list[str]]]:
    code, out, _ = _run(capsys, "doctor")
    lines: dict[str, list[str]] = {}
    for line in out.splitlines():
        mark, rest = line.split(None, 1)
        name = rest[:17].strip()
        lines.setdefault(name, []).append(f"{mark} {rest[17:].strip()}")
    return code, lines


def test_doctor_checks_each_part_in_one_line(registered, capsys) -> None:
    """The test stack has no deployments and a Redis without persistence: doctor says
    exactly that, and exits non-zero."""
    code, lines = _doctor(capsys)

    assert code == 1
    for ok in ("settings", "credentials", "bucket", "redis", "redis permissions"):
        assert lines[ok][0].startswith("ok"), lines[ok]
    assert (
        lines["prefect server"][0].startswith("ok") and "version 3." in lines["prefect server"][0]
    )
    assert lines["watch folder"][0].startswith("ok")
    assert lines["redis persistence"][0].startswith("FAIL")
    assert lines["deployment"] and all(d.startswith("FAIL") for d in lines["deployment"])
    assert "multipart upload, part and abort allowed" in lines["bucket"][0]
    assert lines["part sizes"] == [
        "ok in use: growing; largest recording: 5 TiB growing from 5 MiB, "
        "48.8 GiB fixed at 5 MiB (10,000 parts)"
    ]


@pytest.mark.parametrize(
    ("policy", "ok"), [("growing", False), ("fixed", True)], ids=["growing", "fixed"]
)
def test_doctor_wants_the_fixed_part_size_policy_on_r2(policy: str, ok: bool) -> None:
    from stream_ingest.blocks.registration import build_config
    from stream_ingest.cli.doctor import parts_check
    from stream_ingest.settings import load_settings

    r2 = "https://0123abcd.r2.cloudflarestorage.com"
    config = build_config(
        load_settings(s3_endpoint_url=r2, part_size_policy=policy, part_size_mib=8)
    )
    check = parts_check(config)
    assert check.ok is ok
    assert "78.1 GiB fixed at 8 MiB" in check.detail
    assert ("R2 needs fixed" in check.detail) is not ok


@pytest.mark.on_ceph
def test_doctor_shows_what_the_store_can_do(registered, capsys, s3_server, s3, store) -> None:
    """Found by the probe just now, each capability the store lacks on a line of its
    own with what the product does instead; none of them a failure. The probe's
    objects are gone, and the flows find its answer in Redis."""
    from stream_ingest.blocks.bucket import StreamBucket

    _, lines = _doctor(capsys)

    [shown] = lines["s3 capabilities"]
    lacking = lines.get("s3 lacks", [])
    if s3_server.name == "ceph":
        assert (
            shown == "ok conditional completion ignored, checksums not kept, tags at create dropped"
        )
        assert len(lacking) == 3 and all(line.startswith("ok ") for line in lacking)
        assert "a HEAD just before each completion guards the key" in lacking[0]
    else:
        assert shown == "ok conditional completion honoured, checksums kept, tags at create kept"
        assert lacking == []
    assert "Contents" not in s3.list_objects_v2(Bucket=registered.s3_bucket)
    assert not s3.list_multipart_uploads(Bucket=registered.s3_bucket).get("Uploads")
    where = StreamBucket.load(registered.config_block).store_id
    assert store.hints.cached_capabilities(where) is not None
    assert "payload signing" not in lines  # signed, botocore's default


@pytest.mark.on_ceph
def test_doctor_says_what_unsigned_bodies_leave(
    registered, capsys, s3_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registered with STREAM_INGEST_S3_PAYLOAD_SIGNING=false on an http:// endpoint:
    doctor says what is given up, and whether this store keeps the parts' CRC32."""
    from stream_ingest.blocks.registration import register_blocks
    from stream_ingest.settings import load_settings

    monkeypatch.setenv("STREAM_INGEST_S3_PAYLOAD_SIGNING", "false")
    register_blocks(load_settings())

    _, lines = _doctor(capsys)

    [shown] = lines["payload signing"]
    assert shown.startswith("ok off on this http:// endpoint")
    assert "changed unseen" in shown
    keeps = "for the store to check" if s3_server.name == "moto" else "this store keeps none"
    assert shown.endswith(keeps)


def test_doctor_names_a_missing_bucket_and_folder(registered, capsys) -> None:
    """Edited the way an operator would: the bucket block, and the config's folder."""
    from stream_ingest.blocks.bucket import StreamBucket

    config_bucket = registered.s3_bucket
    edit_config(watch_dir="/no/such/folder")
    bucket = StreamBucket.load(registered.config_block)
    bucket.bucket_name = "no-such-bucket-anywhere"
    bucket.save(registered.config_block, overwrite=True)

    code, lines = _doctor(capsys)

    assert code == 1
    assert lines["bucket"][0].startswith("FAIL") and "no-such-bucket-anywhere" in lines["bucket"][0]
    assert lines["watch folder"][0].startswith("FAIL")
    assert config_bucket not in lines["bucket"][0]
