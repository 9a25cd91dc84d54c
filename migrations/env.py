"""Alembic environment (async, asyncpg). The DSN comes from the caller (``callcenter db
upgrade`` passes the configured one), never from a file in the repository."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from callcenter.storage.models import Base

config = context.config
target_metadata = Base.metadata


def _dsn() -> str:
    dsn = config.attributes.get("dsn") or config.get_main_option("sqlalchemy.url")
    if not dsn:
        raise RuntimeError("no database DSN given to the migrations (use `callcenter db upgrade`)")
    return dsn


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(_dsn())
    async with engine.connect() as conn:
        await conn.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_dsn(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
