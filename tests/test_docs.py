"""The docs site: it builds without a warning, and the parts that describe the code
(the config block's fields, the statuses, doctor's checks) cover all of it."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _hooks():
    """scripts/docs_hooks.py, loaded the way mkdocs loads a hook: by its path."""
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "scripts/docs_hooks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rendered(page: str) -> str:
    return _hooks().render((DOCS / page).read_text())


@pytest.mark.slow
def test_the_site_builds_without_warnings(tmp_path: Path) -> None:
    """`mkdocs build --strict` turns every warning (a broken link or anchor, a page
    missing from the nav, a reference mkdocstrings cannot resolve) into a failure."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        # Material's notice about its end of life is not a warning about these docs.
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "WARNING" not in result.stderr, result.stderr[-4000:]
    configure = (tmp_path / "configure" / "index.html").read_text()
    assert "STREAM_INGEST_PART_SIZE_MIB" in configure  # the generated table is there


def test_the_configure_page_lists_every_field_of_the_config_block() -> None:
    """The table is generated from the block's model: every field, its default and its
    variable, so a new option cannot go undocumented."""
    from stream_ingest.blocks.config import IngestConfig
    from stream_ingest.settings import ENV_PREFIX, Settings

    page = _rendered("configure.md")
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(\w+)` \|.*$", page, re.M)}
    for name, field in IngestConfig.model_fields.items():
        assert name in rows, f"configure.md does not list the config block's field {name}"
        if name in Settings.model_fields:
            assert f"`{ENV_PREFIX}{name.upper()}`" in rows[name]
            assert (field.description or "").split(".")[0].replace("|", "\\|") in rows[name]
    for name in Settings.model_fields:  # and every other variable that seeds a block
        assert f"`{ENV_PREFIX}{name.upper()}`" in page


def test_the_lifecycle_diagram_has_every_status_and_transition() -> None:
    from stream_ingest import states

    page = _rendered("how-it-works.md")
    diagram = page[page.index("```mermaid") : page.index("```", page.index("```mermaid") + 3)]
    for current, targets in states._ALLOWED.items():
        for target in targets:
            if target != current:
                assert re.search(rf"^    {current.value} --> {target.value}\b", diagram, re.M)
    for status in states.Status:
        assert status.value in diagram


def test_an_unknown_generated_part_stops_the_build() -> None:
    with pytest.raises(ValueError, match="unknown generated part"):
        _hooks().render("<!-- generated: no-such-part -->\n")


def _doctor_checks() -> set[str]:
    """The name of every Check that stream_ingest/cli/doctor.py can report."""
    tree = ast.parse((ROOT / "stream_ingest/cli/doctor.py").read_text())
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "Check"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }


def test_troubleshooting_covers_every_doctor_check() -> None:
    page = (DOCS / "troubleshooting.md").read_text()
    checks = _doctor_checks()
    assert {"settings", "bucket", "redis persistence", "watch folder"} <= checks
    for name in checks:
        assert re.search(rf"^## .*\b{name}\b|^\| {name}: ", page, re.M), (
            f"troubleshooting.md says nothing about doctor's `{name}` check"
        )


def test_dates_only_in_the_benchmark_log() -> None:
    date = re.compile(r"\b20\d\d-\d\d-\d\d\b")
    pages = [ROOT / "README.md", *DOCS.rglob("*.md")]
    dated = [p.name for p in pages if p.name != "benchmark-log.md" and date.search(p.read_text())]
    assert not dated, f"dates outside the benchmark log: {dated}"


def test_the_operate_page_shows_a_terminal_capture_of_streams_watch() -> None:
    """The capture (tmux capture-pane) is shown as taken, and is one of the table the
    code draws today: its header has every column of stream_ingest/cli/lag_view.py."""
    from stream_ingest.cli.lag_view import COLUMNS

    capture = (DOCS / "img" / "streams-watch.txt").read_text()
    assert capture.strip() in _rendered("operate.md")
    header = next(line for line in capture.splitlines() if line.startswith("HOST"))
    assert header.split() == " ".join(COLUMNS).split()
