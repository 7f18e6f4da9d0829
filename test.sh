#!/usr/bin/env bash
# Every test: unit, blocks, flows, sensor, packaging and end-to-end.
set -euo pipefail
source "$(dirname "$0")/scripts/bootstrap.sh"
uv run ruff check .
exec uv run pytest -q "$@"
