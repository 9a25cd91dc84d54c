"""The SSE stream: snapshot first, then notifications filtered by scope and by the query;
heartbeats; gap markers for slow clients; an agent sees only their own screen pops."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from callcenter.api.context import ApiOptions
from callcenter.domain.events import AgentPauseChanged
from tests.integration.test_api_support import Env, api_env, arrive, end, floor, offer_and_connect


class Stream:
    def __init__(self, resp: Any) -> None:
        self.resp = resp
        self.comments = 0

    async def next(self, timeout: float = 5.0) -> tuple[str, Any]:
        """The next event (name, parsed data); comment lines are counted and skipped."""
        name, data = "message", []
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.resp.content.readline()
                if not raw:
                    raise EOFError("stream closed")
                line = raw.decode().rstrip("\n")
                if line.startswith(":"):
                    self.comments += 1
                elif line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
                elif line == "" and data:
                    return name, json.loads("\n".join(data))

    async def kinds_until_quiet(self, quiet: float = 0.6) -> list[tuple[str, Any]]:
        out = []
        while True:
            try:
                out.append(await self.next(timeout=quiet))
            except TimeoutError:
                return out


@asynccontextmanager
async def stream(env: Env, who: str, query: str = "", *, via_query: bool = False) -> AsyncIterator[Stream]:
    url = f"{env.base}/api/v1/events{query}"
    headers = {}
    if via_query:
        url += ("&" if "?" in url else "?") + f"access_token={env.tokens[who]}"
    else:
        headers["Authorization"] = f"Bearer {env.tokens[who]}"
    async with env.http.get(url, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        yield Stream(resp)


async def test_snapshot_then_live_notifications_for_an_admin(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        floor(env)
        async with stream(env, "admin") as s:
            name, snap = await s.next()
            assert name == "snapshot"
            assert [c["call_id"] for c in snap["calls"]] == ["c-sales", "c-wait", "c-support"]
            assert {a["agent"] for a in snap["agents"]} == {"PJSIP/1001", "PJSIP/1002"}
            assert [q["queue"] for q in snap["queues"]] == ["sales", "support"]
            arrive(env, "c-new", "support", "+12025550120", "New")
            got = await s.kinds_until_quiet()
            assert [(k, d["data"].get("call_id") or d["data"].get("queue")) for k, d in got] == [
                ("call", "c-new"), ("call", "c-new"), ("queue", "support")]
            assert got[0][1]["data"]["event"] == "call_arrived" and got[1][1]["data"]["stage"] == "queue"
            end(env, "c-new")
            got = await s.kinds_until_quiet()
            assert ("call_ended", "c-new") in [(k, d["data"]["call_id"]) for k, d in got]


async def test_an_agent_sees_only_their_own_screen_pops_and_calls(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        floor(env)
        async with stream(env, "alice") as alice, stream(env, "bob", via_query=True) as bob:
            _, snap = await alice.next()
            assert [c["call_id"] for c in snap["calls"]] == ["c-sales"] and [q for q in snap["queues"]] == []
            assert [a["agent"] for a in snap["agents"]] == ["PJSIP/1001"]
            _, snap = await bob.next()
            assert snap["calls"] == [] and [a["agent"] for a in snap["agents"]] == ["PJSIP/1002"]

            offer_and_connect(env, "c-support", "support", "PJSIP/1002")  # bob gets the support call
            env.feed(AgentPauseChanged(pbx="ast1", call_id=None, at=env.clock[0], agent="PJSIP/1001", paused=True,
                                       reason="break"))
            end(env, "c-support")
            alice_got = await alice.kinds_until_quiet()
            bob_got = await bob.kinds_until_quiet()
        assert [(k, d["agent"]) for k, d in alice_got] == [("agent", "PJSIP/1001")]
        pops = [d for k, d in bob_got if k == "screen_pop"]
        assert [(p["data"]["call_id"], p["data"]["caller"], p["data"]["caller_name"]) for p in pops] == [
            ("c-support", "+12025550103", "Smith")]
        kinds = [k for k, _ in bob_got]
        assert "queue" not in kinds and "agent" not in kinds  # bob's own agent did not change state
        assert kinds[-1] == "call_ended"
        assert all(d["data"].get("call_id") == "c-support" for k, d in bob_got)


async def test_supervisor_scope_and_query_filters(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        floor(env)
        async with stream(env, "sup_blue") as blue, stream(env, "sup_red", "?kinds=screen_pop,queue") as red, \
                stream(env, "admin", "?snapshot=false&queue=sales&kinds=call") as sales:
            _, snap = await blue.next()
            assert [c["call_id"] for c in snap["calls"]] == ["c-support"]
            assert [q["queue"] for q in snap["queues"]] == ["support"]
            await red.next()
            arrive(env, "c-s2", "sales", "+12025550121", "S2")
            offer_and_connect(env, "c-s2", "sales", "PJSIP/1001")
            arrive(env, "c-b2", "support", "+12025550122", "B2")
            end(env, "c-s2")
            blue_got = await blue.kinds_until_quiet()
            red_got = await red.kinds_until_quiet()
            sales_got = await sales.kinds_until_quiet()
        assert {d["data"].get("call_id") for k, d in blue_got if k in ("call", "call_ended")} == {"c-b2"}
        assert {d["queue"] for k, d in blue_got if k == "queue"} == {"support"}
        assert {k for k, _ in red_got} == {"screen_pop", "queue"}
        assert {d["queue"] for _, d in red_got} == {"sales"}
        assert {k for k, _ in sales_got} == {"call", "call_ended"}  # call_ended follows the calls shown
        assert {d["data"]["call_id"] for _, d in sales_got} == {"c-s2"}


async def test_heartbeats_and_gaps(database, tmp_path) -> None:
    opts = ApiOptions(sse_heartbeat_s=0.1, sse_queue_size=3, webhook_refresh_s=0.0)
    async with api_env(database, tmp_path, options=opts) as env:
        floor(env)
        async with stream(env, "admin", "?snapshot=false") as s:
            assert await s.kinds_until_quiet(quiet=0.45) == []
            assert s.comments >= 2  # ": heartbeat" lines while nothing happens (retry: is not one)
            # a burst larger than the client's queue, published while the handler cannot run
            for i in range(10):
                arrive(env, f"burst-{i}", "sales", f"+1202555013{i}", "Burst")
            got = await s.kinds_until_quiet()
        assert got[0][0] == "gap" and got[0][1]["data"]["missed"] > 0
        assert len(got) <= 1 + 3


async def test_sse_clients_are_counted_and_the_stream_ends_on_shutdown(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        async with stream(env, "admin") as s:
            await s.next()
            _, metrics, _ = await env.req("GET", "/metrics")
            assert "callcenter_sse_clients 1.0" in metrics
            env.state.stopping.set()
            with_eof = False
            try:
                await s.kinds_until_quiet(quiet=2.0)
            except EOFError:
                with_eof = True
            assert with_eof
        await asyncio.sleep(0.1)
        assert env.state.metrics.sse_clients == 0


async def test_detractors_and_callback_escalations_reach_the_supervisors_of_the_team(database, tmp_path) -> None:
    from sqlalchemy import text

    async with api_env(database, tmp_path) as env:
        async with env.engine.begin() as conn:
            anna = (await conn.execute(text("INSERT INTO customers (name) VALUES ('Anna Ivanova') RETURNING id"))
                    ).scalar_one()
        q = "?snapshot=false&kinds=detractor,callback_overdue"
        async with stream(env, "sup_red", q) as red, stream(env, "sup_blue", q) as blue, \
                stream(env, "admin", q) as admin, stream(env, "alice", q) as alice, \
                stream(env, "bob", q) as bob:
            bus = env.controller.bus
            bus.publish("detractor", {"call_id": "d-red", "agent": "PJSIP/1001", "queue": "sales",
                                      "customer_id": anna, "score": 3}, agent="PJSIP/1001", queue="sales")
            bus.publish("detractor", {"call_id": "d-blue", "agent": "PJSIP/1002", "queue": "support",
                                      "customer_id": None, "score": 0}, agent="PJSIP/1002", queue="support")
            # alice (red) answered a support call (blue's queue): both supervisors may call back
            bus.publish("detractor", {"call_id": "d-both", "agent": "PJSIP/1001", "queue": "support",
                                      "customer_id": None, "score": 6}, agent="PJSIP/1001", queue="support")
            bus.publish("callback_overdue", {"callback_id": 7, "reason": "overdue"}, queue="sales")
            got = {who: await s.kinds_until_quiet() for who, s in
                   (("red", red), ("blue", blue), ("admin", admin), ("alice", alice), ("bob", bob))}

    def seen(who: str) -> list[tuple[str, Any]]:
        return [(k, d["data"].get("call_id") or d["data"].get("callback_id")) for k, d in got[who]]

    assert seen("red") == [("detractor", "d-red"), ("detractor", "d-both"), ("callback_overdue", 7)]
    assert seen("blue") == [("detractor", "d-blue"), ("detractor", "d-both")]
    assert seen("admin") == [("detractor", "d-red"), ("detractor", "d-blue"), ("detractor", "d-both"),
                             ("callback_overdue", 7)]
    assert seen("alice") == [] and seen("bob") == []  # the scored agents are not told
    red_detractor = got["red"][0][1]
    assert (red_detractor["agent"], red_detractor["queue"]) == ("PJSIP/1001", "sales")
    assert red_detractor["data"] == {"call_id": "d-red", "agent": "PJSIP/1001", "queue": "sales",
                                     "customer_id": anna, "customer_name": "Anna Ivanova", "score": 3}
    assert got["blue"][0][1]["data"]["customer_name"] is None  # an unknown caller


async def test_call_ended_without_call_follows_the_calls_the_client_may_see(database, tmp_path) -> None:
    # The documented "screen pops and hang-ups" stream: kinds=screen_pop,call_ended (no call).
    async with api_env(database, tmp_path) as env:
        floor(env)
        async with stream(env, "admin", "?snapshot=false&kinds=screen_pop,call_ended") as pops, \
                stream(env, "sup_blue", "?snapshot=false&kinds=call_ended") as blue:
            arrive(env, "c-s3", "sales", "+12025550131", "S3")
            offer_and_connect(env, "c-s3", "sales", "PJSIP/1001")
            arrive(env, "c-b3", "support", "+12025550132", "B3")
            end(env, "c-s3")
            end(env, "c-b3")
            got = await pops.kinds_until_quiet()
            blue_got = await blue.kinds_until_quiet()
        assert {k for k, _ in got} == {"screen_pop", "call_ended"}  # no call notifications delivered
        assert sorted(d["data"]["call_id"] for k, d in got if k == "call_ended") == ["c-b3", "c-s3"]
        assert [(k, d["data"]["call_id"]) for k, d in blue_got] == [("call_ended", "c-b3")]  # blue's team only
