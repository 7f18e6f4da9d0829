#!/usr/bin/env bash
# ./test.sh [PYTEST ARGS]           the fast tier, to run after every change: ruff, then
#                                   the unit, block, flow, sensor, worker, CLI and
#                                   packaging tests, on every core (pytest-xdist)
# ./test.sh --all [PYTEST ARGS]     every test (what CI runs): the fast tier and the tests
#                                   marked slow on every core, then the serial ones one at
#                                   a time: tests/e2e (with a browser), tests/faults,
#                                   tests/model, all on the locked Prefect; then the
#                                   --oldest pass
# ./test.sh --oldest [PYTEST ARGS]  the oldest supported Prefect (pyproject.toml's
#                                   `prefect>=` bound) in place of the locked one, layered
#                                   on the locked environment (uv run --with): the contract
#                                   tests of Prefect's private API (tests/
#                                   test_prefect_private.py, one line each), then the
#                                   rest of the fast tier
# TEST_WORKERS sets the number of parallel pytest workers (default: one per core).
set -euo pipefail
source "$(dirname "$0")/scripts/bootstrap.sh"
mode=fast
if [ "${1:-}" = --all ] || [ "${1:-}" = --oldest ]; then
  mode=${1#--}
  shift
fi
uv run ruff check .
workers=(-n "${TEST_WORKERS:-auto}" --dist worksteal)

# Pytest's 5 (no test selected, e.g. a path the phase's tier leaves out) is no failure
# unless every phase gave it.
outcome() {
  local rc=0 five=0 code
  for code in "$@"; do
    case "$code" in 0) ;; 5) five=$((five + 1)) ;; *) rc=1 ;; esac
  done
  [ "$rc" = 0 ] && [ "$five" = $# ] && rc=5
  return "$rc"
}

# The fast tier against the oldest supported Prefect; fastapi keeps the project's own
# bound (Prefect 3.8 does not declare it).
oldest_pass() {
  local oldest fastapi
  oldest=$(sed -n 's/^ *"prefect>=\([0-9.]*\)[,"].*/\1/p' pyproject.toml)
  fastapi=$(sed -n 's/^ *"\(fastapi[^"]*\)".*/\1/p' pyproject.toml)
  local run=(uv run --with "prefect==$oldest" --with "$fastapi")
  echo "--- the oldest supported Prefect: $oldest ($fastapi)"
  # uv must have swapped it: the run fails here if the overlay still holds another.
  [ -n "$oldest" ] && [ -n "$fastapi" ] || { echo "no prefect>= or fastapi in pyproject" >&2; return 1; }
  "${run[@]}" python -c "import sys, prefect, fastapi
print('prefect', prefect.__version__, 'fastapi', fastapi.__version__, 'from', prefect.__path__[0])
sys.exit(prefect.__version__ != sys.argv[1])" "$oldest" || return 1
  local contract=0 rest=0
  "${run[@]}" pytest -v "$@" tests/test_prefect_private.py || contract=$?
  "${run[@]}" pytest -q "${workers[@]}" --deselect tests/test_prefect_private.py "$@" || rest=$?
  outcome "$contract" "$rest"
}

if [ "$mode" = fast ]; then
  rc=0
  uv run pytest -q "${workers[@]}" "$@" || rc=$?
  [ "$rc" = 5 ] && echo "no fast-tier test selected; ./test.sh --all $* runs the full tier" >&2
  exit "$rc"
fi
if [ "$mode" = oldest ]; then
  rc=0
  oldest_pass "$@" || rc=$?
  exit "$rc"
fi

scripts/ensure-test-tools.sh
# Every phase runs whatever the others' outcome, so that CI reports every failure.
parallel=0 serial=0 oldest=0
uv run pytest -q "${workers[@]}" --all --serial=skip "$@" || parallel=$?
uv run pytest -q --all --serial=only "$@" || serial=$?
oldest_pass "$@" || oldest=$?
outcome "$parallel" "$serial" "$oldest"
