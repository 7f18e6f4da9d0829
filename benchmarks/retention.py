"""Retention: Redis memory stays flat however many recordings are made.

10,000 streams are created and completed through the CheckpointStore with the calls
a recording makes (the sensor's claim, the run's lease, upload registration, two
parts, the close hint, finalizing, completed, the revision), with a retention of a
few seconds (hints too) and the index sweep running beside them as the janitor runs
it. INFO memory's `used_memory` is read at 0, 2,500, 5,000, 7,500 and 10,000
streams, each time once the retention of the streams so far has passed and Redis
has reclaimed their keys (the key count is back to zero). The control runs the same
streams with a retention of a year, which is what Redis held before keys expired.
No S3: only the store's calls are measured.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import redis

from benchmarks.common import MIB, log
from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.devstack.services import RedisServer, wait_for
from stream_ingest.records import PartRecord, Revision, StreamRecord
from stream_ingest.states import Status

STREAMS = 10_000
CHECKPOINTS = 4  # after each quarter
RETENTION_SECONDS = 2.0
SWEEP_EVERY_SECONDS = 0.5
YEAR = 365 * 86_400.0


def run(streams: int = STREAMS) -> dict[str, Any]:
    with RedisServer() as server:
        assert isinstance(server, RedisServer)
        started = time.monotonic()
        kept = _measure(server.url, "kept", streams, RETENTION_SECONDS, sweep=True)
        taken = time.monotonic() - started
        control = _measure(server.url, "control", streams, YEAR, sweep=False)
    figures = kept["used_memory"]
    first, last = figures[0][1], figures[-1][1]
    return {
        "bench": "retention",
        "streams": streams,
        "retention_s": RETENTION_SECONDS,
        "hint_ttl_s": RETENTION_SECONDS,
        "sweep_every_s": SWEEP_EVERY_SECONDS,
        "used_memory_bytes": {str(n): used for n, used in figures},
        "keys_at_each": [k for _, k in kept["keys"]],
        "ratio_last_first": round(last / first, 3),
        "entries_swept": kept["swept"],
        "sweep_max_ms": kept["sweep_max_ms"],
        "streams_per_s": round(streams / kept["work_seconds"]),
        "control_no_expiry_used_memory_bytes": {str(n): used for n, used in control["used_memory"]},
        "control_ratio_last_first": round(
            control["used_memory"][-1][1] / control["used_memory"][0][1], 3
        ),
        "control_bytes_per_stream": round(
            (control["used_memory"][-1][1] - control["used_memory"][0][1]) / streams
        ),
        "seconds": round(taken, 1),
    }


def _measure(
    url: str, namespace: str, streams: int, retention: float, sweep: bool
) -> dict[str, Any]:
    """Make `streams` streams in `namespace`; `used_memory` at each checkpoint."""
    client = redis.Redis.from_url(url)
    client.flushall()
    store = CheckpointStore.from_url(url, namespace)
    store.set_retention(retention, hints_seconds=retention)
    sweeper = _Sweeper(CheckpointStore.from_url(url, namespace), retention) if sweep else None
    used: list[tuple[int, int]] = []
    keys: list[tuple[int, int]] = []
    every = streams // CHECKPOINTS
    work = 0.0
    try:
        if sweeper:
            sweeper.start()
        store.ping()
        for made in range(streams + 1):
            if made % every == 0:
                if sweep:  # everything so far has ended and expired: nothing is left
                    wait_for(lambda: client.dbsize() == 0, 60, "the keys' expiry and sweep")
                used.append((made, _used_memory(client)))
                keys.append((made, client.dbsize()))
                log(f"retention [{namespace}]: {made} streams, {used[-1][1] / MIB:.2f} MiB")
            if made < streams:
                began = time.perf_counter()
                _one_recording(store, made)
                work += time.perf_counter() - began
    finally:
        if sweeper:
            sweeper.stop()
        client.close()
    return {
        "used_memory": used,
        "keys": keys,
        "swept": sweeper.swept if sweeper else 0,
        "sweep_max_ms": round(sweeper.max_seconds * 1000, 1) if sweeper else 0.0,
        "work_seconds": work,
    }


def _one_recording(store: CheckpointStore, n: int) -> None:
    """The store's calls of one recording, from the sensor's claim to completed."""
    identity, path = f"2049:{n}:{1_700_000_000 + n}", f"/bench/cam-{n}.mp4"
    record = StreamRecord(
        stream_id=str(uuid.uuid4()),
        original_path=path,
        watch_dir="/bench",
        identity=identity,
        s3_bucket="recordings",
        s3_key=f"bench/cam-{n}.mp4",
    )
    sid, created = store.identities.claim(identity, record)
    assert created, f"{identity} was bound already"
    token, upload = str(uuid.uuid4()), f"upload-{n}"
    store.streams.update(sid, flow_run_id=token)
    store.leases.acquire(sid, token, 30)
    store.streams.set_status(sid, Status.UPLOADING, flow_run_id=token)
    store.parts.register_upload(upload, sid, record.s3_key)
    store.streams.update(sid, s3_upload_id=upload)
    for number in (1, 2):
        size = 8 * MIB if number == 1 else 3 * MIB
        part = PartRecord(number, f'"{uuid.uuid4().hex}"', (number - 1) * 8 * MIB, size, "c")
        store.parts.record(record, token, part, 30)
    store.hints.note_closed(path, identity)
    assert store.hints.closed_at(path, identity) is not None
    store.streams.set_status(sid, Status.FINALIZING)
    store.streams.set_status(sid, Status.COMPLETED, sha256="ab" * 32, total_bytes=11 * MIB)
    store.revisions.add(sid, Revision(1, 11 * MIB, "ab" * 32, "2026-01-01T00:00:00+00:00", 2))
    store.parts.forget_upload(upload)
    store.leases.release(sid, token)


def _used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


class _Sweeper(threading.Thread):
    """The janitor's index sweep, every half second, with a store of its own."""

    def __init__(self, store: CheckpointStore, retention: float) -> None:
        super().__init__(name="bench-sweeper", daemon=True)
        store.set_retention(retention)
        self.store = store
        self.swept = 0
        self.max_seconds = 0.0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(SWEEP_EVERY_SECONDS):
            began = time.perf_counter()
            self.swept += len(self.store.retention.sweep())
            self.max_seconds = max(self.max_seconds, time.perf_counter() - began)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)
