"""Agent-first callbacks on FreeSWITCH, end to end: requests in PostgreSQL, the callback
service, the real ESL adapter, and the simulator running the shipped dialplan (cc-callback) and
mod_callcenter sample. The adapter rings the agent through its mod_callcenter contact; the agent
who answers is bridged to the customer through the gateway; the result comes from the agent
leg's CHANNEL_HANGUP_COMPLETE (originate_disposition) as a PBX-neutral CallbackDialed."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest

from callcenter.bus import Notification
from callcenter.callbacks.core import CallbackPolicy
from callcenter.callbacks.service import CallbackService
from callcenter.domain.events import CallbackDialed, Event, OriginateResult
from callcenter.sim.asterisk import AgentBehavior
from callcenter.sim.freeswitch import FreeswitchSim
from callcenter.storage import db as dbmod
from tests.integration._stack import PBX, stack

ANSWERS = "+12025550171"  # picks up after 2 s, talks 3 s
NEVER = "+12025550172"  # never picks up
BUSY = "+12025550173"  # rejects at once
LONG = "+12025550174"  # talks longer than the agent: the agent hangs up first


@pytest.fixture
async def env(db_dsn, tmp_path):
    sim = FreeswitchSim(seed=3, speed=20, epoch=1_795_360_000)
    sim.add_endpoint("1001", "Alice", behavior=AgentBehavior("answer", ring_s=1.0, talk_s=None))
    sim.add_endpoint("1002", "Bob", behavior=AgentBehavior("noanswer"))
    sim.remote_behaviors.update({
        ANSWERS: AgentBehavior("answer", ring_s=2.0, talk_s=3.0),
        NEVER: AgentBehavior("noanswer"),
        BUSY: AgentBehavior("reject"),
        LONG: AgentBehavior("answer", ring_s=1.0, talk_s=600.0),
    })
    async with stack(db_dsn, tmp_path, sim) as s:
        policy = CallbackPolicy(max_attempts=5, spacing=(timedelta(minutes=5),), deadline=timedelta(hours=2))
        agents = {"sales": ["1001"]}
        service = CallbackService(s.controller, s.database.engine, pbx=PBX, interval=3600, policy=policy,
                                  agents=lambda: agents)
        events: list[Event] = []
        s.controller.listeners.append(events.append)
        published: list[Notification] = []
        s.controller.bus.hooks.append(published.append)
        try:
            yield sim, service, db_dsn, events, published, agents
        finally:
            await service.close()


async def _file(dsn: str, sim: FreeswitchSim, phone: str) -> int:
    now = sim.clock()
    conn = await asyncpg.connect(**dbmod.asyncpg_dsn(dsn))
    try:
        return await conn.fetchval(
            "INSERT INTO callbacks (phone, name, topic, source, queue, due_at, deadline_at, created_at) "
            "VALUES ($1, 'Web visitor', 'invoice', 'api', 'sales', $2, $3, $2) RETURNING id",
            phone, now - timedelta(seconds=1), now + timedelta(hours=2))
    finally:
        await conn.close()


async def _attempt(dsn: str, callback_id: int, timeout: float = 20.0) -> asyncpg.Record:
    async with asyncio.timeout(timeout):
        while True:
            conn = await asyncpg.connect(**dbmod.asyncpg_dsn(dsn))
            try:
                row = await conn.fetchrow(
                    "SELECT a.result, a.agent, a.call_id, a.ended_at, c.status, c.outcome, c.due_at "
                    "FROM callback_attempts a JOIN callbacks c ON c.id = a.callback_id "
                    "WHERE a.callback_id = $1 ORDER BY a.attempt DESC",
                    callback_id)
            finally:
                await conn.close()
            if row is not None and row["result"] is not None:
                return row
            await asyncio.sleep(0.05)


async def test_agent_first_callback_is_completed(env) -> None:
    sim, service, dsn, events, published, _ = env
    cb = await _file(dsn, sim, ANSWERS)
    actions = await service.tick()
    assert [type(a).__name__ for a in actions] == ["Dispatch"]
    row = await _attempt(dsn, cb)
    assert (row["result"], row["agent"], row["status"], row["outcome"]) == ("completed", "1001", "completed",
                                                                             "completed")
    (dialed,) = [e for e in events if isinstance(e, CallbackDialed)]
    assert (dialed.callback_id, dialed.attempt, dialed.dial_status) == (cb, 1, "ANSWER")
    assert row["call_id"] == dialed.callback_call_id  # the agent leg, linked to the attempt
    pops = [n for n in published if n.kind == "screen_pop"]
    assert pops and pops[0].data["callback_id"] == cb and pops[0].agent == "1001"
    assert [n.data["result"] for n in published if n.kind == "callback"] == ["completed"]


@pytest.mark.parametrize(("phone", "result"), [(NEVER, "customer_no_answer"), (BUSY, "busy")])
async def test_customer_not_reached_is_retried_later(env, phone: str, result: str) -> None:
    sim, service, dsn, _, _, _ = env
    cb = await _file(dsn, sim, phone)
    await service.tick()
    row = await _attempt(dsn, cb, timeout=30)
    # the customer was dialled: open again, due after the policy's spacing (5 min)
    assert (row["result"], row["status"], row["outcome"]) == (result, "open", None)
    assert row["due_at"] - row["ended_at"] == timedelta(minutes=5)


async def test_agent_hanging_up_mid_conversation_still_completes(env) -> None:
    sim, service, dsn, events, _, _ = env
    sim.set_behavior("1001", AgentBehavior("answer", ring_s=1.0, talk_s=4.0))
    cb = await _file(dsn, sim, LONG)
    await service.tick()
    row = await _attempt(dsn, cb)
    assert (row["result"], row["status"]) == ("completed", "completed")
    # the agent's leg ended first, still with bridge's SUCCESS on it
    assert [e.dial_status for e in events if isinstance(e, CallbackDialed)] == ["ANSWER"]


async def test_agent_not_answering_is_the_originates_failure(env) -> None:
    sim, service, dsn, events, _, agents = env
    agents["sales"] = ["1002"]
    cb = await _file(dsn, sim, ANSWERS)
    await service.tick()
    row = await _attempt(dsn, cb, timeout=30)
    assert (row["result"], row["agent"]) == ("agent_no_answer", "1002")
    assert not [e for e in events if isinstance(e, CallbackDialed)]
    assert [e.success for e in events if isinstance(e, OriginateResult)] == [False]


async def test_unknown_agent_fails_the_attempt_without_dialling(env) -> None:
    sim, service, dsn, events, _, agents = env
    agents["sales"] = ["7777"]
    cb = await _file(dsn, sim, ANSWERS)
    await service.tick()
    row = await _attempt(dsn, cb)
    assert (row["result"], row["agent"]) == ("failed", "7777")
    assert not [e for e in events if isinstance(e, OriginateResult)]
