"""CRM customers and callback requests through the API."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event, text

from callcenter.bus import Notification
from tests.integration.test_api_support import T0, api_env


async def test_create_find_show_and_update_customers(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        status, card, _ = await env.req("POST", "/api/v1/customers", "alice", json={
            "name": "Anna Ivanova", "tier": "vip", "tags": ["wholesale"],
            "phones": [{"number": "(202) 555-0101", "label": "mobile"}, {"number": "+44 1632 960001"}]})
        assert status == 201, card
        assert card["phones"] == [{"e164": "+12025550101", "label": "mobile"}, {"e164": "+441632960001", "label": None}]
        cid = card["id"]
        # by phone, in any form: the routing lookup's card
        for form in ("+12025550101", "2025550101", "tel:+1-202-555-0101"):
            _, found, _ = await env.req("GET", "/api/v1/customers", "sup_blue", params={"phone": form})
            assert [c["id"] for c in found["customers"]] == [cid], form
        _, found, _ = await env.req("GET", "/api/v1/customers", params={"phone": "+12025550999"})
        assert found == {"customers": []}
        # by name prefix, case-insensitive; LIKE wildcards are literal
        await env.req("POST", "/api/v1/customers", json={"name": "Anatoly"})
        await env.req("POST", "/api/v1/customers", json={"name": "Boris"})
        _, found, _ = await env.req("GET", "/api/v1/customers", params={"name": "an"})
        assert [c["name"] for c in found["customers"]] == ["Anatoly", "Anna Ivanova"]
        _, found, _ = await env.req("GET", "/api/v1/customers", params={"name": "%"})
        assert found["customers"] == []
        status, body, _ = await env.req("GET", "/api/v1/customers")
        assert status == 422
        # the card with its history
        async with env.engine.begin() as conn:
            await conn.execute(text("INSERT INTO interactions (customer_id, at, summary, agent_id) "
                                    "VALUES (:c, :at, 'asked about invoice', :a)"),
                               {"c": cid, "at": T0, "a": env.ids["alice"]})
            await conn.execute(text(
                "INSERT INTO calls (call_id, pbx, customer_id, entered_at, outcome, queue, agent, talk_s) "
                "VALUES ('old-1', 'ast1', :c, :at, 'answered', 'sales', 'PJSIP/1001', 65)"),
                {"c": cid, "at": T0 - timedelta(days=1)})
        status, shown, _ = await env.req("GET", f"/api/v1/customers/{cid}", "bob")
        assert status == 200 and shown["tier"] == "vip" and shown["tags"] == ["wholesale"]
        assert [(i["summary"], i["agent"]) for i in shown["interactions"]] == [("asked about invoice", "Alice")]
        assert [(c["call_id"], c["outcome"], c["talk_s"]) for c in shown["calls"]] == [("old-1", "answered", 65.0)]
        # update: only what is given; phones replace the list
        status, card, _ = await env.req("PATCH", f"/api/v1/customers/{cid}", json={
            "notes": "prefers email", "phones": [{"number": "+12025550102"}]})
        assert status == 200 and card["notes"] == "prefers email" and card["tier"] == "vip"
        assert card["phones"] == [{"e164": "+12025550102", "label": None}]
        assert card["updated_at"] > card["created_at"]
        # one number, one customer
        status, body, _ = await env.req("POST", "/api/v1/customers", json={"name": "X",
                                                                           "phones": [{"number": "+12025550102"}]})
        assert status == 409 and "+12025550102" in body["detail"]
        assert (await env.req("GET", "/api/v1/customers/424242"))[0] == 404
        assert (await env.req("PATCH", "/api/v1/customers/424242", json={"notes": "x"}))[0] == 404


async def test_callback_request_from_a_website(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        status, cust, _ = await env.req("POST", "/api/v1/customers", json={
            "name": "Anna", "phones": [{"number": "+12025550101"}]})
        seen: list[Notification] = []
        env.controller.bus.hooks.append(seen.append)
        status, cb, _ = await env.req("POST", "/api/v1/callbacks", "sup_red", json={
            "phone": "202.555.0101", "name": "Anna", "topic": "Invoice question", "queue": "sales"})
        assert status == 201, cb
        assert (cb["phone"], cb["customer_id"], cb["status"], cb["source"], cb["queue"]) == (
            "+12025550101", cust["id"], "open", "api", "sales")
        assert cb["due_at"] == T0.isoformat()  # no preferred time: due now
        assert [n.kind for n in seen] == ["callback"] and seen[0].queue == "sales"
        later = (T0 + timedelta(hours=3)).isoformat()
        _, cb2, _ = await env.req("POST", "/api/v1/callbacks", json={"phone": "+12025550199", "preferred_at": later})
        assert cb2["due_at"] == later and cb2["customer_id"] is None
        past = (T0 - timedelta(hours=3)).isoformat()
        _, cb3, _ = await env.req("POST", "/api/v1/callbacks", json={"phone": "+12025550198", "preferred_at": past})
        assert cb3["due_at"] == T0.isoformat()
        async with env.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT phone, status, source FROM callbacks ORDER BY id"))).all()
        assert [tuple(r) for r in rows] == [("+12025550101", "open", "api"), ("+12025550199", "open", "api"),
                                           ("+12025550198", "open", "api")]
        # the supervisors' list: soonest first, only their queues (and those without one)
        _, listing, _ = await env.req("GET", "/api/v1/callbacks", "sup_blue")
        assert [c["phone"] for c in listing["callbacks"]] == ["+12025550198", "+12025550199"]
        _, listing, _ = await env.req("GET", "/api/v1/callbacks", "sup_red", params={"status": "open"})
        assert len(listing["callbacks"]) == 3


async def test_callback_validation(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        cases = [
            ({"phone": "call me"}, "phone"),
            ({"phone": "anonymous"}, "phone"),
            ({"phone": "+1202"}, "phone"),
            ({"phone": "+12025550101", "queue": "Sales Team"}, "queue"),
            ({"phone": "+12025550101", "preferred_at": "tomorrow"}, "preferred_at"),
            ({"phone": "+12025550101", "preferred_at": "2026-11-23T10:00:00"}, "preferred_at"),  # no offset
            ({"phone": "+12025550101", "name": "A\r\nB"}, "name"),
            ({"name": "no phone"}, "phone"),
        ]
        for body, path in cases:
            status, problem, _ = await env.req("POST", "/api/v1/callbacks", json=body)
            assert status == 422, body
            assert problem["errors"][0]["path"] == path, (body, problem)
        async with env.engine.connect() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM callbacks")) == 0


async def test_the_card_shows_recent_survey_scores_and_not_answered_is_not_zero(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        _, card, _ = await env.req("POST", "/api/v1/customers", json={"name": "Anna Ivanova"})
        cid = card["id"]
        assert card["surveys"] == []
        _, other, _ = await env.req("POST", "/api/v1/customers", json={"name": "Boris"})
        async with env.engine.begin() as conn:
            for call_id, customer, agent, queue, score, days_ago in (
                    ("v1", cid, "PJSIP/1001", "sales", 9, 3), ("v2", cid, "PJSIP/1002", "support", None, 2),
                    ("v3", cid, "PJSIP/1001", "sales", 0, 1), ("v4", other["id"], "PJSIP/1001", "sales", 2, 0)):
                await conn.execute(text(
                    "INSERT INTO survey_responses (call_id, customer_id, agent, queue, score, answered, at) "
                    "VALUES (:c, :cust, :a, :q, :s, :ans, :at)"),
                    {"c": call_id, "cust": customer, "a": agent, "q": queue, "s": score, "ans": score is not None,
                     "at": T0 - timedelta(days=days_ago)})
        status, shown, _ = await env.req("GET", f"/api/v1/customers/{cid}", "alice")
        assert status == 200
        # newest first; a score of 0 is a score, a caller who did not answer has none
        assert [(s["call_id"], s["score"], s["answered"], s["agent"], s["agent_name"], s["queue"])
                for s in shown["surveys"]] == [
            ("v3", 0, True, "PJSIP/1001", "Alice", "sales"),
            ("v2", None, False, "PJSIP/1002", "Bob", "support"),
            ("v1", 9, True, "PJSIP/1001", "Alice", "sales")]
        assert shown["surveys"][0]["at"].startswith((T0 - timedelta(days=1)).date().isoformat())
        _, shown, _ = await env.req("GET", f"/api/v1/customers/{cid}", params={"surveys": "1"})
        assert [s["call_id"] for s in shown["surveys"]] == ["v3"]
        _, shown, _ = await env.req("GET", f"/api/v1/customers/{cid}", params={"surveys": "0"})
        assert shown["surveys"] == [] and "interactions" in shown
        status, body, _ = await env.req("GET", f"/api/v1/customers/{cid}", params={"surveys": "201"})
        assert status == 422 and body["errors"][0]["path"] == "surveys"


async def test_the_routing_lookup_does_not_read_survey_scores(database, tmp_path) -> None:
    from callcenter.crm.repository import CustomerRepository

    async with api_env(database, tmp_path) as env:
        _, card, _ = await env.req("POST", "/api/v1/customers", json={
            "name": "Anna Ivanova", "phones": [{"number": "+12025550101"}]})
        async with env.engine.begin() as conn:
            await conn.execute(text("INSERT INTO survey_responses (call_id, customer_id, score, answered) "
                                    "VALUES ('v1', :c, 3, true)"), {"c": card["id"]})
        statements: list[str] = []
        event.listen(env.engine.sync_engine, "before_cursor_execute",
                     lambda conn, cursor, statement, *a: statements.append(statement))
        found = await CustomerRepository(env.engine).lookup("+12025550101")
        assert found is not None and found.name == "Anna Ivanova"
        assert statements and not any("survey_responses" in s for s in statements)
