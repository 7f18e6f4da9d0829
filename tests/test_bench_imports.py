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


def test_cpu_leaves_the_blocks_as_the_settings_say(monkeypatch, tmp_path) -> None:
    """`cpu` measures unsigned requests last: the benchmarks run after it in the same
    `./bench.sh` must find the blocks registered from the run's settings again."""
    from types import SimpleNamespace

    from benchmarks import cpu

    registered: list[bool] = []
    monkeypatch.setattr(cpu, "register_blocks", lambda s: registered.append(s.s3_payload_signing))
    monkeypatch.setattr(cpu, "configure", lambda **_: None)

    def case(stack, case, signing, *_):
        return {"cpu_s_per_gib": {"total_client": 1.0}, "boto3_upload_file": {"cpu_s_per_gib": 1.0}}

    monkeypatch.setattr(cpu, "_case", case)
    monkeypatch.setenv("STREAM_INGEST_S3_PAYLOAD_SIGNING", "true")
    lines = cpu.run(SimpleNamespace(workdir=str(tmp_path)), 1, 1)

    assert registered == [True, False, True]
    assert [("ratio_total_client_vs_boto3_signing" in x) for x in lines] == [
        False,
        False,
        True,
        True,
    ]
