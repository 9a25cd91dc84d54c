"""Report speed: 1,000,000 calls / ~10,000,000 journey steps over three months in a fresh
embedded PostgreSQL, then each report (``callcenter.analytics.reports``) for one month, best of
three. Target: < 1 s per report.

    python bench/report_query.py                 # 1,000,000 calls (a few minutes of generation)
    python bench/report_query.py --calls 50000   # smoke
    python bench/report_query.py --data-dir D    # keep the database in D; a later run with the
                                                 # same D and --calls reuses it (no generation)

The data is generated server-side (``INSERT ... SELECT generate_series``) from a per-call plan:
business-hours arrivals (07:00-20:00, peaking early afternoon), 8 queues of unequal size, 60 %
of callers through the IVR, 70 % identified customers (5 % of them VIP), ~10 % overflows, ~16 %
abandons over the four stages, callbacks, voicemail, closed and failed calls, and the journey
steps each call would have written (arrived, customer, IVR nodes and digits, queue joins and
leaves, overflows, rings, missed rings, connects, completes, end). Step ``seq`` numbers follow
the template (they may skip values); nothing in the reports depends on them. 200 agents take
four pauses a day (two breaks, lunch, admin), reported once per queue of two. After loading, the
tables are VACUUM ANALYZEd, the state autovacuum keeps a live database in.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callcenter.analytics import reports
from callcenter.storage import db as dbmod
from callcenter.storage.embedded import EmbeddedPostgres

START = datetime(2025, 1, 1, tzinfo=UTC)
DAYS = 90  # January-March 2025
MONTH = (datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC))  # the reported month (31 days)
AGENTS = 200
CUSTOMERS = 200_000
TARGET_S = 1.0

PLAN = """
CREATE UNLOGGED TABLE bench_plan AS
WITH b AS (
    SELECT g,
           $1::timestamptz + make_interval(days => ((g - 1)::bigint * $3 / $2)::int)
               + make_interval(secs => 25200 + 46800 * (random() + random() + random()) / 3) AS entered_at,
           random() AS r, random() AS r_ivr, random() AS r_cust, random() AS r_ovf, random() AS r_miss,
           random() AS w1, random() AS w2, random() AS t1, random() AS qa, random() AS qb,
           (random() * 2e9)::bigint AS rnd
      FROM generate_series(1, $2) g
), s AS (
    SELECT b.*,
           CASE WHEN r < 0.02 THEN 'pre_answer' WHEN r < 0.06 THEN 'ivr' WHEN r < 0.13 THEN 'queue'
                WHEN r < 0.16 THEN 'ringing' WHEN r < 0.18 THEN 'callback' WHEN r < 0.19 THEN 'voicemail'
                WHEN r < 0.21 THEN 'closed' WHEN r < 0.215 THEN 'failed' ELSE 'answered' END AS scen,
           r_ivr < 0.6 AS via_ivr,
           CASE WHEN r_cust < 0.7 THEN 1 + rnd % $4 END AS customer_id,
           (ARRAY['sales', 'support', 'billing', 'tech', 'orders', 'retention', 'vip', 'general'])
               [1 + floor(8 * qa * qa)::int] AS q1,
           (ARRAY['support', 'general', 'sales', 'tech', 'billing', 'orders', 'retention', 'vip'])
               [1 + floor(8 * qb * qb)::int] AS q2,
           (ARRAY['main_menu', 'billing_menu', 'language', 'support_menu'])[1 + rnd % 4] AS node,
           'PJSIP/' || (1000 + rnd % $5) AS agent,
           'PJSIP/' || (1000 + (rnd / $5) % $5) AS missed_agent
      FROM b
), p AS (
    SELECT s.*,
           CASE WHEN scen = 'pre_answer' THEN NULL WHEN scen = 'ivr' THEN 5 + 85 * t1
                WHEN via_ivr THEN 5 + 40 * t1 END AS ivr_s,
           scen IN ('queue', 'ringing', 'callback', 'voicemail', 'answered') AS has_q,
           CASE scen WHEN 'answered' THEN 90 * w1 * w1 WHEN 'queue' THEN 3 + 240 * w1 WHEN 'ringing' THEN 8 + 80 * w1
                     WHEN 'callback' THEN 30 + 150 * w1 WHEN 'voicemail' THEN 180 END AS w_final,
           CASE scen WHEN 'answered' THEN 'answered' WHEN 'queue' THEN 'abandoned' WHEN 'ringing' THEN 'abandoned'
                     WHEN 'callback' THEN 'exit_key' WHEN 'voicemail' THEN 'timeout' END AS out_final,
           20 + 40 * w2 AS w_a,
           CASE WHEN rnd % 2 = 0 THEN 'moved' ELSE 'timeout' END AS out_a,
           CASE WHEN scen = 'answered' THEN 30 + 600 * t1 * t1 END AS talk
      FROM s
), q AS (
    SELECT p.*,
           has_q AND r_ovf < 0.1 AS two,
           entered_at + make_interval(secs => COALESCE(ivr_s, 1)) AS q_start
      FROM p
), f AS (
    SELECT q.*,
           q_start + make_interval(secs => CASE WHEN two THEN w_a ELSE 0 END) AS final_join,
           CASE WHEN has_q THEN CASE WHEN two THEN round(w_a::numeric, 3) ELSE 0 END + round(w_final::numeric, 3)
           END AS queue_wait,
           has_q AND scen IN ('answered', 'ringing', 'callback', 'voicemail') AND r_miss < 0.3 AS missed
      FROM q
)
SELECT f.*,
       CASE WHEN scen = 'answered' THEN final_join + make_interval(secs => w_final) END AS answered_at,
       CASE scen WHEN 'pre_answer' THEN entered_at + make_interval(secs => 1 + 20 * t1)
                 WHEN 'ivr' THEN entered_at + make_interval(secs => ivr_s)
                 WHEN 'closed' THEN entered_at + interval '15 seconds'
                 WHEN 'failed' THEN entered_at + interval '1 second'
                 WHEN 'answered' THEN final_join + make_interval(secs => w_final + talk)
                 WHEN 'callback' THEN final_join + make_interval(secs => w_final + 20)
                 WHEN 'voicemail' THEN final_join + make_interval(secs => w_final + 40)
                 ELSE final_join + make_interval(secs => w_final) END AS ended_at
  FROM f
 ORDER BY entered_at
"""

CALLS = """
INSERT INTO calls (call_id, pbx, caller, did, customer_id, vip, entered_at, answered_at, ended_at, outcome,
                   abandon_stage, abandon_node, short_abandon, answered_via_ivr, queue, agent, ivr_s, queue_wait_s,
                   ring_s, talk_s, stints, overflows, offered_agents, missed_rings, hung_up_by)
SELECT 'bench-' || g, 'asterisk', '+1202' || lpad((rnd % 10000000)::text, 7, '0'), '+12025550100',
       customer_id, CASE WHEN customer_id IS NOT NULL THEN customer_id % 20 = 0 END,
       entered_at, answered_at, ended_at,
       CASE WHEN scen IN ('pre_answer', 'ivr', 'queue', 'ringing') THEN 'abandoned' ELSE scen END,
       CASE WHEN scen IN ('pre_answer', 'ivr', 'queue', 'ringing') THEN scen END,
       CASE scen WHEN 'ivr' THEN node WHEN 'queue' THEN CASE WHEN two THEN q2 ELSE q1 END
                 WHEN 'ringing' THEN CASE WHEN two THEN q2 ELSE q1 END END,
       scen IN ('pre_answer', 'ivr', 'queue', 'ringing') AND ended_at - entered_at <= interval '5 seconds',
       scen = 'answered' AND via_ivr,
       CASE WHEN has_q THEN CASE WHEN two THEN q2 ELSE q1 END END,
       CASE WHEN scen = 'answered' THEN agent END,
       round(ivr_s::numeric, 3), round(queue_wait::numeric, 3),
       round((CASE WHEN scen IN ('answered', 'ringing') THEN 3 + 5 * w2 + CASE WHEN missed THEN 15 ELSE 0 END END)
             ::numeric, 3),
       round(talk::numeric, 3),
       CASE WHEN NOT has_q THEN '[]'::jsonb
            WHEN two THEN jsonb_build_array(
                jsonb_build_object('queue', q1, 'joined_at', q_start, 'left_at', final_join,
                                   'wait_s', round(w_a::numeric, 3), 'outcome', out_a, 'agent', NULL, 'moved_to', q2),
                jsonb_build_object('queue', q2, 'joined_at', final_join,
                                   'left_at', final_join + make_interval(secs => w_final),
                                   'wait_s', round(w_final::numeric, 3), 'outcome', out_final,
                                   'agent', CASE WHEN scen = 'answered' THEN agent END, 'moved_to', NULL))
            ELSE jsonb_build_array(
                jsonb_build_object('queue', q1, 'joined_at', q_start,
                                   'left_at', q_start + make_interval(secs => w_final),
                                   'wait_s', round(w_final::numeric, 3), 'outcome', out_final,
                                   'agent', CASE WHEN scen = 'answered' THEN agent END, 'moved_to', NULL)) END,
       CASE WHEN two THEN 1 ELSE 0 END,
       CASE WHEN scen IN ('answered', 'ringing') THEN 1 ELSE 0 END + CASE WHEN missed THEN 1 ELSE 0 END,
       CASE WHEN missed THEN 1 ELSE 0 END,
       CASE WHEN scen = 'failed' THEN 'system' WHEN scen = 'answered' AND rnd % 3 = 0 THEN 'agent' ELSE 'caller' END
  FROM bench_plan
 WHERE g BETWEEN $1 AND $2
 ORDER BY g
"""

# One row per possible step; `ok` says whether this call has it.
EVENTS = """
INSERT INTO call_events (call_id, seq, at, controller_at, pbx, kind, ivr_node, queue, agent, detail)
SELECT 'bench-' || p.g, e.seq, e.at, e.at, 'asterisk', e.kind, e.ivr_node, e.queue, e.agent, e.detail
  FROM bench_plan p
 CROSS JOIN LATERAL (VALUES
    (1, p.entered_at, 'arrived', true, NULL, NULL, NULL, '{}'::jsonb),
    (2, p.entered_at + interval '50 ms', 'customer', p.customer_id IS NOT NULL, NULL, NULL, NULL,
        jsonb_build_object('customer_id', p.customer_id)),
    (3, p.entered_at + interval '500 ms', 'answered_by_pbx', p.scen <> 'pre_answer', NULL, NULL, NULL, '{}'),
    (4, p.entered_at + interval '1 s', 'ivr_node', p.ivr_s IS NOT NULL, 'main_menu', NULL, NULL, '{}'),
    (5, p.entered_at + make_interval(secs => COALESCE(p.ivr_s, 2) / 2), 'digits', p.ivr_s IS NOT NULL AND p.via_ivr,
        NULL, NULL, NULL, '{"digits": "2"}'),
    (6, p.entered_at + make_interval(secs => COALESCE(p.ivr_s, 2) / 2 + 0.1), 'ivr_node', p.ivr_s IS NOT NULL,
        p.node, NULL, NULL, '{}'),
    (7, p.q_start, 'queue_join', p.has_q, NULL, p.q1, NULL, '{}'),
    (8, p.q_start + interval '2 s', 'agent_ring', p.missed, NULL, p.q1, p.missed_agent, '{}'),
    (9, p.q_start + interval '17 s', 'agent_ring_no_answer', p.missed, NULL, p.q1, p.missed_agent,
        '{"ring_ms": 15000}'),
    (10, p.final_join, 'queue_leave', p.two, NULL, p.q1, NULL, jsonb_build_object('reason', p.out_a)),
    (11, p.final_join, 'overflow', p.two, NULL, p.q2, NULL, jsonb_build_object('from_queue', p.q1, 'to_queue', p.q2)),
    (12, p.final_join + interval '1 ms', 'queue_join', p.two, NULL, p.q2, NULL, '{}'),
    (13, p.final_join + make_interval(secs => greatest(p.w_final - 5, 0)), 'agent_ring',
        p.scen IN ('answered', 'ringing'), NULL, CASE WHEN p.two THEN p.q2 ELSE p.q1 END, p.agent, '{}'),
    (14, p.final_join + make_interval(secs => p.w_final), 'agent_ring_canceled', p.scen = 'ringing', NULL,
        CASE WHEN p.two THEN p.q2 ELSE p.q1 END, p.agent, '{}'),
    (15, p.answered_at, 'agent_connect', p.scen = 'answered', NULL, CASE WHEN p.two THEN p.q2 ELSE p.q1 END,
        p.agent, '{}'),
    (16, p.final_join + make_interval(secs => p.w_final + 0.001), 'queue_leave', p.has_q, NULL,
        CASE WHEN p.two THEN p.q2 ELSE p.q1 END, NULL, jsonb_build_object('outcome', p.out_final)),
    (17, p.ended_at, 'agent_complete', p.scen = 'answered', NULL, CASE WHEN p.two THEN p.q2 ELSE p.q1 END, p.agent,
        jsonb_build_object('talk_s', round(p.talk)::int, 'ended_by', 'caller')),
    (18, p.ended_at + interval '1 ms', 'ended', true, NULL, NULL, NULL, '{}')
 ) AS e(seq, at, kind, ok, ivr_node, queue, agent, detail)
 WHERE e.ok AND p.g BETWEEN $1 AND $2
 ORDER BY p.g, e.seq
"""

STATES = """
INSERT INTO agent_state_events (event_key, at, pbx, agent, kind, status, paused, reason, queue)
SELECT gen_random_uuid(), x.at, 'asterisk', x.agent, x.kind, x.status, x.paused, x.reason, x.queue
  FROM (
    SELECT d + make_interval(mins => pz.start_min + (a % 30)) + CASE WHEN v.paused THEN interval '0' ELSE
               make_interval(mins => pz.len) END + make_interval(secs => qn) AS at,
           'PJSIP/' || a AS agent, 'pause' AS kind, NULL AS status, v.paused,
           CASE WHEN v.paused THEN pz.reason END AS reason,
           (ARRAY['sales', 'support'])[qn + 1] AS queue
      FROM generate_series($1::timestamptz, $2::timestamptz - interval '1 day', interval '1 day') d,
           generate_series(1000, 999 + $3) a,
           (VALUES ('break', 600, 15), ('lunch', 720, 45), ('break', 900, 15), ('admin', 1020, 20))
               AS pz(reason, start_min, len),
           (VALUES (true), (false)) AS v(paused),
           generate_series(0, 1) qn
    UNION ALL
    SELECT d + make_interval(mins => 450 + (a % 30) + s.off), 'PJSIP/' || a, 'status', s.status, NULL, NULL, NULL
      FROM generate_series($1::timestamptz, $2::timestamptz - interval '1 day', interval '1 day') d,
           generate_series(1000, 999 + $3) a,
           (VALUES (0, 'available'), (570, 'unavailable')) AS s(off, status)
  ) x
 ORDER BY x.at
"""


async def generate(conn: asyncpg.Connection, dsn_kwargs: dict, calls: int, workers: int) -> dict[str, float]:
    times: dict[str, float] = {}
    t0 = time.monotonic()
    await conn.execute(
        f"INSERT INTO customers (id, name, tier) SELECT g, 'Customer ' || g, "
        f"CASE WHEN g % 20 = 0 THEN 'vip' ELSE 'standard' END FROM generate_series(1, {CUSTOMERS}) g")
    await conn.execute(f"INSERT INTO agents (id, name) SELECT g, 'Agent ' || g FROM generate_series(1, {AGENTS}) g")
    await conn.execute(
        f"INSERT INTO agent_endpoints (agent_id, pbx, interface) "
        f"SELECT g, 'asterisk', 'PJSIP/' || (999 + g) FROM generate_series(1, {AGENTS}) g")
    # CREATE TABLE AS takes no bind parameters: the plan's constants are written in.
    plan = PLAN
    for i, value in enumerate((f"'{START.isoformat()}'", calls, DAYS, CUSTOMERS, AGENTS), start=1):
        plan = plan.replace(f"${i}", str(value))
    await conn.execute(plan)
    await conn.execute("CREATE INDEX ON bench_plan (g)")
    await conn.execute("ANALYZE bench_plan")
    times["plan"] = time.monotonic() - t0

    # Chunks in time order over a few connections (several cores build index entries at once).
    chunk = max(1, calls // 40)
    ranges = [(lo, min(lo + chunk - 1, calls)) for lo in range(1, calls + 1, chunk)]

    async def run_chunks(sql: str) -> None:
        queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
        for r in ranges:
            queue.put_nowait(r)

        async def worker() -> None:
            c = await asyncpg.connect(**dsn_kwargs)
            try:
                while not queue.empty():
                    lo, hi = queue.get_nowait()
                    await c.execute(sql, lo, hi)
            finally:
                await c.close()

        await asyncio.gather(*(worker() for _ in range(workers)))

    t1 = time.monotonic()
    await run_chunks(CALLS)
    times["calls"] = time.monotonic() - t1
    t2 = time.monotonic()
    await run_chunks(EVENTS)
    times["call_events"] = time.monotonic() - t2
    t3 = time.monotonic()
    await conn.execute(STATES, START, START + timedelta(days=DAYS), AGENTS)
    times["agent_state_events"] = time.monotonic() - t3
    await conn.execute("DROP TABLE bench_plan")
    t4 = time.monotonic()
    for table in ("calls", "call_events", "agent_state_events", "customers", "agents", "agent_endpoints"):
        await conn.execute(f"VACUUM (ANALYZE) {table}")
    times["vacuum_analyze"] = time.monotonic() - t4
    times["total"] = time.monotonic() - t0
    return times


async def best_of(n: int, fn, *args, **kwargs) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    best, rows = float("inf"), 0
    for _ in range(n):
        t = time.monotonic()
        out = await fn(*args, **kwargs)
        best = min(best, time.monotonic() - t)
        rows = len(out)
    return best, rows


def machine_info() -> str:
    mem = ""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            kb = int(fh.readline().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cpus{mem}, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 1)),
                    help="connections generating in parallel")
    ap.add_argument("--repeat", type=int, default=3, help="runs per report; the best counts")
    ap.add_argument("--data-dir", type=Path, default=None,
                    help="keep the database in this directory (default: a temporary one, deleted); "
                         "a later run with the same directory and --calls reuses the data, after "
                         "applying any new migration")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.data_dir is None:
            pg = EmbeddedPostgres(Path(tmp) / "pg", cleanup="delete")
        else:
            pg = EmbeddedPostgres(args.data_dir, cleanup="stop")
        pg.start()
        try:
            dsn = pg.dsn("postgres")
            await asyncio.to_thread(dbmod.upgrade, dsn)
            kwargs = dbmod.asyncpg_dsn(dsn)
            conn = await asyncpg.connect(**kwargs)
            try:
                existing = await conn.fetchval("SELECT count(*) FROM calls")
                if existing == 0:
                    times = await generate(conn, kwargs, args.calls, args.workers)
                elif existing == args.calls:
                    times = {"reused": 0.0}
                    for table in ("calls", "call_events"):
                        await conn.execute(f"VACUUM (ANALYZE) {table}")
                else:
                    raise SystemExit(f"{args.data_dir} holds {existing:,} calls, not --calls {args.calls:,}")
                n_calls = await conn.fetchval("SELECT count(*) FROM calls")
                n_events = await conn.fetchval("SELECT count(*) FROM call_events")
                n_states = await conn.fetchval("SELECT count(*) FROM agent_state_events")
                month_calls = await conn.fetchval(
                    "SELECT count(*) FROM calls WHERE entered_at >= $1 AND entered_at < $2", *MONTH)
                version = await conn.fetchval("SHOW server_version")
                settings = {k: await conn.fetchval(f"SHOW {k}")
                            for k in ("shared_buffers", "max_parallel_workers_per_gather")}
                sizes = await conn.fetchval(
                    "SELECT pg_size_pretty(pg_total_relation_size('calls')) || ' calls, ' || "
                    "pg_size_pretty(pg_total_relation_size('call_events')) || ' call_events'")

                lo, hi = MONTH
                cases: list[tuple[str, Any, dict[str, Any]]] = [
                    ("kpi by day", reports.kpi, {}),
                    ("kpi by hour", reports.kpi, {"by": "hour"}),
                    ("kpi one queue, T=30 s", reports.kpi, {"queue": "support", "sl_seconds": 30}),
                    ("abandons (every call)", reports.abandons, {}),
                    ("abandons one queue", reports.abandons, {"queue": "support"}),
                    ("abandons by node", reports.abandons_by_node, {}),
                    ("agents by day", reports.agents, {}),
                    ("agents total", reports.agents, {"by": "total"}),
                    ("fcr by day", reports.fcr, {}),
                ]
                results = []
                for name, fn, kw in cases:
                    secs, rows = await best_of(args.repeat, fn, conn, lo, hi, **kw)
                    results.append((name, secs, rows))
                # The reports must also be right: their totals against plain counts.
                problems = []
                total = [r for r in await reports.kpi(conn, lo, hi, by="total") if r["queue"] is None]
                if not total or total[0]["offered"] != month_calls:
                    problems.append(f"kpi offered {total[0]['offered'] if total else None} != {month_calls} calls")
                lost = await conn.fetchval("SELECT count(*) FROM calls WHERE entered_at >= $1 AND entered_at < $2 "
                                           "AND outcome = 'abandoned'", lo, hi)
                listed = len(await reports.abandons(conn, lo, hi))
                if listed != lost:
                    problems.append(f"abandons listed {listed} != {lost} abandoned calls")
                rings = await conn.fetchval("SELECT count(*) FROM call_events WHERE kind = 'agent_ring' "
                                            "AND at >= $1 AND at < $2", lo, hi)
                counted = sum(r["rings"] for r in await reports.agents(conn, lo, hi, by="total"))
                if counted != rings:
                    problems.append(f"agents rings {counted} != {rings} ring steps")
            finally:
                await conn.close()
        finally:
            pg.close()

    print(f"machine: {machine_info()}")
    print(f"PostgreSQL {version} (embedded, default settings: shared_buffers {settings['shared_buffers']}, "
          f"max_parallel_workers_per_gather {settings['max_parallel_workers_per_gather']})")
    print(f"data: {n_calls:,} calls, {n_events:,} call_events, {n_states:,} agent_state_events over {DAYS} days "
          f"({sizes}); reported month {lo:%Y-%m-%d} .. {hi:%Y-%m-%d}: {month_calls:,} calls")
    print("generation: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))
    print()
    print(f"{'report (one month, best of ' + str(args.repeat) + ')':<34}{'time':>9}{'rows':>9}   target")
    for name, secs, rows in results:
        verdict = "ok" if secs < TARGET_S else "TOO SLOW"
        print(f"{name:<34}{secs:>8.3f}s{rows:>9,}   < {TARGET_S:.0f} s {verdict}")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if problems:
        print("WRONG: " + "; ".join(problems))
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
