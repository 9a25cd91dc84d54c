"""The ORM models and the Alembic migrations describe the same schema, and migrations run
both ways on a real server."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
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


async def _fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(**dbmod.asyncpg_dsn(dsn))
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def test_0006_survey_indexes_and_team_webhooks_up_and_down(empty_db_dsn: str) -> None:
    await asyncio.to_thread(dbmod.upgrade, empty_db_dsn, "0005")
    # a receiver registered before 0006: it keeps getting all teams (team_id NULL)
    await _fetch(empty_db_dsn, "INSERT INTO webhooks (url, secret) VALUES ('https://old.example/h', repeat('o', 20))")
    await _fetch(empty_db_dsn, "INSERT INTO teams (id, name) VALUES (1, 'red'), (2, 'blue')")
    await asyncio.to_thread(dbmod.upgrade, empty_db_dsn, "0006")

    indexes = {r["indexname"]: r["indexdef"] for r in await _fetch(
        empty_db_dsn, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'survey_responses'")}
    assert indexes["ix_survey_responses_customer_at"].endswith("(customer_id, at DESC, id DESC)")
    assert indexes["ix_survey_responses_at"].endswith("USING btree (at)")
    assert [r["team_id"] for r in await _fetch(empty_db_dsn, "SELECT team_id FROM webhooks")] == [None]
    insert = "INSERT INTO webhooks (url, secret, team_id) VALUES ($1, repeat('s', 20), $2)"
    await _fetch(empty_db_dsn, insert, "https://red.example/h", 1)
    await _fetch(empty_db_dsn, insert, "https://blue.example/h", 2)
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await _fetch(empty_db_dsn, insert, "https://nobody.example/h", 99)
    await _fetch(empty_db_dsn, "DELETE FROM teams WHERE id = 1")  # its receivers go with it
    assert sorted(r["url"] for r in await _fetch(empty_db_dsn, "SELECT url FROM webhooks")) == [
        "https://blue.example/h", "https://old.example/h"]

    await asyncio.to_thread(dbmod.downgrade, empty_db_dsn, "0005")
    cols = {r["column_name"] for r in await _fetch(
        empty_db_dsn, "SELECT column_name FROM information_schema.columns WHERE table_name = 'webhooks'")}
    assert "team_id" not in cols
    assert {r["indexname"] for r in await _fetch(
        empty_db_dsn, "SELECT indexname FROM pg_indexes WHERE tablename = 'survey_responses'")} == {
        "pk_survey_responses", "ix_survey_responses_call_id"}
    assert len(await _fetch(empty_db_dsn, "SELECT 1 FROM webhooks")) == 2  # the receivers survive a downgrade
