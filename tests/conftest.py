"""Shared fixtures: a private redis-server, a moto S3 server in its own process, and
one Prefect test harness per session. Nothing here touches the machine's Redis.

A test marked `on_ceph` runs against two S3 implementations: moto, and Ceph's RADOS
Gateway (one cluster per session, stream_ingest/devstack/ceph.py). Its Ceph case is marked `ceph` and
`slow` (the full tier: the cluster takes seconds to start). Every S3 fixture below
(`s3`, `bucket_name`, `settings_env`) follows the test's `s3_server`."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

# Before anything imports prefect: a private home, no telemetry, quiet logs. Each
# pytest-xdist worker gets a home of its own (it inherits the controller's environment).
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="si-prefect-home-")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="si-prefect-home-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
# A worker of pytest-xdist talks to its controller's Prefect server (pytest_configure
# below), from every thread: set before prefect reads its settings, so that no thread
# with a context of its own finds no API and starts an ephemeral server.
if os.environ.get("SI_TESTS_SHARED_PREFECT_API_URL"):
    os.environ["PREFECT_API_URL"] = os.environ["SI_TESTS_SHARED_PREFECT_API_URL"]
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
for name in list(os.environ):
    if name.startswith("STREAM_INGEST_"):
        del os.environ[name]

import boto3  # noqa: E402
import pytest  # noqa: E402

from stream_ingest.blocks.checkpoints import CheckpointStore  # noqa: E402
from stream_ingest.devstack.ceph import CephGateway, S3Server  # noqa: E402
from stream_ingest.devstack.services import MotoServer, RedisServer  # noqa: E402

TESTS = Path(__file__).resolve().parent
# Folders whose tests run only in the full tier, one at a time: a real Prefect server
# and stack per test, faults timed against a flow run, the lifecycle model. A new test
# file in one of them joins that tier by where it is.
SERIAL_DIRS = {"e2e", "faults", "model"}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tiers")
    group.addoption(
        "--all",
        action="store_true",
        help="the full tier: also the serial tests (tests/e2e, tests/faults, "
        "tests/model) and those marked slow",
    )
    group.addoption(
        "--serial",
        choices=("only", "skip"),
        help="with --all: only the serial tests, or all but them (./test.sh --all runs "
        "the rest on every core, then these one at a time)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            folder = item.path.resolve().relative_to(TESTS).parts[0]
        except ValueError:
            continue
        if folder in SERIAL_DIRS:
            item.add_marker(pytest.mark.serial)
    serial = config.getoption("--serial")
    if not config.getoption("--all"):
        drop = [i for i in items if i.get_closest_marker("serial") or i.get_closest_marker("slow")]
        config.stash[FULL_TIER_LEFT_OUT] = len(drop)
    elif serial == "only":
        drop = [i for i in items if not i.get_closest_marker("serial")]
    elif serial == "skip":
        drop = [i for i in items if i.get_closest_marker("serial")]
    else:
        drop = []
    if drop:
        dropped = set(map(id, drop))
        config.hook.pytest_deselected(items=drop)
        items[:] = [i for i in items if id(i) not in dropped]


FULL_TIER_LEFT_OUT = pytest.StashKey[int]()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked `needs(...)` drives programs PyPI cannot give (ffmpeg, systemd).
    The fast tier runs anywhere, so it passes over such a test where one is missing;
    the full tier installs them first, so there a missing one fails the test rather
    than hiding it."""
    marker = item.get_closest_marker("needs")
    if marker is None:
        return
    missing = [name for name in marker.args if shutil.which(name) is None]
    if not missing:
        return
    what = f"{' and '.join(missing)} not found on PATH"
    if item.config.getoption("--all"):
        pytest.fail(f"{what}: scripts/ensure-test-tools.sh installs them", pytrace=False)
    pytest.skip(f"{what}; ./test.sh --all installs them")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Captured output that holds a file name which is not UTF-8 (os.fsdecode's
    surrogates) is escaped: a pytest-xdist worker cannot send it to the controller."""
    outcome = yield
    report = outcome.get_result()
    report.sections = [(title, _sendable(text)) for title, text in report.sections]


def _sendable(text: str) -> str:
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode(errors="backslashreplace").decode()
    return text


def pytest_report_header(config: pytest.Config) -> str:
    """Which Prefect ran (./test.sh --oldest swaps in another than the locked one)."""
    import prefect

    return f"prefect {prefect.__version__} ({prefect.__path__[0]})"


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    left_out = config.stash.get(FULL_TIER_LEFT_OUT, 0)
    if left_out:
        terminalreporter.write_line(
            f"{left_out} tests of the full tier (serial or slow) were deselected: "
            "./test.sh --all runs them"
        )


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server  # type: ignore[misc]


@pytest.fixture
def namespace() -> str:
    """A namespace per test instead of flushing: tests never see each other's keys."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def store(redis_server: RedisServer, namespace: str) -> CheckpointStore:
    return CheckpointStore.from_url(redis_server.url, namespace)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server  # type: ignore[misc]


@pytest.fixture(scope="session")
def ceph_server() -> Iterator[CephGateway]:
    """One Ceph cluster for the session, started at the first test that needs it."""
    try:
        gateway = CephGateway().start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield gateway
    finally:
        gateway.stop()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """An `on_ceph` test runs once per store; the Ceph case only in the full tier."""
    if "s3_server" in metafunc.fixturenames and metafunc.definition.get_closest_marker("on_ceph"):
        metafunc.parametrize(
            "s3_server",
            [
                pytest.param("moto", id="moto"),
                pytest.param("ceph", id="ceph", marks=[pytest.mark.ceph, pytest.mark.slow]),
            ],
            indirect=True,
        )


@pytest.fixture
def s3_server(request: pytest.FixtureRequest) -> S3Server:
    """The S3 store of this test: moto unless the test is parametrized over stores."""
    if getattr(request, "param", "moto") == "ceph":
        return request.getfixturevalue("ceph_server").server
    moto: MotoServer = request.getfixturevalue("moto_server")
    return S3Server("moto", moto.url, "testing", "testing", moto.log_path)


def s3_client(server: S3Server):
    return boto3.client(
        "s3",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
    )


@pytest.fixture
def s3(s3_server: S3Server):
    return s3_client(s3_server)


@pytest.fixture
def bucket_name(s3, s3_server: S3Server) -> Iterator[str]:
    name = f"b-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    yield name
    if s3_server.name == "ceph":  # its OSD keeps objects in memory for the session
        empty_bucket(s3, name)


def empty_bucket(s3, name: str) -> None:
    for upload in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=obj["Key"])
    s3.delete_bucket(Bucket=name)


# Under pytest-xdist the controller starts one Prefect server for all its workers, in
# the background while they start and collect, instead of a harness server per worker
# (each costs some 10 s of CPU and a wait before the worker's first flow test). Its
# address reaches the workers in their environment.
SHARED_PREFECT = "SI_TESTS_SHARED_PREFECT_API_URL"


def pytest_configure(config: pytest.Config) -> None:
    controller = not hasattr(config, "workerinput")
    if (
        controller
        and getattr(config.option, "numprocesses", None)
        and not config.option.collectonly
    ):
        from stream_ingest.devstack.services import PrefectServer

        server = PrefectServer().launch()
        config.stash[_shared_prefect] = server
        os.environ[SHARED_PREFECT] = server.api_url


def pytest_unconfigure(config: pytest.Config) -> None:
    server = config.stash.get(_shared_prefect, None)
    if server is not None:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)
        os.environ.pop(SHARED_PREFECT, None)


_shared_prefect = pytest.StashKey["PrefectServer"]()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A Prefect API for the session's flows: the controller's shared server, else
    Prefect's own test harness (a server of this process's own)."""
    from prefect.testing.utilities import prefect_test_harness

    from stream_ingest.flows.prefect_private import without_flow_run_heartbeats

    with contextlib.ExitStack() as stack:
        shared = os.environ.get(SHARED_PREFECT)
        if shared:
            stack.enter_context(shared_prefect_server(shared))
        else:
            stack.enter_context(prefect_test_harness(server_startup_timeout=90))
        stack.enter_context(block_schemas_derived_once())
        stack.enter_context(block_types_registered_once())
        stack.enter_context(without_flow_run_heartbeats())
        yield


@contextlib.contextmanager
def shared_prefect_server(api_url: str) -> Iterator[None]:
    """Wait until the controller's server answers, then talk to it."""
    import urllib.request

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from stream_ingest.devstack.services import wait_for

    def healthy() -> bool:
        with urllib.request.urlopen(f"{api_url}/health", timeout=5) as answer:
            return answer.status == 200

    wait_for(healthy, 120, "the shared Prefect server", interval=0.2, errors=(OSError,))
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        yield


@contextlib.contextmanager
def block_schemas_derived_once() -> Iterator[None]:
    """Prefect's Block.save derives the block class's whole JSON schema again for each
    field it checks for secrets: hundreds of derivations of the IngestConfig (and the
    blocks nested in it) per save, 10-40 s of CPU for one register_blocks on a loaded
    machine. A class's schema cannot change while the tests run, so here each (class,
    arguments) is derived once and every caller gets its own copy, as before; the
    requests to the server are the same."""
    from prefect.blocks.core import Block

    derive = Block.__dict__["model_json_schema"]
    schemas: dict[tuple[object, ...], dict] = {}

    def model_json_schema(cls, *args: object, **kwargs: object) -> dict:
        key = (cls, args, tuple(sorted(kwargs.items())))
        if key not in schemas:
            schemas[key] = derive.__func__(cls, *args, **kwargs)
        return copy.deepcopy(schemas[key])

    Block.model_json_schema = classmethod(model_json_schema)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        Block.model_json_schema = derive  # type: ignore[method-assign]


@contextlib.contextmanager
def block_types_registered_once() -> Iterator[None]:
    """register_blocks registers the block types (and the types nested in them) before
    it saves the blocks: a dozen requests that change nothing once this session's
    server holds them. Each class is registered for real the first time only; the
    blocks are still saved per test."""
    from prefect.blocks.core import Block

    register = Block.__dict__["register_type_and_schema"]
    registered: set[type] = set()

    def register_type_and_schema(cls, *args: object, **kwargs: object) -> object:
        if _in_event_loop() or cls not in registered:  # the async form: as it is
            result = register.__func__(cls, *args, **kwargs)
            if not _in_event_loop():
                registered.add(cls)
            return result
        return None

    Block.register_type_and_schema = classmethod(register_type_and_schema)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        Block.register_type_and_schema = register  # type: ignore[method-assign]


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@pytest.fixture
def settings_env(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    redis_server: RedisServer,
    s3_server: S3Server,
    bucket_name: str,
    namespace: str,
) -> dict[str, str]:
    """STREAM_INGEST_* for a test: its own watch folder, bucket and namespace, with
    the smallest parts and short timeouts so flows finish in seconds."""
    watch = tmp_path / "watch"
    watch.mkdir()
    env = {
        "STREAM_INGEST_WATCH_DIR": str(watch),
        "STREAM_INGEST_REDIS_URL": redis_server.url,
        "STREAM_INGEST_REDIS_NAMESPACE": namespace,
        "STREAM_INGEST_S3_BUCKET": bucket_name,
        "STREAM_INGEST_S3_PREFIX": "rec",
        "STREAM_INGEST_S3_ENDPOINT_URL": s3_server.url,
        "STREAM_INGEST_AWS_ACCESS_KEY_ID": s3_server.access_key,
        "STREAM_INGEST_AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "STREAM_INGEST_PART_SIZE_MIB": "5",
        "STREAM_INGEST_IDLE_TIMEOUT_SECONDS": "3",
        "STREAM_INGEST_SETTLE_SECONDS": "0.25",
        "STREAM_INGEST_POLL_INTERVAL_SECONDS": "0.05",
        "STREAM_INGEST_LEASE_TTL_SECONDS": "6",
        # No media facts: the tests' random bytes are no recordings, and a manifest
        # beside each object is in the way of tests that list the bucket. The tests
        # of the facts turn ffprobe on (tests/flows/test_media.py).
        "STREAM_INGEST_FFPROBE_PATH": "",
        # Blocks of their own per test; the flow finds them through this variable.
        "STREAM_INGEST_CONFIG_BLOCK": f"cfg-{namespace.lower()}",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def registered(prefect_harness: None, settings_env: dict[str, str]):
    """Settings from settings_env, saved as the test's blocks in the harness server."""
    from stream_ingest.blocks.registration import register_blocks
    from stream_ingest.settings import load_settings

    settings = load_settings()
    register_blocks(settings)
    return settings


def edit_config(**changes: object) -> None:
    """Change the test's IngestConfig block the way an operator does in the UI."""
    from stream_ingest.blocks.config import load_config

    config = load_config()
    for name, value in changes.items():
        setattr(config, name, value)
    config.save(config._block_document_name, overwrite=True)


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a thread of ours running, daemon or not (the lease
    keeper is a daemon: a leaked one would keep renewing a lease forever)."""
    before = set(threading.enumerate())
    yield
    ours = [
        t
        for t in set(threading.enumerate()) - before
        if t.name.startswith(("sensor", "lease", "finalize"))
    ]
    for thread in ours:  # a thread told to stop may need a moment to finish
        thread.join(timeout=5)
    leaked = [t for t in ours if t.is_alive()]
    assert not leaked, f"threads leaked: {leaked}"
