"""Callback requests taken on the phone, and the survey chosen per queue in the rules, end to end:
the simulated Asterisk runs the shipped dialplan, the real AMI client and adapter, the routing
shell, and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from callcenter.sim.asterisk import AgentBehavior, AsteriskSim
from callcenter.storage import db as dbmod
from tests.integration._stack import Stack, stack


@asynccontextmanager
async def running(
    db_dsn: str, tmp_path: Path, rules: str, setup: Callable[[AsteriskSim], None]
) -> AsyncIterator[Stack]:
    sim = AsteriskSim(seed=11, speed=20, epoch=1_795_360_000, lab=False, username="cc", secret="s")
    setup(sim)
    async with stack(db_dsn, tmp_path, sim, rules=rules) as s:
        yield s


async def _settle(env: Stack, calls: int) -> None:
    async with asyncio.timeout(15):
        while env.controller.stats.calls_ended < calls:
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # a filing may still be in flight
    await env.recorder.drain()


async def _fetch(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(**dbmod.asyncpg_dsn(dsn))
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


SURVEY_RULES = """
    version: survey-per-queue
    timezone: UTC
    queues:
      sales: {survey: true}
      support: {}
    rules:
      - {id: support-line, when: {did: ["5550111"]}, then: {queue: support}}
    fallback: {id: fallback, queue: sales}
"""


async def test_the_survey_is_chosen_per_queue_in_the_rules(db_dsn, tmp_path) -> None:
    def setup(sim: AsteriskSim) -> None:
        sim.add_endpoint("1001", "Alice", behavior=AgentBehavior("answer", ring_s=1.0, talk_s=4.0))
        sim.add_queue("sales", members=[("PJSIP/1001", "Alice", 0)])
        sim.add_queue("support", members=[("PJSIP/1001", "Alice", 0)])
        # no CC_SURVEY in [globals]: only the rules decide

    async with running(db_dsn, tmp_path, SURVEY_RULES, setup) as env:
        sales = env.sim.call("+12025550140", did="5550110", patience_s=600, talk_s=None, digits=["9#"])
        await sales.ended(timeout=30)
        support = env.sim.call("+12025550141", did="5550111", patience_s=600, talk_s=None, digits=["9#"])
        await support.ended(timeout=30)
        await _settle(env, 2)
    assert (sales.outcome, sales.hangup_by) == ("answered", "system")  # the controller ends it after the survey
    assert support.outcome == "answered" and support.hangup_by != "system"  # no survey: over when the agent hangs up
    rows = await _fetch(db_dsn, "SELECT queue, score, answered FROM survey_responses")
    assert [(r["queue"], r["score"], r["answered"]) for r in rows] == [("sales", 9, True)]
    assert env.survey.stats.offered == 1


CALLBACK_RULES = """
    version: callback-dialog
    timezone: UTC
    queues:
      sales:
        callback_offer: {estimated_wait_s_over: 60, prompt: cc/callback-offer, key: "1"}
      support: {}
    ivr:
      main:
        nodes:
          - id: menu
            prompt: cc/main-menu
            timeout_s: 3
            options:
              "1": {queue: support}
              "9": {callback: support}
            on_failure: {queue: support}
    callback:
      topic_prompt: cc/callback-topics
      topics: {"1": billing, "2": technical}
    rules:
      - {id: menu-line, when: {did: ["5550113"]}, then: {ivr: main}}
    fallback: {id: fallback, queue: sales}
"""


def _paused_sales(sim: AsteriskSim) -> None:
    sim.add_endpoint("1001", "Alice", behavior=AgentBehavior("answer", ring_s=1.0, talk_s=4.0))
    sim.add_queue("sales", members=[("PJSIP/1001", "Alice", 0)])
    sim.add_queue("support", members=[("PJSIP/1001", "Alice", 0)])
    sim.pause_member("PJSIP/1001", True, "lunch")  # nobody free: a long estimated wait


async def test_ivr_callback_confirms_the_number_or_takes_another_and_a_topic(db_dsn, tmp_path) -> None:
    async with running(db_dsn, tmp_path, CALLBACK_RULES, _paused_sales) as env:
        own = env.sim.call("+12025550143", did="5550113", patience_s=600, digits=["9", "1", "1"])
        await own.ended(timeout=30)
        other = env.sim.call("+12025550144", did="5550113", patience_s=600,
                             digits=["9", "2", "2025550199#", "2"])
        await other.ended(timeout=30)
        await _settle(env, 2)
    rows = await _fetch(db_dsn, "SELECT call_id, phone, topic, source, queue, status FROM callbacks ORDER BY id")
    assert [(r["phone"], r["topic"], r["source"], r["queue"], r["status"]) for r in rows] == [
        ("+12025550143", "billing", "ivr", "support", "open"),
        ("+12025550199", "technical", "ivr", "support", "open"),
    ]
    calls = await _fetch(db_dsn, "SELECT call_id, outcome, abandon_stage FROM calls ORDER BY entered_at")
    assert [(c["outcome"], c["abandon_stage"]) for c in calls] == [("callback", None), ("callback", None)]
    assert [r["call_id"] for r in rows] == [c["call_id"] for c in calls]  # each linked to its call
    assert "queue" not in own.kinds() and "queue" not in other.kinds()  # nobody was queued
    assert env.routing.stats.callbacks_filed == 2


async def test_long_wait_offer_accepted_files_a_callback_declined_joins_the_queue(db_dsn, tmp_path) -> None:
    async with running(db_dsn, tmp_path, CALLBACK_RULES, _paused_sales) as env:
        accepts = env.sim.call("+12025550145", did="5550110", patience_s=600, digits=["1", "1", "2"])
        await accepts.ended(timeout=30)
        declines = env.sim.call("+12025550146", did="5550110", queue_patience_s=5, digits=[None])
        await declines.ended(timeout=30)
        await _settle(env, 2)
    rows = await _fetch(db_dsn, "SELECT phone, topic, source, queue FROM callbacks")
    assert [(r["phone"], r["topic"], r["source"], r["queue"]) for r in rows] == [
        ("+12025550145", "technical", "queue", "sales")]
    assert "queue" not in accepts.kinds()
    assert declines.find("queue") is not None and declines.outcome == "abandon_queue"
    calls = await _fetch(db_dsn, "SELECT outcome, abandon_stage, queue FROM calls ORDER BY entered_at")
    assert [(c["outcome"], c["abandon_stage"], c["queue"]) for c in calls] == [
        ("callback", None, None), ("abandoned", "queue", "sales")]
    offers = await _fetch(db_dsn, "SELECT detail FROM call_events WHERE kind = 'callback_offer' ORDER BY at")
    details = [json.loads(o["detail"]) if isinstance(o["detail"], str) else o["detail"] for o in offers]
    assert [(d["accepted"], d["queue"]) for d in details] == [(True, "sales"), (False, "sales")]
    assert all(d["estimated_wait_s"] > 60 for d in details)
