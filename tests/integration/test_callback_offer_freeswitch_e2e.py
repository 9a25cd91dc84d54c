"""The whole callback path on FreeSWITCH, end to end: a long estimated wait makes routing offer a
callback (the shipped dialplan's park, sendmsg play_and_get_digits), the caller accepts, keys a
topic, the request is filed in PostgreSQL and linked to the call (outcome ``callback``, never an
abandon); when the agent is free again the callback service rings the agent first through the
mod_callcenter contact, bridges to the customer and closes the request ``completed``."""

from __future__ import annotations

import asyncio
import functools
from datetime import timedelta

from callcenter.callbacks.core import CallbackPolicy
from callcenter.callbacks.service import CallbackService
from callcenter.sim.asterisk import AgentBehavior
from callcenter.sim.freeswitch import FreeswitchSim
from tests.integration._stack import PBX, stack

RULES = """
    version: callback-offer-fs
    timezone: UTC
    queues:
      sales:
        pbx_queue: {freeswitch: sales@default}
        callback_offer: {estimated_wait_s_over: 60, prompt: cc/callback-offer, key: "1"}
    callback:
      topic_prompt: cc/callback-topics
      topics: {"1": billing, "2": technical}
    rules: []
    fallback: {id: fallback, queue: sales}
"""


async def test_long_wait_offer_accepted_then_dispatched_agent_first_and_completed(db_dsn, tmp_path) -> None:
    sim = FreeswitchSim(seed=5, speed=20, epoch=1_795_360_000)
    sim.add_endpoint("1001", "Alice", behavior=AgentBehavior("answer", ring_s=1.0, talk_s=None))
    sim.tiers[:] = [t for t in sim.tiers if t.agent == "1001"]
    sim.remote_behaviors["+12025550145"] = AgentBehavior("answer", ring_s=2.0, talk_s=5.0)
    async with stack(db_dsn, tmp_path, sim, rules=RULES, survey=False) as s:
        assert s.routing is not None
        sim.pause_member("1001", True)  # nobody free: a long estimated wait
        # agents from the live registry (the tiers mod_callcenter lists), by the rules' queue
        # names, as the composition root wires it
        service = CallbackService(s.controller, s.database.engine, pbx=PBX, interval=3600,
                                  policy=CallbackPolicy(deadline=timedelta(hours=2)),
                                  pbx_queue=functools.partial(s.routing.pbx_queue, pbx=PBX))
        try:
            call = sim.call("+12025550145", did="5550110", patience_s=600, digits=["1", "1", "2"])
            await call.ended(timeout=30)
            async with asyncio.timeout(15):
                while s.controller.stats.calls_ended < 1 or not await s.fetch("SELECT 1 FROM callbacks"):
                    await asyncio.sleep(0.05)
            await s.recorder.drain()
            (cb,) = await s.fetch("SELECT id, call_id, phone, topic, source, queue, status FROM callbacks")
            assert (cb["phone"], cb["topic"], cb["source"], cb["queue"], cb["status"]) == (
                "+12025550145", "technical", "queue", "sales", "open")
            (row,) = await s.fetch("SELECT call_id, outcome, abandon_stage FROM calls")
            assert (row["call_id"], row["outcome"], row["abandon_stage"]) == (cb["call_id"], "callback", None)
            assert "queue" not in call.kinds()  # never queued
            assert await service.tick() == []  # the agent is still on a break: nobody to call back with

            sim.pause_member("1001", False)
            async with asyncio.timeout(10):
                while not any(a.available for a in s.controller.live.agents.values()):
                    await asyncio.sleep(0.02)
            assert [type(a).__name__ for a in await service.tick()] == ["Dispatch"]
            async with asyncio.timeout(20):
                while (await s.fetch("SELECT status FROM callbacks"))[0]["status"] != "completed":
                    await asyncio.sleep(0.05)
            (att,) = await s.fetch("SELECT agent, result FROM callback_attempts")
            assert (att["agent"], att["result"]) == ("1001", "completed")
        finally:
            await service.close()
