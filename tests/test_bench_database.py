"""`./bench.sh --prefect-database URL` (benchmarks/postgres.py): what it accepts, and
that a server it cannot use is said in one line without the URL's password."""

from __future__ import annotations

import pytest

from benchmarks.postgres import DatabaseUnusable, described, scratch_database, server_of
from stream_ingest.devstack.services import free_port


def test_only_a_postgresql_url_is_taken_and_prefect_gets_asyncpg():
    assert server_of("postgresql+asyncpg://u@db.example:6543/postgres").port == 6543
    assert server_of("postgresql://u@db/postgres").drivername == "postgresql+asyncpg"
    assert server_of("postgres://u@db/postgres").drivername == "postgresql+asyncpg"
    with pytest.raises(DatabaseUnusable, match="sqlite is not PostgreSQL"):
        server_of("sqlite+aiosqlite:///x.db")
    with pytest.raises(DatabaseUnusable, match="not a database URL"):
        server_of("postgres at db.example")


def test_the_environment_line_names_the_server_without_credentials():
    server = server_of("postgresql+asyncpg://admin:s3cret@db.example:6543/postgres")
    assert described(server) == "postgresql on db.example:6543"


def test_an_unreachable_server_is_one_line_without_the_password():
    url = f"postgresql+asyncpg://admin:s3cret@127.0.0.1:{free_port()}/postgres"
    with pytest.raises(DatabaseUnusable) as caught, scratch_database(url):
        pytest.fail("no database was created")
    message = str(caught.value)
    assert message.startswith("--prefect-database: cannot connect to postgresql on 127.0.0.1:")
    assert "s3cret" not in message and "\n" not in message


def test_a_driver_error_that_echoes_the_dsn_loses_the_password(monkeypatch):
    import asyncpg

    async def connect(dsn: str, timeout: float) -> None:
        raise asyncpg.ClientConfigurationError(f"invalid sslmode in {dsn}")

    monkeypatch.setattr(asyncpg, "connect", connect)
    url = "postgresql+asyncpg://admin:s3cret@db.example:6543/postgres?sslmode=bogus"
    with pytest.raises(DatabaseUnusable) as caught, scratch_database(url):
        pytest.fail("no database was created")
    message = str(caught.value)
    assert "ClientConfigurationError: invalid sslmode in postgresql://admin:***@" in message
    assert "s3cret" not in message
