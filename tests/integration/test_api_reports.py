"""Analyst reports over HTTP, as JSON and as CSV (by ?format= or the Accept header)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from tests.integration.test_api_support import api_env

DAY = datetime(2026, 11, 2, tzinfo=UTC)
PERIOD = {"from": "2026-11-02", "to": "2026-11-03"}


def stint(queue: str, joined: datetime, wait: float, outcome: str, agent: str | None = None) -> dict:
    return {"queue": queue, "joined_at": joined.isoformat(), "left_at": (joined + timedelta(seconds=wait)).isoformat(),
            "wait_s": wait, "outcome": outcome, "agent": agent, "moved_to": None}


async def seed_calls(env) -> None:
    t = DAY + timedelta(hours=9)
    rows = [
        # answered after 10 s (within SL), talked 100 s
        ("r1", t, "answered", None, "PJSIP/1001", 10, 100, [stint("sales", t, 10, "answered", "PJSIP/1001")]),
        # answered after 40 s (after SL), talked 200 s
        ("r2", t + timedelta(minutes=5), "answered", None, "PJSIP/1001", 40, 200,
         [stint("sales", t + timedelta(minutes=5), 40, "answered", "PJSIP/1001")]),
        # abandoned in the queue after 30 s
        ("r3", t + timedelta(minutes=9), "abandoned", "queue", None, 30, None,
         [stint("sales", t + timedelta(minutes=9), 30, "abandoned")]),
    ]
    async with env.engine.begin() as conn:
        for call_id, entered, outcome, stage, agent, wait, talk, stints in rows:
            await conn.execute(text(
                "INSERT INTO calls (call_id, pbx, caller, entered_at, answered_at, ended_at, outcome, abandon_stage, "
                "abandon_node, queue, agent, queue_wait_s, talk_s, stints, hung_up_by) VALUES (:id, 'ast1', "
                "'+12025550100', :e, :a, :end, :o, :s, :node, 'sales', :agent, :w, :talk, CAST(:st AS jsonb), "
                "'caller')"),
                {"id": call_id, "e": entered, "a": entered + timedelta(seconds=wait) if talk else None,
                 "end": entered + timedelta(seconds=wait + (talk or 0)), "o": outcome, "s": stage,
                 "node": "sales" if stage else None, "agent": agent, "w": wait, "talk": talk,
                 "st": json.dumps(stints)})


async def test_kpi_as_json_and_csv(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        await seed_calls(env)
        status, body, _ = await env.req("GET", "/api/v1/reports/kpi", "analyst", params={**PERIOD, "by": "total"})
        assert status == 200 and body["report"] == "kpi" and body["columns"][0] == "period"
        overall = next(r for r in body["rows"] if r["queue"] is None)
        # 3 offered, 2 answered, 1 abandoned; SL 20 s: 1 of 2 answered within -> 50 %; AHT (100+200)/2
        assert (overall["offered"], overall["answered"], overall["abandoned"]) == (3, 2, 1)
        assert overall["sl_pct"] == 50.0 and overall["aht_s"] == 150.0
        status, body, _ = await env.req("GET", "/api/v1/reports/kpi", "analyst",
                                        params={**PERIOD, "by": "total", "sl_seconds": "45"})
        assert next(r for r in body["rows"] if r["queue"] is None)["sl_pct"] == 100.0

        status, csv_text, resp = await env.req("GET", "/api/v1/reports/kpi", "analyst",
                                               params={**PERIOD, "by": "total", "format": "csv"})
        assert status == 200 and resp.headers["Content-Type"].startswith("text/csv")
        assert 'filename="kpi.csv"' in resp.headers["Content-Disposition"]
        rows = list(csv.DictReader(io.StringIO(csv_text)))
        overall_csv = next(r for r in rows if r["queue"] == "")
        assert (overall_csv["offered"], overall_csv["answered"], overall_csv["sl_pct"]) == ("3", "2", "50.0")
        # the Accept header works too
        status, csv_text2, resp = await env.req("GET", "/api/v1/reports/kpi", "analyst",
                                                params={**PERIOD, "by": "total"}, headers={"Accept": "text/csv"})
        assert resp.headers["Content-Type"].startswith("text/csv") and csv_text2 == csv_text


async def test_abandons_and_agents_reports(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        await seed_calls(env)
        _, body, _ = await env.req("GET", "/api/v1/reports/abandons", "analyst", params=PERIOD)
        assert [(r["call_id"], r["stage"], r["after_sl"]) for r in body["rows"]] == [("r3", "queue", True)]
        _, body, _ = await env.req("GET", "/api/v1/reports/abandons", "analyst",
                                   params={**PERIOD, "by_node": "true"})
        assert body["report"] == "abandons_by_node" and body["rows"][0]["abandons"] == 1
        status, body, _ = await env.req("GET", "/api/v1/reports/abandons", "analyst",
                                        params=[*PERIOD.items(), ("stage", "ivr"), ("stage", "ringing")])
        assert status == 200 and body["rows"] == []
        status, body, _ = await env.req("GET", "/api/v1/reports/agents", "analyst", params={**PERIOD, "by": "total"})
        assert status == 200 and body["report"] == "agents" and body["columns"][0] == "period"
        status, body, _ = await env.req("GET", "/api/v1/reports/agents", "analyst", params={**PERIOD, "by": "hour"})
        assert status == 422 and body["errors"][0]["path"] == "by"


async def test_bad_time_zone_and_period(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        status, body, _ = await env.req("GET", "/api/v1/reports/kpi", "analyst", params={**PERIOD, "tz": "Mars/Base"})
        assert status == 422 and "Mars/Base" in body["detail"]
        status, body, _ = await env.req("GET", "/api/v1/reports/kpi", "analyst", params={"from": "2026-11-02"})
        assert status == 422 and body["errors"][0]["path"] == "to"


async def seed_surveys_and_callbacks(env) -> None:
    t = DAY + timedelta(hours=10)
    async with env.engine.begin() as conn:
        # sales/alice (team red): 10, 9, 4, not answered; support/bob (team blue): 6, 8
        for call_id, queue, agent, score, at in (
                ("s1", "sales", "PJSIP/1001", 10, t), ("s2", "sales", "PJSIP/1001", 9, t),
                ("s3", "sales", "PJSIP/1001", 4, t), ("s4", "sales", "PJSIP/1001", None, t),
                ("s5", "support", "PJSIP/1002", 6, t), ("s6", "support", "PJSIP/1002", 8, t),
                ("s7", "support", "PJSIP/1002", 0, DAY + timedelta(days=1, hours=1))):  # the next day
            await conn.execute(text(
                "INSERT INTO survey_responses (call_id, agent, queue, score, answered, at) "
                "VALUES (:c, :a, :q, :s, :ans, :at)"),
                {"c": call_id, "a": agent, "q": queue, "s": score, "ans": score is not None, "at": at})
        # sales: completed in 30 min (1 attempt), completed after 3 h (3 attempts), still open;
        # support: failed after 2 attempts
        for queue, status, attempts, closed in (("sales", "completed", 1, t + timedelta(minutes=30)),
                                                ("sales", "completed", 3, t + timedelta(hours=3)),
                                                ("sales", "open", 0, None),
                                                ("support", "failed", 2, t + timedelta(hours=1))):
            await conn.execute(text(
                "INSERT INTO callbacks (phone, source, queue, status, due_at, created_at, attempts, closed_at, "
                "outcome) VALUES ('+12025550100', 'api', :q, :s, :c, :c, :a, :cl, :o)"),
                {"q": queue, "s": status, "c": t, "a": attempts, "cl": closed,
                 "o": {"completed": "completed", "failed": "attempts_exhausted"}.get(status)})


async def test_nps_report_per_queue_team_agent_and_period(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        await seed_surveys_and_callbacks(env)
        status, body, _ = await env.req("GET", "/api/v1/reports/nps", "analyst", params=PERIOD)
        assert status == 200 and body["report"] == "nps"
        assert body["columns"][:4] == ["queue", "responses", "answered", "unanswered"] and "nps" in body["columns"]
        by_queue = {r["queue"]: r for r in body["rows"]}
        # sales: 2 promoters, 1 detractor of 3 answered -> 66.7 - 33.3 = +33.3; the unanswered one is no 0
        assert (by_queue["sales"]["responses"], by_queue["sales"]["answered"], by_queue["sales"]["unanswered"],
                by_queue["sales"]["nps"]) == (4, 3, 1, 33.3)
        assert (by_queue["sales"]["promoters_pct"], by_queue["sales"]["detractors_pct"]) == (66.7, 33.3)
        # support on the 2nd: 6 (detractor), 8 (passive) -> -50; s7 is on the 3rd, outside
        assert (by_queue["support"]["responses"], by_queue["support"]["nps"]) == (2, -50.0)

        _, body, _ = await env.req("GET", "/api/v1/reports/nps", "admin", params={**PERIOD, "by": "team"})
        assert {r["team"]: r["nps"] for r in body["rows"]} == {"red": 33.3, "blue": -50.0}
        _, body, _ = await env.req("GET", "/api/v1/reports/nps", "analyst", params={**PERIOD, "by": "agent"})
        assert [(r["agent"], r["agent_name"], r["detractors"]) for r in body["rows"]] == [
            ("PJSIP/1001", "Alice", 1), ("PJSIP/1002", "Bob", 1)]
        _, body, _ = await env.req("GET", "/api/v1/reports/nps", "analyst",
                                   params={"from": "2026-11-01", "to": "2026-12-01", "by": "period",
                                           "period": "day", "queue": "support"})
        assert [(r["period"], r["responses"], r["nps"]) for r in body["rows"]] == [
            ("2026-11-02", 2, -50.0), ("2026-11-03", 1, -100.0)]
        _, body, _ = await env.req("GET", "/api/v1/reports/nps", "analyst",
                                   params={**PERIOD, "by": "total", "agent": "PJSIP/1002"})
        assert body["columns"][0] == "responses" and [r["answered"] for r in body["rows"]] == [2]

        status, csv_text, resp = await env.req("GET", "/api/v1/reports/nps", "analyst",
                                               params={**PERIOD, "format": "csv"})
        assert status == 200 and resp.headers["Content-Type"].startswith("text/csv")
        assert 'filename="nps.csv"' in resp.headers["Content-Disposition"]
        rows = list(csv.DictReader(io.StringIO(csv_text)))
        assert [(r["queue"], r["nps"], r["unanswered"]) for r in rows] == [("sales", "33.3", "1"),
                                                                          ("support", "-50.0", "0")]


async def test_callbacks_report(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        await seed_surveys_and_callbacks(env)
        status, body, _ = await env.req("GET", "/api/v1/reports/callbacks", "analyst",
                                        params={**PERIOD, "by": "queue"})
        assert status == 200 and body["report"] == "callbacks"
        assert body["columns"][:5] == ["queue", "requested", "completed", "within_deadline", "within_deadline_pct"]
        sales = next(r for r in body["rows"] if r["queue"] == "sales")
        # 3 requested, 2 completed, 1 within the default 2 h; (1 + 3) attempts / 2 completed
        assert (sales["requested"], sales["completed"], sales["within_deadline"], sales["within_deadline_pct"],
                sales["attempts_per_success"], sales["open"]) == (3, 2, 1, 33.33, 2.0, 1)
        support = next(r for r in body["rows"] if r["queue"] == "support")
        assert (support["failed"], support["attempts_per_success"]) == (1, None)
        # a 4 h deadline for requests without their own: both sales callbacks were in time
        _, body, _ = await env.req("GET", "/api/v1/reports/callbacks", "analyst",
                                   params={**PERIOD, "by": "total", "deadline_minutes": "240"})
        assert body["columns"][0] == "requested"
        assert [(r["requested"], r["within_deadline"]) for r in body["rows"]] == [(4, 2)]
        _, body, _ = await env.req("GET", "/api/v1/reports/callbacks", "analyst",
                                   params={**PERIOD, "by": "period_queue", "queue": "support"})
        assert [(r["period"], r["queue"], r["requested"]) for r in body["rows"]] == [("2026-11-02", "support", 1)]
        status, csv_text, _ = await env.req("GET", "/api/v1/reports/callbacks", "analyst", params=PERIOD,
                                            headers={"Accept": "text/csv"})
        rows = list(csv.DictReader(io.StringIO(csv_text)))
        assert status == 200 and [(r["period"], r["requested"], r["completed"]) for r in rows] == [
            ("2026-11-02", "4", "2")]


async def test_nps_and_callback_reports_are_for_admins_and_analysts(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        for path in ("/api/v1/reports/nps", "/api/v1/reports/callbacks"):
            for who in ("sup_red", "alice"):
                status, _, _ = await env.req("GET", path, who, params=PERIOD)
                assert status == 403, (path, who)
            status, body, _ = await env.req("GET", path, "analyst", params={**PERIOD, "by": "hour"})
            assert status == 422 and body["errors"][0]["path"] == "by"
            status, body, _ = await env.req("GET", path, "analyst", params={**PERIOD, "tz": "Mars/Base"})
            assert status == 422 and "Mars/Base" in body["detail"]
            status, body, _ = await env.req("GET", path, "analyst", params={"from": "2026-11-03", "to": "2026-11-02"})
            assert status == 422 and "empty period" in body["detail"]
        status, body, _ = await env.req("GET", "/api/v1/reports/nps", "analyst", params={**PERIOD, "agent": "1001"})
        assert status == 422 and body["errors"][0]["path"] == "agent"
