"""A real `prefect server start`, `prefect deploy --all` of prefect.yaml to a process
work pool, a real worker and the sensor: a file written in steps into the watch
folder becomes a byte-identical S3 object, and its flow run is Completed."""

from __future__ import annotations

import hashlib
import random
import time

import pytest

from tests.e2e.stack import BIN, Stack, run_cli_status, until

MIB = 1024 * 1024


@pytest.mark.e2e
def test_file_written_in_steps_arrives_byte_identical(e2e_env, tmp_path, s3, bucket_name):
    with Stack(e2e_env, tmp_path) as stack:
        data = random.Random(7).randbytes(13 * MIB + 321)
        src = stack.watch_dir / "camera 1.mp4"
        with open(src, "wb") as fh:  # one handle, like a recorder
            for i in range(0, len(data), 2 * MIB):
                fh.write(data[i : i + 2 * MIB])
                fh.flush()
                time.sleep(0.3)
        closed_at = time.monotonic()

        runs = until(
            lambda: [r for r in stack.flow_runs() if r["state_type"] == "COMPLETED"],
            120,
            "a completed stream-ingest flow run",
        )
        body = until(
            lambda: s3.get_object(Bucket=bucket_name, Key="e2e/camera 1.mp4")["Body"].read(),
            30,
            "the object",
        )
        latency = time.monotonic() - closed_at

        # An operator edits the prefix in the UI's Blocks page while the sensor and
        # the worker run: the next recording lands under the new prefix.
        doc = stack.post(
            "/block_documents/filter",
            {
                "block_documents": {"name": {"any_": [stack.config]}},
                "block_types": {"slug": {"any_": ["ingest-config"]}},
            },
        )
        [config_doc] = doc
        # As the UI's form saves it: every field, the nested blocks as references.
        form = dict(config_doc["data"])
        for field, ref in config_doc["block_document_references"].items():
            form[field] = {"$ref": {"block_document_id": ref["block_document"]["id"]}}
        form["s3_prefix"] = "moved"
        stack.patch(
            f"/block_documents/{config_doc['id']}",
            {"data": form, "merge_existing_data": False},
        )
        second = stack.watch_dir / "camera 2.mp4"
        second.write_bytes(data[: 6 * MIB])
        try:
            moved = until(
                lambda: s3.get_object(Bucket=bucket_name, Key="moved/camera 2.mp4")["Body"].read(),
                120,
                "the second object, under the edited prefix",
            )
        except TimeoutError as exc:
            run = stack.run_for("camera 2.mp4")
            state = run and (run["state_type"], run["state"]["message"])
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket_name).get("Contents", [])]
            raise AssertionError(f"{exc}; run: {state}; keys: {keys}") from None
        doctor = run_cli_status([str(BIN / "stream-ingest"), "doctor"], stack.env)
        all_runs = stack.flow_runs()
    assert moved == data[: 6 * MIB]
    assert len(all_runs) == 2, [r["name"] for r in all_runs]  # one run per file
    # doctor sees what the stack has: deployments, pool, server (its Redis keeps no AOF).
    code, out = doctor
    assert code == 1 and "FAIL redis persistence" in out, out
    for line in ("ok   deployment", "ok   work pool", "ok   prefect server", "ok   bucket"):
        assert line in out, out
    assert body == data, f"object differs (worker log: {stack.worker.log_path})"
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()
    assert runs[0]["name"] == "ingest-camera 1.mp4"
    assert latency < 60
