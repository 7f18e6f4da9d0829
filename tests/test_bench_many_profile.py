"""`./bench.sh --only many --profile DIR`: the warm worker of each stream count runs
under py-spy into DIR/many-<streams>.txt; the floor (no worker) never does.
`--repeat N`: N rounds of the pair at each count, and the median of their ratios;
close -> object also as the seconds ours adds to the floor's."""

from __future__ import annotations

import os
import signal
from typing import Any

from benchmarks import many
from benchmarks.__main__ import main


def test_the_warm_worker_of_each_count_is_profiled_into_its_own_file(monkeypatch, tmp_path):
    asked: list[tuple[str, int, str | None]] = []

    def fake_run(stack, streams, size_mib, rate_mb_s, worker_type=many.WARM, profile_to=None):
        asked.append((worker_type, streams, profile_to))
        return {"bench": "many_streams", "worker": worker_type, "streams": streams}

    monkeypatch.setattr(many, "run", fake_run)
    lines: list[dict[str, Any]] = list(
        many.run_all(None, [3, 5], 1, 1.0, [many.FLOOR, many.WARM], str(tmp_path))
    )

    assert sorted(asked) == [
        (many.FLOOR, 3, None),
        (many.FLOOR, 5, None),
        (many.WARM, 3, str(tmp_path / "many-3.txt")),
        (many.WARM, 5, str(tmp_path / "many-5.txt")),
    ]
    assert [line["bench"] for line in lines].count("many_vs_floor") == 2


def test_the_command_line_hands_its_profile_folder_to_many(monkeypatch, tmp_path):
    handed: list[tuple[str | None, int]] = []

    class FakeStack:
        workdir = str(tmp_path)

        def __init__(self, *args: Any) -> None:
            pass

        def __enter__(self) -> FakeStack:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    def fake_run_all(stack, counts, size_mib, rate_mb_s, workers, profile_dir=None, rounds=1):
        handed.append((profile_dir, rounds))
        return iter(())

    import benchmarks.stack

    # main() clears STREAM_INGEST_* and PREFECT_* and takes SIGTERM: not this session's.
    monkeypatch.setattr(os, "environ", dict(os.environ))
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    monkeypatch.setattr(benchmarks.stack, "Stack", FakeStack)
    monkeypatch.setattr(many, "run_all", fake_run_all)
    monkeypatch.setattr("benchmarks.__main__.environment", lambda quick: {"bench": "environment"})
    assert main(["--only", "many", "--streams", "3", "--profile", str(tmp_path)]) == 0
    assert main(["--only", "many", "--streams", "3", "--repeat", "3"]) == 0
    assert handed == [(str(tmp_path), 1), (None, 3)]


def test_rounds_of_a_count_alternate_their_order_and_end_with_the_median(monkeypatch):
    order: list[str] = []
    p95 = iter([2.0, 4.0, 9.0, 2.0, 2.0, 6.0])  # in the order run: ours / floor 2, 4.5, 3

    def fake_run(stack, streams, size_mib, rate_mb_s, worker_type=many.WARM, profile_to=None):
        order.append(worker_type)
        value = next(p95)
        return {"bench": "many_streams", "worker": worker_type, "close_to_object_s_p95": value}

    monkeypatch.setattr(many, "run", fake_run)
    lines = list(many.run_all(None, [20], 1, 1.0, [many.FLOOR, many.WARM], rounds=3))

    assert order == [many.FLOOR, many.WARM, many.WARM, many.FLOOR, many.FLOOR, many.WARM]
    pairs = [line for line in lines if line["bench"] == "many_vs_floor"]
    assert [p["ratio_close_to_object_s_p95"] for p in pairs] == [2.0, 4.5, 3.0]
    median = lines[-1]
    assert median["bench"] == "many_vs_floor_median" and median["rounds"] == 3
    assert median["ratio_close_to_object_s_p95"] == 3.0
    assert median["ratio_close_to_object_s_p95_each"] == [2.0, 4.5, 3.0]


def test_a_floor_done_before_the_close_gets_a_gap_not_a_ratio():
    """On a store that completes at once the floor can land before the writer's close
    returns: the seconds ours adds are reported, not a ratio to a negative floor."""
    ours = {"streams": 20, "close_to_object_s_p50": 0.4, "close_to_object_s_p95": 0.9}
    floor_line = {"close_to_object_s_p50": -0.05, "close_to_object_s_p95": 0.3}

    line = many.versus(ours, floor_line)

    assert line["gap_close_to_object_s_p50"] == 0.45 and "ratio_close_to_object_s_p50" not in line
    assert line["gap_close_to_object_s_p95"] == 0.6 and line["ratio_close_to_object_s_p95"] == 3.0
