"""Server-sent events: the live notifications of the bus, filtered per client.

Each client gets its own bus subscription (bounded; a slow client loses its oldest
notifications and receives a ``gap`` event saying how many, never slowing the controller).
The filter runs inside ``Bus.publish``, so it is set lookups only: the caller's scope is read
once when the stream opens.

What a token sees: admins everything; supervisors the calls, agents and queues of their teams,
the callback requests and escalations (``callback``, ``callback_overdue``) of their teams' queues
and the ``detractor`` scores (a post-call survey scored 0-6) of their teams' agents or queues;
agents their own agent changes, screen pops and calls (not the detractor scores of their own
calls: those are for the supervisor who calls the customer back). A ``call_ended`` carries no
queue or agent, so it is shown to a client that was shown that call before.

``EventSource`` cannot send headers, so this one route also takes the token as
``?access_token=``. A token in a URL can end up in proxy logs and browser history: prefer a
short-lived token for wallboards (``expires_days``), and the page removes it from its own URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web

from callcenter.api.auth import Scope
from callcenter.api.live import agent_views
from callcenter.api.models import EventsQuery
from callcenter.api.router import Call, json_default, route
from callcenter.api.webhooks import with_customer_name
from callcenter.bus import Notification


def make_filter(scope: Scope, q: EventsQuery, seen: set[str], role: str | None = None) -> Any:
    kinds = frozenset(q.kinds) if q.kinds else None

    def visible(n: Notification) -> bool:
        if n.kind == "call_ended":
            return n.data.get("call_id") in seen
        if scope.everything:
            return True
        if n.kind == "call":
            return scope.call(n.data)
        if n.kind == "screen_pop":
            return scope.interface(n.agent) or scope.queue(n.queue)
        if n.kind == "agent":
            return scope.interface(n.agent)
        if n.kind in ("queue", "callback", "callback_overdue"):
            return scope.queue(n.queue)
        if n.kind == "detractor":
            return role != "agent" and (scope.interface(n.agent) or scope.queue(n.queue))
        return False

    def wanted(n: Notification) -> bool:
        if n.kind == "call_ended":
            return True  # already tied to a call this client was shown
        if q.queue is not None and n.queue != q.queue:
            return False
        if q.agent is not None and n.agent != q.agent and q.agent not in (n.data.get("ringing") or ()):
            return False
        return True

    # call_ended is delivered for the calls this client may see; a client that asked for
    # call_ended without call (kinds=screen_pop,call_ended) still needs the calls remembered.
    remember_only = kinds is not None and "call" not in kinds and "call_ended" in kinds

    def accept(n: Notification) -> bool:
        call_id = n.data.get("call_id")
        if n.kind == "call" and remember_only:
            if visible(n) and wanted(n) and isinstance(call_id, str):
                seen.add(call_id)  # remembered for its call_ended, not delivered
            return False
        if kinds is not None and n.kind not in kinds and not (n.kind == "call_ended" and "call" in kinds):
            return False
        ok = visible(n) and wanted(n)
        if ok and n.kind == "call" and isinstance(call_id, str):
            seen.add(call_id)
        elif ok and n.kind == "call_ended":
            seen.discard(call_id)  # type: ignore[arg-type]
        return ok

    return accept


def _frame(event: str, data: Any, event_id: int | None = None) -> bytes:
    out = f"id: {event_id}\n" if event_id else ""
    payload = json.dumps(data, default=json_default, ensure_ascii=False)
    return (out + f"event: {event}\n" + f"data: {payload}\n\n").encode()


async def _snapshot(c: Call, scope: Scope, q: EventsQuery, seen: set[str]) -> dict[str, Any]:
    live = c.ctx.controller.live
    now = c.ctx.controller.clock()
    calls = [x for x in (call.to_dict(now) for call in live.calls.values()) if scope.call(x)]
    if q.queue:
        calls = [x for x in calls if x["queue"] == q.queue]
    if q.agent:
        calls = [x for x in calls if x["agent"] == q.agent or q.agent in x["ringing"]]
    seen.update(x["call_id"] for x in calls)
    agents = [a for a in await agent_views(c) if q.agent is None or a["agent"] == q.agent]
    queues = [live.queue_dict(name, now) for name in sorted(live.queues)
              if scope.queue(name) and (q.queue is None or name == q.queue)]
    return {"calls": sorted(calls, key=lambda x: x["entered_at"]), "agents": agents, "queues": queues}


@route("GET", "/api/v1/events", roles={"admin", "supervisor", "agent"}, query=EventsQuery, query_token=True,
       produces=("text/event-stream",), tag="live",
       summary="Live notifications as server-sent events (filter by kinds, queue, agent)")
async def events(c: Call) -> Any:
    """Events: ``snapshot`` first (unless snapshot=false), then ``call``, ``call_ended``,
    ``agent``, ``queue``, ``screen_pop``, ``callback``, ``callback_overdue``, ``detractor`` (a
    survey scored 0-6: call, score, agent, queue, customer id and name) and ``gap`` (notifications this client
    missed because it was too slow). A comment line every few seconds keeps proxies from
    closing an idle stream."""
    scope = await c.scope()
    q: EventsQuery = c.query
    seen: set[str] = set()
    state, opts = c.state, c.ctx.options
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                       "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    with c.ctx.controller.bus.subscribe(size=opts.sse_queue_size, accept=make_filter(scope, q, seen, c.me.role)) as sub:
        await resp.prepare(c.request)
        state.metrics.sse_clients += 1
        stop: asyncio.Future[Any] = asyncio.ensure_future(state.stopping.wait())
        get: asyncio.Future[Any] | None = None
        try:
            await resp.write(b"retry: 3000\n\n")
            if q.snapshot:
                await resp.write(_frame("snapshot", await _snapshot(c, scope, q, seen)))
            while not state.stopping.is_set():
                if get is None:
                    get = asyncio.ensure_future(sub.get())
                done, _ = await asyncio.wait({get, stop}, timeout=opts.sse_heartbeat_s,
                                             return_when=asyncio.FIRST_COMPLETED)
                if get in done:
                    n = await with_customer_name(c.ctx.database, get.result())
                    get = None
                    await resp.write(_frame(n.kind, n.to_dict(), n.id))
                elif not done:
                    await resp.write(b": heartbeat\n\n")  # also how a gone client is noticed
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            state.metrics.sse_clients -= 1
            for fut in (get, stop):
                if fut is not None:
                    fut.cancel()
                    with contextlib.suppress(BaseException):
                        await fut
    return resp
