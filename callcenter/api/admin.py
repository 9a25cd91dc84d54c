"""Administration: routing rules, agents, teams, agent groups, API tokens, webhooks, audit log."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from callcenter.api import audit, webhooks
from callcenter.api import auth as authmod
from callcenter.api.models import (
    AgentIn,
    AgentPatch,
    AuditQuery,
    GroupIn,
    RulesText,
    TeamIn,
    TeamPatch,
    TokenIn,
    WebhookIn,
)
from callcenter.api.problems import ApiProblem, conflict, forbidden, not_found
from callcenter.api.router import Call, route
from callcenter.crm.phones import PhoneError, to_e164

ADMIN = {"admin"}


# --- rules --------------------------------------------------------------------------------------


def _rules(c: Call) -> Any:
    if c.ctx.rules is None:
        raise ApiProblem(503, "routing rules are not managed by this process", kind="rules-unavailable")
    return c.ctx.rules


@route("GET", "/api/v1/rules", roles=ADMIN, summary="The routing rules in force (version, path, text)", tag="admin")
async def get_rules(c: Call) -> Any:
    return _rules(c).current()


@route("POST", "/api/v1/rules/validate", roles=ADMIN, body=RulesText, text_body=True, tag="admin",
       summary="Check a candidate rules file without applying it")
async def validate_rules(c: Call) -> Any:
    """Body: the YAML itself (``Content-Type: text/yaml``) or ``{"text": "..."}``. Answers 200
    with ``valid`` and the problems (line, column, path, message)."""
    candidate = c.text if c.text is not None else c.body.text
    problems = _rules(c).validate(candidate)
    return {"valid": not problems, "problems": problems}


@route("POST", "/api/v1/rules/reload", roles=ADMIN, summary="Re-read the rules file and apply it if valid",
       tag="admin")
async def reload_rules(c: Call) -> Any:
    """422 with the problems when the file is invalid (the rules in force stay)."""
    rules = _rules(c)
    audit_id = await audit.begin(c.ctx.database.engine, c.me, "rules_reload", "rules", {})
    result = rules.reload()
    ok = bool(result.get("ok"))
    await audit.finish(c.ctx.database.engine, audit_id, "ok" if ok else "failed", {"result": result})
    if not ok:
        problems = result.get("problems") or []
        raise ApiProblem(422, f"the rules file has {len(problems)} problem(s); the rules in force are unchanged",
                         kind="invalid-rules", errors=[{"in": "rules", **p} for p in problems])
    return {**result, "audit_id": audit_id}


# --- agents ---------------------------------------------------------------------------------------


_AGENT_SQL = """
SELECT a.id, a.name, a.extension, a.mobile, a.skills, a.active, a.created_at,
       (SELECT coalesce(json_agg(json_build_object('pbx', e.pbx, 'interface', e.interface) ORDER BY e.id), '[]')
          FROM agent_endpoints e WHERE e.agent_id = a.id) AS endpoints,
       (SELECT coalesce(json_agg(json_build_object('team_id', t.id, 'name', t.name, 'role', m.role) ORDER BY t.id),
                        '[]')
          FROM team_members m JOIN teams t ON t.id = m.team_id WHERE m.agent_id = a.id) AS teams
  FROM agents a
"""


async def _agent_out(conn: AsyncConnection, agent_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(text(_AGENT_SQL + " WHERE a.id = :id"), {"id": agent_id})).mappings().first()
    return dict(row) if row is not None else None


def _mobile(value: str | None, region: str) -> str | None:
    if value is None:
        return None
    try:
        return to_e164(value, region, strict=True)
    except PhoneError as exc:
        raise ApiProblem(422, f"body field 'mobile': {exc}", kind="validation-error",
                         errors=[{"in": "body", "path": "mobile", "pointer": "#/mobile", "detail": str(exc),
                                  "type": "value_error"}]) from None


async def _set_endpoints(conn: AsyncConnection, agent_id: int, endpoints: list[Any]) -> None:
    await conn.execute(text("DELETE FROM agent_endpoints WHERE agent_id = :id"), {"id": agent_id})
    for e in endpoints:
        await conn.execute(text("INSERT INTO agent_endpoints (agent_id, pbx, interface) VALUES (:a, :p, :i)"),
                           {"a": agent_id, "p": e.pbx, "i": e.interface})


@route("GET", "/api/v1/agents", roles={"admin", "supervisor"}, summary="Agents (supervisors: their teams')",
       tag="admin")
async def list_agents(c: Call) -> Any:
    scope = await c.scope()
    async with c.ctx.database.engine.connect() as conn:
        rows = (await conn.execute(text(_AGENT_SQL + " ORDER BY a.id"))).mappings().all()
    return {"agents": [dict(r) for r in rows if scope.agent(r["id"])]}


@route("POST", "/api/v1/agents", roles=ADMIN, body=AgentIn, status=201, summary="Create an agent", tag="admin")
async def create_agent(c: Call) -> Any:
    """With endpoints per PBX (queue member interfaces) and skills (name -> level 1..10)."""
    b: AgentIn = c.body
    import json

    async with c.ctx.database.engine.begin() as conn:
        agent_id = (await conn.execute(text(
            "INSERT INTO agents (name, extension, mobile, skills, active) "
            "VALUES (:n, :x, :m, CAST(:s AS jsonb), :a) RETURNING id"),
            {"n": b.name, "x": b.extension, "m": _mobile(b.mobile, c.ctx.settings.crm.default_region),
             "s": json.dumps(b.skills), "a": b.active})).scalar_one()
        await _set_endpoints(conn, agent_id, b.endpoints)
        return await _agent_out(conn, agent_id)


@route("GET", "/api/v1/agents/{agent_id}", roles={"admin", "supervisor", "agent"}, summary="One agent", tag="admin")
async def get_agent(c: Call) -> Any:
    if not (await c.scope()).agent(c.path["agent_id"]):
        raise forbidden("this agent is not in your teams")
    async with c.ctx.database.engine.connect() as conn:
        out = await _agent_out(conn, c.path["agent_id"])
    if out is None:
        raise not_found(f"no agent {c.path['agent_id']}")
    return out


@route("PATCH", "/api/v1/agents/{agent_id}", roles=ADMIN, body=AgentPatch, summary="Change an agent", tag="admin")
async def patch_agent(c: Call) -> Any:
    """Only the fields given change; ``endpoints`` (if given) replaces the list."""
    import json

    b: AgentPatch = c.body
    sets: dict[str, Any] = {}
    for f in ("name", "extension", "active"):
        if f in b.model_fields_set:
            sets[f] = getattr(b, f)
    if "mobile" in b.model_fields_set:
        sets["mobile"] = _mobile(b.mobile, c.ctx.settings.crm.default_region)
    for f in ("name", "active"):
        if f in sets and sets[f] is None:
            raise ApiProblem(422, f"body field {f!r} cannot be null", kind="validation-error",
                             errors=[{"in": "body", "path": f, "pointer": f"#/{f}", "detail": "cannot be null",
                                      "type": "value_error"}])
    async with c.ctx.database.engine.begin() as conn:
        exists = await conn.scalar(text("SELECT 1 FROM agents WHERE id = :id FOR UPDATE"), {"id": c.path["agent_id"]})
        if not exists:
            raise not_found(f"no agent {c.path['agent_id']}")
        if sets:
            assign = ", ".join(f"{k} = :{k}" for k in sets)
            await conn.execute(text(f"UPDATE agents SET {assign} WHERE id = :id"), {**sets, "id": c.path["agent_id"]})
        if "skills" in b.model_fields_set and b.skills is not None:
            await conn.execute(text("UPDATE agents SET skills = CAST(:s AS jsonb) WHERE id = :id"),
                               {"s": json.dumps(b.skills), "id": c.path["agent_id"]})
        if b.endpoints is not None:
            await _set_endpoints(conn, c.path["agent_id"], b.endpoints)
        return await _agent_out(conn, c.path["agent_id"])


@route("DELETE", "/api/v1/agents/{agent_id}", roles=ADMIN, status=204, summary="Delete an agent", tag="admin")
async def delete_agent(c: Call) -> Any:
    """Their endpoints, team memberships and tokens go with them; calls and journeys keep the
    PBX interface."""
    async with c.ctx.database.engine.begin() as conn:
        gone = await conn.scalar(text("DELETE FROM agents WHERE id = :id RETURNING id"), {"id": c.path["agent_id"]})
    if gone is None:
        raise not_found(f"no agent {c.path['agent_id']}")
    return _no_content()


def _no_content() -> Any:
    from aiohttp import web

    return web.Response(status=204)


# --- teams ------------------------------------------------------------------------------------------


_TEAM_SQL = """
SELECT t.id, t.name, t.created_at,
       (SELECT coalesce(json_agg(json_build_object('agent_id', m.agent_id, 'name', a.name, 'role', m.role)
                                 ORDER BY m.agent_id), '[]')
          FROM team_members m JOIN agents a ON a.id = m.agent_id WHERE m.team_id = t.id) AS members,
       (SELECT coalesce(array_agg(q.queue ORDER BY q.queue), '{}') FROM team_queues q WHERE q.team_id = t.id) AS queues
  FROM teams t
"""


async def _team_out(conn: AsyncConnection, team_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(text(_TEAM_SQL + " WHERE t.id = :id"), {"id": team_id})).mappings().first()
    return {**row, "queues": list(row["queues"])} if row is not None else None


async def _set_team(conn: AsyncConnection, team_id: int, members: list[Any] | None, queues: list[str] | None) -> None:
    if members is not None:
        await conn.execute(text("DELETE FROM team_members WHERE team_id = :t"), {"t": team_id})
        seen: set[int] = set()
        for m in members:
            if m.agent_id in seen:
                raise conflict(f"agent {m.agent_id} is listed twice")
            seen.add(m.agent_id)
            found = await conn.scalar(text("SELECT 1 FROM agents WHERE id = :a"), {"a": m.agent_id})
            if not found:
                raise ApiProblem(422, f"no agent {m.agent_id}", kind="validation-error",
                                 errors=[{"in": "body", "path": "members", "pointer": "#/members",
                                          "detail": f"no agent {m.agent_id}", "type": "value_error"}])
            await conn.execute(text("INSERT INTO team_members (team_id, agent_id, role) VALUES (:t, :a, :r)"),
                               {"t": team_id, "a": m.agent_id, "r": m.role})
    if queues is not None:
        await conn.execute(text("DELETE FROM team_queues WHERE team_id = :t"), {"t": team_id})
        for q in sorted(set(queues)):
            await conn.execute(text("INSERT INTO team_queues (team_id, queue) VALUES (:t, :q)"), {"t": team_id, "q": q})


@route("GET", "/api/v1/teams", roles={"admin", "supervisor"}, summary="Teams (supervisors: their own)", tag="admin")
async def list_teams(c: Call) -> Any:
    scope = await c.scope()
    async with c.ctx.database.engine.connect() as conn:
        rows = (await conn.execute(text(_TEAM_SQL + " ORDER BY t.id"))).mappings().all()
    return {"teams": [{**r, "queues": list(r["queues"])} for r in rows if scope.everything or r["id"] in scope.teams]}


@route("POST", "/api/v1/teams", roles=ADMIN, body=TeamIn, status=201, tag="admin",
       summary="Create a team with members (agent or supervisor) and the queues it owns")
async def create_team(c: Call) -> Any:
    b: TeamIn = c.body
    async with c.ctx.database.engine.begin() as conn:
        team_id = (await conn.execute(text("INSERT INTO teams (name) VALUES (:n) RETURNING id"),
                                      {"n": b.name})).scalar_one()
        await _set_team(conn, team_id, b.members, b.queues)
        return await _team_out(conn, team_id)


@route("GET", "/api/v1/teams/{team_id}", roles={"admin", "supervisor"}, summary="One team", tag="admin")
async def get_team(c: Call) -> Any:
    scope = await c.scope()
    if not scope.everything and c.path["team_id"] not in scope.teams:
        raise forbidden("you do not supervise this team")
    async with c.ctx.database.engine.connect() as conn:
        out = await _team_out(conn, c.path["team_id"])
    if out is None:
        raise not_found(f"no team {c.path['team_id']}")
    return out


@route("PATCH", "/api/v1/teams/{team_id}", roles=ADMIN, body=TeamPatch, tag="admin",
       summary="Rename a team, replace its members or its queues")
async def patch_team(c: Call) -> Any:
    b: TeamPatch = c.body
    async with c.ctx.database.engine.begin() as conn:
        if not await conn.scalar(text("SELECT 1 FROM teams WHERE id = :id FOR UPDATE"), {"id": c.path["team_id"]}):
            raise not_found(f"no team {c.path['team_id']}")
        if b.name is not None:
            await conn.execute(text("UPDATE teams SET name = :n WHERE id = :id"),
                               {"n": b.name, "id": c.path["team_id"]})
        await _set_team(conn, c.path["team_id"], b.members, b.queues)
        return await _team_out(conn, c.path["team_id"])


@route("DELETE", "/api/v1/teams/{team_id}", roles=ADMIN, status=204, summary="Delete a team", tag="admin")
async def delete_team(c: Call) -> Any:
    async with c.ctx.database.engine.begin() as conn:
        if await conn.scalar(text("DELETE FROM teams WHERE id = :id RETURNING id"), {"id": c.path["team_id"]}) is None:
            raise not_found(f"no team {c.path['team_id']}")
    return _no_content()


# --- agent groups (overflow) -----------------------------------------------------------------


_GROUP_SQL = """
SELECT g.id, g.name, g.penalty, g.created_at,
       (SELECT coalesce(array_agg(m.agent_id ORDER BY m.agent_id), '{}') FROM agent_group_members m
         WHERE m.group_id = g.id) AS agent_ids
  FROM agent_groups g
"""


@route("GET", "/api/v1/groups", roles={"admin", "supervisor"}, summary="Agent groups for overflow", tag="admin")
async def list_groups(c: Call) -> Any:
    async with c.ctx.database.engine.connect() as conn:
        rows = (await conn.execute(text(_GROUP_SQL + " ORDER BY g.name"))).mappings().all()
    return {"groups": [{**r, "agent_ids": list(r["agent_ids"])} for r in rows]}


@route("PUT", "/api/v1/groups/{group}", roles=ADMIN, body=GroupIn, tag="admin",
       summary="Create or replace an agent group (members, penalty)")
async def put_group(c: Call) -> Any:
    name = c.path["group"]
    if len(name) > 80:
        raise ApiProblem(422, "path parameter 'group': at most 80 characters", kind="validation-error",
                         errors=[{"in": "path", "path": "group", "pointer": "#/group", "detail": "too long",
                                  "type": "string_too_long"}])
    b: GroupIn = c.body
    async with c.ctx.database.engine.begin() as conn:
        gid = (await conn.execute(text(
            "INSERT INTO agent_groups (name, penalty) VALUES (:n, :p) "
            "ON CONFLICT (name) DO UPDATE SET penalty = :p RETURNING id"), {"n": name, "p": b.penalty})).scalar_one()
        await conn.execute(text("DELETE FROM agent_group_members WHERE group_id = :g"), {"g": gid})
        for agent_id in sorted(set(b.agent_ids)):
            if not await conn.scalar(text("SELECT 1 FROM agents WHERE id = :a"), {"a": agent_id}):
                raise ApiProblem(422, f"no agent {agent_id}", kind="validation-error",
                                 errors=[{"in": "body", "path": "agent_ids", "pointer": "#/agent_ids",
                                          "detail": f"no agent {agent_id}", "type": "value_error"}])
            await conn.execute(text("INSERT INTO agent_group_members (group_id, agent_id) VALUES (:g, :a)"),
                               {"g": gid, "a": agent_id})
        row = (await conn.execute(text(_GROUP_SQL + " WHERE g.id = :g"), {"g": gid})).mappings().one()
    return {**row, "agent_ids": list(row["agent_ids"])}


@route("DELETE", "/api/v1/groups/{group}", roles=ADMIN, status=204, summary="Delete an agent group", tag="admin")
async def delete_group(c: Call) -> Any:
    async with c.ctx.database.engine.begin() as conn:
        if await conn.scalar(text("DELETE FROM agent_groups WHERE name = :n RETURNING id"),
                             {"n": c.path["group"]}) is None:
            raise not_found(f"no agent group {c.path['group']!r}")
    return _no_content()


# --- tokens ---------------------------------------------------------------------------------------


@route("GET", "/api/v1/tokens", roles=ADMIN, summary="API tokens (never the tokens themselves)", tag="admin")
async def list_tokens(c: Call) -> Any:
    return {"tokens": await authmod.list_tokens(c.ctx.database.engine)}


@route("POST", "/api/v1/tokens", roles=ADMIN, body=TokenIn, status=201, tag="admin",
       summary="Create a token; the answer is the only time it is shown")
async def create_token(c: Call) -> Any:
    """``agent`` tokens must name their agent; a ``supervisor`` token's agent decides the teams
    it supervises (none without one)."""
    b: TokenIn = c.body
    if b.role == "agent" and b.agent_id is None:
        raise ApiProblem(422, "body field 'agent_id': an agent token must name its agent", kind="validation-error",
                         errors=[{"in": "body", "path": "agent_id", "pointer": "#/agent_id",
                                  "detail": "required for role agent", "type": "missing"}])
    if b.agent_id is not None:
        async with c.ctx.database.engine.connect() as conn:
            if not await conn.scalar(text("SELECT 1 FROM agents WHERE id = :a"), {"a": b.agent_id}):
                raise ApiProblem(422, f"no agent {b.agent_id}", kind="validation-error",
                                 errors=[{"in": "body", "path": "agent_id", "pointer": "#/agent_id",
                                          "detail": f"no agent {b.agent_id}", "type": "value_error"}])
    token, row = await authmod.create_token(
        c.ctx.database.engine, name=b.name, role=b.role, agent_id=b.agent_id,
        expires_at=authmod.expiry(b.expires_days, c.ctx.controller.clock()))
    audit_id = await audit.begin(c.ctx.database.engine, c.me, "token_create", f"token:{row['id']}",
                                 {"role": b.role, "agent_id": b.agent_id, "name": b.name})
    await audit.finish(c.ctx.database.engine, audit_id, "ok")
    return {**row, "token": token}


@route("DELETE", "/api/v1/tokens/{token_id}", roles=ADMIN, summary="Revoke a token", tag="admin")
async def revoke_token(c: Call) -> Any:
    audit_id = await audit.begin(c.ctx.database.engine, c.me, "token_revoke", f"token:{c.path['token_id']}", {})
    row = await authmod.revoke_token(c.ctx.database.engine, c.path["token_id"])
    await audit.finish(c.ctx.database.engine, audit_id, "ok" if row else "failed")
    if row is None:
        raise not_found(f"no token {c.path['token_id']}")
    return row


# --- audit, webhooks ----------------------------------------------------------------------------


@route("GET", "/api/v1/audit", roles=ADMIN, query=AuditQuery, summary="The audit log, newest first", tag="admin")
async def read_audit(c: Call) -> Any:
    q: AuditQuery = c.query
    return {"entries": await audit.read(c.ctx.database.engine, limit=q.limit, action=q.action, before_id=q.before_id)}


@route("GET", "/api/v1/webhooks", roles={"admin", "supervisor"}, tag="admin",
       summary="Webhook receivers, secrets not shown (supervisors: their teams')")
async def list_webhooks(c: Call) -> Any:
    return await webhooks.list_webhooks(c)


@route("POST", "/api/v1/webhooks", roles={"admin", "supervisor"}, body=WebhookIn, status=201, tag="admin",
       summary="Add a webhook receiver, of a team or (admins) of all; the signing secret is shown once")
async def create_webhook(c: Call) -> Any:
    """Supervisors: ``team_id`` required, one of their teams (403 otherwise)."""
    return await webhooks.create_webhook(c)


@route("DELETE", "/api/v1/webhooks/{webhook_id}", roles={"admin", "supervisor"}, status=204, tag="admin",
       summary="Remove a webhook receiver (supervisors: of their teams)")
async def delete_webhook(c: Call) -> Any:
    await webhooks.delete_webhook(c)
    return _no_content()
