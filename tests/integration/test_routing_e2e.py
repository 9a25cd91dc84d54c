"""Routing end to end: a loopback AMI server speaking Asterisk's AsyncAGI protocol, the real
adapter, the routing shell, a real PostgreSQL CRM, and what the PBX was told to do."""

from __future__ import annotations

import asyncio
import itertools

import asyncpg
import pytest

from callcenter.app import Controller
from callcenter.crm.index import RoutingIndex
from callcenter.crm.lookup import CrmLookup
from callcenter.crm.repository import CustomerRepository
from callcenter.pbx.asterisk.adapter import AsteriskAdapter
from callcenter.routing.service import RoutingService, RulesHolder
from callcenter.sim.ami_server import FakeAmiServer
from callcenter.storage import db as dbmod
from callcenter.storage.recorder import Recorder

RULES = """
version: e2e
timezone: UTC
calendars:
  never: {hours: {}}
queues:
  sales: {}
  support: {}
  vip: {allowed_tiers: [vip]}
ivr:
  main:
    start: main-menu
    nodes:
      - id: main-menu
        prompt: cc/main-menu
        timeout_s: 3
        retries: 1
        options:
          "1": {queue: sales}
          "2": {queue: support, priority: 3}
        on_failure: {queue: support}
rules:
  - id: vip-direct
    when: {tier: vip}
    then: {queue: vip, priority: 10, display_name: "VIP {name_short}"}
  - id: night-line
    when: {did: ["5550999"]}
    then:
      queue: sales
      closed: {calendar: never, prompt: cc/closed, hangup: true}
  - id: everyone-else
    when: {}
    then: {ivr: main}
fallback:
  id: fallback
  queue: support
"""

_seq = itertools.count(1)


class Harness:
    def __init__(self, ami: FakeAmiServer, controller: Controller, routing: RoutingService, dsn: str) -> None:
        self.ami, self.controller, self.routing, self.dsn = ami, controller, routing, dsn

    async def call(self, caller: str, did: str, name: str = "PSTN") -> str:
        """A caller reaches the controller's inbound context (Newchannel, Answer, AGI(agi:async))."""
        n = next(_seq)
        ch = self.ami.add_channel(f"PJSIP/pstn-{n:08d}", uniqueid=f"1800000000.{n}", caller_num=caller,
                                  caller_name=name, context="cc-inbound", exten=did, state=4, state_desc="Ring")
        self.ami.emit("Newchannel", channel=ch)
        ch.state, ch.state_desc = 6, "Up"
        self.ami.emit("Newstate", channel=ch)
        self.ami.start_agi(ch)
        return ch.name

    def agi(self, channel: str) -> list[str]:
        return [m.get("Command") or "" for m in self.ami.received
                if m.get("Action") == "AGI" and m.get("Channel") == channel]

    async def wait_agi(self, channel: str, needle: str, timeout: float = 5.0) -> list[str]:
        async with asyncio.timeout(timeout):
            while not any(needle in c for c in self.agi(channel)):
                await asyncio.sleep(0.01)
        return self.agi(channel)


@pytest.fixture
async def harness(db_dsn, tmp_path):
    conn = await asyncpg.connect(**dbmod.asyncpg_dsn(db_dsn))
    vip = await conn.fetchval("INSERT INTO customers (name, tier) VALUES ('Anna Ivanova', 'vip') RETURNING id")
    await conn.execute("INSERT INTO customer_phones (customer_id, e164) VALUES ($1, '+12025550143')", vip)
    await conn.close()
    rules_file = tmp_path / "routing.yaml"
    rules_file.write_text(RULES, encoding="utf-8")
    ami = await FakeAmiServer(username="cc", secret="s").start()
    ami.agi_delay = 0.001
    database = dbmod.Database(db_dsn, dbmod.make_engine(db_dsn, pool_size=2))
    recorder = Recorder(database.connect_kwargs(), tmp_path / "journal", flush_interval=0.01)
    await recorder.start()
    controller = Controller(recorder)
    adapter = AsteriskAdapter.connect("ast1", "127.0.0.1", ami.port, "cc", "s")
    controller.add_pbx(adapter, "control")
    holder = RulesHolder(rules_file)
    holder.load()
    crm = CrmLookup(CustomerRepository(database.engine), budget_ms=2000)
    routing = RoutingService(controller, holder, crm, database.engine, pbx_types={"ast1": "asterisk"})
    await adapter.start()
    yield Harness(ami, controller, routing, db_dsn)
    await adapter.close()
    await controller.close()
    await routing.close()
    await recorder.close()
    await database.close()
    await ami.close()


async def _routed(dsn: str, timeout: float = 5.0) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(**dbmod.asyncpg_dsn(dsn))
    try:
        async with asyncio.timeout(timeout):
            while True:
                rows = await conn.fetch("SELECT call_id, rule_id, rules_version, detail FROM call_events "
                                        "WHERE kind = 'routed' ORDER BY at")
                if rows:
                    return rows
                await asyncio.sleep(0.02)
    finally:
        await conn.close()


async def test_known_vip_goes_straight_to_the_vip_queue_with_priority_and_display_name(harness) -> None:
    ch = await harness.call("2025550143", "5550110")
    cmds = await harness.wait_agi(ch, "ASYNCAGI BREAK")
    assert 'SET VARIABLE CALLERID(name) "VIP Ivanova A."' in cmds
    body = [c for c in cmds if not c.startswith("SET VARIABLE TIMEOUT")]
    assert body[-3:] == ['SET VARIABLE CC_QUEUE vip', 'SET VARIABLE CC_PRIO 10', "ASYNCAGI BREAK"]
    # the display name is set before the call is released to the queue
    assert cmds.index('SET VARIABLE CALLERID(name) "VIP Ivanova A."') < cmds.index("ASYNCAGI BREAK")
    assert not any(c.startswith("GET DATA") for c in cmds)  # VIPs skip the IVR
    rows = await _routed(harness.dsn)
    assert rows[0]["rule_id"] == "vip-direct" and rows[0]["rules_version"].startswith("e2e")
    # the CRM lookup started at Newchannel; routing joined that one query
    crm = harness.routing.crm
    assert (crm.stats.prefetches, crm.stats.lookups) == (1, 1)
    live = next(iter(harness.controller.live.calls.values()))
    assert live.customer is not None and live.customer["tier"] == "vip"


async def test_with_the_card_at_hand_the_decision_is_on_the_wire_before_the_event_handler_returns(harness) -> None:
    """The second call from a number finds its card in the cache: routing decides inside the
    controller's handling of ControllerAttached and the batch is written there, with no task
    switch in between; the first call waited for its CRM query in the call's task."""
    first = await harness.call("2025550143", "5550110")
    await harness.wait_agi(first, "ASYNCAGI BREAK")
    adapter = harness.controller.adapters["ast1"]
    transport = adapter._client._conn.transport  # type: ignore[attr-defined]
    writes: list[bytes] = []
    write = transport.write

    def spy(data: bytes) -> None:
        writes.append(bytes(data))
        write(data)

    transport.write = spy
    at_attach: list[list[bytes]] = []

    def on_event(ev) -> None:  # type: ignore[no-untyped-def]
        if ev.type == "controller_attached":  # listeners run once the controller handled the event
            at_attach.append([w for w in writes if b"CC_QUEUE vip" in w])

    harness.controller.listeners.append(on_event)
    second = await harness.call("2025550143", "5550110")
    cmds = await harness.wait_agi(second, "ASYNCAGI BREAK")
    assert len(at_attach) == 1 and len(at_attach[0]) == 1, at_attach
    # one write: lease, display name, queue, priority, BREAK
    assert at_attach[0][0].count(b"Action: AGI") == len(cmds) and second.encode() in at_attach[0][0]
    assert [c for c in cmds if not c.startswith("SET VARIABLE TIMEOUT")] == [
        'SET VARIABLE CALLERID(name) "VIP Ivanova A."', "SET VARIABLE CC_QUEUE vip", "SET VARIABLE CC_PRIO 10",
        "ASYNCAGI BREAK"]
    crm = harness.routing.crm
    assert crm.stats.hits == 1 and crm.stats.lookups == 2
    async with asyncio.timeout(5):
        while len(rows := await _routed(harness.dsn)) < 2:
            await asyncio.sleep(0.02)
    assert [r["rule_id"] for r in rows] == ["vip-direct", "vip-direct"]


async def test_with_the_routing_index_no_call_waits_for_the_database(harness) -> None:
    """crm.routing_index: even a caller's first call is decided inside the event handler (the
    card comes from memory); the screen pop gets the full card (notes) from the database after."""
    conn = await asyncpg.connect(**dbmod.asyncpg_dsn(harness.dsn))
    await conn.execute("UPDATE customers SET notes = 'prefers email'")
    await conn.close()
    index = RoutingIndex(dbmod.asyncpg_dsn(harness.dsn))
    index.start()
    try:
        assert await index.wait_ready(10)
        harness.routing.crm.index = index
        routed_at_attach: list[bool] = []
        harness.controller.listeners.append(
            lambda ev: routed_at_attach.append(harness.routing.stats.routed == 1)
            if ev.type == "controller_attached" else None)
        ch = await harness.call("2025550143", "5550110")
        cmds = await harness.wait_agi(ch, "ASYNCAGI BREAK")
        assert routed_at_attach == [True]
        assert "SET VARIABLE CC_QUEUE vip" in cmds and 'SET VARIABLE CALLERID(name) "VIP Ivanova A."' in cmds
        crm = harness.routing.crm
        assert crm.stats.index_answers == 1 and crm.stats.prefetches == 0
        live = next(iter(harness.controller.live.calls.values()))
        async with asyncio.timeout(5):
            while live.customer is None or live.customer["notes"] != "prefers email":
                await asyncio.sleep(0.01)
        assert live.customer["tier"] == "vip"
    finally:
        await index.close()


async def test_unknown_caller_goes_through_the_ivr_to_the_chosen_skill_queue(harness) -> None:
    harness.ami.agi_results = lambda c: "200 result=2\n" if c.upper().startswith("GET DATA") else "200 result=1\n"
    ch = await harness.call("2025550177", "5550110")
    cmds = await harness.wait_agi(ch, "ASYNCAGI BREAK")
    body = [c for c in cmds if not c.startswith("SET VARIABLE TIMEOUT")]
    assert body[:2] == ['SET VARIABLE CC_NODE main-menu', "GET DATA cc/main-menu 3000 1"]
    assert body[-3:] == ['SET VARIABLE CC_QUEUE support', 'SET VARIABLE CC_PRIO 3', "ASYNCAGI BREAK"]
    rows = await _routed(harness.dsn)
    assert rows[0]["rule_id"] == "everyone-else"
    # the unknown caller became a lead
    conn = await asyncpg.connect(**dbmod.asyncpg_dsn(harness.dsn))
    try:
        async with asyncio.timeout(5):
            while not await conn.fetchval("SELECT count(*) FROM customer_phones WHERE e164 = '+12025550177'"):
                await asyncio.sleep(0.02)
        assert await conn.fetchval("SELECT stage FROM customers c JOIN customer_phones p ON p.customer_id = c.id "
                                   "WHERE p.e164 = '+12025550177'") == "lead"
    finally:
        await conn.close()


async def test_no_input_replays_then_takes_the_failure_exit(harness) -> None:
    harness.ami.agi_results = lambda c: "200 result=\n" if c.upper().startswith("GET DATA") else "200 result=1\n"
    ch = await harness.call("2025550178", "5550110")
    cmds = await harness.wait_agi(ch, "ASYNCAGI BREAK")
    assert sum(1 for c in cmds if c.startswith("GET DATA")) == 2  # first try + one retry
    assert "SET VARIABLE CC_QUEUE support" in cmds


async def test_closed_hours_handling(harness) -> None:
    ch = await harness.call("2025550179", "5550999")
    async with asyncio.timeout(5):
        while not any(m.get("Action") == "Hangup" and m.get("Channel") == ch for m in harness.ami.received):
            await asyncio.sleep(0.01)
    actions = [(m.get("Action"), m.get("Command")) for m in harness.ami.received if m.get("Channel") == ch]
    stream = actions.index(("AGI", "STREAM FILE cc/closed \"\""))
    assert stream < actions.index(("Hangup", None))  # the closed message first, then hang up
    assert not any("CC_QUEUE" in (c or "") for _, c in actions)


async def test_database_down_routes_by_the_fallback_rule(harness, pg_server) -> None:
    if pg_server.embedded is None:
        pytest.fail("needs the embedded server")
    harness.routing.crm._cache.clear()
    harness.routing.crm.budget_s = 0.05
    await asyncio.to_thread(pg_server.stop)
    try:
        ch = await harness.call("2025550143", "5550110")  # the VIP, but the CRM cannot say so
        cmds = await harness.wait_agi(ch, "ASYNCAGI BREAK")
        assert "SET VARIABLE CC_QUEUE support" in cmds  # the fallback, never the VIP-only queue
        assert harness.routing.stats.lookup_failed == 1
    finally:
        await asyncio.to_thread(pg_server.start)
    rows = await _routed(harness.dsn, timeout=30)  # the journal catches up after the outage
    assert rows[0]["rule_id"] == "fallback" and rows[0]["detail"] and '"lookup_failed": true' in rows[0]["detail"]
