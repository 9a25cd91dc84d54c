"""Migration 0004 and callcenter.callbacks.models describe the same tables (this module imports
the package, so the comparison sees them even when run alone)."""

from __future__ import annotations

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

import callcenter.callbacks  # noqa: F401  (registers the 0004 tables on Base.metadata)
from callcenter.storage import db as dbmod
from callcenter.storage.models import Base


async def test_models_and_migration_0004_agree(db_dsn: str) -> None:
    engine = create_async_engine(db_dsn)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata))
    finally:
        await engine.dispose()
    assert diff == []
    assert {"callback_attempts", "callback_escalations"} <= set(Base.metadata.tables)


async def test_an_attempt_cannot_end_without_a_result(db_dsn: str) -> None:
    conn = await asyncpg.connect(**dbmod.asyncpg_dsn(db_dsn))
    try:
        cb = await conn.fetchval("INSERT INTO callbacks (phone, source, due_at) VALUES ('+12025550100', 'api', now()) "
                                 "RETURNING id")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("INSERT INTO callback_attempts (callback_id, attempt, agent, ended_at) "
                               "VALUES ($1, 1, 'PJSIP/1001', now())", cb)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("INSERT INTO callback_attempts (callback_id, attempt, agent, result, ended_at) "
                               "VALUES ($1, 1, 'PJSIP/1001', 'maybe', now())", cb)
        await conn.execute("INSERT INTO callback_attempts (callback_id, attempt, agent) "
                           "VALUES ($1, 1, 'PJSIP/1001')", cb)
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute("INSERT INTO callback_attempts (callback_id, attempt, agent) "
                               "VALUES ($1, 1, 'PJSIP/1002')", cb)
    finally:
        await conn.close()
