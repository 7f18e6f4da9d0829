"""Every benchmark module imports: a benchmark that fails at its first line is found
here, not half an hour into `./bench.sh`."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted(
    p.stem for p in (Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py")
)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_the_benchmark_imports(name: str) -> None:
    importlib.import_module(f"benchmarks.{name}")


def test_what_the_flow_host_times_exists() -> None:
    """The throughput benchmark's probe wraps product functions by name: one renamed
    in the product stops the benchmark at its first file."""
    from benchmarks.host import TIMED

    for owner, attr, _ in TIMED:
        assert callable(getattr(owner, attr, None)), f"{owner.__name__}.{attr}"
