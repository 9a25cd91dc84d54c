"""Webhooks: a local receiver checks the HMAC signature; a failing receiver is retried with
back-off and given up on, counted in the metrics; the bus hook never blocks publishing."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from callcenter.api.context import ApiOptions
from callcenter.api.webhooks import verify
from tests.integration.test_api_support import Env, api_env, end, floor, offer_and_connect


class Receiver:
    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = statuses or []  # answers in order; then 200
        self.requests: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append({"at": time.monotonic(), "headers": dict(request.headers), "body": body})
        self.arrived.set()
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status)


@asynccontextmanager
async def receiver(statuses: list[int] | None = None) -> AsyncIterator[tuple[Receiver, str]]:
    r = Receiver(statuses)
    app = web.Application()
    app.router.add_post("/hook", r.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield r, f"http://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()


async def add_hook(env: Env, url: str, **kw: Any) -> dict[str, Any]:
    status, hook, _ = await env.req("POST", "/api/v1/webhooks", json={"url": url, **kw})
    assert status == 201
    return hook


async def wait_for(cond: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)


async def test_screen_pops_and_call_ends_are_signed(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env, receiver() as (rec, url):
        hook = await add_hook(env, url)
        floor(env)  # screen pop: c-sales offered to alice
        offer_and_connect(env, "c-support", "support", "PJSIP/1002")  # screen pop: c-support to bob
        end(env, "c-support")
        await wait_for(lambda: len(rec.requests) >= 3)
        await asyncio.sleep(0.2)
        kinds = [json.loads(r["body"])["kind"] for r in rec.requests]
        assert kinds.count("screen_pop") == 2 and kinds.count("call_ended") == 1  # c-sales, c-support pops
        assert set(kinds) == {"screen_pop", "call_ended"}  # call/queue/agent changes are not sent
        for r in rec.requests:
            h = r["headers"]
            ts, sig = h["X-Callcenter-Timestamp"], h["X-Callcenter-Signature"]
            assert abs(int(ts) - time.time()) < 60
            # what a receiver computes: HMAC-SHA256(secret, "<timestamp>.<body>")
            expected = hmac.new(hook["secret"].encode(), ts.encode() + b"." + r["body"], hashlib.sha256).hexdigest()
            assert sig == f"sha256={expected}"
            assert verify(hook["secret"], ts, r["body"], sig)
            assert not verify("another secret", ts, r["body"], sig)
            assert not verify(hook["secret"], str(int(ts) + 1), r["body"], sig)  # the timestamp is signed too
            assert h["Content-Type"] == "application/json" and h["X-Callcenter-Delivery"]
        pop = next(json.loads(r["body"]) for r in rec.requests
                   if json.loads(r["body"])["data"].get("call_id") == "c-support")
        assert (pop["data"]["agent"], pop["data"]["caller"], pop["data"]["caller_name"]) == (
            "PJSIP/1002", "+12025550103", "Smith")
        _, metrics, _ = await env.req("GET", "/metrics")
        assert 'callcenter_webhook_deliveries_total{result="ok"} 3.0' in metrics


async def test_a_failing_receiver_is_retried_with_backoff_then_counted(database, tmp_path) -> None:
    opts = ApiOptions(webhook_backoff_s=0.1, webhook_backoff_max_s=1.0, webhook_max_attempts=4,
                      webhook_refresh_s=0.0, sse_heartbeat_s=1.0)
    async with api_env(database, tmp_path, options=opts) as env, receiver([503, 500, 502, 500]) as (rec, url):
        await add_hook(env, url, kinds=["screen_pop"])
        floor(env)  # one screen pop (c-sales offered to alice)
        await wait_for(lambda: len(rec.requests) >= 4)
        await asyncio.sleep(0.3)
        assert len(rec.requests) == 4  # max_attempts, then given up
        gaps = [b["at"] - a["at"] for a, b in zip(rec.requests, rec.requests[1:], strict=False)]
        # 0.1, 0.2, 0.4 s: doubling (with a little slack for scheduling)
        for gap, want in zip(gaps, (0.1, 0.2, 0.4), strict=True):
            assert want * 0.9 <= gap < want + 0.6, gaps
        assert len({r["headers"]["X-Callcenter-Delivery"] for r in rec.requests}) == 1  # same delivery id
        _, metrics, _ = await env.req("GET", "/metrics")
        assert "callcenter_webhook_failures_total 1.0" in metrics
        assert 'callcenter_webhook_deliveries_total{result="retry"} 3.0' in metrics
        assert 'callcenter_webhook_deliveries_total{result="failed"} 1.0' in metrics


async def test_a_receiver_that_recovers_gets_the_notification(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env, receiver([500]) as (rec, url):
        await add_hook(env, url, kinds=["screen_pop"])
        floor(env)
        await wait_for(lambda: len(rec.requests) >= 2)
        await asyncio.sleep(0.2)
        assert len(rec.requests) == 2
        _, metrics, _ = await env.req("GET", "/metrics")
        assert 'callcenter_webhook_deliveries_total{result="ok"} 1.0' in metrics
        assert "callcenter_webhook_failures_total 0.0" in metrics


async def test_a_4xx_answer_is_not_retried(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env, receiver([400]) as (rec, url):
        await add_hook(env, url, kinds=["screen_pop"])
        floor(env)
        await wait_for(lambda: len(rec.requests) >= 1)
        await asyncio.sleep(0.3)
        assert len(rec.requests) == 1
        _, metrics, _ = await env.req("GET", "/metrics")
        assert "callcenter_webhook_failures_total 1.0" in metrics


async def test_an_unreachable_receiver_does_not_slow_publishing(database, tmp_path) -> None:
    opts = ApiOptions(webhook_queue_size=5, webhook_backoff_s=10.0, webhook_refresh_s=0.0)
    async with api_env(database, tmp_path, options=opts) as env:
        await add_hook(env, "http://127.0.0.1:9/hook", kinds=["screen_pop", "call"])
        await env.state.webhooks.targets()
        bus = env.controller.bus
        started = time.perf_counter()
        for i in range(200):
            bus.publish("screen_pop", {"call_id": f"x{i}"}, agent="PJSIP/1001")
        elapsed = time.perf_counter() - started
        assert elapsed < 0.2  # enqueue only: no network, no waiting (a connect alone would fail slower)
        assert env.state.webhooks.queue.qsize() <= 5
        _, metrics, _ = await env.req("GET", "/metrics")
        dropped = float(next(line.split()[-1] for line in metrics.splitlines()
                             if line.startswith("callcenter_webhook_dropped_total")))
        assert dropped >= 195


async def test_a_detractor_is_sent_to_receivers_that_ask_for_it_with_the_customer_name(database, tmp_path) -> None:
    from sqlalchemy import text

    async with api_env(database, tmp_path) as env, receiver() as (rec, url), receiver() as (plain, plain_url):
        async with env.engine.begin() as conn:
            anna = (await conn.execute(text("INSERT INTO customers (name) VALUES ('Anna Ivanova') RETURNING id"))
                    ).scalar_one()
        hook = await add_hook(env, url, kinds=["detractor"])
        await add_hook(env, plain_url)  # the default kinds: screen pops and call ends only
        bus = env.controller.bus
        bus.publish("detractor", {"call_id": "d1", "agent": "PJSIP/1001", "queue": "sales", "customer_id": anna,
                                  "score": 2}, agent="PJSIP/1001", queue="sales")
        bus.publish("callback_overdue", {"callback_id": 1}, queue="sales")  # not asked for
        await wait_for(lambda: len(rec.requests) >= 1)
        await asyncio.sleep(0.3)
        assert len(rec.requests) == 1 and plain.requests == []
        r = rec.requests[0]
        h = r["headers"]
        assert verify(hook["secret"], h["X-Callcenter-Timestamp"], r["body"], h["X-Callcenter-Signature"])
        body = json.loads(r["body"])
        assert (body["kind"], body["agent"], body["queue"]) == ("detractor", "PJSIP/1001", "sales")
        assert body["data"] == {"call_id": "d1", "agent": "PJSIP/1001", "queue": "sales", "customer_id": anna,
                                "customer_name": "Anna Ivanova", "score": 2}
        status, hooks, _ = await env.req("GET", "/api/v1/webhooks")
        assert status == 200 and ["detractor"] in [w["kinds"] for w in hooks["webhooks"]]


async def add_team_hook(env: Env, url: str, team: str, kinds: list[str]) -> int:
    """A receiver of one team (``webhooks.team_id``), written directly: any team, whoever supervises it."""
    from sqlalchemy import text

    async with env.engine.begin() as conn:
        hook_id = (await conn.execute(text(
            "INSERT INTO webhooks (url, secret, kinds, team_id) VALUES (:u, :s, :k, :t) RETURNING id"),
            {"u": url, "s": "s" * 32, "k": kinds, "t": env.ids[team]})).scalar_one()
    env.state.webhooks.invalidate()
    await env.state.webhooks.targets()
    return int(hook_id)


def _got(rec: Receiver) -> list[tuple[str, Any]]:
    return [(b["kind"], b["data"].get("call_id")) for b in (json.loads(r["body"]) for r in rec.requests)]


async def test_a_team_receiver_gets_what_the_teams_supervisors_get_on_the_event_stream(database, tmp_path) -> None:
    kinds = ["screen_pop", "call_ended", "detractor", "callback_overdue"]
    async with api_env(database, tmp_path) as env, receiver() as (red, red_url), \
            receiver() as (blue, blue_url), receiver() as (every, every_url):
        await add_team_hook(env, red_url, "red", kinds)  # red: alice (PJSIP/1001), queue sales
        await add_team_hook(env, blue_url, "blue", kinds)  # blue: bob (PJSIP/1002), queue support
        await add_hook(env, every_url, kinds=kinds)  # no team: all of them, as before
        floor(env)  # screen pop: c-sales offered to alice in sales
        offer_and_connect(env, "c-support", "support", "PJSIP/1002")  # screen pop: c-support to bob
        end(env, "c-support")
        end(env, "c-sales")
        end(env, "c-wait")  # waited in sales: red's queue, so red was shown it
        bus = env.controller.bus
        for call_id, agent, queue in (("d-red", "PJSIP/1001", "sales"), ("d-blue", "PJSIP/1002", "support"),
                                      ("d-both", "PJSIP/1001", "support")):  # alice (red) on blue's queue
            bus.publish("detractor", {"call_id": call_id, "agent": agent, "queue": queue, "score": 3,
                                      "customer_id": None}, agent=agent, queue=queue)
        bus.publish("callback_overdue", {"call_id": "cb-blue", "reason": "overdue"}, queue="support")
        await wait_for(lambda: len(every.requests) >= 9 and len(red.requests) >= 5 and len(blue.requests) >= 5)
        await asyncio.sleep(0.3)
    # deliveries run concurrently: compare without order
    assert sorted(_got(red)) == sorted([("screen_pop", "c-sales"), ("call_ended", "c-sales"), ("call_ended", "c-wait"),
                                        ("detractor", "d-red"), ("detractor", "d-both")])
    assert sorted(_got(blue)) == sorted([("screen_pop", "c-support"), ("call_ended", "c-support"),
                                         ("detractor", "d-blue"), ("detractor", "d-both"),
                                         ("callback_overdue", "cb-blue")])
    assert sorted(_got(every)) == sorted(set(_got(red)) | set(_got(blue)))  # 9: d-both once
    assert {json.loads(r["body"])["kind"] for r in red.requests} <= set(kinds)  # no call/queue/agent changes


async def test_a_team_receiver_follows_the_teams_membership_and_goes_with_the_team(database, tmp_path) -> None:
    from sqlalchemy import text

    async with api_env(database, tmp_path) as env, receiver() as (red, red_url):
        await add_team_hook(env, red_url, "red", ["screen_pop"])
        bus = env.controller.bus
        bus.publish("screen_pop", {"call_id": "p1"}, agent="PJSIP/1002", queue="support")  # bob: blue
        bus.publish("screen_pop", {"call_id": "p0"}, agent="PJSIP/1001", queue="sales")  # alice: red
        await wait_for(lambda: len(red.requests) >= 1)  # p1 was taken off the queue before p0
        async with env.engine.begin() as conn:  # bob joins red
            await conn.execute(text("INSERT INTO team_members (team_id, agent_id) VALUES (:t, :a)"),
                               {"t": env.ids["red"], "a": env.ids["bob"]})
        await asyncio.sleep(0.2)
        bus.publish("screen_pop", {"call_id": "p2"}, agent="PJSIP/1002", queue="support")  # read again (refresh 0)
        await wait_for(lambda: len(red.requests) >= 2)
        async with env.engine.begin() as conn:
            await conn.execute(text("DELETE FROM teams WHERE id = :t"), {"t": env.ids["red"]})
        await asyncio.sleep(0.2)
        bus.publish("screen_pop", {"call_id": "p3"}, agent="PJSIP/1001", queue="sales")
        await asyncio.sleep(0.3)
        assert _got(red) == [("screen_pop", "p0"), ("screen_pop", "p2")]
        assert [t.id for t in await env.state.webhooks.targets()] == []


async def test_supervisors_manage_the_receivers_of_their_own_teams_only(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        red, blue = env.ids["red"], env.ids["blue"]
        url = "https://crm.example/hooks/cc"
        # a supervisor: only with a team, and only one of theirs
        status, body, _ = await env.req("POST", "/api/v1/webhooks", "sup_red", json={"url": url})
        assert status == 403 and "admins only" in body["detail"]
        status, _, _ = await env.req("POST", "/api/v1/webhooks", "sup_red", json={"url": url, "team_id": blue})
        assert status == 403
        status, red_hook, _ = await env.req("POST", "/api/v1/webhooks", "sup_red",
                                            json={"url": url, "team_id": red, "kinds": ["detractor"]})
        assert status == 201 and red_hook["team_id"] == red and red_hook["secret"]
        status, blue_hook, _ = await env.req("POST", "/api/v1/webhooks", "sup_blue", json={"url": url, "team_id": blue})
        assert status == 201 and blue_hook["team_id"] == blue
        # an admin: any team, or none (all teams); a team that does not exist is a 422
        status, all_hook, _ = await env.req("POST", "/api/v1/webhooks", json={"url": url})
        assert status == 201 and all_hook["team_id"] is None
        status, other, _ = await env.req("POST", "/api/v1/webhooks", json={"url": url, "team_id": blue})
        assert status == 201 and other["team_id"] == blue
        status, body, _ = await env.req("POST", "/api/v1/webhooks", json={"url": url, "team_id": 999999})
        assert status == 422 and body["errors"][0]["path"] == "team_id"
        for who in ("analyst", "alice"):
            status, _, _ = await env.req("POST", "/api/v1/webhooks", who, json={"url": url, "team_id": red})
            assert status == 403

        async def listed(who: str) -> list[tuple[int, int | None]]:
            status, body, _ = await env.req("GET", "/api/v1/webhooks", who)
            assert status == 200 and all("secret" not in w for w in body["webhooks"])
            return [(w["id"], w["team_id"]) for w in body["webhooks"]]

        assert await listed("sup_red") == [(red_hook["id"], red)]
        assert await listed("sup_blue") == [(blue_hook["id"], blue), (other["id"], blue)]
        assert await listed("admin") == [(red_hook["id"], red), (blue_hook["id"], blue), (all_hook["id"], None),
                                         (other["id"], blue)]
        # deleting: not another team's, not one of all teams
        for hook_id in (blue_hook["id"], all_hook["id"], 999999):
            status, _, _ = await env.req("DELETE", f"/api/v1/webhooks/{hook_id}", "sup_red")
            assert status == 403
        status, _, _ = await env.req("DELETE", f"/api/v1/webhooks/{red_hook['id']}", "sup_red")
        assert status == 204
        status, _, _ = await env.req("DELETE", f"/api/v1/webhooks/{red_hook['id']}")
        assert status == 404
        status, _, _ = await env.req("DELETE", f"/api/v1/webhooks/{blue_hook['id']}")  # an admin: any
        assert status == 204
        assert await listed("admin") == [(all_hook["id"], None), (other["id"], blue)]


async def test_a_receiver_a_supervisor_adds_gets_their_teams_detractors_only(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env, receiver() as (rec, url):
        status, hook, _ = await env.req("POST", "/api/v1/webhooks", "sup_blue",
                                        json={"url": url, "team_id": env.ids["blue"], "kinds": ["detractor"]})
        assert status == 201
        await wait_for(lambda: "detractor" in env.state.webhooks.kinds)  # the table is read again after a POST
        bus = env.controller.bus
        for call_id, agent, queue in (("d-red", "PJSIP/1001", "sales"), ("d-blue", "PJSIP/1002", "support")):
            bus.publish("detractor", {"call_id": call_id, "agent": agent, "queue": queue, "score": 1,
                                      "customer_id": None}, agent=agent, queue=queue)
        await wait_for(lambda: len(rec.requests) >= 1)
        await asyncio.sleep(0.3)
        assert _got(rec) == [("detractor", "d-blue")]
        h = rec.requests[0]["headers"]
        assert verify(hook["secret"], h["X-Callcenter-Timestamp"], rec.requests[0]["body"],
                      h["X-Callcenter-Signature"])
