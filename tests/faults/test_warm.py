"""The warm worker (stream_ingest/workers/warm.py) runs every stream as a thread of one process:
stopping one stream mid-part must leave the others alone, and a worker that dies
with its streams must not leave them Running forever.

Real server, deployment, warm worker and sensor (the e2e stack), S3 behind the fault
proxy so that one stream's part can be held on the wire."""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest

from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.janitor_plan import STALE_AFTER_LEASES
from stream_ingest.owners import Owner, parse_owner
from tests.e2e.stack import BIN, Proc, Stack, new_bucket, product_env, run_cli, until
from tests.faults.conftest import check_object, reuploads
from tests.faults.proxy import Rule
from tests.flows.helpers import MIB, GrowingWriter, payload

pytestmark = pytest.mark.e2e
PART = 5 * MIB
NAMES = ["cam-a.mkv", "cam-b.mkv", "cam-c.mkv"]


def _stack(tmp_path: Path, redis_url: str, moto_url: str, proxy_url: str):
    s3, bucket, namespace = new_bucket(moto_url, "warm")
    env = product_env(tmp_path, redis_url, proxy_url, bucket, namespace)
    env["STREAM_INGEST_IDLE_TIMEOUT_SECONDS"] = "120"  # recordings end by their close
    store = CheckpointStore.from_url(redis_url, namespace)
    return Stack(env, tmp_path), s3, bucket, store


def _record(stack: Stack, seed: int) -> tuple[dict[str, bytes], list[GrowingWriter]]:
    data = {n: payload(6 * PART + 1000 * i, seed=seed + i) for i, n in enumerate(NAMES)}
    # 20 s each: still recording whenever the test stops or kills the worker.
    writers = [GrowingWriter(stack.watch_dir / n, data[n], steps=80, pause=0.25) for n in NAMES]
    for w in writers:
        w.start()
    return data, writers


def _record_until_held(stack: Stack, held: Rule, seed: int):
    """Start the three recordings; return once `held` holds one of their parts."""
    assert stack.worker is not None and stack.worker.proc is not None
    data, writers = _record(stack, seed)
    assert held.arrived.wait(120), "the held part never reached S3"
    return data, writers


def _next_worker(stack: Stack, tmp_path: Path) -> None:
    """A new worker on the host, as systemd or docker restarts it."""
    assert stack.worker is not None
    stack.worker = Proc("worker2", stack.worker.command(), stack.env, str(tmp_path))
    stack.worker.start()


def _others_completed_once(stack: Stack, store: CheckpointStore, writers, s3, bucket, data):
    """cam-a and cam-c, untouched by what happened to cam-b: completed in their first
    run, byte-identical. Returns their records."""
    for w in writers:
        w.join(60)
    records = []
    for name in ("cam-a.mkv", "cam-c.mkv"):
        run = until(
            lambda n=name: (r := stack.run_for(n)) and r["state_type"] == "COMPLETED" and r,
            120,
            f"{name} completed",
        )
        assert run["run_count"] == 1
        records.append(rec := _stream(store, name))
        check_object(s3, bucket, rec.s3_key, data[name])
    return records


def _stream(store: CheckpointStore, name: str):
    return next(r for r in store.streams.list() if r.original_path.endswith(name))


def test_cancelling_one_stream_mid_part_leaves_the_others_untouched(
    tmp_path, redis_server, moto_server, proxy
):
    held = proxy.add("UploadPart", "hold", part=3, key="cam-b", times=1)
    stack, s3, bucket, store = _stack(tmp_path, redis_server.url, moto_server.url, proxy.url)
    # The worker reads cancels once in 10 minutes: the stop can only come from the
    # pool's Cancelling event.
    stack.env["PREFECT_WORKER_CANCELLATION_POLL_SECONDS"] = "600"
    with stack:
        data, writers = _record_until_held(stack, held, seed=50)
        assert stack.worker is not None and stack.worker.proc is not None
        worker_pid = stack.worker.proc.pid
        victim = stack.run_for("cam-b.mkv")
        assert victim is not None
        # What the UI's Cancel button does.
        stack.post(f"/flow_runs/{victim['id']}/set_state", {"state": {"type": "CANCELLING"}})
        # The stream stops while its part 3 is still on the wire: mid-part.
        until(lambda: _stream(store, "cam-b.mkv").status == "failed", 15, "cam-b to stop")
        assert "cancelled by an operator" in (_stream(store, "cam-b.mkv").error or "")
        held.release(forward=False)
        stack.wait_for_state(victim["id"], "CANCELLED", 60)

        for rec in _others_completed_once(stack, store, writers, s3, bucket, data):
            assert reuploads(proxy.parts_reached_s3(rec.s3_upload_id)) == []
        assert stack.worker.proc.poll() is None and stack.worker.proc.pid == worker_pid

        # The stopped stream is resumable: the operator's rerun finishes it.
        b = _stream(store, "cam-b.mkv")
        checkpointed = set(store.parts.get(b.stream_id))  # part 3 too if its retry got through
        mark = proxy.mark()
        run_cli([str(BIN / "stream-ingest"), "streams", "rerun", b.stream_id], stack.env)
        until(lambda: _stream(store, "cam-b.mkv").status == "completed", 120, "cam-b rerun")
        check_object(s3, bucket, b.s3_key, data["cam-b.mkv"])
        resent = proxy.parts_reached_s3(b.s3_upload_id, since=mark)
        assert not set(resent) & checkpointed  # checkpointed parts are not sent again


def test_a_dead_worker_s_streams_are_crashed_by_the_next_and_resumable(
    tmp_path, redis_server, moto_server, proxy
):
    held = proxy.add("UploadPart", "hold", part=3, key="cam-a", times=1)
    stack, s3, bucket, store = _stack(tmp_path, redis_server.url, moto_server.url, proxy.url)
    with stack:
        data, writers = _record_until_held(stack, held, seed=60)
        assert stack.worker is not None and stack.worker.proc is not None
        runs = {n: until(lambda n=n: stack.run_for(n), 30, n) for n in NAMES}
        assert not any(w.done.is_set() for w in writers)  # mid-recording
        os.killpg(stack.worker.proc.pid, signal.SIGKILL)  # OOM killer: every stream at once
        stack.worker.proc.wait(10)
        held.release(forward=False)
        for w in writers:
            w.join(60)
        # Nothing ends a dead process's runs but the next worker on the host.
        left = {n: stack.get(f"/flow_runs/{r['id']}")["state"] for n, r in runs.items()}
        assert all(s["type"] == "RUNNING" for s in left.values()), left
        _next_worker(stack, tmp_path)
        for run in runs.values():
            crashed = stack.wait_for_state(run["id"], "CRASHED", 90)
            assert "worker process" in crashed["state"]["message"]
        for name in NAMES:
            run_cli(
                [str(BIN / "stream-ingest"), "streams", "rerun", _stream(store, name).stream_id],
                stack.env,
            )
        for name in NAMES:
            until(lambda n=name: _stream(store, n).status == "completed", 120, f"{name} rerun")
            rec = _stream(store, name)
            check_object(s3, bucket, rec.s3_key, data[name])


def test_a_host_that_never_returns_leaves_its_streams_to_the_janitor_and_another_host(
    tmp_path, redis_server, moto_server, proxy
):
    """Scale-out (README, "More than one host"): host A's worker dies with its streams
    and A never comes back. Its runs stay Running (no worker of A's to crash them);
    once their leases lapse the janitor deployment fails the streams, and `streams
    rerun --failed` finishes each on host B's worker, which sees the same files,
    without sending a checkpointed part again."""
    held = proxy.add("UploadPart", "hold", part=3, key="cam-a", times=1)
    stack, s3, bucket, store = _stack(tmp_path, redis_server.url, moto_server.url, proxy.url)
    ttl = 6
    stack.env["STREAM_INGEST_LEASE_TTL_SECONDS"] = str(ttl)
    with stack:
        data, writers = _record_until_held(stack, held, seed=90)
        assert stack.worker is not None and stack.worker.proc is not None
        runs = {n: until(lambda n=n: stack.run_for(n), 30, n) for n in NAMES}
        owners = {n: until(lambda r=r: _owner(stack, r["id"]), 30, n) for n, r in runs.items()}
        assert not any(w.done.is_set() for w in writers)  # mid-recording
        os.killpg(stack.worker.proc.pid, signal.SIGKILL)
        stack.worker.proc.wait(10)
        held.release(forward=False)
        for w in writers:
            w.join(60)
        # Host A's owner marks, moved to a host name of their own: this machine plays
        # host B from here on, and B's worker must leave another host's runs alone.
        for name, run in runs.items():
            moved = dataclasses.replace(owners[name], host="host-a")
            stack.patch(f"/flow_runs/{run['id']}", {"infrastructure_pid": str(moved)})
        # The control: a run this host's dead worker owned, which B must crash (so B's
        # sweep for orphans has run when the runs above are still Running).
        janitor = stack.get("/deployments/name/janitor/janitor")
        control = stack.post(
            f"/deployments/{janitor['id']}/create_flow_run", {"state": {"type": "RUNNING"}}
        )
        assert control["state_type"] == "RUNNING"  # never picked up by a poll
        dead_here = str(owners["cam-a.mkv"])
        stack.patch(f"/flow_runs/{control['id']}", {"infrastructure_pid": dead_here})
        checkpointed = {n: set(store.parts.get(_stream(store, n).stream_id)) for n in NAMES}
        _next_worker(stack, tmp_path)
        sids = [_stream(store, n).stream_id for n in NAMES]
        until(lambda: all(store.leases.holder(s) is None for s in sids), 30, "leases to lapse")
        last = max(_stream(store, n).last_activity_at_utc for n in NAMES)
        stale_at = datetime.fromisoformat(last).timestamp() + STALE_AFTER_LEASES * ttl + 1
        time.sleep(max(0.0, stale_at - time.time()))

        sweep = stack.post(f"/deployments/{janitor['id']}/create_flow_run", {})
        stack.wait_for_state(sweep["id"], "COMPLETED", 90)
        stack.wait_for_state(control["id"], "CRASHED", 30)
        for name in NAMES:
            rec = _stream(store, name)
            assert rec.status == "failed" and "lease lost" in rec.error, (name, rec.error)
        for run in runs.values():  # nothing on host B ended them
            assert stack.get(f"/flow_runs/{run['id']}")["state_type"] == "RUNNING"

        mark = proxy.mark()
        run_cli([str(BIN / "stream-ingest"), "streams", "rerun", "--failed"], stack.env)
        for name in NAMES:
            until(lambda n=name: _stream(store, n).status == "completed", 120, f"{name} rerun")
            rec = _stream(store, name)
            check_object(s3, bucket, rec.s3_key, data[name])
            resent = proxy.parts_reached_s3(rec.s3_upload_id, since=mark)
            assert not set(resent) & checkpointed[name], (name, resent)


def _owner(stack: Stack, run_id: str) -> Owner | None:
    """The run's owner once its warm worker has written it."""
    return parse_owner(stack.get(f"/flow_runs/{run_id}")["infrastructure_pid"])


def test_a_worker_stopped_by_sigterm_leaves_its_streams_to_the_next(
    tmp_path, redis_server, moto_server, proxy
):
    """`docker stop`, systemd or Ctrl-C: every stream stops at its next poll, keeps its
    checkpoint and is scheduled again; the next worker resumes each in the same run."""
    stack, s3, bucket, store = _stack(tmp_path, redis_server.url, moto_server.url, proxy.url)
    with stack:
        assert stack.worker is not None and stack.worker.proc is not None
        data, writers = _record(stack, seed=70)
        until(
            lambda: (
                len(store.streams.list()) == 3
                and all(len(store.parts.get(r.stream_id)) >= 1 for r in store.streams.list())
            ),
            120,
            "every stream to have a part",
        )
        runs = {n: until(lambda n=n: stack.run_for(n), 30, n) for n in NAMES}
        assert not any(w.done.is_set() for w in writers)  # mid-recording
        stack.worker.proc.send_signal(signal.SIGTERM)
        assert stack.worker.proc.wait(60) is not None
        for run in runs.values():
            state = stack.get(f"/flow_runs/{run['id']}")["state"]
            assert state["type"] == "SCHEDULED", state
            assert "next worker" in state["message"]
        checkpointed = {n: set(store.parts.get(_stream(store, n).stream_id)) for n in NAMES}
        mark = proxy.mark()
        _next_worker(stack, tmp_path)
        for w in writers:
            w.join(60)
        for name, run in runs.items():
            done = stack.wait_for_state(run["id"], "COMPLETED", 120)
            assert done["run_count"] == 2  # the same run, resumed
            rec = _stream(store, name)
            check_object(s3, bucket, rec.s3_key, data[name])
            resent = proxy.parts_reached_s3(rec.s3_upload_id, since=mark)
            assert not set(resent) & checkpointed[name]


def test_a_new_recording_wakes_the_worker_without_waiting_for_its_poll(
    tmp_path, redis_server, moto_server, proxy
):
    """The pool's Scheduled events wake the warm worker: with a 60 s poll, a new
    file's run still starts within seconds."""
    stack, s3, bucket, store = _stack(tmp_path, redis_server.url, moto_server.url, proxy.url)
    stack.env["PREFECT_WORKER_QUERY_SECONDS"] = "60"
    with stack:
        time.sleep(5)  # past the worker's first poll and its event subscription
        src = stack.watch_dir / "wake.mkv"
        data = payload(PART + 17, seed=80)
        src.write_bytes(data)
        written = time.monotonic()
        until(
            lambda: (
                (r := stack.run_for("wake.mkv")) and r["state_type"] in ("RUNNING", "COMPLETED")
            ),
            15,
            "the run to start",
        )
        # The next poll: 42-78 s after the first (±30 % jitter).
        assert time.monotonic() - written < 15
        rec = until(
            lambda: (r := _stream(store, "wake.mkv")).status == "completed" and r, 60, "done"
        )
        check_object(s3, bucket, rec.s3_key, data)


def test_a_stuck_stream_is_crashed_its_lease_freed_and_the_others_untouched(
    tmp_path, redis_server, moto_server, proxy
):
    """cam-b's completion never answers (its flow thread waits in the call, as on a
    hung mount or a dead connection): after stuck_timeout_seconds the worker crashes
    its run saying where it waits, the lease expires, the other streams complete in
    the same process, and the operator's rerun finishes cam-b."""
    held = proxy.add("CompleteMultipartUpload", "hold", key="cam-b", times=1)
    stack, s3, bucket, store = _stack(tmp_path, redis_server.url, moto_server.url, proxy.url)
    stack.env["STREAM_INGEST_STUCK_TIMEOUT_SECONDS"] = "6"
    stack.env["STREAM_INGEST_LEASE_TTL_SECONDS"] = "6"
    with stack:
        assert stack.worker is not None and stack.worker.proc is not None
        worker_pid = stack.worker.proc.pid
        data, writers = _record(stack, seed=70)
        assert held.arrived.wait(120), "cam-b's completion never reached S3"
        victim = stack.run_for("cam-b.mkv")
        assert victim is not None
        crashed = stack.wait_for_state(victim["id"], "CRASHED", 30)
        message = crashed["state"]["message"]
        assert "stream stuck" in message and "complete_multipart_upload" in message, message
        b = _stream(store, "cam-b.mkv")
        until(lambda: store.leases.holder(b.stream_id) is None, 15, "cam-b's lease to expire")

        _others_completed_once(stack, store, writers, s3, bucket, data)
        assert stack.worker.proc.poll() is None and stack.worker.proc.pid == worker_pid

        run_cli([str(BIN / "stream-ingest"), "streams", "rerun", b.stream_id], stack.env)
        until(lambda: _stream(store, "cam-b.mkv").status == "completed", 120, "cam-b rerun")
        check_object(s3, bucket, b.s3_key, data["cam-b.mkv"])
        held.release(forward=False)  # the stuck call fails at last; the stream stays done
        time.sleep(3)
        assert _stream(store, "cam-b.mkv").status == "completed"
        check_object(s3, bucket, b.s3_key, data["cam-b.mkv"])
