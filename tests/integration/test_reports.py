"""Reports and analytics views against hand-computed figures.

The data set (``DATA`` below) is small and written out call by call; every expected number in
these tests was worked out by hand from it (the working is in the comments), never by running
the same SQL. Period of most tests: [2025-03-03, 2025-03-05) UTC; c00 lies before it and
c16/c17 after it (they matter for first-call resolution only).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from callcenter.analytics import reports
from callcenter.settings import DatabaseSettings, Settings
from callcenter.storage.db import Database

D1 = datetime(2025, 3, 3, tzinfo=UTC)  # day 1 of the period
D2 = datetime(2025, 3, 4, tzinfo=UTC)
END = datetime(2025, 3, 5, tzinfo=UTC)


def t(day: int, hms: str) -> datetime:
    h, m, s = (int(x) for x in hms.split(":"))
    return datetime(2025, 3, day, h, m, s, tzinfo=UTC)


def stint(queue: str, joined: datetime, wait: float, outcome: str, agent: str | None = None,
          moved_to: str | None = None) -> dict[str, Any]:
    return {"queue": queue, "joined_at": joined.isoformat(), "left_at": (joined + timedelta(seconds=wait)).isoformat(),
            "wait_s": wait, "outcome": outcome, "agent": agent, "moved_to": moved_to}


CUSTOMERS = [(1, "Anna Regular", "standard"), (2, "Boris VIP", "vip"), (3, "Carla VIP", "vip"),
             (4, "Dmitri Regular", "standard"), (5, "Elena Regular", "standard"), (6, "Farid VIP", "vip")]
VIP = {1: False, 2: True, 3: True, 4: False, 5: False, 6: True}


def call(call_id: str, entered: datetime, ended: datetime, outcome: str, *, customer: int | None = None,
         stage: str | None = None, node: str | None = None, short: bool = False, via_ivr: bool = False,
         stints: list[dict[str, Any]] | None = None, agent: str | None = None, agent_id: int | None = None,
         answered: datetime | None = None, ivr_s: float | None = None, queue_wait_s: float | None = None,
         ring_s: float | None = None, talk_s: float | None = None, overflows: int = 0) -> dict[str, Any]:
    stints = stints or []
    return {
        "call_id": call_id, "pbx": "asterisk", "caller": f"+1202555{int(call_id[1:]):04d}", "did": "+12025550100",
        "customer_id": customer, "vip": VIP.get(customer) if customer else None,
        "entered_at": entered, "answered_at": answered, "ended_at": ended, "outcome": outcome,
        "abandon_stage": stage, "abandon_node": node, "short_abandon": short, "answered_via_ivr": via_ivr,
        "queue": stints[-1]["queue"] if stints else None, "agent": agent, "agent_id": agent_id,
        "ivr_s": ivr_s, "queue_wait_s": queue_wait_s, "ring_s": ring_s, "talk_s": talk_s,
        "stints": json.dumps(stints), "overflows": overflows,
        "offered_agents": 1 if agent else 0, "missed_rings": 0,
        "hung_up_by": "caller",
    }


DATA = [
    # before the period: customer 4 answered in support (c06 is its repeat)
    call("c00", t(2, "23:00:00"), t(2, "23:01:00"), "answered", customer=4, answered=t(2, "23:00:10"),
         stints=[stint("support", t(2, "23:00:02"), 8, "answered", "PJSIP/1002")], agent="PJSIP/1002", agent_id=2,
         queue_wait_s=8, talk_s=50),
    # --- day 1, 2025-03-03 ---
    # answered directly in sales after 10 s
    call("c01", t(3, "09:00:00"), t(3, "09:02:12"), "answered", customer=1, answered=t(3, "09:00:12"),
         stints=[stint("sales", t(3, "09:00:02"), 10, "answered", "PJSIP/1001")], agent="PJSIP/1001", agent_id=1,
         queue_wait_s=10, ring_s=4, talk_s=120),
    # answered via the IVR in sales after 30 s
    call("c02", t(3, "09:10:00"), t(3, "09:15:45"), "answered", customer=2, via_ivr=True, answered=t(3, "09:10:45"),
         stints=[stint("sales", t(3, "09:10:15"), 30, "answered", "PJSIP/1001")], agent="PJSIP/1001", agent_id=1,
         ivr_s=15, queue_wait_s=30, talk_s=300),
    # overflow sales (25 s, moved) -> support (5 s, answered)
    call("c03", t(3, "09:20:00"), t(3, "09:23:50"), "answered", customer=3, answered=t(3, "09:20:30"),
         stints=[stint("sales", t(3, "09:20:00"), 25, "moved", moved_to="support"),
                 stint("support", t(3, "09:20:25"), 5, "answered", "PJSIP/1003")],
         agent="PJSIP/1003", queue_wait_s=30, talk_s=200, overflows=1),
    # hung up before the PBX answered, after 3 s: short
    call("c04", t(3, "09:30:00"), t(3, "09:30:03"), "abandoned", stage="pre_answer", short=True),
    # lost in the IVR main menu after 40 s
    call("c05", t(3, "09:40:00"), t(3, "09:40:40"), "abandoned", customer=1, stage="ivr", node="main_menu", ivr_s=38),
    # lost in the sales queue after 50 s there (60 s in all)
    call("c06", t(3, "10:05:00"), t(3, "10:06:00"), "abandoned", customer=4, stage="queue", node="sales", ivr_s=10,
         stints=[stint("sales", t(3, "10:05:10"), 50, "abandoned")], queue_wait_s=50),
    # lost while an agent's phone rang, sales, 12 s in the queue (14 s in all: not short)
    call("c07", t(3, "10:15:00"), t(3, "10:15:14"), "abandoned", stage="ringing", node="sales",
         stints=[stint("sales", t(3, "10:15:02"), 12, "abandoned")], queue_wait_s=12, ring_s=4),
    # lost in the support queue after 3 s (4 s in all: short)
    call("c08", t(3, "10:20:00"), t(3, "10:20:04"), "abandoned", customer=5, stage="queue", node="support",
         short=True, stints=[stint("support", t(3, "10:20:01"), 3, "abandoned")], queue_wait_s=3),
    # pressed the exit key in support after 90 s and asked for a callback
    call("c09", t(3, "10:30:00"), t(3, "10:32:00"), "callback",
         stints=[stint("support", t(3, "10:30:05"), 90, "exit_key")], queue_wait_s=90),
    # timed out of sales after 120 s into voicemail
    call("c10", t(3, "11:00:00"), t(3, "11:03:00"), "voicemail",
         stints=[stint("sales", t(3, "11:00:05"), 120, "timeout")], queue_wait_s=120),
    call("c11", t(3, "11:30:00"), t(3, "11:30:20"), "closed"),
    call("c12", t(3, "11:45:00"), t(3, "11:45:01"), "failed"),
    # --- day 2, 2025-03-04 ---
    # answered directly in support after 45 s
    call("c13", t(4, "08:00:00"), t(4, "08:02:25"), "answered", customer=1, answered=t(4, "08:00:45"),
         stints=[stint("support", t(4, "08:00:00"), 45, "answered", "PJSIP/1002")], agent="PJSIP/1002", agent_id=2,
         queue_wait_s=45, talk_s=100),
    # via the IVR; support timed out after 20 s -> sales answered after 15 s
    call("c14", t(4, "08:30:00"), t(4, "08:31:45"), "answered", customer=6, via_ivr=True, answered=t(4, "08:30:45"),
         stints=[stint("support", t(4, "08:30:10"), 20, "timeout", moved_to="sales"),
                 stint("sales", t(4, "08:30:30"), 15, "answered", "PJSIP/1001")],
         agent="PJSIP/1001", agent_id=1, ivr_s=10, queue_wait_s=35, talk_s=60, overflows=1),
    # lost while ringing in support after 25 s there (30 s in all)
    call("c15", t(4, "09:00:00"), t(4, "09:00:30"), "abandoned", customer=3, stage="ringing", node="support",
         ivr_s=5, stints=[stint("support", t(4, "09:00:05"), 25, "abandoned")], queue_wait_s=25),
    # --- after the period ---
    # customer 2 again 70 h 50 min after c02
    call("c16", t(6, "08:00:00"), t(6, "08:01:00"), "answered", customer=2, answered=t(6, "08:00:05"),
         stints=[stint("sales", t(6, "08:00:00"), 5, "answered", "PJSIP/1001")], agent="PJSIP/1001", agent_id=1,
         queue_wait_s=5, talk_s=30),
    # customer 6 again 72 h 30 min after c14: outside the 72 h window
    call("c17", t(7, "09:00:00"), t(7, "09:00:20"), "abandoned", customer=6, stage="ivr", node="main_menu"),
]

# (call_id, at, kind, queue, agent, detail)
EVENTS = [
    ("c00", t(2, "23:00:05"), "agent_ring", "support", "PJSIP/1002", {}),
    ("c00", t(2, "23:00:10"), "agent_connect", "support", "PJSIP/1002", {}),
    ("c00", t(2, "23:01:00"), "agent_complete", "support", "PJSIP/1002", {"talk_s": 50}),
    ("c01", t(3, "09:00:00"), "arrived", None, None, {}),
    ("c01", t(3, "09:00:08"), "agent_ring", "sales", "PJSIP/1001", {}),
    ("c01", t(3, "09:00:12"), "agent_connect", "sales", "PJSIP/1001", {}),
    ("c01", t(3, "09:02:12"), "agent_complete", "sales", "PJSIP/1001", {"ended_by": "caller", "talk_s": 120}),
    ("c01", t(3, "09:02:12"), "ended", None, None, {}),
    ("c02", t(3, "09:10:30"), "agent_ring", "sales", "PJSIP/1002", {}),
    ("c02", t(3, "09:10:40"), "agent_ring_no_answer", "sales", "PJSIP/1002", {"ring_ms": 10000}),
    ("c02", t(3, "09:10:41"), "agent_ring", "sales", "PJSIP/1001", {}),
    ("c02", t(3, "09:10:45"), "agent_connect", "sales", "PJSIP/1001", {}),
    ("c02", t(3, "09:15:45"), "agent_complete", "sales", "PJSIP/1001", {"talk_s": 300}),
    ("c03", t(3, "09:20:15"), "agent_ring", "sales", "PJSIP/1002", {}),
    ("c03", t(3, "09:20:25"), "agent_ring_no_answer", "sales", "PJSIP/1002", {}),
    ("c03", t(3, "09:20:27"), "agent_ring", "support", "PJSIP/1003", {}),
    ("c03", t(3, "09:20:30"), "agent_connect", "support", "PJSIP/1003", {}),
    # the PBX gave no talk time: 09:20:30 -> 09:23:50 = 200 s from the connect
    ("c03", t(3, "09:23:50"), "agent_complete", "support", "PJSIP/1003", {"ended_by": "caller", "talk_s": None}),
    ("c07", t(3, "10:15:10"), "agent_ring", "sales", "PJSIP/1001", {}),
    ("c07", t(3, "10:15:14"), "agent_ring_canceled", "sales", "PJSIP/1001", {}),
    ("c13", t(4, "08:00:40"), "agent_ring", "support", "PJSIP/1002", {}),
    ("c13", t(4, "08:00:45"), "agent_connect", "support", "PJSIP/1002", {}),
    ("c13", t(4, "08:02:25"), "agent_complete", "support", "PJSIP/1002", {"talk_s": 100}),
    ("c14", t(4, "08:30:40"), "agent_ring", "sales", "PJSIP/1001", {}),
    ("c14", t(4, "08:30:45"), "agent_connect", "sales", "PJSIP/1001", {}),
    ("c14", t(4, "08:31:45"), "agent_complete", "sales", "PJSIP/1001", {"talk_s": 60}),
]

# (agent, at, kind, status, paused, reason, queue)
STATES = [
    ("PJSIP/1001", t(3, "08:55:00"), "status", "available", None, None, None),
    # lunch 12:00-12:30, reported once per queue (as Asterisk does), a second apart: one pause
    ("PJSIP/1001", t(3, "12:00:00"), "pause", None, True, "lunch", "sales"),
    ("PJSIP/1001", t(3, "12:00:01"), "pause", None, True, "lunch", "support"),
    ("PJSIP/1001", t(3, "12:30:00"), "pause", None, False, None, "sales"),
    ("PJSIP/1001", t(3, "12:30:01"), "pause", None, False, None, "support"),
    # break 15:00-15:10, then the reason changes to training until 15:40
    ("PJSIP/1001", t(3, "15:00:00"), "pause", None, True, "break", None),
    ("PJSIP/1001", t(3, "15:10:00"), "pause", None, True, "training", None),
    ("PJSIP/1001", t(3, "15:40:00"), "pause", None, False, None, None),
    # admin 03-02 22:00 -> 03-03 01:00 (starts before the period)
    ("PJSIP/1002", t(2, "22:00:00"), "pause", None, True, "admin", None),
    ("PJSIP/1002", t(3, "01:00:00"), "pause", None, False, None, None),
    # break across midnight 23:50 -> 00:20
    ("PJSIP/1002", t(3, "23:50:00"), "pause", None, True, "break", None),
    ("PJSIP/1002", t(4, "00:20:00"), "pause", None, False, None, None),
    # paused without a reason at 03-04 10:00 and never unpaused
    ("PJSIP/1003", t(4, "10:00:00"), "pause", None, True, None, None),
]


async def _load(conn: asyncpg.Connection) -> None:
    await conn.executemany("INSERT INTO customers (id, name, tier) VALUES ($1, $2, $3)", CUSTOMERS)
    await conn.execute("INSERT INTO agents (id, name) VALUES (1, 'Alice'), (2, 'Bob')")
    await conn.execute("INSERT INTO agent_endpoints (agent_id, pbx, interface) "
                       "VALUES (1, 'asterisk', 'PJSIP/1001'), (2, 'asterisk', 'PJSIP/1002')")
    cols = list(DATA[0])
    placeholders = ", ".join(f"${i + 1}" + ("::jsonb" if c == "stints" else "") for i, c in enumerate(cols))
    await conn.executemany(f"INSERT INTO calls ({', '.join(cols)}) VALUES ({placeholders})",
                           [tuple(d[c] for c in cols) for d in DATA])
    seqs: dict[str, int] = {}
    rows = []
    for call_id, at, kind, queue, agent, detail in EVENTS:
        seqs[call_id] = seqs.get(call_id, 0) + 1
        rows.append((call_id, seqs[call_id], at, at, "asterisk", kind, queue, agent, json.dumps(detail)))
    await conn.executemany(
        "INSERT INTO call_events (call_id, seq, at, controller_at, pbx, kind, queue, agent, detail) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)", rows)
    await conn.executemany(
        "INSERT INTO agent_state_events (event_key, at, pbx, agent, kind, status, paused, reason, queue) "
        "VALUES ($1, $2, 'asterisk', $3, $4, $5, $6, $7, $8)",
        [(uuid.uuid4(), at, agent, kind, status, paused, reason, queue)
         for agent, at, kind, status, paused, reason, queue in STATES])


@pytest.fixture
async def conn(database: Database) -> Any:
    c = await asyncpg.connect(**database.connect_kwargs())
    await _load(c)
    yield c
    await c.close()


def pick(row: dict[str, Any], *keys: str) -> tuple[Any, ...]:
    return tuple(row[k] for k in keys)


def by_key(rows: list[dict[str, Any]], *keys: str) -> dict[Any, dict[str, Any]]:
    out = {}
    for r in rows:
        k = tuple(r[x] for x in keys)
        assert k not in out, f"duplicate row {k}"
        out[k] = r
    return out


# --- kpi ----------------------------------------------------------------------------------------

COUNTS = ("offered", "answered", "abandoned", "abandoned_pre_answer", "abandoned_ivr", "abandoned_queue",
          "abandoned_ringing", "short_abandons", "callbacks", "voicemails", "closed", "failed", "moved", "timeouts",
          "exit_keys", "answered_within_sl", "abandoned_after_sl")
RATES = ("answer_pct", "abandon_pct", "short_abandon_pct", "sl_pct", "sl_pct_with_abandons", "asa_s", "aht_s",
         "avg_time_to_abandon_s")

# Day 1, all calls c01..c12: answered c01 c02 c03; abandoned c04 (pre_answer, 3 s, short), c05 (ivr),
# c06 (queue), c07 (ringing), c08 (queue, 4 s, short); c09 callback, c10 voicemail, c11 closed,
# c12 failed. Speed of answer 10, 30, 30 -> 1 within 20 s; queue/ringing abandons after > 20 s in
# queue: c06 (50). answer 3/12, abandon 5/12, short 2/12, SL 1/3, SL+ab 1/(3+1),
# ASA 70/3, AHT (120+300+200)/3, time to abandon (3+40+60+14+4)/5.
DAY1_ALL = {
    "counts": (12, 3, 5, 1, 1, 2, 1, 2, 1, 1, 1, 1, None, None, None, 1, 1),
    "rates": (25.0, 41.67, 16.67, 33.33, 25.0, 23.3, 206.7, 24.2),
}
# Day 1, sales visits: c01 answered 10, c02 answered 30, c03 moved 25, c06 abandoned 50 (queue),
# c07 abandoned 12 (ringing), c10 timeout 120. SL 1/2, SL+ab 1/(2+1), ASA 40/2, AHT 420/2, TTA 62/2.
DAY1_SALES = {
    "counts": (6, 2, 2, 0, 0, 1, 1, 0, None, None, None, None, 1, 1, 0, 1, 1),
    "rates": (33.33, 33.33, 0.0, 50.0, 33.33, 20.0, 210.0, 31.0),
}
# Day 1, support visits: c03 answered 5, c08 abandoned 3 (queue, short), c09 exit_key 90.
DAY1_SUPPORT = {
    "counts": (3, 1, 1, 0, 0, 1, 0, 1, None, None, None, None, 0, 0, 1, 1, 0),
    "rates": (33.33, 33.33, 33.33, 100.0, 100.0, 5.0, 200.0, 3.0),
}
# Day 2, all calls c13 c14 c15: answered c13 (45 s) c14 (35 s in all: 20 support + 15 sales);
# c15 abandoned ringing after 25 s in support (30 s in all).
DAY2_ALL = {
    "counts": (3, 2, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, None, None, None, 0, 1),
    "rates": (66.67, 33.33, 0.0, 0.0, 0.0, 40.0, 80.0, 30.0),
}
# Day 2, sales: c14 answered after 15 s in sales (its overflow counts as answered here, within SL).
DAY2_SALES = {
    "counts": (1, 1, 0, 0, 0, 0, 0, 0, None, None, None, None, 0, 0, 0, 1, 0),
    "rates": (100.0, 0.0, 0.0, 100.0, 100.0, 15.0, 60.0, None),
}
# Day 2, support: c13 answered 45, c14 timeout 20, c15 abandoned ringing 25.
DAY2_SUPPORT = {
    "counts": (3, 1, 1, 0, 0, 0, 1, 0, None, None, None, None, 0, 1, 0, 0, 1),
    "rates": (33.33, 33.33, 0.0, 0.0, 0.0, 45.0, 100.0, 25.0),
}


def assert_figures(row: dict[str, Any], expected: dict[str, tuple[Any, ...]]) -> None:
    assert dict(zip(COUNTS, pick(row, *COUNTS), strict=True)) == dict(zip(COUNTS, expected["counts"], strict=True))
    assert dict(zip(RATES, pick(row, *RATES), strict=True)) == dict(zip(RATES, expected["rates"], strict=True))


async def test_kpi_by_day_all_calls_and_per_queue_visits(conn: asyncpg.Connection) -> None:
    rows = await reports.kpi(conn, D1, END)
    assert [(r["period"], r["queue"]) for r in rows] == [
        ("2025-03-03", None), ("2025-03-03", "sales"), ("2025-03-03", "support"),
        ("2025-03-04", None), ("2025-03-04", "sales"), ("2025-03-04", "support"),
    ]
    assert all(r["sl_seconds"] == 20.0 for r in rows)
    assert all(type(r[c]) is int for r in rows for c in COUNTS if r[c] is not None)
    assert all(type(r[c]) is float for r in rows for c in RATES if r[c] is not None)
    for row, expected in zip(rows, (DAY1_ALL, DAY1_SALES, DAY1_SUPPORT, DAY2_ALL, DAY2_SALES, DAY2_SUPPORT),
                             strict=True):
        assert_figures(row, expected)


async def test_kpi_overflow_counts_as_moved_in_the_first_queue_and_answered_in_the_second(
    conn: asyncpg.Connection,
) -> None:
    # c03 only: sales 09:20 moved, support answered. Period = c03's minute.
    rows = by_key(await reports.kpi(conn, t(3, "09:20:00"), t(3, "09:21:00"), by="total"), "queue")
    assert pick(rows[("sales",)], "offered", "answered", "abandoned", "moved") == (1, 0, 0, 1)
    assert pick(rows[("support",)], "offered", "answered", "abandoned", "moved") == (1, 1, 0, 0)
    assert pick(rows[(None,)], "offered", "answered", "abandoned", "asa_s") == (1, 1, 0, 30.0)
    # the queue's own service level counts its own wait (5 s), the call's counts both (30 s)
    assert rows[("support",)]["answered_within_sl"] == 1 and rows[(None,)]["answered_within_sl"] == 0


async def test_kpi_total_and_queue_filter(conn: asyncpg.Connection) -> None:
    rows = by_key(await reports.kpi(conn, D1, END, by="total"), "queue")
    assert {r["period"] for r in rows.values()} == {"2025-03-03T00:00:00+00:00/2025-03-05T00:00:00+00:00"}
    # all 15 calls: answered 5, abandoned 6 (pre 1, ivr 1, queue 2, ringing 2), short 2; within 20 s
    # only c01; abandoned after 20 s in queue: c06, c15. ASA (10+30+30+45+35)/5, AHT 780/5,
    # time to abandon (3+40+60+14+4+30)/6 = 25.17.
    assert_figures(rows[(None,)], {
        "counts": (15, 5, 6, 1, 1, 2, 2, 2, 1, 1, 1, 1, None, None, None, 1, 2),
        "rates": (33.33, 40.0, 13.33, 20.0, 14.29, 30.0, 156.0, 25.2),
    })
    # sales: c01 c02 c03(moved) c06 c07 c10(timeout) c14 -> 7 visits; within: c01 (10), c14 (15)
    assert_figures(rows[("sales",)], {
        "counts": (7, 3, 2, 0, 0, 1, 1, 0, None, None, None, None, 1, 1, 0, 2, 1),
        "rates": (42.86, 28.57, 0.0, 66.67, 50.0, 18.3, 160.0, 31.0),
    })
    only = await reports.kpi(conn, D1, END, by="total", queue="support")
    assert [r["queue"] for r in only] == ["support"]
    # support: c03 c08 c09 c13 c14(timeout) c15 -> 6; answered c03 (5) c13 (45); abandoned c08 c15
    assert_figures(only[0], {
        "counts": (6, 2, 2, 0, 0, 1, 1, 1, None, None, None, None, 0, 1, 1, 1, 1),
        "rates": (33.33, 33.33, 16.67, 50.0, 33.33, 25.0, 150.0, 14.0),
    })
    assert await reports.kpi(conn, D1, END, queue="nowhere") == []


async def test_kpi_service_level_and_short_abandon_thresholds(conn: asyncpg.Connection) -> None:
    rows = by_key(await reports.kpi(conn, D1, END, by="total", sl_seconds=30, short_abandon_s=15), "queue")
    total = rows[(None,)]
    # T = 30: within c01 (10) c02 (30) c03 (30); after: c06 (50) only (c15 waited 25)
    assert pick(total, "sl_seconds", "answered_within_sl", "abandoned_after_sl", "sl_pct", "sl_pct_with_abandons") \
        == (30.0, 3, 1, 60.0, 50.0)
    # short <= 15 s: c04 (3), c07 (14), c08 (4); the failed c12 (1 s) is not an abandon
    assert pick(total, "short_abandons", "short_abandon_pct") == (3, 20.0)
    assert rows[("sales",)]["short_abandons"] == 1  # c07
    assert rows[("support",)]["short_abandons"] == 1  # c08


async def test_kpi_by_hour_and_time_zone(conn: asyncpg.Connection) -> None:
    rows = [r for r in await reports.kpi(conn, D1, END, by="hour") if r["queue"] is None]
    assert [pick(r, "period", "offered", "answered", "abandoned", "callbacks") for r in rows] == [
        ("2025-03-03 09:00", 5, 3, 2, 0),  # c01..c05
        ("2025-03-03 10:00", 4, 0, 3, 1),  # c06..c09
        ("2025-03-03 11:00", 3, 0, 0, 0),  # c10..c12
        ("2025-03-04 08:00", 2, 2, 0, 0),  # c13 c14
        ("2025-03-04 09:00", 1, 0, 1, 0),  # c15
    ]
    # 2025-03-03 in Berlin (UTC+1) starts at 23:00 UTC the day before: c00 belongs to it
    berlin = [r for r in await reports.kpi(conn, datetime(2025, 3, 3), datetime(2025, 3, 4), tz="Europe/Berlin")
              if r["queue"] is None]
    assert [pick(r, "period", "offered", "answered") for r in berlin] == [("2025-03-03", 13, 4)]
    first = (await reports.kpi(conn, datetime(2025, 3, 3), datetime(2025, 3, 4), by="hour", tz="Europe/Berlin"))[0]
    assert pick(first, "period", "queue", "offered") == ("2025-03-03 00:00", None, 1)


async def test_kpi_calls_with_three_visits(conn: asyncpg.Connection) -> None:
    # 2025-03-10, outside the main data set: two calls through three queues each
    c20 = call("c20", t(10, "10:00:00"), t(10, "10:01:25"), "abandoned", stage="ringing", node="billing",
               stints=[stint("sales", t(10, "10:00:05"), 30, "timeout", moved_to="support"),
                       stint("support", t(10, "10:00:35"), 40, "moved", moved_to="billing"),
                       stint("billing", t(10, "10:01:15"), 10, "abandoned")], queue_wait_s=80, overflows=2)
    c21 = call("c21", t(10, "11:00:00"), t(10, "11:02:32"), "answered", answered=t(10, "11:01:02"),
               stints=[stint("sales", t(10, "11:00:20"), 5, "exit_key"),
                       stint("support", t(10, "11:00:25"), 25, "moved", moved_to="billing"),
                       stint("billing", t(10, "11:00:50"), 12, "answered", "PJSIP/1001")],
               agent="PJSIP/1001", agent_id=1, queue_wait_s=42, talk_s=90, overflows=1)
    cols = list(c20)
    await conn.executemany(
        f"INSERT INTO calls ({', '.join(cols)}) VALUES "
        f"({', '.join(f'${i + 1}' + ('::jsonb' if c == 'stints' else '') for i, c in enumerate(cols))})",
        [tuple(c[k] for k in cols) for c in (c20, c21)])
    day = (t(10, "00:00:00"), t(11, "00:00:00"))
    rows = by_key(await reports.kpi(conn, *day, by="total"), "queue")
    assert list(rows) == [(None,), ("billing",), ("sales",), ("support",)]
    # all calls: c21 answered after 42 s in queues (not within 20 s), c20 lost ringing after 80 s (after SL),
    # 85 s after entering
    assert pick(rows[(None,)], "offered", "answered", "abandoned", "abandoned_ringing", "answered_within_sl",
                "abandoned_after_sl", "asa_s", "aht_s", "avg_time_to_abandon_s") == (2, 1, 1, 1, 0, 1, 42.0, 90.0, 85.0)
    # the third visits: billing answered c21 after 12 s, lost c20 while ringing after 10 s
    assert pick(rows[("billing",)], "offered", "answered", "abandoned", "abandoned_ringing", "abandoned_queue",
                "answered_within_sl", "abandoned_after_sl", "asa_s", "aht_s", "avg_time_to_abandon_s") \
        == (2, 1, 1, 1, 0, 1, 0, 12.0, 90.0, 10.0)
    assert pick(rows[("sales",)], "offered", "timeouts", "exit_keys", "moved") == (2, 1, 1, 0)
    assert pick(rows[("support",)], "offered", "moved", "answered", "abandoned") == (2, 2, 0, 0)
    only = await reports.kpi(conn, *day, by="total", queue="billing")
    assert [pick(r, "queue", "offered", "answered") for r in only] == [("billing", 2, 1)]
    view = await conn.fetch("SELECT queue, offered, answered, abandoned, moved, timeouts, exit_keys, asa_s "
                            "FROM cc_kpi_daily WHERE day = '2025-03-10' ORDER BY queue NULLS FIRST")
    report = await reports.kpi(conn, *day)
    assert [(r["queue"], r["offered"], r["answered"], r["abandoned"], r["moved"], r["timeouts"], r["exit_keys"],
             r["asa_s"]) for r in report] == [(v[0], *v[1:7], v[7] and float(v[7])) for v in view]


async def test_report_arguments_are_checked(conn: asyncpg.Connection) -> None:
    with pytest.raises(ValueError, match="empty period"):
        await reports.kpi(conn, END, D1)
    with pytest.raises(ValueError, match="time zone"):
        await reports.kpi(conn, D1, END, tz="Mars/Olympus")
    with pytest.raises(ValueError, match="by must be"):
        await reports.kpi(conn, D1, END, by="week")
    with pytest.raises(ValueError, match="stage"):
        await reports.abandons(conn, D1, END, stages=["lobby"])


# --- abandons -----------------------------------------------------------------------------------


async def test_abandons_lists_the_calls(conn: asyncpg.Connection) -> None:
    rows = await reports.abandons(conn, D1, END)
    got = [pick(r, "call_id", "stage", "node", "queue", "customer_name", "vip", "waited_s", "queue_wait_s",
                "short_abandon", "after_sl") for r in rows]
    assert got == [
        ("c04", "pre_answer", None, None, None, None, 3.0, None, True, False),
        ("c05", "ivr", "main_menu", None, "Anna Regular", False, 40.0, None, False, False),
        ("c06", "queue", "sales", "sales", "Dmitri Regular", False, 60.0, 50.0, False, True),
        ("c07", "ringing", "sales", "sales", None, None, 14.0, 12.0, False, False),
        ("c08", "queue", "support", "support", "Elena Regular", False, 4.0, 3.0, True, False),
        ("c15", "ringing", "support", "support", "Carla VIP", True, 30.0, 25.0, False, True),
    ]
    assert rows[0]["entered_at"] == t(3, "09:30:00") and rows[0]["caller"] == "+12025550004"
    assert rows[0]["entered_at"].utcoffset() == timedelta(0)


async def test_abandons_filters(conn: asyncpg.Connection) -> None:
    async def ids(**kw: Any) -> list[str]:
        return [r["call_id"] for r in await reports.abandons(conn, D1, END, **kw)]

    assert await ids(queue="sales") == ["c06", "c07"]
    assert await ids(stages=["ivr", "pre_answer"]) == ["c04", "c05"]
    assert await ids(include_short=False) == ["c05", "c06", "c07", "c15"]
    assert await ids(include_short=False, short_abandon_s=15) == ["c05", "c06", "c15"]  # c07 (14 s) now short
    assert await ids(limit=2) == ["c04", "c05"]
    assert [r["after_sl"] for r in await reports.abandons(conn, D1, END, sl_seconds=10, queue="sales")] == [True, True]
    berlin = await reports.abandons(conn, D1, END, tz="Europe/Berlin", limit=1)
    assert berlin[0]["entered_at"].isoformat() == "2025-03-03T10:30:00+01:00"


async def test_abandons_by_node(conn: asyncpg.Connection) -> None:
    rows = await reports.abandons_by_node(conn, D1, END)
    # 6 abandons among 15 calls, one per (stage, node): 1/6 of abandons, 1/15 of calls each
    assert [pick(r, "stage", "node", "abandons", "short_abandons", "avg_waited_s", "pct_of_abandons", "pct_of_calls")
            for r in rows] == [
        ("pre_answer", None, 1, 1, 3.0, 16.67, 6.67),
        ("ivr", "main_menu", 1, 0, 40.0, 16.67, 6.67),
        ("queue", "sales", 1, 0, 60.0, 16.67, 6.67),
        ("queue", "support", 1, 1, 4.0, 16.67, 6.67),
        ("ringing", "sales", 1, 0, 14.0, 16.67, 6.67),
        ("ringing", "support", 1, 0, 30.0, 16.67, 6.67),
    ]
    # support (last queue): c03 c08 c09 c13 c15 -> 5 calls, abandons c08 and c15
    rows = await reports.abandons_by_node(conn, D1, END, queue="support")
    assert [pick(r, "stage", "node", "abandons", "pct_of_abandons", "pct_of_calls") for r in rows] == [
        ("queue", "support", 1, 50.0, 20.0), ("ringing", "support", 1, 50.0, 20.0)]


# --- agents -------------------------------------------------------------------------------------

AGENT_FIGS = ("rings", "answered", "missed_rings", "canceled_rings", "answered_per_ring_pct", "talk_s", "avg_talk_s",
              "pauses", "paused_s", "pause_by_reason")


async def test_agents_by_day(conn: asyncpg.Connection) -> None:
    rows = await reports.agents(conn, D1, END)
    got = {(r["period"], r["agent"]): (r["agent_name"], *pick(r, *AGENT_FIGS)) for r in rows}
    assert list(got) == [("2025-03-03", "PJSIP/1001"), ("2025-03-03", "PJSIP/1002"), ("2025-03-03", "PJSIP/1003"),
                         ("2025-03-04", "PJSIP/1001"), ("2025-03-04", "PJSIP/1002"), ("2025-03-04", "PJSIP/1003")]
    # 1001 day 1: rings c01 c02 c07, answers c01 c02 (120 + 300 s), c07's ring canceled;
    # lunch 30 min (reported for two queues), break 10 min, training 30 min
    assert got[("2025-03-03", "PJSIP/1001")] == (
        "Alice", 3, 2, 0, 1, 66.67, 420.0, 210.0, 3, 4200.0, {"break": 600.0, "lunch": 1800.0, "training": 1800.0})
    # 1002 day 1: rang for c02 and c03, missed both; admin pause cut at the period start (00:00-01:00),
    # break 23:50 -> 00:20 counted on the day it started
    assert got[("2025-03-03", "PJSIP/1002")] == (
        "Bob", 2, 0, 2, 0, 0.0, 0.0, None, 2, 5400.0, {"admin": 3600.0, "break": 1800.0})
    # 1003 (no agents row): c03 talk from connect to complete, 200 s
    assert got[("2025-03-03", "PJSIP/1003")] == (None, 1, 1, 0, 0, 100.0, 200.0, 200.0, 0, 0.0, {})
    assert got[("2025-03-04", "PJSIP/1001")] == ("Alice", 1, 1, 0, 0, 100.0, 60.0, 60.0, 0, 0.0, {})
    assert got[("2025-03-04", "PJSIP/1002")] == ("Bob", 1, 1, 0, 0, 100.0, 100.0, 100.0, 0, 0.0, {})
    # 1003 paused at 10:00 without a reason and never came back: cut at the period end, 14 h
    assert got[("2025-03-04", "PJSIP/1003")] == (None, 0, 0, 0, 0, None, 0.0, None, 1, 50400.0, {"(none)": 50400.0})


async def test_agents_total_and_filters(conn: asyncpg.Connection) -> None:
    rows = by_key(await reports.agents(conn, D1, END, by="total"), "agent")
    assert pick(rows[("PJSIP/1001",)], "rings", "answered", "talk_s", "avg_talk_s", "pauses", "paused_s") \
        == (4, 3, 480.0, 160.0, 3, 4200.0)
    assert pick(rows[("PJSIP/1002",)], "rings", "answered", "missed_rings", "talk_s", "pauses", "paused_s") \
        == (3, 1, 2, 100.0, 2, 5400.0)
    # one day only: 1002's break is cut at midnight (10 min)
    day1 = by_key(await reports.agents(conn, D1, D2, by="total"), "agent")
    assert pick(day1[("PJSIP/1002",)], "pauses", "paused_s", "pause_by_reason") \
        == (2, 4200.0, {"admin": 3600.0, "break": 600.0})
    support = by_key(await reports.agents(conn, D1, END, by="total", queue="support"), "agent")
    assert pick(support[("PJSIP/1002",)], "rings", "answered", "talk_s") == (1, 1, 100.0)  # c13
    assert pick(support[("PJSIP/1003",)], "rings", "answered", "talk_s") == (1, 1, 200.0)  # c03
    assert pick(support[("PJSIP/1001",)], "rings", "pauses", "paused_s") == (0, 3, 4200.0)
    bob = await reports.agents(conn, D1, END, agent="PJSIP/1002")
    assert [pick(r, "period", "rings", "missed_rings", "pauses") for r in bob] == [
        ("2025-03-03", 2, 2, 2), ("2025-03-04", 1, 0, 0)]


# --- first-call resolution ------------------------------------------------------------------------


async def test_fcr(conn: asyncpg.Connection) -> None:
    # day 1: c01 (repeated by c05, an abandon 40 min later), c02 (by c16, 70 h 50 min later, after the
    # period), c03 (by c15) -> 0 of 3; day 2: c13 (no later call), c14 (c17 comes after 72 h 30 min) -> 2 of 2
    rows = await reports.fcr(conn, D1, END)
    assert [pick(r, "period", "answered_identified", "resolved", "repeated", "pending", "fcr_pct") for r in rows] == [
        ("2025-03-03", 3, 0, 3, 0, 0.0), ("2025-03-04", 2, 2, 0, 0, 100.0)]
    total = await reports.fcr(conn, D1, END, by="total")
    assert pick(total[0], "answered_identified", "resolved", "fcr_pct") == (5, 2, 40.0)
    # as of 2025-03-06 12:00 the windows of c13 and c14 are still open
    rows = await reports.fcr(conn, D1, END, as_of=t(6, "12:00:00"))
    assert [pick(r, "resolved", "repeated", "pending", "fcr_pct") for r in rows] == [(0, 3, 0, 0.0), (0, 0, 2, None)]
    # a 1 h window: only c01 -> c05 (40 min) is a repeat
    rows = await reports.fcr(conn, D1, END, window_h=1)
    assert [pick(r, "resolved", "repeated", "fcr_pct") for r in rows] == [(2, 1, 66.67), (2, 0, 100.0)]
    # last queue sales: c01 c02 (day 1, repeated), c14 (day 2, resolved)
    rows = await reports.fcr(conn, D1, END, queue="sales")
    assert [pick(r, "queue", "answered_identified", "repeated", "resolved") for r in rows] == [
        ("sales", 2, 2, 0), ("sales", 1, 0, 1)]


# --- the views --------------------------------------------------------------------------------------


async def _view(conn: asyncpg.Connection, sql: str, *args: Any) -> list[dict[str, Any]]:
    return [{k: (float(v) if type(v).__name__ == "Decimal" else v) for k, v in r.items()}
            for r in await conn.fetch(sql, *args)]


async def test_views_kpi_daily_and_hourly(conn: asyncpg.Connection) -> None:
    rows = await _view(conn, "SELECT * FROM cc_kpi_daily WHERE day IN ('2025-03-03', '2025-03-04') "
                             "ORDER BY day, queue NULLS FIRST")
    for row, expected in zip(rows, (DAY1_ALL, DAY1_SALES, DAY1_SUPPORT, DAY2_ALL, DAY2_SALES, DAY2_SUPPORT),
                             strict=True):
        assert_figures(row, expected)
        assert row["sl_seconds"] == 20.0
    hourly = await _view(conn, "SELECT hour, day, offered, abandoned FROM cc_kpi_hourly "
                               "WHERE queue IS NULL ORDER BY hour")
    assert [(str(r["hour"]), str(r["day"]), r["offered"], r["abandoned"]) for r in hourly] == [
        ("2025-03-02 23:00:00", "2025-03-02", 1, 0), ("2025-03-03 09:00:00", "2025-03-03", 5, 2),
        ("2025-03-03 10:00:00", "2025-03-03", 4, 3), ("2025-03-03 11:00:00", "2025-03-03", 3, 0),
        ("2025-03-04 08:00:00", "2025-03-04", 2, 0), ("2025-03-04 09:00:00", "2025-03-04", 1, 1),
        ("2025-03-06 08:00:00", "2025-03-06", 1, 0), ("2025-03-07 09:00:00", "2025-03-07", 1, 1),
    ]


@pytest.mark.parametrize("by, view, key", [("day", "cc_kpi_daily", "day"), ("hour", "cc_kpi_hourly", "hour")])
async def test_views_and_reports_agree(conn: asyncpg.Connection, by: str, view: str, key: str) -> None:
    report = await reports.kpi(conn, datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 8, tzinfo=UTC), by=by)
    rows = await _view(conn, f"SELECT * FROM {view} ORDER BY {key}, queue NULLS FIRST")
    fmt = "%Y-%m-%d" if by == "day" else "%Y-%m-%d %H:00"
    assert len(rows) == len(report) == (11 if by == "day" else 18)
    for v, r in zip(rows, report, strict=True):
        assert v[key].strftime(fmt) == r["period"]
        assert {c: v[c] for c in reports.KPI_COLUMNS[1:]} == {c: r[c] for c in reports.KPI_COLUMNS[1:]}


async def test_views_calls_and_stints(conn: asyncpg.Connection) -> None:
    c03 = (await _view(conn, "SELECT * FROM cc_calls WHERE call_id = 'c03'"))[0]
    assert pick(c03, "customer_name", "vip_group", "route", "speed_of_answer_s", "duration_s", "entered_hour_of_day",
                "entered_isodow") == ("Carla VIP", "vip", "direct", 30.0, 230.0, 9, 1)
    assert str(c03["entered_day"]) == "2025-03-03"
    c01 = (await _view(conn, "SELECT agent_name, route FROM cc_calls WHERE call_id = 'c01'"))[0]
    assert pick(c01, "agent_name", "route") == ("Alice", "direct")
    stints = await _view(conn, "SELECT * FROM cc_stints WHERE call_id IN ('c03', 'c07') ORDER BY call_id, stint_no")
    assert [pick(s, "call_id", "stint_no", "queue", "wait_s", "outcome", "moved_to", "abandon_stage") for s in stints] \
        == [("c03", 1, "sales", 25.0, "moved", "support", None), ("c03", 2, "support", 5.0, "answered", None, None),
            ("c07", 1, "sales", 12.0, "abandoned", None, "ringing")]
    assert stints[0]["joined_at"] == t(3, "09:20:00") and stints[0]["left_at"] == t(3, "09:20:25")


async def test_views_abandons(conn: asyncpg.Connection) -> None:
    rows = await _view(conn, "SELECT call_id, abandon_stage, abandon_node, waited_s, customer_name FROM cc_abandons "
                             "WHERE entered_day = '2025-03-04'")
    assert [tuple(r.values()) for r in rows] == [("c15", "ringing", "support", 30.0, "Carla VIP")]
    # day 1: 5 abandons among 12 calls
    nodes = await _view(conn, "SELECT abandon_stage, abandon_node, abandons, pct_of_abandons, pct_of_calls "
                              "FROM cc_abandons_by_node WHERE day = '2025-03-03' ORDER BY abandon_stage, abandon_node")
    assert [tuple(r.values()) for r in nodes] == [
        ("ivr", "main_menu", 1, 20.0, 8.33), ("pre_answer", None, 1, 20.0, 8.33),
        ("queue", "sales", 1, 20.0, 8.33), ("queue", "support", 1, 20.0, 8.33), ("ringing", "sales", 1, 20.0, 8.33)]


async def test_views_ivr_vs_direct_and_vip_vs_other(conn: asyncpg.Connection) -> None:
    rows = await _view(conn, "SELECT * FROM cc_ivr_vs_direct WHERE day = '2025-03-03' ORDER BY route")
    cols = ("route", "answered", "pct_of_answered", "answered_within_sl", "sl_pct", "asa_s", "aht_s", "avg_ivr_s",
            "overflowed")
    # direct: c01 (10 s, 120 s talk), c03 (30 s, 200 s, overflowed); via IVR: c02 (30 s, 300 s, 15 s in the IVR)
    assert [pick(r, *cols) for r in rows] == [
        ("direct", 2, 66.67, 1, 50.0, 20.0, 160.0, None, 1),
        ("ivr", 1, 33.33, 0, 0.0, 30.0, 300.0, 15.0, 0),
    ]
    vip = by_key(await _view(conn, "SELECT * FROM cc_vip_vs_other WHERE day = '2025-03-03'"), "vip_group")
    cols = ("offered", "answered", "abandoned", "short_abandons", "answered_within_sl", "abandoned_after_sl",
            "answer_pct", "abandon_pct", "sl_pct", "sl_pct_with_abandons", "asa_s", "aht_s", "overflowed")
    # VIP: c02, c03 both answered after 30 s. Other (known, not VIP): c01 answered (10 s), c05 c06 c08
    # abandoned (c08 short, c06 after 50 s in queue). Unknown: c04 c07 c09 c10 c11 c12.
    assert pick(vip[("vip",)], *cols) == (2, 2, 0, 0, 0, 0, 100.0, 0.0, 0.0, 0.0, 30.0, 250.0, 1)
    assert pick(vip[("other",)], *cols) == (4, 1, 3, 1, 1, 1, 25.0, 75.0, 100.0, 50.0, 10.0, 120.0, 0)
    assert pick(vip[("unknown",)], "offered", "answered", "abandoned", "callbacks", "voicemails", "closed", "failed") \
        == (6, 0, 2, 1, 1, 1, 1)


async def test_views_agents(conn: asyncpg.Connection) -> None:
    pauses = await _view(conn, "SELECT reason, started_at, ended_at, duration_s, still_paused, agent_name "
                               "FROM cc_agent_pauses WHERE agent = 'PJSIP/1002' ORDER BY started_at")
    assert [tuple(p.values()) for p in pauses] == [
        ("admin", t(2, "22:00:00"), t(3, "01:00:00"), 10800.0, False, "Bob"),
        ("break", t(3, "23:50:00"), t(4, "00:20:00"), 1800.0, False, "Bob"),
    ]
    open_ = await _view(conn, "SELECT reason, still_paused, ended_at FROM cc_agent_pauses WHERE agent = 'PJSIP/1003'")
    assert [tuple(p.values()) for p in open_] == [(None, True, None)]
    act = by_key(await _view(conn, "SELECT * FROM cc_agent_activity WHERE agent = 'PJSIP/1002'"), "day")
    d = {str(k[0]): v for k, v in act.items()}
    # the view counts the whole admin pause (3 h) on 03-02, the day it started, plus c00's call
    assert pick(d["2025-03-02"], "rings", "answered", "talk_s", "pauses", "paused_s") == (1, 1, 50.0, 1, 10800.0)
    assert pick(d["2025-03-03"], "rings", "missed_rings", "pauses", "paused_s") == (2, 2, 1, 1800.0)
    assert json.loads(d["2025-03-03"]["pause_by_reason"]) == {"break": 1800.0}
    alice = await _view(conn, "SELECT * FROM cc_agent_activity WHERE agent = 'PJSIP/1001' AND day = '2025-03-03'")
    assert pick(alice[0], "agent_name", "rings", "answered", "canceled_rings", "talk_s", "pauses", "paused_s") \
        == ("Alice", 3, 2, 1, 420.0, 3, 4200.0)
    n = await conn.fetchval("SELECT count(*) FROM cc_agent_timeline WHERE agent = 'PJSIP/1001' "
                            "AND at >= '2025-03-03' AND at < '2025-03-04'")
    assert n == 8 + 8  # c01 3 + c02 3 + c07 2 call steps; 7 pause rows + 1 status


async def test_views_first_call_resolution(conn: asyncpg.Connection) -> None:
    rows = await _view(conn, "SELECT call_id, repeat_call_id, repeat_call_outcome, resolved "
                             "FROM cc_first_call_resolution ORDER BY entered_at")
    assert [tuple(r.values()) for r in rows] == [
        ("c00", "c06", "abandoned", False), ("c01", "c05", "abandoned", False), ("c02", "c16", "answered", False),
        ("c03", "c15", "abandoned", False), ("c13", None, None, True), ("c14", None, None, True),
        ("c16", None, None, True),
    ]
    daily = await _view(conn, "SELECT * FROM cc_fcr_daily ORDER BY day")
    assert [(str(r["day"]), *pick(r, "answered_identified", "resolved", "repeated", "pending", "fcr_pct"))
            for r in daily] == [("2025-03-02", 1, 0, 1, 0, 0.0), ("2025-03-03", 3, 0, 3, 0, 0.0),
                                ("2025-03-04", 2, 2, 0, 0, 100.0), ("2025-03-06", 1, 1, 0, 0, 100.0)]


# --- formatting and the command line -------------------------------------------------------------------


def test_format_rows() -> None:
    rows = [{"a": "x", "n": 1.5, "b": True, "d": {"k": 1.0}, "z": None},
            {"a": "longer", "n": 10.0, "b": False, "d": {}, "z": None}]
    table = reports.format_rows(rows, "table").splitlines()
    assert table[0].split() == ["a", "n", "b", "d", "z"]
    assert table[2] == "x       1.5  yes  k=1"
    assert table[3] == "longer   10  no"
    assert reports.format_rows(rows, "csv").splitlines() == ["a,n,b,d,z", 'x,1.5,true,"{""k"": 1.0}",',
                                                             "longer,10.0,false,{},"]
    assert json.loads(reports.format_rows(rows, "json")) == rows
    assert reports.format_rows([], "table") == "(no rows)\n"
    assert reports.format_rows([], "csv", ["a", "b"]) == "a,b\n"
    with pytest.raises(ValueError):
        reports.format_rows(rows, "xml")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="callcenter report")
    reports.add_arguments(p)
    return p


async def _cli(argv: list[str], dsn: str) -> int:
    args = _parser().parse_args(argv)
    return await asyncio.to_thread(reports.run, args, Settings(database=DatabaseSettings(dsn=dsn)))


PERIOD = ["--from", "2025-03-03", "--to", "2025-03-05"]


async def test_cli_each_report_and_format(conn: asyncpg.Connection, db_dsn: str, capsys: Any, tmp_path: Any) -> None:
    assert await _cli(["kpi", *PERIOD, "--format", "csv"], db_dsn) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0]) == list(reports.KPI_COLUMNS)
    assert [(r["period"], r["queue"], r["offered"], r["answer_pct"]) for r in rows[:3]] == [
        ("2025-03-03", "", "12", "25.0"), ("2025-03-03", "sales", "6", "33.33"),
        ("2025-03-03", "support", "3", "33.33")]

    assert await _cli(["kpi", *PERIOD, "--by", "total", "--sl-seconds", "30", "--queue", "sales",
                       "--format", "json"], db_dsn) == 0
    data = json.loads(capsys.readouterr().out)
    # sales with T = 30: within c01 (10) c02 (30) c14 (15); after: c06 (50)
    assert [(r["queue"], r["sl_seconds"], r["answered_within_sl"], r["abandoned_after_sl"]) for r in data] == [
        ("sales", 30.0, 3, 1)]

    assert await _cli(["kpi", *PERIOD], db_dsn) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["period", "queue", "sl_seconds", "offered"]
    assert lines[2].split()[:4] == ["2025-03-03", "(all)", "20", "12"]

    assert await _cli(["abandons", *PERIOD, "--stage", "ivr", "--stage", "queue"], db_dsn) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 + 3 and "main_menu" in out[2] and "Anna Regular" in out[2]
    assert await _cli(["abandons", *PERIOD, "--format", "json", "--exclude-short", "--short-abandon-s", "15"],
                      db_dsn) == 0
    assert [r["call_id"] for r in json.loads(capsys.readouterr().out)] == ["c05", "c06", "c15"]
    assert await _cli(["abandons", *PERIOD, "--format", "json", "--limit", "1"], db_dsn) == 0
    assert json.loads(capsys.readouterr().out)[0]["entered_at"] == "2025-03-03T09:30:00+00:00"
    assert await _cli(["abandons", *PERIOD, "--by-node", "--format", "csv"], db_dsn) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["stage"], r["node"], r["abandons"]) for r in rows][:2] == [
        ("pre_answer", "", "1"), ("ivr", "main_menu", "1")]

    assert await _cli(["agents", *PERIOD, "--by", "total", "--format", "csv"], db_dsn) == 0
    rows = {r["agent"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert (rows["PJSIP/1001"]["agent_name"], rows["PJSIP/1001"]["rings"], rows["PJSIP/1001"]["talk_s"]) \
        == ("Alice", "4", "480.0")
    assert json.loads(rows["PJSIP/1002"]["pause_by_reason"]) == {"admin": 3600.0, "break": 1800.0}
    assert await _cli(["agents", *PERIOD, "--agent", "PJSIP/1003"], db_dsn) == 0
    out = capsys.readouterr().out
    assert "(none)=50400" in out

    target = tmp_path / "fcr.json"
    assert await _cli(["fcr", *PERIOD, "--by", "total", "--format", "json", "-o", str(target)], db_dsn) == 0
    assert capsys.readouterr().out == ""
    assert [(r["answered_identified"], r["fcr_pct"]) for r in json.loads(target.read_text())] == [(5, 40.0)]

    # --tz: naive --from/--to are Berlin midnights; c00 (23:00 UTC) is 2025-03-03 00:00 there
    assert await _cli(["kpi", "--from", "2025-03-03", "--to", "2025-03-04", "--tz", "Europe/Berlin",
                       "--format", "json"], db_dsn) == 0
    assert json.loads(capsys.readouterr().out)[0]["offered"] == 13


async def test_cli_errors(conn: asyncpg.Connection, db_dsn: str, empty_db_dsn: str, capsys: Any) -> None:
    assert await _cli(["kpi", "--from", "yesterday", "--to", "2025-03-05"], db_dsn) == 2
    assert "--from: not an ISO date/time" in capsys.readouterr().err
    assert await _cli(["kpi", "--from", "2025-03-05", "--to", "2025-03-03"], db_dsn) == 2
    assert "empty period" in capsys.readouterr().err
    assert await _cli(["agents", *PERIOD, "--tz", "Nowhere/Town"], db_dsn) == 2
    assert "unknown time zone" in capsys.readouterr().err
    assert await _cli(["kpi", *PERIOD], empty_db_dsn) == 1
    assert "no schema yet" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parser().parse_args(["kpi", "--from", "2025-03-03"])  # --to is required
