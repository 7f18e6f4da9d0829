"""docker-compose.yml, the Dockerfile, prefect.yaml and the docs' commands agree with
the code.

There is no Docker engine here, so both files are parsed, and every command they run
is checked in-process against the real CLI parsers: `stream-ingest` through
`cli.main.parser()`, `prefect` through Prefect's own cyclopts app.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.specifiers import SpecifierSet

from stream_ingest.settings import ENV_PREFIX, Settings
from workers.warm import WarmWorker

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
    "minio",
    "minio-init",
    "setup",
    "worker",
    "sensor",
}
LONG_RUNNING = ("postgres", "prefect-server", "redis", "minio")
APP_SERVICES = ("setup", "worker", "sensor")
VOLUMES = {"recordings", "postgres-data", "redis-data", "minio-data"}
DEPENDS_ON = {
    "prefect-server": {"postgres": "service_healthy"},
    "minio-init": {"minio": "service_healthy"},
    "setup": {
        "prefect-server": "service_healthy",
        "redis": "service_healthy",
        "minio-init": "service_completed_successfully",
    },
    "worker": {"setup": "service_completed_successfully"},
    "sensor": {"setup": "service_completed_successfully"},
}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


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


def interpolate(value: str) -> str:
    """Compose's `${VAR:-default}` with nothing set: the defaults."""
    return _VAR.sub(lambda m: m.group(2) or "", value).replace("$$", "$")


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
    returns 'cli.main.function' of the command and its parameters."""
    import typer
    from typer.exceptions import TyperException

    from cli.main import app

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
    return f"cli.main.{ctx.command.callback.__name__}", dict(ctx.params)


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


def test_prefect_yaml_leaves_the_code_where_deploy_runs(prefect_yaml: dict[str, Any]) -> None:
    """No pull section: `prefect deploy` records its working directory, which the
    compose setup and worker share (/app)."""
    assert not prefect_yaml.get("pull")
    assert all(not d.get("pull") for d in prefect_yaml["deployments"])


def test_dev_uses_the_same_work_pool(deployment: dict[str, Any]) -> None:
    from devstack import dev

    assert deployment["work_pool"]["name"] == dev.WORK_POOL


# --- docker-compose.yml: structure --------------------------------------------------


def test_compose_has_the_services_and_no_version_key(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    assert "version" not in compose
    assert set(services) == SERVICES


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_services_have_healthchecks(services: dict[str, Any], name: str) -> None:
    test = services[name].get("healthcheck", {}).get("test")
    assert test, f"{name}: no healthcheck test"
    if isinstance(test, list):
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, test
    assert services[name].get("restart") == "unless-stopped"


def test_healthcheck_commands(services: dict[str, Any]) -> None:
    def text(name: str) -> str:
        test = services[name]["healthcheck"]["test"]
        return " ".join(test[1:]) if isinstance(test, list) else test

    assert text("postgres").startswith("pg_isready")
    assert text("redis") == "redis-cli ping"
    assert text("minio") == "mc ready local"
    server = services["prefect-server"]["healthcheck"]["test"]
    assert server[:3] == ["CMD", "python", "-c"], "the prefect image has python, not curl"
    assert "urllib" in server[3] and "http://localhost:4200/api/health" in server[3]
    compile(server[3], "healthcheck", "exec")


def test_depends_on_conditions(services: dict[str, Any]) -> None:
    for name, service in services.items():
        got = {dep: spec["condition"] for dep, spec in service.get("depends_on", {}).items()}
        assert got == DEPENDS_ON.get(name, {}), name


def test_one_shot_services_do_not_restart(services: dict[str, Any]) -> None:
    for name in ("minio-init", "setup"):
        assert services[name]["restart"] == "no", f"{name}: quote it, bare `no` is false"


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
    assert ("minio-data", "/data") in volume_mounts(services["minio"])
    assert services["minio"]["command"][:2] == ["server", "/data"]
    assert services["redis"]["command"] == ["redis-server", "--appendonly", "yes"]


# --- docker-compose.yml: the app services ---------------------------------------------


def test_only_setup_reads_the_seed_settings(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    """The worker and the sensor get the Prefect API only: everything else (and every
    secret) reaches them through the IngestConfig block that setup saves."""
    shared = compose["x-prefect-env"]
    for name in ("worker", "sensor"):
        assert services[name]["environment"] == shared, name
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
    text = (ROOT / "docker-compose.yml").read_text()
    mentioned = set(re.findall(r"\bSTREAM_INGEST_[A-Z0-9_]+", text))
    assert mentioned <= fields, f"not settings: {sorted(mentioned - fields)}"


def test_compose_environment_loads_as_valid_settings(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {k: interpolate(v) for k, v in app_env(services, "setup").items()}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from stream_ingest.settings import load_settings

    settings = load_settings()
    assert settings.watch_dir == "/recordings"
    assert settings.s3_bucket == "recordings"
    assert settings.aws_access_key_id is not None
    assert settings.aws_secret_access_key is not None


def test_service_addresses_point_at_compose_services(services: dict[str, Any]) -> None:
    env = app_env(services, "setup")
    api = urlsplit(app_env(services, "worker")["PREFECT_API_URL"])
    assert (api.hostname, api.port, api.path) == ("prefect-server", 4200, "/api")
    assert "4200:4200" in services["prefect-server"]["ports"]
    redis = urlsplit(env["STREAM_INGEST_REDIS_URL"])
    assert (redis.scheme, redis.hostname, redis.port) == ("redis", "redis", 6379)
    s3 = urlsplit(env["STREAM_INGEST_S3_ENDPOINT_URL"])
    assert (s3.hostname, s3.port) == ("minio", 9000)
    assert {"9000:9000", "9001:9001"} <= set(services["minio"]["ports"])


def test_s3_credentials_are_minios(services: dict[str, Any]) -> None:
    env = app_env(services, "setup")
    for service in ("minio", "minio-init"):
        minio = app_env(services, service)
        assert env["STREAM_INGEST_AWS_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"]
        assert env["STREAM_INGEST_AWS_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"]
    assert env["STREAM_INGEST_AWS_ACCESS_KEY_ID"] == "${MINIO_ROOT_USER:-minioadmin}"
    assert env["STREAM_INGEST_AWS_SECRET_ACCESS_KEY"] == "${MINIO_ROOT_PASSWORD:-minioadmin}"


def test_minio_init_creates_the_configured_bucket(services: dict[str, Any]) -> None:
    init = services["minio-init"]
    script = init["command"][0] if isinstance(init["command"], list) else init["command"]
    commands = script_commands([*init["entrypoint"][:2], script])
    bucket = app_env(services, "setup")["STREAM_INGEST_S3_BUCKET"]
    assert commands[0][:4] == ["mc", "alias", "set", "local"]
    assert urlsplit(commands[0][4]).hostname == "minio"
    assert ["mc", "mb", "--ignore-existing", f"local/{bucket}"] in commands


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


# --- docker-compose.yml: the commands are real ----------------------------------------


def test_setup_creates_the_pool_registers_blocks_and_deploys(
    services: dict[str, Any], deployment: dict[str, Any]
) -> None:
    commands = [check_command(c) for c in script_commands(services["setup"]["command"])]
    assert [what for what, _ in commands] == [
        "prefect.cli.work_pool.create",
        "cli.main.blocks_register",
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
    assert check_command(command)[0] == "cli.main.sensor"


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


def test_dockerfile_copies_the_project(
    dockerfile: list[tuple[str, str]], pyproject: dict[str, Any]
) -> None:
    copies = _copies(dockerfile)
    packages = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert set(packages) == {
        "stream_ingest",
        "blocks",
        "flows",
        "workers",
        "sensors",
        "cli",
        "devstack",
    }
    for name in [*packages, "pyproject.toml", "uv.lock", "README.md", "prefect.yaml"]:
        assert (ROOT / name).exists(), name
        assert copies.get(name) == f"/app/{name}", f"{name} is not copied to /app/{name}"


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
    assert check_command(command)[0] == "cli.main.sensor"
