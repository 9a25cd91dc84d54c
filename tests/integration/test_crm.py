"""CRM import (COPY, one transaction, precise rejections) and the one-round-trip lookup."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import event

from callcenter.crm.importer import ImportError_, import_csv
from callcenter.crm.repository import CustomerRepository
from callcenter.storage import db as dbmod

FIXTURE = Path(__file__).parent.parent / "fixtures" / "crm" / "customers.csv"


@pytest.fixture
async def conn(database: dbmod.Database):
    c = await asyncpg.connect(**database.connect_kwargs())
    await c.execute("INSERT INTO agents (name, extension) VALUES ('Alice', '1001'), ('Bob', '1002')")
    yield c
    await c.close()


async def test_import_then_lookup_by_any_phone_form(conn, database) -> None:
    report = await import_csv(conn, FIXTURE, region="US", show_progress=False)
    assert report.rejected == []
    assert (report.rows, report.imported, report.phones, report.written) == (3, 3, 4, True)
    # the import leaves the tables vacuumed and analysed, ready for routing lookups
    done = await conn.fetch("SELECT relname FROM pg_stat_user_tables WHERE last_vacuum IS NOT NULL "
                            "AND last_analyze IS NOT NULL AND relname IN ('customers', 'customer_phones')")
    assert sorted(r["relname"] for r in done) == ["customer_phones", "customers"]

    repo = CustomerRepository(database.engine, default_region="US")
    for form in ("+12025550143", "12025550143", "(202) 555-0143", "202.555.0143", "tel:+12025550143"):
        card = await repo.lookup(form)
        assert card is not None and card.name == "Anna Ivanova", form
    juergen = await repo.lookup("00491512 3456789")
    assert juergen is not None
    assert juergen.name == "Jürgen Müller" and juergen.vip and juergen.tier == "vip"
    assert juergen.assigned_agent == "Alice"
    assert juergen.tags == ("key-account", "berlin")
    assert juergen.phones == (("+4930901820", None), ("+4915123456789", "mobile"))
    carlos = await repo.lookup("2025550188")
    assert carlos is not None
    assert carlos.tier == "vip" and carlos.do_not_call is True and carlos.assigned_agent == "Bob"
    assert carlos.notes == 'Called twice about invoice #42, "urgent"'
    assert await repo.lookup("2025550199") is None
    assert await repo.lookup("anonymous") is None
    assert await repo.lookup("not a number") is None


async def test_lookup_is_one_round_trip_with_last_interactions(conn, database) -> None:
    await import_csv(conn, FIXTURE, region="US", show_progress=False)
    cid = await conn.fetchval("SELECT customer_id FROM customer_phones WHERE e164 = '+12025550143'")
    for i in range(7):
        await conn.execute(
            "INSERT INTO interactions (customer_id, at, channel, direction, outcome, agent_id, summary, call_id) "
            "VALUES ($1, now() - make_interval(days => $2), 'phone', 'inbound', 'answered', "
            "(SELECT id FROM agents WHERE name = 'Bob'), $3, $4)",
            cid, i, f"talk {i}", f"call-{i}",
        )
    statements: list[str] = []
    event.listen(database.engine.sync_engine, "before_cursor_execute",
                 lambda *a: statements.append(a[2]))
    repo = CustomerRepository(database.engine, default_region="US", interactions=5)
    card = await repo.lookup("2025550143")
    assert card is not None
    assert [i.summary for i in card.interactions] == [f"talk {i}" for i in range(5)]  # newest first
    assert card.interactions[0].agent == "Bob" and card.interactions[0].call_id == "call-0"
    assert len([s for s in statements if "customer_phones" in s]) == 1


async def test_rejected_rows_are_reported_and_nothing_is_written(conn, tmp_path) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(
        "name,phone,tier,do_not_call,assigned_agent\n"
        "Good One,2025550100,,,\n"
        "Bad Phone,abc,,,\n"
        ",2025550101,,,\n"
        "Dup,202-555-0100,,,\n"
        "Maybe,2025550102,,perhaps,\n"
        "Ghost Agent,2025550103,,,Zed\n"
        "Short,2025550104\n",
        encoding="utf-8",
    )
    report = await import_csv(conn, f, region="US", show_progress=False)
    got = [(r.line, r.column) for r in report.rejected]
    assert got == [(3, "phone"), (4, "name"), (5, "phone"), (6, "do_not_call"), (7, "assigned_agent"), (8, "-")]
    assert "already used on line 2" in report.rejected[2].reason
    assert report.written is False
    assert await conn.fetchval("SELECT count(*) FROM customers") == 0

    report = await import_csv(conn, f, region="US", skip_invalid=True, show_progress=False)
    assert report.written and report.imported == 1
    assert await conn.fetchval("SELECT count(*) FROM customers") == 1

    # the same number again, in another form: it already belongs to a customer
    again = tmp_path / "again.csv"
    again.write_text("name,phone\nOther,+1 202 555 0100\n", encoding="utf-8")
    report = await import_csv(conn, again, region="US", show_progress=False)
    assert len(report.rejected) == 1 and "already belongs to customer #" in report.rejected[0].reason


async def test_dry_run_writes_nothing(conn) -> None:
    report = await import_csv(conn, FIXTURE, region="US", dry_run=True, show_progress=False)
    assert report.rejected == [] and report.written is False
    assert await conn.fetchval("SELECT count(*) FROM customers") == 0


async def test_file_level_errors(conn, tmp_path) -> None:
    f = tmp_path / "x.csv"
    f.write_text("name,telephone\nA,1\n", encoding="utf-8")
    with pytest.raises(ImportError_, match="unknown column"):
        await import_csv(conn, f, show_progress=False)
    f.write_text("name,tier\nA,vip\n", encoding="utf-8")
    with pytest.raises(ImportError_, match="missing required column 'phone'"):
        await import_csv(conn, f, show_progress=False)
    f.write_bytes(b"name,phone\n\xff\xfe,1\n")
    with pytest.raises(ImportError_, match="not UTF-8"):
        await import_csv(conn, f, show_progress=False)


async def test_import_is_one_transaction(conn, tmp_path) -> None:
    """If the write fails half way, nothing of the file remains."""
    await conn.execute(
        "ALTER TABLE customer_phones ADD CONSTRAINT no_555_0199 CHECK (e164 <> '+12025550199')"
    )
    f = tmp_path / "t.csv"
    f.write_text("name,phone\nA,2025550100\nB,2025550199\n", encoding="utf-8")
    with pytest.raises(asyncpg.CheckViolationError):
        await import_csv(conn, f, region="US", show_progress=False)
    assert await conn.fetchval("SELECT count(*) FROM customers") == 0


async def test_the_pooled_lookup_returns_the_same_card(conn, database) -> None:
    """Routing uses an asyncpg pool (prepared statement) for the hot path; same answer."""
    await import_csv(conn, FIXTURE, region="US", show_progress=False)
    cid = await conn.fetchval("SELECT customer_id FROM customer_phones WHERE e164 = '+4915123456789'")
    await conn.execute("INSERT INTO interactions (customer_id, summary, call_id) VALUES ($1, 'hello', 'c-9')", cid)
    plain = CustomerRepository(database.engine, default_region="US")
    pooled = CustomerRepository(database.engine, default_region="US", pool=await database.pool())
    for number in ("+49 1512 3456789", "(202) 555-0143", "2025550199"):
        assert await pooled.lookup(number) == await plain.lookup(number)
    card = await pooled.lookup("+49 1512 3456789")
    assert card is not None and card.interactions[0].summary == "hello"


async def test_the_hot_path_pool_returns_connections_without_a_reset_round_trip(conn, database) -> None:
    """Its statements leave no session state, so a connection goes back to the pool without
    asyncpg's reset statement (one more statement and round trip per routed call). The server
    sees the query as the connection's last one; an open transaction is still rolled back."""
    pool = await database.pool(size=1)
    pid = await pool.fetchval("SELECT pg_backend_pid() /* cc-hot-path */")
    last = await conn.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid)
    assert last == "SELECT pg_backend_pid() /* cc-hot-path */"
    async with pool.acquire() as c:
        tx = c.transaction()
        await tx.start()  # left open: a caller's bug
        await c.execute("CREATE TEMP TABLE cc_left_open (x int)")
    async with pool.acquire() as c:
        assert await c.fetchval("SELECT pg_backend_pid()") == pid  # the same connection
        assert not c.is_in_transaction()
        assert await c.fetchval("SELECT to_regclass('pg_temp.cc_left_open')") is None  # rolled back
