"""The ORM models and the Alembic migrations describe the same schema, and migrations run
both ways on a real server."""

from __future__ import annotations

import asyncio

import asyncpg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from callcenter.storage import db as dbmod
from callcenter.storage.models import Base


async def _diff(dsn: str) -> list:
    engine = create_async_engine(dsn)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
                )
            )
    finally:
        await engine.dispose()


async def _tables(dsn: str) -> set[str]:
    conn = await asyncpg.connect(**dbmod.asyncpg_dsn(dsn))
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r["tablename"] for r in rows}
    finally:
        await conn.close()


async def test_models_and_migrations_agree(db_dsn: str) -> None:
    diff = await _diff(db_dsn)
    assert diff == [], f"models and migrations differ: {diff}"


async def test_migrate_up_and_down_on_a_real_server(empty_db_dsn: str) -> None:
    assert await _tables(empty_db_dsn) == set()
    await asyncio.to_thread(dbmod.upgrade, empty_db_dsn)
    tables = await _tables(empty_db_dsn)
    expected = {
        "customers", "customer_phones", "interactions", "agents", "agent_endpoints", "teams",
        "team_members", "calls", "call_events", "agent_state_events", "callbacks",
        "survey_responses", "api_tokens", "audit_log", "alembic_version",
    }
    assert expected <= tables
    engine = create_async_engine(empty_db_dsn)
    try:
        assert await dbmod.current_revision(engine) is not None
    finally:
        await engine.dispose()
    await asyncio.to_thread(dbmod.downgrade, empty_db_dsn, "base")
    assert await _tables(empty_db_dsn) == {"alembic_version"}
    # and up again: downgrade left nothing behind that blocks a fresh upgrade
    await asyncio.to_thread(dbmod.upgrade, empty_db_dsn)
    assert expected <= await _tables(empty_db_dsn)
