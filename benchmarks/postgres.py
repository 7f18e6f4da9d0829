"""A scratch PostgreSQL database for the benchmarks' Prefect server
(`./bench.sh --prefect-database URL`): what the local stack's SQLite measures
against the database a site's Prefect server runs on (docker-compose.yml).

The URL names a PostgreSQL server you run and a database on it to connect to
(e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/postgres; Prefect's server uses
the asyncpg driver whatever the URL names). The benchmark creates a database of its
own there (`si_bench_<random>`), runs Prefect on it, and drops it at the end
(`DROP DATABASE ... WITH (FORCE)`: PostgreSQL 13 or newer; on an older server the
database is left there, and the log says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator

from sqlalchemy.engine import URL, make_url

from benchmarks.common import log


class DatabaseUnusable(Exception):
    """The URL is not a PostgreSQL server this user can create a database on."""


def server_of(url: str) -> URL:
    """The parsed URL, or DatabaseUnusable saying why (never with its password)."""
    try:
        parsed = make_url(url)
    except Exception:
        raise DatabaseUnusable(
            "--prefect-database: not a database URL "
            "(postgresql+asyncpg://user[:password]@host:port/database)"
        ) from None
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        raise DatabaseUnusable(
            f"--prefect-database: {parsed.get_backend_name()} is not PostgreSQL "
            "(the local stack's default is SQLite already)"
        )
    return parsed.set(drivername="postgresql+asyncpg")  # the driver Prefect's server uses


def described(server: URL) -> str:
    """What the environment line records: no user, no password."""
    return f"postgresql on {server.host or 'localhost'}:{server.port or 5432}"


@contextlib.contextmanager
def scratch_database(url: str) -> Iterator[tuple[str, str]]:
    """(Prefect's connection URL for a new, empty database; the server and its
    version, for the environment line)."""
    server = server_of(url)
    admin = server.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"si_bench_{uuid.uuid4().hex[:8]}"
    version = asyncio.run(_run(admin, server, f'CREATE DATABASE "{name}"'))
    try:
        prefect_url = server.set(database=name).render_as_string(hide_password=False)
        yield prefect_url, f"{described(server)}, version {version}"
    finally:
        try:
            asyncio.run(_run(admin, server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        except DatabaseUnusable as exc:  # the results stand; say what is left behind
            log(f"{exc} (database {name} is left on the server)")


async def _run(dsn: str, server: URL, statement: str) -> str:
    import asyncpg

    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except (
        TimeoutError,
        OSError,
        ValueError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
    ) as exc:
        raise DatabaseUnusable(
            f"--prefect-database: cannot connect to {described(server)}: "
            f"{type(exc).__name__}: {_without(exc, server)}"
        ) from None
    try:
        await conn.execute(statement)
        return str(await conn.fetchval("SHOW server_version"))
    except asyncpg.PostgresError as exc:
        raise DatabaseUnusable(
            f"--prefect-database: {statement.split(' ')[0].lower()} a database on "
            f"{described(server)}: {_without(exc, server)}"
        ) from None
    finally:
        await conn.close()


def _without(exc: BaseException, server: URL) -> str:
    """The error's text with the password cut out (a driver may echo its DSN)."""
    text = str(exc)
    return text.replace(server.password, "***") if server.password else text
