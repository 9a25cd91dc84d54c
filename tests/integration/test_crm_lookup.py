"""Calls are never held up by the CRM: a lookup answers within its budget even when
PostgreSQL is slow (a lock held by another session) or down, and warms the cache afterwards."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from callcenter.crm.lookup import CrmLookup
from callcenter.crm.repository import CustomerRepository
from callcenter.storage import db as dbmod


async def _seed(dsn: str) -> int:
    conn = await asyncpg.connect(**dbmod.asyncpg_dsn(dsn))
    cid = await conn.fetchval("INSERT INTO customers (name, tier) VALUES ('Anna Ivanova', 'vip') RETURNING id")
    await conn.execute("INSERT INTO customer_phones (customer_id, e164) VALUES ($1, '+12025550143')", cid)
    await conn.close()
    return cid


async def test_known_unknown_withheld_and_cache(database) -> None:
    await _seed(database.dsn)
    crm = CrmLookup(CustomerRepository(database.engine), budget_ms=2000)
    r = await crm.lookup("(202) 555-0143")
    assert r.card is not None and r.card.vip and not r.cached and not r.failed
    again = await crm.lookup("+12025550143")
    assert again.cached and again.card == r.card
    unknown = await crm.lookup("2025550199")
    assert unknown.unknown and unknown.e164 == "+12025550199"
    withheld = await crm.lookup("anonymous")
    assert withheld.withheld and not withheld.unknown
    assert crm.stats.hits == 1 and crm.stats.misses == 2


async def test_lookup_nowait_answers_only_what_needs_no_query(database) -> None:
    await _seed(database.dsn)
    crm = CrmLookup(CustomerRepository(database.engine), budget_ms=2000)
    assert crm.lookup_nowait("+12025550143") is None  # not cached: the CRM must be asked
    assert crm.stats.lookups == 0 and not crm._inflight  # nothing counted, no query started
    withheld = crm.lookup_nowait("anonymous")
    assert withheld is not None and withheld.withheld
    bad = crm.lookup_nowait("not a number")
    assert bad is not None and bad.withheld and "not a phone number" in (bad.reason or "")
    assert crm.prefetch("(202) 555-0143")  # what routing starts at the call's arrival
    for _ in range(100):
        if not crm._inflight:
            break
        await asyncio.sleep(0.02)
    hit = crm.lookup_nowait("2025550143")
    assert hit is not None and hit.cached and hit.card is not None and hit.card.vip
    assert (crm.stats.lookups, crm.stats.hits, crm.stats.misses) == (3, 1, 0)


async def test_a_slow_database_costs_the_budget_not_more(database) -> None:
    await _seed(database.dsn)
    crm = CrmLookup(CustomerRepository(database.engine), budget_ms=50)
    blocker = await asyncpg.connect(**database.connect_kwargs())
    tx = blocker.transaction()
    await tx.start()
    await blocker.execute("LOCK TABLE customer_phones IN ACCESS EXCLUSIVE MODE")
    try:
        t0 = time.perf_counter()
        r = await crm.lookup("+12025550143")
        elapsed = time.perf_counter() - t0
        assert r.failed and "over 50 ms" in (r.reason or "")
        assert elapsed < 0.5  # the budget, plus scheduling slack on a loaded machine
    finally:
        await tx.rollback()
        await blocker.close()
    # the query went on in the background and filled the cache for the next call
    for _ in range(100):
        if crm._cache:
            break
        await asyncio.sleep(0.02)
    r = await crm.lookup("+12025550143")
    assert r.cached and r.card is not None and r.card.name == "Anna Ivanova"


async def test_a_database_that_is_down_fails_fast() -> None:
    # nothing listens on port 1: connection refused, as when PostgreSQL is stopped
    engine = dbmod.make_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none", connect_timeout_s=1)
    try:
        crm = CrmLookup(CustomerRepository(engine), budget_ms=200)
        t0 = time.perf_counter()
        r = await crm.lookup("+12025550143")
        assert r.failed and time.perf_counter() - t0 < 1.0
    finally:
        await engine.dispose()


@pytest.mark.parametrize("through", ["sqlalchemy", "asyncpg pool"])
async def test_unknown_caller_becomes_a_lead_once(database, through: str) -> None:
    pool = await database.pool() if through == "asyncpg pool" else None
    crm = CrmLookup(CustomerRepository(database.engine, pool=pool), budget_ms=2000)
    assert (await crm.lookup("2025550177")).unknown
    ids = await asyncio.gather(*(crm.ensure_lead(database.engine, "+12025550177", "PSTN 2025550177")
                                 for _ in range(3)))
    assert len(set(ids)) == 1
    card = (await crm.lookup("2025550177")).card
    assert card is not None and card.stage == "lead" and card.name == "PSTN 2025550177"
    conn = await asyncpg.connect(**database.connect_kwargs())
    assert await conn.fetchval("SELECT count(*) FROM customers") == 1
    await conn.close()
    other = await crm.ensure_lead(database.engine, "+12025550178", "2025550178")
    conn = await asyncpg.connect(**database.connect_kwargs())
    assert await conn.fetchval("SELECT name FROM customers WHERE id = $1", other) == "Caller +12025550178"
    await conn.close()


async def test_prefetch_at_arrival_runs_one_query_the_lookup_then_shares(database) -> None:
    await _seed(database.dsn)
    crm = CrmLookup(CustomerRepository(database.engine), budget_ms=2000)
    queries = 0
    real = crm.repo.lookup_e164

    async def counted(phone):  # type: ignore[no-untyped-def]
        nonlocal queries
        queries += 1
        return await real(phone)

    crm.repo.lookup_e164 = counted  # type: ignore[method-assign]
    assert crm.prefetch("(202) 555-0143") is True
    assert crm.prefetch("+12025550143") is False  # already in flight: no second query
    r = await crm.lookup("+12025550143")  # joins the prefetch's query
    assert r.card is not None and r.card.name == "Anna Ivanova" and not r.failed
    assert queries == 1 and crm.stats.prefetches == 1
    await asyncio.sleep(0)  # the done-callback fills the cache
    assert crm.prefetch("2025550143") is False  # cached
    assert (await crm.lookup("2025550143")).cached
    assert crm.prefetch("anonymous") is False and crm.prefetch(None) is False  # withheld: nothing to look up
    assert queries == 1


async def test_a_database_behind_gets_no_more_queries_past_the_cap(database) -> None:
    """With PostgreSQL stuck (a lock), queries over budget keep running to fill the cache; past
    ``max_inflight`` of them a lookup answers "busy" at once and starts no query."""
    await _seed(database.dsn)
    crm = CrmLookup(CustomerRepository(database.engine), budget_ms=30, max_inflight=2)
    blocker = await asyncpg.connect(**database.connect_kwargs())
    tx = blocker.transaction()
    await tx.start()
    await blocker.execute("LOCK TABLE customer_phones IN ACCESS EXCLUSIVE MODE")
    try:
        first = await crm.lookup("+12025550101")
        second = await crm.lookup("+12025550102")
        assert first.failed and second.failed and "over 30 ms" in (second.reason or "")
        assert crm.prefetch("+12025550103") is False  # no third query while two are stuck
        t0 = time.perf_counter()
        third = await crm.lookup("+12025550104")
        assert third.failed and "CRM busy" in (third.reason or "")
        assert time.perf_counter() - t0 < 0.02  # at once, not after the budget
        assert (crm.stats.timeouts, crm.stats.shed) == (2, 2) and len(crm._inflight) == 2
        # the same number as a stuck query still joins it (no new query)
        again = await crm.lookup("+12025550101")
        assert again.failed and "over 30 ms" in (again.reason or "")
    finally:
        await tx.rollback()
        await blocker.close()
    for _ in range(100):  # the stuck queries finish; new lookups run again
        if not crm._inflight:
            break
        await asyncio.sleep(0.02)
    r = await crm.lookup("+12025550143")
    assert r.card is not None and not r.failed
