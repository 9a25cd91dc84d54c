"""Post-call survey end to end on FreeSWITCH: the simulator runs the shipped XML dialplan and
mod_callcenter sample; the controller sets ``CC_SURVEY=1`` before the transfer, so ``cc_queue``
sets ``transfer_after_bridge=cc_survey:XML:callcenter``; the agent hangs up, the caller is parked
again (a second CHANNEL_PARK of an answered call), the controller asks the NPS question with
``sendmsg play_and_get_digits``, stores the answer in PostgreSQL and hangs up. Callers who hang
up first, or whose call is not surveyed, are never asked; a caller who hangs up during the
question is stored as not answered."""

from __future__ import annotations

import asyncio

from callcenter.bus import Notification
from callcenter.sim.asterisk import AgentBehavior
from callcenter.sim.freeswitch import FreeswitchSim
from tests.integration._stack import hang_up_at_survey, stack

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
    published: list[Notification] = []
    hang_up_in_survey: set[str] = set()

    outcomes = []
    async with stack(db_dsn, tmp_path, sim, rules=RULES) as s:
        assert s.survey is not None and s.routing is not None
        s.controller.bus.hooks.append(published.append)
        s.controller.listeners.append(hang_up_at_survey(sim, hang_up_in_survey))
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
            while s.controller.stats.calls_ended < len(scripts) or s.survey.stats.offered - (
                    s.survey.stats.answered + s.survey.stats.not_answered) > 0:
                await asyncio.sleep(0.02)
        await s.recorder.drain()
        rows = await s.fetch("SELECT call_id, agent, queue, score, answered FROM survey_responses ORDER BY id")
        calls = await s.fetch("SELECT call_id, outcome, hung_up_by FROM calls ORDER BY entered_at")
    # the controller hangs up after the survey; the fourth caller left during the question; the
    # fifth hung up on the agent (no survey); the sixth was in a queue without the survey, so the
    # agent's BYE ended the call (hangup_after_bridge)
    assert outcomes == [("answered", "system")] * 3 + [("answered", "caller")] * 2 + [("answered", "agent")]
    assert s.routing.stats.routed == len(scripts)  # the hand-backs after the conversation were not routed
    assert s.survey.stats.offered == 4
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
