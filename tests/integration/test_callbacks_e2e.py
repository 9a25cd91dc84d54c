"""Callbacks end to end: a loopback AMI server, the real adapter, the routing shell filing the
request, the callback service over a real PostgreSQL, and what the PBX was told to do."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from callcenter.app import Controller
from callcenter.bus import Notification
from callcenter.callbacks.core import CallbackPolicy
from callcenter.callbacks.service import CallbackService
from callcenter.crm.lookup import CrmLookup
from callcenter.crm.repository import CustomerRepository
from callcenter.pbx.asterisk.adapter import AsteriskAdapter
from callcenter.routing.service import RoutingService, RulesHolder
from callcenter.sim.ami_server import FakeAmiServer
from callcenter.storage import db as dbmod
from callcenter.storage.recorder import Recorder

RULES = """
version: cb-e2e
timezone: UTC
queues:
  sales: {}
ivr:
  main:
    start: menu
    nodes:
      - id: menu
        prompt: cc/main-menu
        timeout_s: 3
        options:
          "1": {queue: sales}
          "9": {callback: sales, prompt: cc/callback-confirm}
        on_failure: {queue: sales}
rules:
  - id: everyone
    when: {}
    then: {ivr: main}
fallback:
  id: fallback
  queue: sales
"""


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def env(db_dsn, tmp_path):
    rules_file = tmp_path / "routing.yaml"
    rules_file.write_text(RULES, encoding="utf-8")
    ami = await FakeAmiServer(username="cc", secret="s").start()
    ami.agi_delay = 0.001
    ami.originate_delay = 0.01
    database = dbmod.Database(db_dsn, dbmod.make_engine(db_dsn, pool_size=2))
    recorder = Recorder(database.connect_kwargs(), tmp_path / "journal", flush_interval=0.01)
    await recorder.start()
    clock = Clock()
    controller = Controller(recorder, clock=clock)
    adapter = AsteriskAdapter.connect("ast1", "127.0.0.1", ami.port, "cc", "s")
    controller.add_pbx(adapter, "control")
    holder = RulesHolder(rules_file)
    holder.load()
    routing = RoutingService(controller, holder, CrmLookup(CustomerRepository(database.engine), budget_ms=2000),
                             database.engine, pbx_types={"ast1": "asterisk"})
    policy = CallbackPolicy(max_attempts=10, spacing=(timedelta(minutes=5),), deadline=timedelta(minutes=30),
                            warn_before=timedelta(minutes=10))
    service = CallbackService(controller, database.engine, pbx="ast1", interval=3600, policy=policy,
                              agents=lambda: {"sales": ["PJSIP/1001"]})
    notes: list[Notification] = []
    sub = controller.bus.subscribe() if hasattr(controller.bus, "subscribe") else None
    await adapter.start()
    yield ami, controller, service, db_dsn, clock, notes, sub
    await service.close()
    await adapter.close()
    await controller.close()
    await routing.close()
    await recorder.close()
    await database.close()
    await ami.close()


async def _fetch(dsn: str, sql: str, *args):
    conn = await asyncpg.connect(**dbmod.asyncpg_dsn(dsn))
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def _until(predicate, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.02)


def _originates(ami: FakeAmiServer) -> list:
    return [m for m in ami.received if m.get("Action") == "Originate"]


def _customer_result(ami: FakeAmiServer, callback_id: int, attempt: int, status: str) -> None:
    """What [cc-callback] sends after Dial() to the customer."""
    ami.emit("UserEvent", [("Privilege", "user,all"), ("Channel", "PJSIP/1001-00000009"),
                           ("Uniqueid", f"1900000000.{attempt}"), ("Linkedid", f"1900000000.{attempt}"),
                           ("UserEvent", "CcCallback"), ("CallbackId", str(callback_id)),
                           ("Attempt", str(attempt)), ("DialStatus", status)])


async def _drain(sub) -> list[Notification]:
    out = []
    while sub is not None:
        try:
            async with asyncio.timeout(0.05):
                out.append(await sub.get())
        except TimeoutError:
            break
    return out


async def test_ivr_callback_is_dialled_agent_first_and_completed(env) -> None:
    ami, _controller, service, dsn, clock, _, sub = env
    keyed = iter(["9", "1"])  # menu: 9 = callback; then 1 = call me back on this number
    ami.agi_results = lambda c: (f"200 result={next(keyed, '')}\n" if c.upper().startswith("GET DATA")
                                 else "200 result=1\n")
    ch = ami.add_channel("PJSIP/pstn-00000001", uniqueid="1800000000.1", caller_num="2025550143",
                         caller_name="Anna", context="cc-inbound", exten="5550110", state=4, state_desc="Ring")
    ami.emit("Newchannel", channel=ch)
    ch.state, ch.state_desc = 6, "Up"
    ami.emit("Newstate", channel=ch)
    ami.start_agi(ch)

    async def filed() -> bool:
        return bool(await _fetch(dsn, "SELECT 1 FROM callbacks"))
    await _until(filed)
    row = (await _fetch(dsn, "SELECT id, call_id, phone, queue, status, source FROM callbacks"))[0]
    assert (row["phone"], row["queue"], row["status"], row["source"]) == ("+12025550143", "sales", "open", "ivr")
    assert row["call_id"] == "1800000000.1"  # linked to the call that asked

    clock.now = datetime.now(UTC) + timedelta(seconds=1)
    actions = await service.tick()
    assert [type(a).__name__ for a in actions] == ["Dispatch"]
    async with asyncio.timeout(5):
        while not _originates(ami):
            await asyncio.sleep(0.01)
    o = _originates(ami)[0]
    assert o.get("Channel") == "PJSIP/1001"  # the agent rings first
    assert (o.get("Context"), o.get("Exten"), o.get("Priority")) == ("cc-callback", "+12025550143", "1")
    assert f"CC_CALLBACK_ID={row['id']}" in o.get_all("Variable")
    pops = [n for n in await _drain(sub) if n.kind == "screen_pop"]
    assert pops and pops[0].data["callback_id"] == row["id"] and pops[0].agent == "PJSIP/1001"
    assert (await _fetch(dsn, "SELECT status FROM callbacks"))[0]["status"] == "dialing"

    # OriginateResponse success (the agent answered) does not close it: the customer leg does
    await asyncio.sleep(0.1)
    assert (await _fetch(dsn, "SELECT status FROM callbacks"))[0]["status"] == "dialing"
    _customer_result(ami, row["id"], 1, "ANSWER")

    async def closed() -> bool:
        return (await _fetch(dsn, "SELECT status FROM callbacks"))[0]["status"] == "completed"
    await _until(closed)
    cb = (await _fetch(dsn, "SELECT outcome, closed_at, attempts FROM callbacks"))[0]
    assert cb["outcome"] == "completed" and cb["closed_at"] is not None and cb["attempts"] == 1
    att = await _fetch(dsn, "SELECT attempt, agent, result, call_id, ended_at FROM callback_attempts")
    assert [(a["attempt"], a["agent"], a["result"], a["call_id"]) for a in att] == [
        (1, "PJSIP/1001", "completed", "1900000000.1")]
    # nothing more to do for it
    assert await service.tick() == []


async def test_no_answer_retries_until_the_deadline_then_expires_and_escalates(env) -> None:
    ami, _controller, service, dsn, clock, _, sub = env
    start = clock.now
    conn = await asyncpg.connect(**dbmod.asyncpg_dsn(dsn))
    cb_id = await conn.fetchval(
        "INSERT INTO callbacks (phone, name, topic, source, queue, due_at, deadline_at, created_at) "
        "VALUES ('+12025550177', 'Web visitor', 'invoice', 'api', 'sales', $1, $2, $1) RETURNING id",
        start, start + timedelta(minutes=30))
    await conn.close()

    # attempt 1: the agent does not pick up -> straight back to the queue of work (no spacing)
    ami.originate_reason = 3
    await service.tick()

    async def attempt_ended(n: int, result: str):
        async def check() -> bool:
            rows = await _fetch(dsn, "SELECT result FROM callback_attempts WHERE attempt = $1", n)
            return bool(rows) and rows[0]["result"] == result
        return check
    await _until(await attempt_ended(1, "agent_no_answer"))
    assert (await _fetch(dsn, "SELECT status FROM callbacks"))[0]["status"] == "open"

    # attempts 2..: the agent answers, the customer does not; spacing 5 min between tries
    ami.originate_reason = 4
    n = 2
    while True:
        actions = await service.tick()
        if not any(type(a).__name__ == "Dispatch" for a in actions):
            break
        async with asyncio.timeout(5):
            while len(_originates(ami)) < n:
                await asyncio.sleep(0.01)
        _customer_result(ami, cb_id, n, "NOANSWER")
        await _until(await attempt_ended(n, "customer_no_answer"))
        status = (await _fetch(dsn, "SELECT status, due_at FROM callbacks"))[0]
        if status["status"] != "open":
            break
        assert status["due_at"] == clock.now + timedelta(minutes=5)
        clock.now = status["due_at"]
        n += 1
    assert all(o.get("Channel") == "PJSIP/1001" and o.get("Context") == "cc-callback" for o in _originates(ami))
    clock.now = start + timedelta(minutes=31)
    await service.tick()
    cb = (await _fetch(dsn, "SELECT status, outcome, closed_at, attempts FROM callbacks"))[0]
    assert (cb["status"], cb["outcome"]) == ("expired", "deadline_passed") and cb["closed_at"] is not None
    assert cb["attempts"] >= 3
    reasons = {r["reason"] for r in await _fetch(dsn, "SELECT reason FROM callback_escalations")}
    assert reasons == {"overdue", "expired"}
    kinds = [(x.kind, x.data.get("reason")) for x in await _drain(sub)]
    assert ("callback_overdue", "overdue") in kinds and ("callback_overdue", "expired") in kinds
    # a closed request is never dialled again, and escalations are not repeated
    before = len(_originates(ami))
    assert await service.tick() == []
    assert len(_originates(ami)) == before
