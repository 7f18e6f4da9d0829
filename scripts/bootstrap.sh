#!/usr/bin/env bash
# Make sure uv exists and the locked environment is installed. Sourced by ./dev.sh
# and ./test.sh so that each of them works on a fresh machine by itself.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v uv >/dev/null 2>&1; then
  export PATH="$HOME/.local/bin:$PATH"
  command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet --user uv \
    || python3 -m pip install --quiet uv
fi
uv sync --frozen --quiet --extra devstack
