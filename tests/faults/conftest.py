"""Fault fixtures: every fault test gets its own redis-server (so it can kill and
restart it, with or without its append-only file) and reaches S3 only through a
fault-injecting proxy in front of the shared moto server (so it can make S3 fail and
count what really reached S3). Checks of the result read moto directly (`s3`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.devstack.services import MotoServer, RedisServer
from stream_ingest.identity import FileIdentity
from tests.faults.proxy import FaultProxy
from tests.flows.helpers import (
    GrowingWriter,
    mark_crashed,
    object_bytes,
    start_flow_process,
    until,
)


@pytest.fixture
def redis_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """Overrides the session's Redis: a private one per test. Parametrize it
    indirectly with persist=True (AOF, fsync always) or False (memory only)."""
    server = RedisServer(persist=getattr(request, "param", True))
    server.start()
    holder = {"server": server}
    request.node.redis_holder = holder  # start_redis() replaces it
    yield server
    holder["server"].stop()


def kill_redis(request: pytest.FixtureRequest) -> None:
    """kill -9 this test's Redis (its AOF, if any, is fsynced on every write)."""
    request.node.redis_holder["server"].kill()


def start_redis(request: pytest.FixtureRequest) -> RedisServer:
    """Start this test's Redis again on the same port and folder: with its data if it
    persists, empty if it does not."""
    holder = request.node.redis_holder
    old: RedisServer = holder["server"]
    new = RedisServer(port=old.port, workdir=old.workdir, persist=old.persist)
    new.start()
    holder["server"] = new
    return new


@pytest.fixture
def proxy(moto_server: MotoServer) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server.url) as p:
        yield p


@pytest.fixture
def settings_env(
    settings_env: dict[str, str], proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The flow's S3 endpoint is the proxy (the bucket block is saved with it)."""
    monkeypatch.setenv("STREAM_INGEST_S3_ENDPOINT_URL", proxy.url)
    return {**settings_env, "STREAM_INGEST_S3_ENDPOINT_URL": proxy.url}


@pytest.fixture(autouse=True)
def recordings_end_on_close(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A recording ends by the sensor's close hint (`close_hint`, `recorder`), not by
    an idle timeout that a writer stalled on a busy machine could trip early, which
    would complete the object too soon. (After settings_env, which sets a short one.)"""
    monkeypatch.setenv("STREAM_INGEST_IDLE_TIMEOUT_SECONDS", "120")


def close_hint(store: CheckpointStore, src: Path) -> None:
    """What the sensor records when the recorder closes the file."""
    store.hints.note_closed(str(src), str(FileIdentity.of_stat(os.stat(src))))


def recorder(
    store: CheckpointStore, src: Path, data: bytes, steps: int, head_patch: bytes = b""
) -> GrowingWriter:
    """A writer that grows `src` to `data` in `steps` (0.2 s apart) and then closes it
    the way the sensor reports it (a close hint). Not started."""
    src.touch()
    return GrowingWriter(
        src, data, steps, pause=0.2, head_patch=head_patch, on_done=lambda: close_hint(store, src)
    )


def recorded_parts(store: CheckpointStore) -> int:
    """Parts checkpointed for the test's only stream (0 before it exists)."""
    streams = store.streams.list()
    return len(store.parts.get(streams[0].stream_id)) if streams else 0


def kill_flow_when(
    src: Path, log: Path, store: CheckpointStore, ready: Callable[[], object]
) -> str:
    """Run the flow on `src` in its own process and kill -9 it once `ready()` is
    true; mark its run crashed, as its worker would. Returns the stream id."""
    child = start_flow_process(src, log=log)
    try:
        until(lambda: ready() or child.poll() is not None, 180, "the moment to kill the run")
        assert child.poll() is None, f"the run ended by itself:\n{log.read_text()[-3000:]}"
        child.kill()
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    [record] = store.streams.list()
    mark_crashed(record.flow_run_id)
    return record.stream_id


def check_object(s3, bucket: str, key: str, expected: bytes) -> None:
    """The object must be exactly the file's bytes (reported as bytes lost if not)."""
    body = object_bytes(s3, bucket, key)
    if body != expected:
        first = next(
            (i for i, (a, b) in enumerate(zip(body, expected, strict=False)) if a != b),
            min(len(body), len(expected)),
        )
        raise AssertionError(
            f"object has {len(body)} bytes, file {len(expected)}; they differ from byte {first}"
        )


def reuploads(parts: list[int]) -> list[int]:
    """Part numbers that reached S3 more than once (each extra arrival listed)."""
    seen: set[int] = set()
    extra = []
    for n in parts:
        if n in seen:
            extra.append(n)
        seen.add(n)
    return sorted(extra)


def report(request: pytest.FixtureRequest, reuploaded: list[int]) -> None:
    """Record the parts sent twice in the JUnit XML (`pytest --junitxml`), so that
    repeated runs of the suite can be tabulated. (Lost bytes are not a figure here:
    `check_object` fails the case on any difference.)"""
    request.node.user_properties.append(("reuploaded_parts", len(reuploaded)))
    request.node.user_properties.append(("reuploaded", ",".join(map(str, reuploaded))))


@pytest.fixture
def watch(registered) -> Path:
    return Path(registered.watch_dir)
