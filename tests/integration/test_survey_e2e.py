"""Post-call survey end to end: the simulated Asterisk runs the shipped dialplan with
``CC_SURVEY`` set, the agent hangs up, Queue() option ``c`` hands the caller back to AsyncAGI
([cc-survey]), the controller asks the NPS question and stores the answer in PostgreSQL."""

from __future__ import annotations

import asyncio

import asyncpg

from callcenter.app import Controller
from callcenter.bus import Notification
from callcenter.crm.lookup import CrmLookup
from callcenter.crm.repository import CustomerRepository
from callcenter.domain.events import Event, IvrNodeEntered
from callcenter.pbx.asterisk.adapter import AsteriskAdapter
from callcenter.routing.service import RoutingService, RulesHolder
from callcenter.sim.asterisk import AgentBehavior, AsteriskSim
from callcenter.storage import db as dbmod
from callcenter.storage.recorder import Recorder
from callcenter.survey.service import SurveyService

RULES = """
version: survey-e2e
timezone: UTC
queues:
  sales: {}
rules:
  - id: everyone-to-sales
    when: {}
    then: {queue: sales}
fallback: {id: fallback, queue: sales}
"""


async def test_survey_scores_hangup_and_detractor_are_stored_and_published(db_dsn, tmp_path) -> None:
    sim = AsteriskSim(seed=7, speed=20, epoch=1_795_360_000, lab=False, username="cc", secret="s")
    sim.add_endpoint("1001", "Alice", behavior=AgentBehavior("answer", ring_s=1.0, talk_s=4.0))
    sim.add_queue("sales", members=[("PJSIP/1001", "Alice", 0)])
    sim.globals["CC_SURVEY"] = "1"  # [globals]: every queue call gets the survey
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
                             database.engine, pbx_types={"ast1": "asterisk"})
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
        for n, keys in enumerate(["9#", "10", "3#", None]):
            call = sim.call(f"+1202555014{n}", did="5550110", patience_s=600, talk_s=None,
                            digits=[keys] if keys else [])
            if keys is None:
                async with asyncio.timeout(10):
                    while call.channel is None:
                        await asyncio.sleep(0.01)
                hang_up_in_survey.add(sim.channels[call.channel].linkedid)
            await call.ended(timeout=30)
            outcomes.append((call.outcome, call.hangup_by))
        async with asyncio.timeout(10):
            while controller.stats.calls_ended < 4 or survey.stats.offered - (
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
    # the controller hangs up after the survey; the fourth caller left during the question
    assert outcomes == [("answered", "system")] * 3 + [("answered", "caller")]
    assert routing.stats.routed == 4  # the hand-back after the conversation was not routed again
    assert survey.stats.offered == 4
    conn = await asyncpg.connect(**dbmod.asyncpg_dsn(db_dsn))
    try:
        rows = await conn.fetch("SELECT call_id, agent, queue, score, answered FROM survey_responses ORDER BY id")
        calls = await conn.fetch("SELECT call_id, outcome, hung_up_by FROM calls ORDER BY entered_at")
    finally:
        await conn.close()
    assert [(r["agent"], r["queue"], r["score"], r["answered"]) for r in rows] == [
        ("PJSIP/1001", "sales", 9, True),
        ("PJSIP/1001", "sales", 10, True),
        ("PJSIP/1001", "sales", 3, True),
        ("PJSIP/1001", "sales", None, False),
    ]
    assert [r["call_id"] for r in rows] == [c["call_id"] for c in calls]
    assert all(c["outcome"] == "answered" for c in calls)
    (detractor,) = [x for x in published if x.kind == "detractor"]
    assert detractor.data["score"] == 3 and detractor.data["call_id"] == rows[2]["call_id"]
    assert (detractor.agent, detractor.queue) == ("PJSIP/1001", "sales")
