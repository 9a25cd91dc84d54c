"""Live state (calls, agents, queues) and supervisor actions.

Reads come from the controller's live registry, filtered to the caller's scope. Actions are
domain commands sent through ``controller.execute``; each one is audited first (see
``callcenter.api.audit``). A command the PBX refuses is a 502 problem carrying the audit id.

Agent status as the supervisor sets it maps onto queue pauses, the one agent state every ACD
has: ``available`` = unpaused, ``break`` = paused with reason ``break``, ``dnd`` = paused with
reason ``dnd``. The live ``state`` of an agent is derived back the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from callcenter.api import audit
from callcenter.api.models import (
    ForwardBody,
    LiveQuery,
    PauseBody,
    RedistributeBody,
    SpyBody,
    StatusBody,
)
from callcenter.api.problems import ApiProblem, conflict, forbidden, not_found
from callcenter.api.router import Call, route
from callcenter.crm.phones import PhoneError, to_e164
from callcenter.domain.commands import (
    AddQueueMember,
    Command,
    MoveToQueue,
    PauseAgent,
    RemoveQueueMember,
    StartSpy,
    StopSpy,
)
from callcenter.domain.events import SpyMode

SUPERVISE = {"admin", "supervisor"}
SEE_LIVE = {"admin", "supervisor", "agent"}
# The dialplan context that dials a forwarded agent's mobile (docs/api.md shows it).
FORWARD_CONTEXT = "cc-forward"


# --- reading -------------------------------------------------------------------------------------


def agent_state(a: dict[str, Any]) -> str:
    """One word for the wallboard: on_call, ringing, break, dnd, paused, offline, available."""
    if a.get("call_id"):
        return "on_call"
    if a.get("paused"):
        reason = (a.get("pause_reason") or "").lower()
        return reason if reason in ("break", "dnd") else "paused"
    status = a.get("device_status")
    if status == "ringing":
        return "ringing"
    if status == "unavailable":
        return "offline"
    return "available"


async def _agents_by_interface(c: Call) -> dict[str, dict[str, Any]]:
    async with c.ctx.database.engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT e.interface, e.pbx, a.id, a.name FROM agent_endpoints e JOIN agents a ON a.id = e.agent_id"))
        return {r.interface: {"agent_id": r.id, "name": r.name, "pbx": r.pbx} for r in rows}


def _calls(c: Call) -> list[dict[str, Any]]:
    now = c.ctx.controller.clock()
    return [call.to_dict(now) for call in sorted(c.ctx.controller.live.calls.values(), key=lambda x: x.entered_at)]


@route("GET", "/api/v1/live/calls", roles=SEE_LIVE, summary="Calls in progress", tag="live", query=LiveQuery)
async def live_calls(c: Call) -> Any:
    """Stage (arrived, ivr, queue, ringing, talking), queue and wait, agent and talk time,
    caller and CRM customer. Supervisors see calls of their queues and agents; agents their own."""
    scope = await c.scope()
    calls = [x for x in _calls(c) if scope.call(x)]
    if c.query.queue:
        calls = [x for x in calls if x["queue"] == c.query.queue]
    return {"calls": calls}


@route("GET", "/api/v1/live/calls/{call_id}", roles=SEE_LIVE, summary="One call in progress", tag="live")
async def live_call(c: Call) -> Any:
    call = c.ctx.controller.live.calls.get(c.path["call_id"])
    if call is None:
        raise not_found(f"no call {c.path['call_id']!r} in progress")
    d = call.to_dict(c.ctx.controller.clock())
    if not (await c.scope()).call(d):
        raise forbidden("this call is outside your teams' queues and agents")
    return d


async def agent_views(c: Call) -> list[dict[str, Any]]:
    scope = await c.scope()
    known = await _agents_by_interface(c)
    now = c.ctx.controller.clock()
    live = c.ctx.controller.live
    out = []
    for a in sorted(live.agents.values(), key=lambda x: x.agent):
        if not scope.interface(a.agent):
            continue
        d = a.to_dict(now)
        d["state"] = agent_state(d)
        row = known.get(a.agent)
        d["agent_id"] = row["agent_id"] if row else None
        d["display_name"] = (row["name"] if row else None) or a.name
        call = live.calls.get(a.call_id) if a.call_id else None
        d["call"] = ({"call_id": call.call_id, "caller": call.caller, "caller_name": call.caller_name,
                      "customer": call.customer, "queue": call.queue} if call is not None else None)
        out.append(d)
    return out


@route("GET", "/api/v1/live/agents", roles=SEE_LIVE, summary="Agents: state, pause reason, current call, today",
       tag="live")
async def live_agents(c: Call) -> Any:
    """``state``: on_call, ringing, break, dnd, paused, offline or available; ``call_s``: how long
    the current call has lasted; today's answered/missed/talk time."""
    return {"agents": await agent_views(c)}


@route("GET", "/api/v1/live/queues", roles=SUPERVISE, summary="Queues: waiting, longest wait, EWT, agents, SL today",
       tag="live")
async def live_queues(c: Call) -> Any:
    scope = await c.scope()
    live = c.ctx.controller.live
    now = c.ctx.controller.clock()
    return {"queues": [live.queue_dict(q, now) for q in sorted(live.queues) if scope.queue(q)]}


@route("GET", "/api/v1/live/queues/{queue}", roles=SUPERVISE, summary="One queue and its waiting calls", tag="live")
async def live_queue(c: Call) -> Any:
    name = c.path["queue"]
    if not (await c.scope()).queue(name):
        raise forbidden(f"queue {name!r} is not owned by your teams")
    live = c.ctx.controller.live
    if name not in live.queues:
        raise not_found(f"no queue {name!r} seen")
    now = c.ctx.controller.clock()
    waiting = [live.calls[cid].to_dict(now) for cid, _ in sorted(live.queues[name].waiting.items(), key=lambda x: x[1])
               if cid in live.calls]
    return {**live.queue_dict(name, now), "calls": waiting}


@route("GET", "/api/v1/live/spies", roles=SUPERVISE, summary="Supervisors listening, whispering or barging now",
       tag="supervisor")
async def live_spies(c: Call) -> Any:
    scope = await c.scope()
    out = []
    for spy in c.state.spies.all():
        call = c.ctx.controller.live.calls.get(spy.call_id or "")
        if scope.everything or (call is not None and scope.call(call.to_dict(c.ctx.controller.clock()))):
            out.append(spy.to_dict())
    return {"spies": out}


# --- carrying out ---------------------------------------------------------------------------------


async def carry_out(c: Call, action: str, target: str, detail: dict[str, Any],
                    commands: list[tuple[str, Command]],
                    before: Callable[[str, Command], None] | None = None) -> dict[str, Any]:
    """Audit (pending), run the commands in order (``before`` runs just before each is sent),
    audit the result. All failed: 502."""
    engine = c.ctx.database.engine
    audit_id = await audit.begin(engine, c.me, action, target, detail)
    results = []
    for pbx, cmd in commands:
        if before is not None:
            before(pbx, cmd)
        res = await c.ctx.controller.execute(pbx, cmd)
        results.append({"pbx": pbx, "kind": cmd.kind, "command_id": cmd.command_id, "call_id": cmd.call_id,
                        "ok": res.ok, "error": res.error})
    oks = sum(1 for r in results if r["ok"])
    result = "ok" if oks == len(results) else ("failed" if oks == 0 else "partial")
    await audit.finish(engine, audit_id, result, {"commands": results})
    body = {"audit_id": audit_id, "result": result, "commands": results}
    if result == "failed":
        errors = "; ".join(str(r["error"]) for r in results)
        raise ApiProblem(502, f"the PBX did not carry out {action}: {errors}", kind="pbx-failed", extra=body)
    return body


async def _agent(c: Call, agent_id: int) -> dict[str, Any]:
    """The agent row with its endpoints; 403 outside the caller's scope (before 404, so ids of
    other teams' agents are not probed)."""
    if not (await c.scope()).agent(agent_id):
        raise forbidden("this agent is not in your teams")
    async with c.ctx.database.engine.connect() as conn:
        row = (await conn.execute(text("SELECT id, name, mobile FROM agents WHERE id = :id"),
                                  {"id": agent_id})).mappings().first()
        if row is None:
            raise not_found(f"no agent {agent_id}")
        eps = [(r.pbx, r.interface) for r in await conn.execute(
            text("SELECT pbx, interface FROM agent_endpoints WHERE agent_id = :id ORDER BY id"), {"id": agent_id})]
    return {**row, "endpoints": eps}


def _spy_command(body: SpyBody, target: str, call_id: str | None) -> StartSpy:
    return StartSpy(supervisor_endpoint=body.endpoint, target=target, mode=SpyMode(body.mode), call_id=call_id)


@route("POST", "/api/v1/live/calls/{call_id}/spy", roles=SUPERVISE, body=SpyBody, tag="supervisor",
       summary="Listen, whisper (only the agent hears) or barge into a call")
async def spy_call(c: Call) -> Any:
    """Rings the supervisor's ``endpoint``; once answered it is joined to the agent's side of the
    call in ``mode``. The call must be talking to an agent."""
    call = c.ctx.controller.live.calls.get(c.path["call_id"])
    if call is None:
        raise not_found(f"no call {c.path['call_id']!r} in progress")
    if not (await c.scope()).call(call.to_dict(c.ctx.controller.clock())):
        raise forbidden("this call is outside your teams' queues and agents")
    if not call.agent:
        raise conflict("the call is not connected to an agent yet")
    b: SpyBody = c.body
    detail = {"call_id": call.call_id, "agent": call.agent, "endpoint": b.endpoint, "pbx": call.pbx}
    return await carry_out(c, b.mode, f"call:{call.call_id}", detail,
                           [(call.pbx, _spy_command(b, call.agent, call.call_id))])


@route("POST", "/api/v1/live/agents/{agent_id}/spy", roles=SUPERVISE, body=SpyBody, tag="supervisor",
       summary="Listen, whisper or barge into an agent's current call")
async def spy_agent(c: Call) -> Any:
    agent = await _agent(c, c.path["agent_id"])
    live = c.ctx.controller.live
    for pbx, iface in agent["endpoints"]:
        la = live.agents.get(iface)
        if la is not None and la.call_id:
            b: SpyBody = c.body
            detail = {"agent_id": agent["id"], "agent": iface, "call_id": la.call_id, "endpoint": b.endpoint,
                      "pbx": pbx}
            return await carry_out(c, b.mode, f"agent:{agent['id']}", detail,
                                   [(la.pbx or pbx, _spy_command(b, iface, la.call_id))])
    raise conflict(f"agent {agent['id']} is not on a call")


@route("DELETE", "/api/v1/live/spies/{spy_id}", roles=SUPERVISE, tag="supervisor",
       summary="Stop listening / whispering / barging (hangs up the supervisor's leg)")
async def stop_spy(c: Call) -> Any:
    spy = c.state.spies.get(c.path["spy_id"])
    if spy is None:
        raise not_found(f"no active spy {c.path['spy_id']}")
    scope = await c.scope()
    call = c.ctx.controller.live.calls.get(spy.call_id or "")
    if not scope.everything and (call is None or not scope.call(call.to_dict(c.ctx.controller.clock()))):
        raise forbidden("this spy is on a call outside your teams")
    detail = spy.to_dict()
    return await carry_out(c, "stop_spy", f"call:{spy.call_id}", detail,
                           [(spy.pbx, StopSpy(spyer_channel=spy.spyer_channel))])


def _pause_commands(agent: dict[str, Any], paused: bool, reason: str | None, queue: str | None,
                    c: Call) -> list[tuple[str, Command]]:
    pbxs = c.ctx.controller.adapters
    cmds: list[tuple[str, Command]] = [
        (pbx, PauseAgent(agent=iface, paused=paused, reason=reason, queue=queue))
        for pbx, iface in agent["endpoints"] if pbx in pbxs]
    if not cmds:
        raise conflict(f"agent {agent['id']} has no endpoint on a connected PBX")
    return cmds


@route("POST", "/api/v1/live/agents/{agent_id}/pause", roles=SUPERVISE, body=PauseBody, tag="supervisor",
       summary="Pause or unpause an agent (all queues or one), with a reason")
async def pause_agent(c: Call) -> Any:
    agent = await _agent(c, c.path["agent_id"])
    b: PauseBody = c.body
    detail = {"agent_id": agent["id"], "paused": b.paused, "reason": b.reason, "queue": b.queue}
    return await carry_out(c, "pause" if b.paused else "unpause", f"agent:{agent['id']}", detail,
                           _pause_commands(agent, b.paused, b.reason if b.paused else None, b.queue, c))


@route("PUT", "/api/v1/live/agents/{agent_id}/status", roles=SUPERVISE, body=StatusBody, tag="supervisor",
       summary="Set an agent available, on break or do-not-disturb")
async def set_status(c: Call) -> Any:
    """``available`` unpauses the agent in every queue; ``break`` / ``dnd`` pause them in every
    queue with that reason (the PBX's pause reason, visible in its queue status and reports)."""
    agent = await _agent(c, c.path["agent_id"])
    status = "dnd" if c.body.status == "do-not-disturb" else c.body.status
    paused = status != "available"
    detail = {"agent_id": agent["id"], "status": status}
    return await carry_out(c, "status", f"agent:{agent['id']}", detail,
                           _pause_commands(agent, paused, status if paused else None, None, c))


# --- forwarding to a mobile ------------------------------------------------------------------


async def _forward_row(c: Call, agent_id: int) -> dict[str, Any]:
    async with c.ctx.database.engine.connect() as conn:
        row = (await conn.execute(text(
            "SELECT a.mobile, coalesce(f.enabled, false) AS enabled, f.interface, coalesce(f.queues, '{}') AS queues, "
            "f.updated_at FROM agents a LEFT JOIN agent_forwards f ON f.agent_id = a.id WHERE a.id = :id"),
            {"id": agent_id})).mappings().first()
    if row is None:
        raise not_found(f"no agent {agent_id}")
    return {"agent_id": agent_id, **row, "queues": list(row["queues"])}


@route("GET", "/api/v1/agents/{agent_id}/forward", roles=SEE_LIVE, tag="supervisor",
       summary="An agent's forwarding to their mobile")
async def get_forward(c: Call) -> Any:
    if not (await c.scope()).agent(c.path["agent_id"]):
        raise forbidden("this agent is not in your teams")
    return await _forward_row(c, c.path["agent_id"])


@route("PUT", "/api/v1/agents/{agent_id}/forward", roles=SUPERVISE, body=ForwardBody, tag="supervisor",
       summary="Forward an agent's queue calls to their mobile, or stop forwarding")
async def put_forward(c: Call) -> Any:
    """On: the mobile (stored as ``agents.mobile``, E.164) joins every queue the agent is a member
    of now, as queue member ``Local/<mobile>@cc-forward`` (the PBX must have that context: see
    docs/api.md). Off: exactly those memberships are removed. The setting is kept in
    ``agent_forwards``."""
    agent = await _agent(c, c.path["agent_id"])
    b: ForwardBody = c.body
    current = await _forward_row(c, agent["id"])
    mobile = agent["mobile"]
    if b.mobile is not None:
        try:
            mobile = to_e164(b.mobile, c.ctx.settings.crm.default_region, strict=True)
        except PhoneError as exc:
            raise _field_problem("mobile", str(exc)) from None
    if b.enabled and not mobile:
        raise _field_problem("mobile", "the agent has no mobile number: give one")
    commands: list[tuple[str, Command]] = []
    pairs: list[str] = []
    iface = f"Local/{mobile}@{FORWARD_CONTEXT}" if mobile else None
    if current["enabled"] and current["interface"]:  # off, or on with another number: undo the last
        for pair in current["queues"]:
            pbx, _, queue = pair.partition("/")
            commands.append((pbx, RemoveQueueMember(queue=queue, agent=current["interface"])))
    if b.enabled and iface:
        live = c.ctx.controller.live
        for pbx, desk in agent["endpoints"]:
            la = live.agents.get(desk)
            for queue in sorted(la.queues if la else ()):
                pairs.append(f"{pbx}/{queue}")
                member = AddQueueMember(queue=queue, agent=iface, member_name=f"{agent['name']} (mobile)")
                commands.append((pbx, member))
    detail = {"agent_id": agent["id"], "enabled": b.enabled, "mobile": mobile, "interface": iface, "queues": pairs}
    engine = c.ctx.database.engine
    audit_id = None
    if commands:  # audited inside, before the PBX sees anything; all failed: 502, nothing stored
        result = await carry_out(c, "forward", f"agent:{agent['id']}", detail, commands)
    else:  # nothing to send (no queues yet): still audited first, as a setting change
        audit_id = await audit.begin(engine, c.me, "forward", f"agent:{agent['id']}", detail)
        result = {"audit_id": audit_id, "result": "ok", "commands": []}
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE agents SET mobile = :m WHERE id = :id"), {"m": mobile, "id": agent["id"]})
        await conn.execute(text(
            "INSERT INTO agent_forwards (agent_id, enabled, interface, queues, updated_at) "
            "VALUES (:id, :on, :iface, :q, now()) ON CONFLICT (agent_id) DO UPDATE SET enabled = :on, "
            "interface = :iface, queues = :q, updated_at = now()"),
            {"id": agent["id"], "on": b.enabled, "iface": iface if b.enabled else None,
             "q": pairs if b.enabled else []})
    if audit_id is not None:
        await audit.finish(engine, audit_id, "ok")
    return {**await _forward_row(c, agent["id"]), **result}


def _field_problem(field: str, message: str) -> ApiProblem:
    return ApiProblem(422, f"body field {field!r}: {message}", title="Unprocessable Content", kind="validation-error",
                      errors=[{"in": "body", "path": field, "pointer": f"#/{field}", "detail": message,
                               "type": "value_error"}])


# --- queues: redistribution and overflow groups ------------------------------------------------


def _queue_pbx(c: Call, queue: str) -> str:
    """Which PBX hosts ``queue``: the one its waiting calls or members are on; with a single PBX
    configured, that one."""
    live = c.ctx.controller.live
    q = live.queues.get(queue)
    if q is not None:
        for cid in q.waiting:
            if cid in live.calls:
                return live.calls[cid].pbx
        for m in q.members:
            a = live.agents.get(m)
            if a is not None and a.pbx:
                return a.pbx
    if len(c.ctx.controller.adapters) == 1:
        return next(iter(c.ctx.controller.adapters))
    raise conflict(f"cannot tell which PBX hosts queue {queue!r} (no calls or members seen)")


@route("POST", "/api/v1/live/queues/{queue}/redistribute", roles=SUPERVISE, body=RedistributeBody, tag="supervisor",
       summary="Move waiting calls (oldest first, some or all) to another queue")
async def redistribute(c: Call) -> Any:
    """Each move is noted in the call's journey first (so the PBX's leave is recorded as a move,
    not an abandon), then sent as MoveToQueue. Callers keep their original entry time for
    service level."""
    src, b = c.path["queue"], c.body
    scope = await c.scope()
    for q in (src, b.to_queue):
        if not scope.queue(q):
            raise forbidden(f"queue {q!r} is not owned by your teams")
    if b.to_queue == src:
        raise _field_problem("to_queue", "is the queue the calls are already in")
    controller = c.ctx.controller
    live = controller.live
    q = live.queues.get(src)
    waiting = sorted(q.waiting.items(), key=lambda x: x[1]) if q is not None else []
    chosen = [cid for cid, _ in waiting if cid in live.calls][: b.count or None]
    commands: list[tuple[str, Command]] = [
        (live.calls[cid].pbx, MoveToQueue(call_id=cid, queue=b.to_queue)) for cid in chosen]

    def note(pbx: str, cmd: Command) -> None:
        # Noted before the move is sent, as the journey requires (JourneyBook.note_controller_move).
        assert cmd.call_id is not None
        records = controller.book.note_controller_move(cmd.call_id, src, b.to_queue, now=controller.clock())
        if records:
            controller.recorder.submit_records(records, pbx=pbx)

    detail = {"from_queue": src, "to_queue": b.to_queue, "requested": b.count, "call_ids": chosen}
    return await carry_out(c, "redistribute", f"queue:{src}", detail, commands, before=note)


async def _group(c: Call, name: str) -> dict[str, Any]:
    async with c.ctx.database.engine.connect() as conn:
        g = (await conn.execute(text("SELECT id, name, penalty FROM agent_groups WHERE name = :n"),
                                {"n": name})).mappings().first()
        if g is None:
            raise not_found(f"no agent group {name!r}")
        members = (await conn.execute(text(
            "SELECT a.id, a.name, e.pbx, e.interface FROM agent_group_members m JOIN agents a ON a.id = m.agent_id "
            "JOIN agent_endpoints e ON e.agent_id = a.id WHERE m.group_id = :g ORDER BY a.id, e.id"),
            {"g": g["id"]})).mappings().all()
    return {**g, "members": [dict(m) for m in members]}


async def _group_change(c: Call, add: bool) -> Any:
    queue, name = c.path["queue"], c.path["group"]
    if not (await c.scope()).queue(queue):
        raise forbidden(f"queue {queue!r} is not owned by your teams")
    group = await _group(c, name)
    pbx = _queue_pbx(c, queue)
    members = [m for m in group["members"] if m["pbx"] == pbx]
    if not members:
        raise conflict(f"group {name!r} has no agent with an endpoint on PBX {pbx!r}")
    commands: list[tuple[str, Command]] = [
        (pbx, AddQueueMember(queue=queue, agent=m["interface"], member_name=m["name"], penalty=group["penalty"])
         if add else RemoveQueueMember(queue=queue, agent=m["interface"])) for m in members]
    detail = {"queue": queue, "group": name, "pbx": pbx, "interfaces": [m["interface"] for m in members]}
    return await carry_out(c, "group_add" if add else "group_remove", f"queue:{queue}", detail, commands)


@route("POST", "/api/v1/live/queues/{queue}/groups/{group}", roles=SUPERVISE, tag="supervisor",
       summary="Add an overflow agent group to a queue")
async def add_group(c: Call) -> Any:
    """Every member's endpoint on the queue's PBX becomes a queue member, with the group's
    penalty (higher penalty: offered calls only when the queue's own agents are busy)."""
    return await _group_change(c, True)


@route("DELETE", "/api/v1/live/queues/{queue}/groups/{group}", roles=SUPERVISE, tag="supervisor",
       summary="Remove an overflow agent group from a queue")
async def remove_group(c: Call) -> Any:
    return await _group_change(c, False)
