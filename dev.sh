#!/usr/bin/env bash
# The whole product on this machine: Prefect server + UI, Redis, moto S3 (in memory),
# worker and sensor, watching ./recordings (or --watch DIR). Ctrl-C stops it all.
set -euo pipefail
source "$(dirname "$0")/scripts/bootstrap.sh"
exec uv run stream-ingest dev "$@"
