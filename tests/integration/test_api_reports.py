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
