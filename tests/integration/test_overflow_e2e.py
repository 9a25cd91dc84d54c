"""Overflow end to end: nobody answers in sales for the rules' N seconds, the controller moves
the waiting call to support where an agent answers. The simulated Asterisk runs the shipped
dialplan; the journey in PostgreSQL must show one answered call with two stints, never an
abandon in sales (Asterisk reports the Redirect out of the queue exactly like an abandon)."""

from __future__ import annotations

import asyncio
import json

import asyncpg

from callcenter.app import Controller
from callcenter.crm.lookup import CrmLookup
from callcenter.crm.repository import CustomerRepository
from callcenter.pbx.asterisk.adapter import AsteriskAdapter
from callcenter.routing.service import RoutingService, RulesHolder
from callcenter.sim.asterisk import AgentBehavior, AsteriskSim
from callcenter.storage import db as dbmod
from callcenter.storage.recorder import Recorder

RULES = """
version: overflow-e2e
timezone: UTC
queues:
  sales:
    overflow:
      - {id: sales-slow, after_wait_s: 20, move_to: support, priority: 2}
  support: {}
rules:
  - id: everyone-to-sales
    when: {}
    then: {queue: sales}
fallback: {id: fallback, queue: support}
"""


async def test_nobody_answers_then_moved_to_the_overflow_queue_one_call_two_stints(db_dsn, tmp_path) -> None:
    sim = AsteriskSim(seed=5, speed=20, epoch=1_795_360_000, lab=False, username="cc", secret="s")
    sim.add_endpoint("1001", "Alice", behavior=AgentBehavior("noanswer"))
    sim.add_endpoint("1003", "Carol", behavior=AgentBehavior("answer", ring_s=1.0, talk_s=4.0))
    sim.add_queue("sales", members=[("PJSIP/1001", "Alice", 0)])
    sim.add_queue("support", members=[("PJSIP/1003", "Carol", 0)])
    await sim.start()
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    database = dbmod.Database(db_dsn, dbmod.make_engine(db_dsn, pool_size=2))
    recorder = Recorder(database.connect_kwargs(), tmp_path / "journal", flush_interval=0.02)
    await recorder.start()
    controller = Controller(recorder, clock=sim.clock)
    adapter = AsteriskAdapter.connect("ast1", "127.0.0.1", sim.port, "cc", "s",
                                      client_options={"clock": sim.clock, "ping_interval": None})
    controller.add_pbx(adapter, "control")
    holder = RulesHolder(rules)
    holder.load()
    routing = RoutingService(controller, holder, CrmLookup(CustomerRepository(database.engine), budget_ms=500),
                             database.engine, pbx_types={"ast1": "asterisk"}, overflow_interval=0.05)
    await adapter.start()
    loop = asyncio.create_task(routing.overflow_loop())
    try:
        call = sim.call("+12025550143", did="5550110", patience_s=600, talk_s=None)
        await call.ended(timeout=30)
        assert call.outcome == "answered"
        async with asyncio.timeout(10):  # the controller reads the call's last events
            while controller.stats.calls_ended < 1:
                await asyncio.sleep(0.02)
        await recorder.drain()
    finally:
        loop.cancel()
        await adapter.close()
        await controller.close()
        await routing.close()
        await recorder.close()
        await database.close()
        await sim.close()
    assert routing.stats.moves == 1
    conn = await asyncpg.connect(**dbmod.asyncpg_dsn(db_dsn))
    try:
        row = await conn.fetchrow("SELECT * FROM calls")
        kinds = [r["kind"] for r in await conn.fetch("SELECT kind FROM call_events ORDER BY seq")]
    finally:
        await conn.close()
    stints = json.loads(row["stints"])
    assert (row["outcome"], row["abandon_stage"], row["queue"], row["agent"], row["overflows"]) == (
        "answered", None, "support", "PJSIP/1003", 1)
    assert [(s["queue"], s["outcome"]) for s in stints] == [("sales", "moved"), ("support", "answered")]
    assert 19 <= stints[0]["wait_s"] <= 25  # the rules' 20 s, on the PBX's (simulated) clock
    assert "move_requested" in kinds and kinds.count("queue_join") == 2
