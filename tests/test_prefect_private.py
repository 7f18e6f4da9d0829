"""The contract with the installed Prefect: every private use the project makes
(stream_ingest/flows/prefect_private.py) still holds, and no other module makes one."""

from __future__ import annotations

import ast
from pathlib import Path

import prefect
import pytest

from stream_ingest.flows import prefect_private
from stream_ingest.flows.prefect_private import ASSUMPTIONS, WORKER_ATTRIBUTES

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("stream_ingest", "blocks", "flows", "workers", "sensors", "cli", "devstack")
SEAM = "stream_ingest/flows/prefect_private.py"


@pytest.mark.parametrize("name", list(ASSUMPTIONS))
def test_the_installed_prefect_holds_to(name: str) -> None:
    try:
        ASSUMPTIONS[name]()
    except (AssertionError, AttributeError, ImportError, TypeError, OSError) as exc:
        pytest.fail(
            f"Prefect {prefect.__version__} breaks an assumption of stream-ingest: {name} ({exc})"
        )


def test_a_release_without_the_suspension_hook_is_caught(monkeypatch) -> None:
    monkeypatch.delattr(prefect_private.flow_engine, "observe_flow_run_suspension")
    with pytest.raises(AssertionError):
        ASSUMPTIONS["flow_engine.observe_flow_run_suspension and FlowRunSuspendingObserver"]()


def _private_uses(path: Path) -> list[str]:
    """Imports of underscored Prefect modules or names, and reads of BaseWorker's
    private members, in one source file."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("prefect"):
            parts = node.module.split(".")
            names = [a.name for a in node.names]
            if any(p.startswith("_") for p in parts) or any(n.startswith("_") for n in names):
                found.append(f"line {node.lineno}: from {node.module} import {', '.join(names)}")
        elif (isinstance(node, ast.Attribute) and node.attr in WORKER_ATTRIBUTES) or (
            isinstance(node, ast.Attribute) and node.attr == "enable_csrf_support"
        ):
            found.append(f"line {node.lineno}: .{node.attr}")
    return found


def test_no_module_but_the_seam_uses_prefects_private_api() -> None:
    uses = {
        rel: found
        for pkg in PRODUCT
        for path in sorted((ROOT / pkg).rglob("*.py"))
        if (rel := path.relative_to(ROOT).as_posix()) != SEAM and (found := _private_uses(path))
    }
    assert uses == {}


def test_the_scan_sees_a_private_import(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("from prefect._internal.observers import X\nworker._work_pool\n")
    assert len(_private_uses(source)) == 2


def test_no_heartbeats_inside_the_swap_and_heartbeats_again_after() -> None:
    from prefect.flow_engine import BaseFlowRunEngine

    from stream_ingest.flows.prefect_private import without_flow_run_heartbeats

    # The session's own flow runs may be inside the swap already (tests/conftest.py):
    # what is checked is the swap of the class's property and its restoring.
    engine = object.__new__(BaseFlowRunEngine)
    before = BaseFlowRunEngine.__dict__["heartbeat_seconds"]
    with without_flow_run_heartbeats():
        assert BaseFlowRunEngine.__dict__["heartbeat_seconds"] is not before
        assert engine.heartbeat_seconds is None
    assert BaseFlowRunEngine.__dict__["heartbeat_seconds"] is before


def test_a_release_whose_heartbeats_ignore_the_property_is_caught(monkeypatch) -> None:
    monkeypatch.setattr(prefect_private.flow_engine.BaseFlowRunEngine, "heartbeat_seconds", 30)
    with pytest.raises(AssertionError):
        ASSUMPTIONS["BaseFlowRunEngine.heartbeat_seconds, None meaning no heartbeat thread"]()
