"""Post-call survey end to end on FreeSWITCH: the simulator runs the shipped XML dialplan and
mod_callcenter sample; the controller sets ``CC_SURVEY=1`` before the transfer, so ``cc_queue``
sets ``transfer_after_bridge=cc_survey:XML:callcenter``; the agent hangs up, the caller is parked
again (a second CHANNEL_PARK of an answered call), the controller asks the NPS question with
``sendmsg play_and_get_digits``, stores the answer in PostgreSQL and hangs up. Callers who hang
up first, or whose call is not surveyed, are never asked; a caller who hangs up during the
question is stored as not answered."""

from __future__ import annotations

import asyncio

import asyncpg

from callcenter.app import Controller
from callcenter.bus import Notification
from callcenter.crm.lookup import CrmLookup
from callcenter.crm.repository import CustomerRepository
from callcenter.domain.events import Event, IvrNodeEntered
from callcenter.pbx.freeswitch.adapter import FreeswitchAdapter
from callcenter.routing.service import RoutingService, RulesHolder
from callcenter.sim.asterisk import AgentBehavior
from callcenter.sim.freeswitch import FreeswitchSim
from callcenter.storage import db as dbmod
from callcenter.storage.recorder import Recorder
from callcenter.survey.service import SurveyService

RULES = """
version: survey-fs-e2e
timezone: UTC
queues:
  sales: {survey: true}
  support: {}
rules:
  - id: support-line
    when: {did: ["5550120"]}
    then: {queue: support}
  - id: everyone-to-sales
    when: {}
    then: {queue: sales}
fallback: {id: fallback, queue: sales}
"""


async def test_freeswitch_survey_after_the_agent_hangs_up(db_dsn, tmp_path) -> None:
    sim = FreeswitchSim(seed=11, speed=20, epoch=1_795_360_000)
    for ext in ("1001", "1002", "1003", "1004"):
        sim.add_endpoint(ext, f"Agent {ext}", behavior=AgentBehavior("answer", ring_s=1.0, talk_s=4.0))
    sim.tiers[:] = [t for t in sim.tiers if t.agent == "1001"]  # one agent: the calls queue one by one
    await sim.start()
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    database = dbmod.Database(db_dsn, dbmod.make_engine(db_dsn, pool_size=2))
    recorder = Recorder(database.connect_kwargs(), tmp_path / "journal", flush_interval=0.02)
    await recorder.start()
    controller = Controller(recorder, clock=sim.clock)
    adapter = FreeswitchAdapter.connect("fs1", "127.0.0.1", sim.port, "ClueCon", clock=sim.clock,
                                        client_options={"heartbeat_timeout": None})
    controller.add_pbx(adapter, "control")
    holder = RulesHolder(rules)
    holder.load()
    routing = RoutingService(controller, holder, CrmLookup(CustomerRepository(database.engine), budget_ms=500),
                             database.engine, pbx_types={"fs1": "freeswitch"})
    survey = SurveyService(controller, database.engine, queues=None)
    controller.driver = survey.wrap(routing.drive)  # what the composition root does
    published: list[Notification] = []
    controller.bus.hooks.append(published.append)
    hang_up_in_survey: set[str] = set()

    def on_event(ev: Event) -> None:
        # the caller who leaves without answering: BYE as soon as the question is asked
        if isinstance(ev, IvrNodeEntered) and ev.node == "survey" and ev.call_id in hang_up_in_survey:
            for call in sim.calls:
                if call.channel == ev.channel:
                    sim.caller_hangup(call)

    controller.listeners.append(on_event)
    await adapter.start()
    outcomes = []
    try:
        # sales (surveyed): 9#, 10, 3#, hangs up during the question; the caller who hangs up
        # first; support (not surveyed)
        scripts = [("5550110", "9#", None), ("5550110", "10", None), ("5550110", "3#", None),
                   ("5550110", None, None), ("5550110", None, 2.0), ("5550120", None, None)]
        for n, (did, keys, talk_s) in enumerate(scripts):
            call = sim.call(f"+1202555015{n}", did=did, patience_s=600, talk_s=talk_s,
                            digits=[keys] if keys else [])
            if n == 3:
                async with asyncio.timeout(10):
                    while call.channel is None:
                        await asyncio.sleep(0.01)
                hang_up_in_survey.add(call.channel)
            await call.ended(timeout=30)
            outcomes.append((call.outcome, call.hangup_by))
        async with asyncio.timeout(10):
            while controller.stats.calls_ended < len(scripts) or survey.stats.offered - (
                    survey.stats.answered + survey.stats.not_answered) > 0:
                await asyncio.sleep(0.02)
        await recorder.drain()
    finally:
        await adapter.close()
        await controller.close()
        await routing.close()
        await recorder.close()
        await database.close()
        await sim.close()
    # the controller hangs up after the survey; the fourth caller left during the question; the
    # fifth hung up on the agent (no survey); the sixth was in a queue without the survey, so the
    # agent's BYE ended the call (hangup_after_bridge)
    assert outcomes == [("answered", "system")] * 3 + [("answered", "caller")] * 2 + [("answered", "agent")]
    assert routing.stats.routed == len(scripts)  # the hand-backs after the conversation were not routed
    assert survey.stats.offered == 4
    conn = await asyncpg.connect(**dbmod.asyncpg_dsn(db_dsn))
    try:
        rows = await conn.fetch("SELECT call_id, agent, queue, score, answered FROM survey_responses ORDER BY id")
        calls = await conn.fetch("SELECT call_id, outcome, hung_up_by FROM calls ORDER BY entered_at")
    finally:
        await conn.close()
    assert [(r["agent"], r["queue"], r["score"], r["answered"]) for r in rows] == [
        ("1001", "sales@default", 9, True),
        ("1001", "sales@default", 10, True),
        ("1001", "sales@default", 3, True),
        ("1001", "sales@default", None, False),
    ]
    assert [r["call_id"] for r in rows] == [c["call_id"] for c in calls][:4]
    assert all(c["outcome"] == "answered" for c in calls)
    (detractor,) = [x for x in published if x.kind == "detractor"]
    assert detractor.data["score"] == 3 and detractor.data["call_id"] == rows[2]["call_id"]
    assert (detractor.agent, detractor.queue) == ("1001", "sales@default")
