#!/usr/bin/env bash
# Every test: unit, blocks, flows, sensor, CLI, packaging, end-to-end (with a browser)
# and fault injection.
set -euo pipefail
source "$(dirname "$0")/scripts/bootstrap.sh"
scripts/ensure-test-tools.sh
uv run ruff check .
exec uv run pytest -q "$@"
