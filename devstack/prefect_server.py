"""`prefect server start` for the local stack's SQLite database, with one change:
every write transaction begins IMMEDIATE.

Prefect begins most transactions DEFERRED: one reads, then writes, and if another
connection wrote in between, SQLite refuses the write at once (SQLITE_BUSY_SNAPSHOT;
its busy timeout does not apply), the server answers 503 and the client waits 2, 4,
8 s before asking again (PrefectHQ/prefect#18934). A burst of new recordings hits
this on nearly every run it creates: 20 runs took 45 s to create instead of 3.
Begun IMMEDIATE, a transaction takes the write lock first and waits its turn.
Postgres (docker-compose.yml) needs none of this.

Run: python -m devstack.prefect_server --host H --port P (the `prefect server
start` options).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any

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


def main() -> None:
    immediate_transactions()
    from prefect.cli import app

    sys.argv = ["prefect", "server", "start", *sys.argv[1:]]
    app()


if __name__ == "__main__":
    main()
