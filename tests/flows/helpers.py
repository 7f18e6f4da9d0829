"""Helpers for flow and fault tests: writers that grow a file the way a recorder does,
waits, and the flow run in a thread or in a process of its own (to kill -9)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qs, urlsplit

from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.devstack.services import wait_for as until

MIB = 1024 * 1024
T = TypeVar("T")


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic, incompressible-looking bytes (a repeated random block would let
    a part-mixup bug go unnoticed)."""
    import random

    rnd = random.Random(seed)
    return rnd.randbytes(size)


class GrowingWriter(threading.Thread):
    """Appends `data` in `steps` chunks through one open handle, `pause` seconds apart,
    then optionally rewrites the first bytes (as MP4/MKV muxers do on close), closes
    the file and calls `on_done`. `before_patch` waits (file still open) for the moment
    to rewrite, e.g. until the flow has uploaded the part the rewrite changes."""

    def __init__(
        self,
        path: Path,
        data: bytes,
        steps: int,
        pause: float,
        head_patch: bytes = b"",
        on_done: Callable[[], None] | None = None,
        patch_at: int = 0,
        before_patch: Callable[[], object] | None = None,
    ):
        super().__init__(name="writer", daemon=True)
        self.path, self.data, self.steps, self.pause = path, data, steps, pause
        self.head_patch, self.patch_at = head_patch, patch_at  # the patch, and where
        self.on_done = on_done  # e.g. the sensor's close hint
        self.before_patch = before_patch
        self.done = threading.Event()

    def run(self) -> None:
        chunk = -(-len(self.data) // self.steps)
        with open(self.path, "r+b" if self.path.exists() else "wb") as fh:
            for i in range(0, len(self.data), chunk):
                fh.write(self.data[i : i + chunk])
                fh.flush()
                os.fsync(fh.fileno())
                time.sleep(self.pause)
            if self.head_patch:
                if self.before_patch:
                    self.before_patch()
                fh.seek(self.patch_at)
                fh.write(self.head_patch)
                fh.flush()
        if self.on_done:
            self.on_done()
        self.done.set()


def object_bytes(s3, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def wait_for_parts(store: CheckpointStore, n: int, timeout: float = 60) -> str:
    """Wait until some stream has n checkpointed parts; return its id."""
    return until(
        lambda: next(
            (r.stream_id for r in store.streams.list() if len(store.parts.get(r.stream_id)) >= n),
            None,
        ),
        timeout,
        f"a stream with {n} checkpointed parts",
    )


def wait_for_part(store: CheckpointStore, number: int, timeout: float = 60) -> str:
    """Wait until some stream has part `number` checkpointed (uploaded); return its id."""
    return until(
        lambda: next(
            (r.stream_id for r in store.streams.list() if number in store.parts.get(r.stream_id)),
            None,
        ),
        timeout,
        f"a stream with part {number} checkpointed",
    )


def lose_redis_data(store: CheckpointStore) -> None:
    """Redis loses the test's keys (its namespace only: never a shared server)."""
    for key in store.redis_client.scan_iter(f"{store.namespace}:*"):
        store.redis_client.delete(key)


def run_in_thread(path: Path, stream_id: str | None = None) -> tuple[threading.Thread, dict]:
    """Run the flow in a daemon thread; `out["state"]` is its final state."""
    from stream_ingest.flows.ingest import stream_ingest

    out: dict = {}

    def target() -> None:
        out["state"] = stream_ingest(path=str(path), stream_id=stream_id, return_state=True)

    thread = threading.Thread(target=target, name="flow-under-test", daemon=True)
    thread.start()
    return thread, out


def api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value())


def start_flow_process(
    path: Path, stream_id: str | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """The flow in its own process (as a process worker runs it), so that a test can
    kill -9 it. It talks to the test's Prefect API and sees the test's environment."""
    code = (
        "from stream_ingest.flows.ingest import stream_ingest; "
        f"stream_ingest(path={str(path)!r}, stream_id={stream_id!r})"
    )
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child owns it
    try:
        return subprocess.Popen(
            [sys.executable, "-c", code],
            env={**os.environ, "PREFECT_API_URL": api_url()},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    finally:
        if log:
            out.close()  # type: ignore[union-attr]


def mark_crashed(flow_run_id: str) -> None:
    """What a worker does when its flow-run process dies."""
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Crashed(message="killed"), force=True)


_PUT = re.compile(r'"PUT (\S+) HTTP')


def upload_part_calls(log: Path, start: int, upload_id: str) -> list[int]:
    """Part numbers of the UploadPart requests the S3 store logged after byte `start`
    (moto and Ceph's gateway log the same request line)."""
    with open(log, "rb") as fh:
        fh.seek(start)
        text = fh.read().decode(errors="replace")
    out = []
    for line in text.splitlines():
        m = _PUT.search(line)
        query = parse_qs(urlsplit(m.group(1)).query) if m else {}
        if query.get("uploadId") == [upload_id] and "partNumber" in query:
            out.append(int(query["partNumber"][0]))
    return out


def failed_stream(
    s3,
    store: CheckpointStore,
    settings,
    data: bytes,
    parts: int,
    name: str = "cam1/take.mkv",
    last_activity: str = "2020-01-01T00:00:00.000+00:00",
    created_hours_ago: float = 48,
):
    """A failed stream as a crashed run leaves it: its multipart upload (made as the
    flow makes them) holding `parts` parts of `data` (5 MiB each, the last maybe
    short), registered `created_hours_ago`; its file at `name` in the watch folder
    is not written (the caller writes it if it is still there)."""
    import json
    import uuid

    from stream_ingest.blocks.bucket import CHECKSUM, CREATED_BY, STREAM_ID
    from stream_ingest.records import StreamRecord
    from stream_ingest.states import Status

    bucket, key, sid = settings.s3_bucket, f"rec/{name}", str(uuid.uuid4())
    upload = s3.create_multipart_upload(
        Bucket=bucket, Key=key, Metadata=CREATED_BY | {STREAM_ID: sid}, ChecksumAlgorithm=CHECKSUM
    )["UploadId"]
    for k in range(1, parts + 1):
        body = data[(k - 1) * 5 * MIB : k * 5 * MIB]
        s3.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload,
            PartNumber=k,
            Body=body,
            ChecksumAlgorithm=CHECKSUM,
        )
    created = time.time() - created_hours_ago * 3600
    entry = {"stream_id": sid, "key": key, "created": created}
    store.redis_client.hset(store.space.uploads_key, upload, json.dumps(entry))
    record = StreamRecord(
        stream_id=sid,
        original_path=str(Path(settings.watch_dir) / name),
        watch_dir=str(settings.watch_dir),
        status=Status.FAILED,
        s3_bucket=bucket,
        s3_key=key,
        s3_upload_id=upload,
        part_base_bytes=5 * MIB,
        last_activity_at_utc=last_activity,
        error="flow run crashed",
    )
    store.streams.put(record)
    return record


class _Later:
    """The time module, `hours` ahead: what `time.time()` says in a module patched
    with it (everything else is the real module's)."""

    def __init__(self, hours: float) -> None:
        self.offset = hours * 3600

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)

    def time(self) -> float:
        return time.time() + self.offset


def janitor_runs_later(monkeypatch, hours: float = 2.0) -> None:
    """The janitor (and the checkpoints it reads and writes) run `hours` from now, so
    that uploads created now are that old on every store: an upload's age is the later
    of its Initiated date and its registry entry, and a real store (Ceph's gateway)
    reports the real start where moto reports a date in 2010."""
    import stream_ingest.blocks.store_hints as hints_module
    import stream_ingest.blocks.store_parts as parts_module
    import stream_ingest.blocks.store_streams as streams_module
    import stream_ingest.flows.janitor as janitor_module

    later = _Later(hours)
    monkeypatch.setattr(janitor_module, "time", later)
    for module in (streams_module, parts_module, hints_module):
        monkeypatch.setattr(module, "time", later)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the endpoint: (name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
