#!/usr/bin/env bash
# Every benchmark, one JSON line each on stdout (progress on stderr):
#   ./bench.sh            full sizes (512 MiB..8 GiB; about 40 minutes here)
#   ./bench.sh --sizes 512,2048 --only latency
#   ./bench.sh --quick    small sizes (a few minutes)
#   ./bench.sh --only latency,throughput,overhead,many
set -euo pipefail
source "$(dirname "$0")/scripts/bootstrap.sh"
exec uv run python -m benchmarks "$@"
