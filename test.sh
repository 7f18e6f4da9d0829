#!/usr/bin/env bash
# ./test.sh [PYTEST ARGS]        the fast tier, to run after every change: ruff, then the
#                                unit, block, flow, sensor, worker, CLI and packaging tests,
#                                on every core (pytest-xdist)
# ./test.sh --all [PYTEST ARGS]  every test (what CI runs): the fast tier and the tests
#                                marked slow on every core, then the serial ones one at a
#                                time: tests/e2e (with a browser), tests/faults, tests/model
# TEST_WORKERS sets the number of parallel pytest workers (default: one per core).
set -euo pipefail
source "$(dirname "$0")/scripts/bootstrap.sh"
all=0
if [ "${1:-}" = --all ]; then
  all=1
  shift
fi
uv run ruff check .
workers=(-n "${TEST_WORKERS:-auto}" --dist worksteal)

if [ "$all" = 0 ]; then
  rc=0
  uv run pytest -q "${workers[@]}" "$@" || rc=$?
  # pytest's 5: no test selected, e.g. a path under tests/e2e, which is full tier only.
  [ "$rc" = 5 ] && echo "no fast-tier test selected; ./test.sh --all $* runs the full tier" >&2
  exit "$rc"
fi

scripts/ensure-test-tools.sh
# Both phases run whatever the first one's outcome, so that CI reports every failure;
# a phase the arguments leave empty (pytest's 5) is no failure unless both are.
parallel=0 serial=0
uv run pytest -q "${workers[@]}" --all --serial=skip "$@" || parallel=$?
uv run pytest -q --all --serial=only "$@" || serial=$?
if [ "$parallel" = 5 ] && [ "$serial" = 5 ]; then exit 5; fi
[ "$parallel" = 5 ] && parallel=0
[ "$serial" = 5 ] && serial=0
[ "$parallel" = 0 ] && [ "$serial" = 0 ]
