"""CRM customers (create, change, search, card with history) and callback requests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from callcenter.api.models import CallbackIn, CallbackQuery, CustomerCardQuery, CustomerIn, CustomerPatch, CustomerQuery
from callcenter.api.problems import ApiProblem, conflict, not_found
from callcenter.api.router import Call, route
from callcenter.crm.phones import PhoneError, to_e164
from callcenter.crm.repository import CustomerRepository

CRM = {"admin", "supervisor", "agent"}
_FIELDS = ("name", "tier", "segment", "language", "tags", "stage", "notes", "do_not_call", "assigned_agent_id")


def _phone_problem(path: str, message: str) -> ApiProblem:
    return ApiProblem(422, f"body field {path!r}: {message}", title="Unprocessable Content", kind="validation-error",
                      errors=[{"in": "body", "path": path, "pointer": "#/" + path.replace(".", "/"),
                               "detail": message, "type": "phone"}])


def _e164s(c: Call, phones: list[Any]) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for i, p in enumerate(phones):
        try:
            e164 = to_e164(p.number, c.ctx.settings.crm.default_region, strict=True)
        except PhoneError as exc:
            raise _phone_problem(f"phones.{i}.number", str(exc)) from None
        if e164 is None:
            raise _phone_problem(f"phones.{i}.number", "a withheld number is not a phone number")
        if any(e164 == seen for seen, _ in out):
            raise _phone_problem(f"phones.{i}.number", f"{e164} is listed twice")
        out.append((e164, p.label))
    return out


async def _set_phones(conn: AsyncConnection, customer_id: int, phones: list[tuple[str, str | None]]) -> None:
    await conn.execute(text("DELETE FROM customer_phones WHERE customer_id = :c"), {"c": customer_id})
    for e164, label in phones:
        owner = await conn.scalar(text("SELECT customer_id FROM customer_phones WHERE e164 = :e"), {"e": e164})
        if owner is not None:
            # One number, one customer (docs/decisions.md): refuse rather than merge two people.
            raise conflict(f"{e164} already belongs to customer {owner}")
        await conn.execute(text("INSERT INTO customer_phones (customer_id, e164, label) VALUES (:c, :e, :l)"),
                           {"c": customer_id, "e": e164, "l": label})


_CARD_SQL = """
SELECT c.id, c.name, c.tier, c.segment, c.language, c.tags, c.assigned_agent_id, a.name AS assigned_agent,
       c.stage, c.notes, c.do_not_call, c.created_at, c.updated_at,
       (SELECT coalesce(json_agg(json_build_object('e164', p.e164, 'label', p.label) ORDER BY p.id), '[]')
          FROM customer_phones p WHERE p.customer_id = c.id) AS phones
  FROM customers c LEFT JOIN agents a ON a.id = c.assigned_agent_id
"""


# Recent post-call survey scores: a caller who did not answer has score null and answered false
# (never 0). Only the API's card reads them; the routing lookup (crm.lookup) does not.
_SURVEYS_SQL = """
SELECT s.at, s.call_id, s.score, s.answered, s.agent,
       (SELECT min(a.name) FROM agent_endpoints e JOIN agents a ON a.id = e.agent_id
         WHERE e.interface = s.agent) AS agent_name, s.queue
  FROM survey_responses s WHERE s.customer_id = :id ORDER BY s.at DESC, s.id DESC LIMIT :n
"""


async def _card(conn: AsyncConnection, customer_id: int, history: int, surveys: int = 0) -> dict[str, Any] | None:
    row = (await conn.execute(text(_CARD_SQL + " WHERE c.id = :id"), {"id": customer_id})).mappings().first()
    if row is None:
        return None
    out = {**row, "tags": list(row["tags"] or [])}
    inter = await conn.execute(text(
        "SELECT i.at, i.channel, i.direction, i.outcome, ag.name AS agent, i.summary, i.call_id FROM interactions i "
        "LEFT JOIN agents ag ON ag.id = i.agent_id WHERE i.customer_id = :id ORDER BY i.at DESC LIMIT :n"),
        {"id": customer_id, "n": history})
    out["interactions"] = [dict(r) for r in inter.mappings()]
    calls = await conn.execute(text(
        "SELECT call_id, entered_at, outcome, queue, agent, talk_s, queue_wait_s FROM calls WHERE customer_id = :id "
        "ORDER BY entered_at DESC LIMIT :n"), {"id": customer_id, "n": history})
    out["calls"] = [dict(r) for r in calls.mappings()]
    out["surveys"] = ([dict(r) for r in (await conn.execute(text(_SURVEYS_SQL), {"id": customer_id, "n": surveys}))
                       .mappings()] if surveys else [])
    return out


@route("GET", "/api/v1/customers", roles=CRM, query=CustomerQuery, tag="crm",
       summary="Find customers by phone (any form) or by name prefix")
async def search_customers(c: Call) -> Any:
    """``phone``: the card of the customer owning that number (CRM lookup, as routing does it);
    ``name``: customers whose name starts with it (case-insensitive)."""
    q: CustomerQuery = c.query
    if q.phone is None and q.name is None:
        raise ApiProblem(422, "give phone or name", kind="validation-error",
                         errors=[{"in": "query", "path": "phone", "pointer": "#/phone",
                                  "detail": "phone or name is required", "type": "missing"}])
    if q.phone is not None:
        try:
            to_e164(q.phone, c.ctx.settings.crm.default_region)
        except PhoneError as exc:
            raise ApiProblem(422, f"query field 'phone': {exc}", kind="validation-error",
                             errors=[{"in": "query", "path": "phone", "pointer": "#/phone", "detail": str(exc),
                                      "type": "phone"}]) from None
        repo = CustomerRepository(c.ctx.database.engine, default_region=c.ctx.settings.crm.default_region)
        card = await repo.lookup(q.phone)
        return {"customers": [card.to_dict()] if card is not None else []}
    pattern = q.name.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"  # type: ignore[union-attr]
    async with c.ctx.database.engine.connect() as conn:
        sql = _CARD_SQL + " WHERE lower(c.name) LIKE :p ORDER BY lower(c.name), c.id LIMIT :n"
        rows = await conn.execute(text(sql), {"p": pattern, "n": q.limit})
        return {"customers": [{**r, "tags": list(r["tags"] or [])} for r in rows.mappings()]}


@route("POST", "/api/v1/customers", roles=CRM, body=CustomerIn, status=201, tag="crm", summary="Create a customer")
async def create_customer(c: Call) -> Any:
    b: CustomerIn = c.body
    phones = _e164s(c, b.phones)
    values = {f: getattr(b, f) for f in _FIELDS}
    async with c.ctx.database.engine.begin() as conn:
        cid = (await conn.execute(text(
            "INSERT INTO customers (" + ", ".join(_FIELDS) + ") VALUES (" + ", ".join(f":{f}" for f in _FIELDS)
            + ") RETURNING id"), values)).scalar_one()
        await _set_phones(conn, cid, phones)
        return await _card(conn, cid, 0)


@route("GET", "/api/v1/customers/{customer_id}", roles=CRM, query=CustomerCardQuery, tag="crm",
       summary="A customer's card with recent interactions, calls and survey scores")
async def get_customer(c: Call) -> Any:
    """``interactions`` and ``calls``: the newest ``history``; ``surveys``: the newest
    ``surveys`` post-call survey responses (at, call_id, score, answered, agent, agent_name,
    queue), a survey the caller did not answer with ``score`` null and ``answered`` false."""
    async with c.ctx.database.engine.connect() as conn:
        out = await _card(conn, c.path["customer_id"], c.query.history, c.query.surveys)
    if out is None:
        raise not_found(f"no customer {c.path['customer_id']}")
    return out


@route("PATCH", "/api/v1/customers/{customer_id}", roles=CRM, body=CustomerPatch, tag="crm",
       summary="Change a customer (only the fields given; phones replace the list)")
async def patch_customer(c: Call) -> Any:
    b: CustomerPatch = c.body
    sets = {f: getattr(b, f) for f in _FIELDS if f in b.model_fields_set}
    for f in ("name", "tier", "tags", "do_not_call"):
        if f in sets and sets[f] is None:
            raise ApiProblem(422, f"body field {f!r} cannot be null", kind="validation-error",
                             errors=[{"in": "body", "path": f, "pointer": f"#/{f}", "detail": "cannot be null",
                                      "type": "value_error"}])
    phones = _e164s(c, b.phones) if b.phones is not None else None
    cid = c.path["customer_id"]
    async with c.ctx.database.engine.begin() as conn:
        if not await conn.scalar(text("SELECT 1 FROM customers WHERE id = :id FOR UPDATE"), {"id": cid}):
            raise not_found(f"no customer {cid}")
        assign = ", ".join([*(f"{k} = :{k}" for k in sets), "updated_at = now()"])
        await conn.execute(text(f"UPDATE customers SET {assign} WHERE id = :id"), {**sets, "id": cid})
        if phones is not None:
            await _set_phones(conn, cid, phones)
        return await _card(conn, cid, 0)


# --- callbacks ---------------------------------------------------------------------------------


@route("POST", "/api/v1/callbacks", roles=CRM, body=CallbackIn, status=201, tag="callbacks",
       summary="Ask for a call back (e.g. from a website form)")
async def create_callback(c: Call) -> Any:
    """The phone is normalised to E.164 (422 with the field path otherwise) and matched to a CRM
    customer; the request is stored ``open`` with ``source = api`` and ``due_at`` = the
    preferred time (or now, if none or already past). Dialing is a later step."""
    b: CallbackIn = c.body
    try:
        e164 = to_e164(b.phone, c.ctx.settings.crm.default_region, strict=True)
    except PhoneError as exc:
        raise _phone_problem("phone", str(exc)) from None
    if e164 is None:
        raise _phone_problem("phone", "a withheld number cannot be called back")
    now: datetime = c.ctx.controller.clock()
    due = max(b.preferred_at, now) if b.preferred_at is not None else now
    async with c.ctx.database.engine.begin() as conn:
        customer_id = await conn.scalar(text("SELECT customer_id FROM customer_phones WHERE e164 = :e"), {"e": e164})
        row = (await conn.execute(text(
            "INSERT INTO callbacks (customer_id, phone, name, topic, source, queue, status, due_at) "
            "VALUES (:cid, :p, :n, :t, 'api', :q, 'open', :due) "
            "RETURNING id, customer_id, phone, name, topic, source, queue, status, due_at, created_at"),
            {"cid": customer_id, "p": e164, "n": b.name, "t": b.topic, "q": b.queue, "due": due})).mappings().one()
    out = dict(row)
    c.ctx.controller.bus.publish("callback", {k: (v.isoformat() if isinstance(v, datetime) else v)
                                              for k, v in out.items()}, queue=b.queue)
    return out


@route("GET", "/api/v1/callbacks", roles={"admin", "supervisor"}, query=CallbackQuery, tag="callbacks",
       summary="Callback requests, soonest due first")
async def list_callbacks(c: Call) -> Any:
    """Supervisors see requests for their teams' queues and those without a queue."""
    q: CallbackQuery = c.query
    scope = await c.scope()
    sql = ("SELECT id, call_id, customer_id, phone, name, topic, source, queue, status, due_at, attempts, "
           "created_at, closed_at, outcome FROM callbacks")
    params: dict[str, Any] = {"n": q.limit}
    if q.status:
        sql += " WHERE status = :s"
        params["s"] = q.status
    sql += " ORDER BY due_at, id LIMIT :n"
    async with c.ctx.database.engine.connect() as conn:
        rows = [dict(r) for r in (await conn.execute(text(sql), params)).mappings()]
    return {"callbacks": [r for r in rows if r["queue"] is None or scope.queue(r["queue"])]}
