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

Run: python -m devstack.prefect_server --host H --port P (the `prefect server
start` options, except `--background`: that starts a server of its own, unpatched).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any

from prefect.server.api import server as api_server
from prefect.server.database import configurations


def immediate_transactions() -> None:
    sqlite = configurations.AioSqliteConfiguration
    begin = sqlite.begin_transaction

    @contextlib.asynccontextmanager
    async def begin_immediate(
        self: Any, session: Any, with_for_update: bool = False
    ) -> AsyncIterator[Any]:
        async with begin(self, session, with_for_update=True) as transaction:
            yield transaction

    sqlite.begin_transaction = begin_immediate  # type: ignore[method-assign]


def websockets_outside_the_request_limit() -> None:
    middleware = api_server.RequestLimitMiddleware
    limited = middleware.__call__

    async def call(self: Any, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await limited(self, scope, receive, send)
        else:
            await self.app(scope, receive, send)

    middleware.__call__ = call  # type: ignore[method-assign]


def main() -> None:
    immediate_transactions()
    websockets_outside_the_request_limit()
    from prefect.cli import app

    sys.argv = ["prefect", "server", "start", *sys.argv[1:]]
    app()


if __name__ == "__main__":
    main()
