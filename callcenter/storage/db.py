"""Database connection: an explicit DSN, or the embedded server; migrations; engines.

``Database`` is the one place that knows where PostgreSQL is. ``open_database(settings)``
starts the embedded server when no DSN is configured (creating the ``callcenter`` database on
first use) and returns a ``Database`` with an async engine. The DSN's password never reaches
a log line (``redacted_dsn``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from callcenter.settings import Settings
from callcenter.storage.embedded import EmbeddedPostgres

log = logging.getLogger(__name__)

# The repository's migrations/ (a source checkout or an editable install); an installed wheel
# has no repository around it, so CALLCENTER_MIGRATIONS_DIR names the folder (the image sets it).
MIGRATIONS_DIR = Path(os.environ.get("CALLCENTER_MIGRATIONS_DIR") or Path(__file__).resolve().parents[2] / "migrations")


def redacted_dsn(dsn: str) -> str:
    return make_url(dsn).render_as_string(hide_password=True)


def to_async_dsn(dsn: str) -> str:
    """Accept ``postgres://``/``postgresql://`` DSNs as people write them; use asyncpg."""
    url = make_url(dsn)
    if url.drivername in ("postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"):
        url = url.set(drivername="postgresql+asyncpg")
    if url.drivername != "postgresql+asyncpg":
        raise ValueError(f"unsupported database driver {url.drivername!r}: callcenter needs PostgreSQL")
    return url.render_as_string(hide_password=False)


def asyncpg_dsn(dsn: str) -> dict[str, Any]:
    """Keyword arguments for ``asyncpg.connect`` (COPY bypasses SQLAlchemy)."""
    url = make_url(dsn)
    kwargs: dict[str, Any] = {"user": url.username, "password": url.password, "database": url.database}
    host = url.query.get("host", url.host)
    if isinstance(host, tuple):
        host = host[0]
    port = url.query.get("port", url.port)
    if isinstance(port, tuple):
        port = port[0]
    kwargs["host"] = host
    if port:
        kwargs["port"] = int(port)
    return {k: v for k, v in kwargs.items() if v is not None}


def with_settings(kwargs: dict[str, Any], **settings: str) -> dict[str, Any]:
    """``asyncpg.connect`` keyword arguments with ``settings`` added to their server settings
    (``application_name``, ``plan_cache_mode``...)."""
    return {**kwargs, "server_settings": {**kwargs.get("server_settings", {}), **settings}}


@dataclass
class Database:
    dsn: str
    engine: AsyncEngine
    embedded: EmbeddedPostgres | None = None
    sessions: async_sessionmaker[Any] = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._pool: Any = None
        self.lookup_pool: Any = None

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        await self.engine.dispose()
        if self.embedded is not None:
            self.embedded.close()

    def connect_kwargs(self) -> dict[str, Any]:
        return asyncpg_dsn(self.dsn)

    async def pool(self, size: int = 4) -> Any:
        """An asyncpg pool for hot paths (CRM lookups and leads during routing, the screen pop's
        card); closed with ``close()``.

        For single statements that leave no session state behind (no ``SET``, advisory lock,
        ``LISTEN``, cursor or temp table): a connection goes back to the pool without asyncpg's
        default reset, a fifth statement (``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
        RESET ALL``) and a round trip after every query, one per routed call. An open
        transaction is still rolled back (asyncpg does that before calling ``reset``)."""
        import asyncpg

        if self._pool is None:
            self._pool = await asyncpg.create_pool(**self.connect_kwargs(), min_size=1, max_size=size,
                                                   timeout=5, command_timeout=5, reset=_no_session_state)
        return self._pool


async def _no_session_state(_conn: Any) -> None:
    """The pool's reset: nothing to reset, see ``Database.pool``."""


def make_engine(dsn: str, *, pool_size: int = 10, connect_timeout_s: float = 5.0) -> AsyncEngine:
    return create_async_engine(
        to_async_dsn(dsn),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args={"timeout": connect_timeout_s, "server_settings": {"application_name": "callcenter"}},
    )


async def _ensure_database(admin_dsn: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(**asyncpg_dsn(admin_dsn))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            log.info("creating database %s", name)
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def open_database(settings: Settings) -> Database:
    db = settings.database
    if db.dsn is not None:
        dsn = to_async_dsn(db.dsn.get_secret_value())
        log.info("database: %s", redacted_dsn(dsn))
        return Database(dsn, make_engine(dsn, pool_size=db.pool_size, connect_timeout_s=db.connect_timeout_s))
    server = EmbeddedPostgres(db.data_dir())
    await asyncio.to_thread(server.start)
    await _ensure_database(server.dsn("postgres"), db.embedded_database)
    dsn = server.dsn(db.embedded_database)
    log.info("database: embedded PostgreSQL in %s", db.data_dir())
    return Database(dsn, make_engine(dsn, pool_size=db.pool_size), embedded=server)


# --- migrations ------------------------------------------------------------------------------


def alembic_config(dsn: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["dsn"] = to_async_dsn(dsn)
    return cfg


def upgrade(dsn: str, revision: str = "head") -> None:
    """Run in a thread without an event loop (alembic's env runs its own)."""
    from alembic import command

    command.upgrade(alembic_config(dsn), revision)


def downgrade(dsn: str, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(dsn), revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        exists = await conn.scalar(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
        if not exists:
            return None
        return await conn.scalar(text("SELECT version_num FROM alembic_version"))
