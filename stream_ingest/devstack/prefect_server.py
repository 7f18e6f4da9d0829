"""`prefect server start` for the local stack's SQLite database, with two changes:
every write transaction begins IMMEDIATE, and websockets do not count against the
server's limit of concurrent requests.

Prefect begins most transactions DEFERRED: one reads, then writes, and if another
connection wrote in between, SQLite refuses the write at once (SQLITE_BUSY_SNAPSHOT;
its busy timeout does not apply), the server answers 503 and the client waits 2, 4,
8 s before asking again (PrefectHQ/prefect#18934). A burst of new recordings hits
this on nearly every run it creates: 20 runs took 45 s to create instead of 3.
Begun IMMEDIATE, a transaction takes the write lock first and waits its turn.

On SQLite Prefect also admits at most 100 requests at once (`RequestLimitMiddleware`,
meant for writes), and it counts every websocket (and the app's lifespan) for as
long as it stays open: each flow run, worker and sensor holds one or two. With about
100 open (some 30-50 flow-run processes on the process worker) every later HTTP
request, /api/health included, waits for ever while the server sits idle. So only
HTTP requests pass the limiter here; the few writes websockets make (a worker's
connect and heartbeats) wait for SQLite's write lock like any other, begun IMMEDIATE.

Postgres (docker-compose.yml) needs none of this.

Run: python -m stream_ingest.devstack.prefect_server --host H --port P (the `prefect server
start` options, except `--background`: that starts a server of its own, unpatched).
"""

from __future__ import annotations

import sys

from stream_ingest.flows.prefect_private import sqlite_transactions_immediate, websockets_unlimited


def main() -> None:
    sqlite_transactions_immediate()
    websockets_unlimited()
    from prefect.cli import app

    sys.argv = ["prefect", "server", "start", *sys.argv[1:]]
    app()


if __name__ == "__main__":
    main()
