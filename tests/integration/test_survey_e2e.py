"""Post-call survey end to end: the simulated Asterisk runs the shipped dialplan with
``CC_SURVEY`` set, the agent hangs up, Queue() option ``c`` hands the caller back to AsyncAGI
([cc-survey]), the controller asks the NPS question and stores the answer in PostgreSQL."""

from __future__ import annotations

import asyncio

from callcenter.bus import Notification
from callcenter.sim.asterisk import AgentBehavior, AsteriskSim
from tests.integration._stack import hang_up_at_survey, stack

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
    published: list[Notification] = []
    hang_up_in_survey: set[str] = set()

    outcomes = []
    async with stack(db_dsn, tmp_path, sim, rules=RULES) as s:
        assert s.survey is not None and s.routing is not None
        s.controller.bus.hooks.append(published.append)
        s.controller.listeners.append(hang_up_at_survey(sim, hang_up_in_survey))
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
            while s.controller.stats.calls_ended < 4 or s.survey.stats.offered - (
                    s.survey.stats.answered + s.survey.stats.not_answered) > 0:
                await asyncio.sleep(0.02)
        await s.recorder.drain()
        rows = await s.fetch("SELECT call_id, agent, queue, score, answered FROM survey_responses ORDER BY id")
        calls = await s.fetch("SELECT call_id, outcome, hung_up_by FROM calls ORDER BY entered_at")
    # the controller hangs up after the survey; the fourth caller left during the question
    assert outcomes == [("answered", "system")] * 3 + [("answered", "caller")]
    assert s.routing.stats.routed == 4  # the hand-back after the conversation was not routed again
    assert s.survey.stats.offered == 4
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
