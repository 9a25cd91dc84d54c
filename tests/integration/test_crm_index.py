"""The in-memory routing index over a real PostgreSQL: loaded at start, kept fresh by the
migration's change notifications, reloaded after a bulk change or a lost listener."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest

from callcenter.crm.index import APP_NAME, RoutingIndex
from callcenter.crm.lookup import CrmLookup
from callcenter.crm.repository import CustomerRepository

pytestmark = pytest.mark.timeout(30)


async def until(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


@pytest.fixture
async def db(database) -> AsyncIterator[asyncpg.Connection]:  # type: ignore[no-untyped-def]
    conn = await asyncpg.connect(**database.connect_kwargs())
    agent = await conn.fetchval("INSERT INTO agents (name) VALUES ('Olga Petrova') RETURNING id")
    vip = await conn.fetchval("INSERT INTO customers (name, tier, segment, tags, assigned_agent_id, stage, notes) "
                              "VALUES ('Anna Ivanova', 'vip', 'enterprise', ARRAY['key-account'], $1, 'customer', "
                              "'prefers email') RETURNING id", agent)
    await conn.execute("INSERT INTO customer_phones (customer_id, e164) VALUES ($1, '+12025550143'), "
                       "($1, '+12025550144')", vip)
    yield conn
    await conn.close()


@pytest.fixture
async def index(database, db) -> AsyncIterator[RoutingIndex]:  # type: ignore[no-untyped-def]
    idx = RoutingIndex(database.connect_kwargs(), chunk=7, retry_s=0.05)
    idx.start()
    assert await idx.wait_ready(10)
    yield idx
    await idx.close()


async def test_loads_every_phone_with_what_routing_reads(index: RoutingIndex) -> None:
    assert len(index) == 2 and index.stats.loads == 1
    card = index.card("+12025550144")
    assert card is not None
    assert (card.name, card.tier, card.segment, card.tags, card.assigned_agent, card.stage, card.do_not_call) == (
        "Anna Ivanova", "vip", "enterprise", ("key-account",), "Olga Petrova", "customer", False)
    assert card.vip and card.notes is None and card.interactions == ()  # the screen pop reads those later
    assert index.card("+12025550199") is None


async def test_changes_are_seen_after_their_commit(index: RoutingIndex, db: asyncpg.Connection) -> None:
    await db.execute("UPDATE customers SET tier = 'standard' WHERE name = 'Anna Ivanova'")
    await until(lambda: (c := index.card("+12025550143")) is not None and c.tier == "standard")
    assert index.card("+12025550144").tier == "standard"  # type: ignore[union-attr]
    # a new customer with a phone (a lead from the API, an import of a few rows)
    async with db.transaction():
        cid = await db.fetchval("INSERT INTO customers (name, stage) VALUES ('New Lead', 'lead') RETURNING id")
        await db.execute("INSERT INTO customer_phones (customer_id, e164) VALUES ($1, '+12025550177')", cid)
    await until(lambda: index.card("+12025550177") is not None)
    # a phone moved to another customer, one removed, an agent renamed
    await db.execute("UPDATE customer_phones SET customer_id = $1 WHERE e164 = '+12025550144'", cid)
    await until(lambda: (c := index.card("+12025550144")) is not None and c.name == "New Lead")
    await db.execute("UPDATE agents SET name = 'Olga Sidorova'")
    await until(lambda: (c := index.card("+12025550143")) is not None and c.assigned_agent == "Olga Sidorova")
    await db.execute("DELETE FROM customers WHERE id = $1", cid)  # its phones go with it
    await until(lambda: index.card("+12025550177") is None and index.card("+12025550144") is None)
    # an update that changes nothing routing reads sends nothing
    before = index.stats.notifications
    await db.execute("UPDATE customers SET notes = 'call after 5pm'")
    await db.execute("UPDATE customers SET tier = 'gold' WHERE name = 'Anna Ivanova'")
    await until(lambda: index.card("+12025550143").tier == "gold")  # type: ignore[union-attr]
    assert index.stats.notifications == before + 1
    assert index.stats.loads == 1  # all of it row by row


async def test_a_bulk_statement_reloads_everything_once(index: RoutingIndex, db: asyncpg.Connection) -> None:
    await db.execute("INSERT INTO customers (id, name) SELECT g, 'Bulk ' || g FROM generate_series(1000, 1999) g")
    await db.execute("INSERT INTO customer_phones (customer_id, e164) "
                     "SELECT g, '+1303555' || lpad(g::text, 4, '0') FROM generate_series(1000, 1999) g")
    await until(lambda: index.stats.loads == 2)
    assert len(index) == 1002 and index.card("+13035551999").name == "Bulk 1999"  # type: ignore[union-attr]
    assert index.stats.notifications == 1  # one '*' for a thousand rows


async def test_a_lost_listener_reconnects_and_reloads(index: RoutingIndex, db: asyncpg.Connection) -> None:
    killed = await db.fetchval("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE application_name = $1", APP_NAME)
    assert killed == 1
    # changed while nobody listened: the reload after reconnecting has it
    await db.execute("UPDATE customers SET segment = 'smb'")
    await until(lambda: index.stats.reconnects >= 1 and index.stats.loads >= 2)
    await until(lambda: index.card("+12025550143").segment == "smb")  # type: ignore[union-attr]
    assert index.ready  # served the old contents meanwhile


async def test_lookups_answer_from_memory_known_or_not(database, index: RoutingIndex) -> None:  # type: ignore[no-untyped-def]
    crm = CrmLookup(CustomerRepository(database.engine), budget_ms=2000, index=index)
    assert crm.prefetch("2025550143") is False  # nothing to prefetch
    known = crm.lookup_nowait("(202) 555-0143")
    assert known is not None and known.from_index and known.card is not None and known.card.vip
    unknown = crm.lookup_nowait("2025550199")
    assert unknown is not None and unknown.unknown and unknown.from_index
    assert (await crm.lookup("+12025550143")).from_index
    assert crm.stats.index_answers == 3 and not crm._inflight


async def test_a_failing_index_backs_off_and_routing_keeps_querying(database) -> None:  # type: ignore[no-untyped-def]
    idx = RoutingIndex({**database.connect_kwargs(), "database": "no_such_database"}, retry_s=0.01,
                       retry_max_s=0.08)
    idx.start()
    await asyncio.sleep(0.5)
    await idx.close()
    # 0.01, 0.02, 0.04, then 0.08 s apart: ~8 attempts in 0.5 s, not 50
    assert not idx.ready and 3 <= idx.stats.reconnects <= 12, idx.stats
    crm = CrmLookup(CustomerRepository(database.engine), budget_ms=2000, index=idx)
    assert crm.lookup_nowait("2025550143") is None  # not ready: the database is asked, as without an index


async def test_a_load_gives_the_event_loop_back_every_slice_of_rows(database, db) -> None:  # type: ignore[no-untyped-def]
    """A reload after a bulk import happens while calls are being routed: the index is built a
    slice of rows at a time, with the event loop's other work run in between (a 5,000-row chunk
    in one go held it ~40 ms at 1M)."""
    await db.execute("INSERT INTO customers (id, name) SELECT g, 'C' || g FROM generate_series(1000, 3999) g")
    await db.execute("INSERT INTO customer_phones (customer_id, e164) "
                     "SELECT id, '+1303' || lpad(id::text, 7, '0') FROM customers WHERE id >= 1000")
    idx = RoutingIndex(database.connect_kwargs(), chunk=1000, slice_rows=100, retry_s=0.05)
    seen: set[int] = set()  # how far the load was each time other work got the loop

    async def ticker() -> None:
        while True:
            seen.add(idx.stats.rows_loaded)
            await asyncio.sleep(0)

    tick = asyncio.ensure_future(ticker())
    idx.start()
    try:
        assert await idx.wait_ready(20)
    finally:
        tick.cancel()
        await idx.close()
    assert len(idx) == 3002 and idx.stats.rows_loaded == 3002
    assert set(range(0, 3002, 100)) <= seen  # the loop came back after every slice, not only per chunk


async def test_a_loaded_index_is_out_of_the_garbage_collectors_way(index: RoutingIndex) -> None:
    """A full collection after a 1M load walked every entry (118-129 ms among the calls in the
    routing bench): the loaded entries are frozen, no generation holds them."""
    assert gc.get_freeze_count() > 0
    assert not any(o is index._entries for o in gc.get_objects())


async def test_a_replaced_index_is_freed_a_slice_at_a_time(database, db) -> None:  # type: ignore[no-untyped-def]
    """Dropped in one go after a reload, a 1M-entry index is freed at once (~110 ms with the
    event loop held): the old entries go a slice at a time, other work running in between."""
    await db.execute("INSERT INTO customers (id, name) SELECT g, 'C' || g FROM generate_series(1000, 3999) g")
    await db.execute("INSERT INTO customer_phones (customer_id, e164) "
                     "SELECT id, '+1303' || lpad(id::text, 7, '0') FROM customers WHERE id >= 1000")
    idx = RoutingIndex(database.connect_kwargs(), chunk=1000, slice_rows=100, retry_s=0.05)
    idx.start()
    try:
        assert await idx.wait_ready(20)
        old = idx._entries
        sizes: set[int] = set()  # what other work saw of the old index's size

        async def ticker() -> None:
            while True:
                sizes.add(len(old))
                await asyncio.sleep(0)

        tick = asyncio.ensure_future(ticker())
        try:
            await db.execute("UPDATE customers SET segment = 'smb'")  # a bulk statement: a reload
            await until(lambda: idx.stats.loads == 2 and not old)
        finally:
            tick.cancel()
        assert idx._entries is not old and len(idx) == 3002
        assert set(range(3002 - 200, 0, -200)) <= sizes, sorted(sizes)  # 200 entries a turn
    finally:
        await idx.close()
