"""Reports over the ``calls``, ``call_events`` and ``agent_state_events`` tables.

``kpi``, ``abandons``, ``abandons_by_node``, ``agents`` and ``fcr`` take a database (an
``AsyncEngine``, a ``callcenter.storage.db.Database`` or an asyncpg connection), a period
``[start, end)`` and options, and return plain rows (a list of dicts, JSON-ready except for
datetimes). ``format_rows`` renders rows as an aligned table, CSV or JSON. ``add_arguments`` and
``run`` implement ``callcenter report kpi|abandons|agents|fcr``, and ``nps`` and ``callbacks``
over ``callcenter.survey.reports`` and ``callcenter.callbacks.reports``.

The figures are those of the ``cc_*`` SQL views (migration 0002) with the view's fixed choices
made parameters: the service-level threshold (views: 20 s), the short-abandon threshold (views:
the stored ``calls.short_abandon``), the time zone of days and hours (views: UTC) and the
first-call-resolution window (views: 72 h). docs/analytics.md gives every formula; a test checks
that a report and its view agree. A call belongs to the period (and to the day/hour) in which it
*entered*; agent steps and pauses belong to the period in which they happened.

Speed: every query selects by ``calls.entered_at`` or ``call_events (kind, at)`` ranges (the
indexes ``ix_calls_entered_at``, ``ix_calls_queue_entered_at``, ``ix_call_events_kind_at``, the
partial ``ix_calls_abandoned_entered_at`` and the covering ``ix_call_events_kind_at_agent``), so a
report reads one period, never the whole history (bench/report_query.py).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import re
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg

ABANDON_STAGES = ("pre_answer", "ivr", "queue", "ringing")
FORMATS = ("table", "csv", "json")
DEFAULT_SL_SECONDS = 20.0
DEFAULT_FCR_WINDOW_H = 72.0
# How far before the period the agents report looks for the pause state the period starts in: an
# agent whose last pause event is older than this is taken as not paused at the start.
PAUSE_LOOKBACK = timedelta(days=7)

# Per-statement settings: these are short analytical queries; JIT compilation costs more than
# it saves at this size, and sorts/hashes of one month fit in memory.
_SESSION = ("SET LOCAL jit = off", "SET LOCAL work_mem = '64MB'")

Rows = list[dict[str, Any]]

# Reading a large part of a period's rows, a bitmap heap scan of ix_calls_entered_at (each page
# once, in physical order) costs less CPU than the plain index scan the planner picks for the
# well-correlated entered_at; for a short period it is as good.
_BITMAP = ("SET LOCAL enable_indexscan = off",)


# --- connections and parameters -------------------------------------------------------------


@asynccontextmanager
async def _connection(db: Any) -> AsyncIterator[asyncpg.Connection]:
    """An asyncpg connection from an asyncpg connection, an AsyncEngine or a Database."""
    if isinstance(db, asyncpg.Connection):
        yield db
        return
    engine = getattr(db, "engine", db)
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        yield raw.driver_connection


_PARAM = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


def _bind(sql: str, params: dict[str, Any]) -> tuple[str, list[Any]]:
    """``:name`` placeholders -> asyncpg ``$n`` (a ``::cast`` is left alone)."""
    order: list[str] = []

    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in params:
            raise KeyError(f"no value for :{name}")
        if name not in order:
            order.append(name)
        return f"${order.index(name) + 1}"

    return _PARAM.sub(repl, sql), [params[n] for n in order]


async def _fetch(
    db: Any, sql: str, params: dict[str, Any], tz: str = "UTC", settings: Sequence[str] = ()
) -> list[asyncpg.Record]:
    """Run one report query in its own transaction, with the report's time zone as the session
    time zone (``t::date`` then cuts days in it, cheaper than ``AT TIME ZONE``) and the
    query's planner ``settings`` (``SET LOCAL``: they end with the transaction)."""
    text, args = _bind(sql, params)
    async with _connection(db) as conn, conn.transaction():
        for stmt in (*_SESSION, *settings):
            await conn.execute(stmt)
        await conn.execute("SELECT set_config('TimeZone', $1, true)", tz)
        return await conn.fetch(text, *args)


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {tz!r}") from exc


def _aware(t: datetime, zone: ZoneInfo) -> datetime:
    return t.replace(tzinfo=zone) if t.tzinfo is None else t


def _period(start: datetime, end: datetime, tz: str) -> tuple[datetime, datetime, ZoneInfo]:
    zone = _zone(tz)
    start, end = _aware(start, zone), _aware(end, zone)
    if not start < end:
        raise ValueError(f"empty period: {start.isoformat()} is not before {end.isoformat()}")
    return start, end, zone


_BUCKETS = ("day", "hour", "total")


def _bucket_sql(by: str, column: str) -> str:
    """The bucket of a timestamptz column in the report's time zone (the session time zone, see
    ``_fetch``): its ``date``, the start of its hour (``timestamp`` without time zone, the wall
    clock), or one constant for the whole period. The hour truncates the wall clock (one time zone
    conversion per row, where ``date_trunc`` of a timestamptz makes two)."""
    if by not in _BUCKETS:
        raise ValueError(f"by must be one of {', '.join(_BUCKETS)}, not {by!r}")
    if by == "total":
        return "'-infinity'::timestamp"
    return f"({column})::date" if by == "day" else f"date_trunc('hour', ({column})::timestamp)"


def _label(bucket: date | datetime, by: str, start: datetime, end: datetime) -> str:
    if by == "total":
        return f"{start.isoformat()}/{end.isoformat()}"
    return bucket.strftime("%Y-%m-%d") if by == "day" else bucket.strftime("%Y-%m-%d %H:00")


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    return value


def _short_sql(short_abandon_s: float | None, alias: str = "c") -> str:
    """The short-abandon test: the stored column, or recomputed with another threshold."""
    if short_abandon_s is None:
        return f"{alias}.short_abandon"
    return (f"({alias}.outcome = 'abandoned' AND {alias}.ended_at IS NOT NULL "
            f"AND extract(epoch FROM {alias}.ended_at - {alias}.entered_at) <= :short_s)")


# --- kpi -----------------------------------------------------------------------------------------
#
# How the kpi query stays fast (one month of 1,000,000 calls in well under a second on one core):
# reading ``stints`` (JSON) and evaluating ~40 text-comparing aggregates twice (calls, then visits)
# cost several times the scan itself. So the query
#  1. reads each call of the period once (``ix_calls_entered_at``) and projects it to a few
#     numbers: outcome and stage as small integers, the waits, and the first two visits by
#     position (``stints -> 0``, ``stints -> 1``); a call with one visit (most) reads only that
#     visit's outcome, its queue and wait being the call's own ``queue`` / ``queue_wait_s``
#     (``OFFSET 0`` keeps each projection from being re-evaluated by every aggregate);
#  2. packs the small integers and the service-level tests into one integer ``code`` and groups by
#     (bucket, first queue, second queue, code): a few thousand groups, ten plain aggregates;
#  3. unpacks ``code`` and folds the groups into the all-calls rows and the per-queue rows.
# A call with three visits or more keeps its own group (``xid``) and its further visits are
# unnested from it. The figures are those of the cc_kpi_* views (a test checks it).
#
# code = oc + 8 st + 64 short + 128 cin + 256 o0 + 2048 in0 + 8192 o1 + 65536 in1, where
# oc: 1 answered 2 abandoned 3 callback 4 voicemail 5 closed 6 failed; st (abandon stage):
# 1 pre_answer 2 ivr 3 queue 4 ringing, 0 none; short: short abandon; cin: call waited <= T in
# queues; o0/o1 (visit outcome): 1 answered 2 abandoned 3 moved 4 timeout 5 exit_key, 0 other,
# 7 no such visit; in0/in1: the visit waited <= T (1), more (0), unknown (2).

_CALL_CODE = ("CASE c.outcome WHEN 'answered' THEN 1 WHEN 'abandoned' THEN 2 WHEN 'callback' THEN 3 "
              "WHEN 'voicemail' THEN 4 WHEN 'closed' THEN 5 WHEN 'failed' THEN 6 ELSE 0 END")
_STAGE_CODE = ("CASE c.abandon_stage WHEN 'pre_answer' THEN 1 WHEN 'ivr' THEN 2 WHEN 'queue' THEN 3 "
               "WHEN 'ringing' THEN 4 ELSE 0 END")


def _visit_code(expr: str) -> str:
    return (f"CASE {expr} WHEN 'answered' THEN 1 WHEN 'abandoned' THEN 2 WHEN 'moved' THEN 3 "
            f"WHEN 'timeout' THEN 4 WHEN 'exit_key' THEN 5 ELSE 0 END")


def _visit_rows(i: int) -> str:
    """Per-queue figures of the i-th visits (0 or 1) of the groups of ``d``."""
    o, inn, w = f"d.o{i}", f"d.in{i}", f"d.w{i}"
    return f"""
        SELECT d.bucket, d.q{i} AS queue, d.n AS offered,
               CASE WHEN {o} = 1 THEN d.n ELSE 0 END AS answered,
               CASE WHEN {o} = 2 THEN d.n ELSE 0 END AS abandoned,
               CASE WHEN {o} = 2 AND d.st <> 4 THEN d.n ELSE 0 END AS ab_queue,
               CASE WHEN {o} = 2 AND d.st = 4 THEN d.n ELSE 0 END AS ab_ring,
               CASE WHEN {o} = 2 AND d.short THEN d.n ELSE 0 END AS short,
               CASE WHEN {o} = 3 THEN d.n ELSE 0 END AS moved,
               CASE WHEN {o} = 4 THEN d.n ELSE 0 END AS timeouts,
               CASE WHEN {o} = 5 THEN d.n ELSE 0 END AS exit_keys,
               CASE WHEN {o} = 1 AND {inn} = 1 THEN d.n ELSE 0 END AS within,
               CASE WHEN {o} = 2 AND {inn} = 0 THEN d.n ELSE 0 END AS after,
               CASE WHEN {o} = 1 THEN {w}_sum END AS asa_sum, CASE WHEN {o} = 1 THEN {w}_n ELSE 0 END AS asa_n,
               CASE WHEN {o} = 1 THEN d.talk_sum END AS aht_sum, CASE WHEN {o} = 1 THEN d.talk_n ELSE 0 END AS aht_n,
               CASE WHEN {o} = 2 THEN {w}_sum END AS tta_sum, CASE WHEN {o} = 2 THEN {w}_n ELSE 0 END AS tta_n
          FROM d WHERE d.q{i} IS NOT NULL"""


_RATES = """
    :sl::float8 AS sl_seconds,
    k.offered::bigint, k.answered::bigint, k.abandoned::bigint,
    k.abandoned_pre_answer::bigint, k.abandoned_ivr::bigint, k.abandoned_queue::bigint,
    k.abandoned_ringing::bigint, k.short_abandons::bigint,
    k.callbacks::bigint, k.voicemails::bigint, k.closed::bigint, k.failed::bigint,
    k.moved::bigint, k.timeouts::bigint, k.exit_keys::bigint,
    k.answered_within_sl::bigint, k.abandoned_after_sl::bigint,
    round(100.0 * k.answered / NULLIF(k.offered, 0), 2)::float8 AS answer_pct,
    round(100.0 * k.abandoned / NULLIF(k.offered, 0), 2)::float8 AS abandon_pct,
    round(100.0 * k.short_abandons / NULLIF(k.offered, 0), 2)::float8 AS short_abandon_pct,
    round(100.0 * k.answered_within_sl / NULLIF(k.answered, 0), 2)::float8 AS sl_pct,
    round(100.0 * k.answered_within_sl / NULLIF(k.answered + k.abandoned_after_sl, 0), 2)::float8
        AS sl_pct_with_abandons,
    round((k.asa_sum / NULLIF(k.asa_n, 0))::numeric, 1)::float8 AS asa_s,
    round((k.aht_sum / NULLIF(k.aht_n, 0))::numeric, 1)::float8 AS aht_s,
    round((k.tta_sum / NULLIF(k.tta_n, 0))::numeric, 1)::float8 AS avg_time_to_abandon_s
"""

KPI_COLUMNS = (
    "period", "queue", "sl_seconds", "offered", "answered", "abandoned", "abandoned_pre_answer", "abandoned_ivr",
    "abandoned_queue", "abandoned_ringing", "short_abandons", "callbacks", "voicemails", "closed", "failed",
    "moved", "timeouts", "exit_keys", "answered_within_sl", "abandoned_after_sl", "answer_pct", "abandon_pct",
    "short_abandon_pct", "sl_pct", "sl_pct_with_abandons", "asa_s", "aht_s", "avg_time_to_abandon_s",
)


def _kpi_sql(by: str, queue: str | None, short_abandon_s: float | None) -> str:
    bucket = _bucket_sql(by, "c.entered_at")
    # A queue's visits are inside calls.stints; the containment test skips the other calls cheaply.
    prefilter = "AND c.stints @> jsonb_build_array(jsonb_build_object('queue', :queue::text))" if queue else ""
    calls_part = "" if queue else """
    SELECT d.bucket, NULL::text AS queue,
           sum(d.n) AS offered,
           COALESCE(sum(d.n) FILTER (WHERE d.oc = 1), 0) AS answered,
           COALESCE(sum(d.n) FILTER (WHERE d.oc = 2), 0) AS abandoned,
           COALESCE(sum(d.n) FILTER (WHERE d.st = 1), 0) AS abandoned_pre_answer,
           COALESCE(sum(d.n) FILTER (WHERE d.st = 2), 0) AS abandoned_ivr,
           COALESCE(sum(d.n) FILTER (WHERE d.st = 3), 0) AS abandoned_queue,
           COALESCE(sum(d.n) FILTER (WHERE d.st = 4), 0) AS abandoned_ringing,
           COALESCE(sum(d.n) FILTER (WHERE d.oc = 2 AND d.short), 0) AS short_abandons,
           COALESCE(sum(d.n) FILTER (WHERE d.oc = 3), 0) AS callbacks,
           COALESCE(sum(d.n) FILTER (WHERE d.oc = 4), 0) AS voicemails,
           COALESCE(sum(d.n) FILTER (WHERE d.oc = 5), 0) AS closed,
           COALESCE(sum(d.n) FILTER (WHERE d.oc = 6), 0) AS failed,
           NULL::numeric AS moved, NULL::numeric AS timeouts, NULL::numeric AS exit_keys,
           COALESCE(sum(d.n) FILTER (WHERE d.oc = 1 AND d.cin), 0) AS answered_within_sl,
           COALESCE(sum(d.n) FILTER (WHERE d.st IN (3, 4) AND NOT d.cin), 0) AS abandoned_after_sl,
           sum(d.cw_sum) FILTER (WHERE d.oc = 1) AS asa_sum, COALESCE(sum(d.n) FILTER (WHERE d.oc = 1), 0) AS asa_n,
           sum(d.talk_sum) FILTER (WHERE d.oc = 1) AS aht_sum, sum(d.talk_n) FILTER (WHERE d.oc = 1) AS aht_n,
           sum(d.dur_sum) FILTER (WHERE d.oc = 2) AS tta_sum, sum(d.dur_n) FILTER (WHERE d.oc = 2) AS tta_n
      FROM d GROUP BY d.bucket
    UNION ALL"""
    queue_only = "WHERE v.queue = :queue" if queue else ""
    extra = """(e.v ->> 'outcome' = '{o}'{cond})::int"""

    def x(o: str, cond: str = "") -> str:
        return extra.format(o=o, cond=cond)

    return f"""
WITH g AS MATERIALIZED (
    SELECT y.bucket, y.q0, y.q1, y.xid, y.more,
           y.oc + 8 * y.st + 64 * y.short::int + 128 * (y.cw <= :sl)::int + 256 * y.o0
               + 2048 * COALESCE((y.w0 <= :sl)::int, 2) + 8192 * y.o1 + 65536 * COALESCE((y.w1 <= :sl)::int, 2)
               AS code,
           count(*) AS n, sum(y.cw) AS cw_sum, sum(y.talk) AS talk_sum, count(y.talk) AS talk_n,
           sum(y.dur) AS dur_sum, count(y.dur) AS dur_n,
           sum(y.w0) AS w0_sum, count(y.w0) AS w0_n, sum(y.w1) AS w1_sum, count(y.w1) AS w1_n
      FROM (
        SELECT {bucket} AS bucket,
               {_CALL_CODE} AS oc,
               {_STAGE_CODE} AS st,
               COALESCE({_short_sql(short_abandon_s)}, false) AS short,
               COALESCE(c.queue_wait_s, 0) AS cw,
               c.talk_s AS talk,
               date_part('epoch', c.ended_at - c.entered_at) AS dur,
               CASE WHEN c.e1 IS NULL THEN c.queue ELSE c.stints -> 0 ->> 'queue' END AS q0,
               CASE WHEN c.stints -> 0 IS NULL THEN 7 ELSE {_visit_code("c.stints -> 0 ->> 'outcome'")} END AS o0,
               CASE WHEN c.e1 IS NULL THEN c.queue_wait_s ELSE (c.stints -> 0 ->> 'wait_s')::float8 END AS w0,
               c.e1 ->> 'queue' AS q1,
               CASE WHEN c.e1 IS NULL THEN 7 ELSE {_visit_code("c.e1 ->> 'outcome'")} END AS o1,
               (c.e1 ->> 'wait_s')::float8 AS w1,
               CASE WHEN c.e1 IS NOT NULL AND c.stints -> 2 IS NOT NULL THEN c.call_id END AS xid,
               CASE WHEN c.e1 IS NOT NULL AND c.stints -> 2 IS NOT NULL THEN c.stints END AS more
          FROM (
            SELECT c.call_id, c.entered_at, c.ended_at, c.outcome, c.abandon_stage, c.short_abandon, c.queue,
                   c.queue_wait_s, c.talk_s, c.stints, c.stints -> 1 AS e1
              FROM calls c
             WHERE c.entered_at >= :start AND c.entered_at < :end {prefilter}
            OFFSET 0
          ) c
        OFFSET 0
      ) y
     GROUP BY 1, 2, 3, 4, 5, 6
), d AS (
    SELECT g.*, g.code % 8 AS oc, (g.code / 8) % 8 AS st, (g.code / 64) % 2 = 1 AS short,
           (g.code / 128) % 2 = 1 AS cin, (g.code / 256) % 8 AS o0, (g.code / 2048) % 4 AS in0,
           (g.code / 8192) % 8 AS o1, (g.code / 65536) % 4 AS in1
      FROM g
)
SELECT k.bucket, k.queue, {_RATES}
FROM ({calls_part}
    SELECT v.bucket, v.queue, sum(v.offered) AS offered, sum(v.answered) AS answered, sum(v.abandoned) AS abandoned,
           0::numeric AS abandoned_pre_answer, 0::numeric AS abandoned_ivr,
           sum(v.ab_queue) AS abandoned_queue, sum(v.ab_ring) AS abandoned_ringing, sum(v.short) AS short_abandons,
           NULL::numeric AS callbacks, NULL::numeric AS voicemails, NULL::numeric AS closed, NULL::numeric AS failed,
           sum(v.moved) AS moved, sum(v.timeouts) AS timeouts, sum(v.exit_keys) AS exit_keys,
           sum(v.within) AS answered_within_sl, sum(v.after) AS abandoned_after_sl,
           sum(v.asa_sum) AS asa_sum, sum(v.asa_n) AS asa_n, sum(v.aht_sum) AS aht_sum, sum(v.aht_n) AS aht_n,
           sum(v.tta_sum) AS tta_sum, sum(v.tta_n) AS tta_n
      FROM ({_visit_rows(0)}
        UNION ALL{_visit_rows(1)}
        UNION ALL
        SELECT d.bucket, e.v ->> 'queue', 1, {x("answered")}, {x("abandoned")},
               {x("abandoned", " AND d.st <> 4")}, {x("abandoned", " AND d.st = 4")},
               {x("abandoned", " AND d.short")}, {x("moved")}, {x("timeout")}, {x("exit_key")},
               {x("answered", " AND (e.v ->> 'wait_s')::float8 <= :sl")},
               {x("abandoned", " AND (e.v ->> 'wait_s')::float8 > :sl")},
               CASE WHEN e.v ->> 'outcome' = 'answered' THEN (e.v ->> 'wait_s')::float8 END,
               {x("answered", " AND e.v ->> 'wait_s' IS NOT NULL")},
               CASE WHEN e.v ->> 'outcome' = 'answered' THEN d.talk_sum END,
               {x("answered", " AND d.talk_n > 0")},
               CASE WHEN e.v ->> 'outcome' = 'abandoned' THEN (e.v ->> 'wait_s')::float8 END,
               {x("abandoned", " AND e.v ->> 'wait_s' IS NOT NULL")}
          FROM d CROSS JOIN LATERAL jsonb_array_elements(d.more) WITH ORDINALITY AS e(v, i)
         WHERE d.xid IS NOT NULL AND e.i > 2
      ) v
     {queue_only}
     GROUP BY v.bucket, v.queue
) k
ORDER BY k.bucket, k.queue NULLS FIRST
"""


async def kpi(
    db: Any,
    start: datetime,
    end: datetime,
    *,
    queue: str | None = None,
    by: str = "day",
    sl_seconds: float = DEFAULT_SL_SECONDS,
    short_abandon_s: float | None = None,
    tz: str = "UTC",
) -> Rows:
    """Answer rate, abandons by stage, short abandons, service level, ASA, AHT per period bucket.

    One row per bucket (``by``: day | hour | total, in ``tz``) for all calls (``queue`` None:
    call-level figures), then one row per bucket and queue (per-visit figures from
    ``calls.stints``). With ``queue``, only that queue's rows. ``short_abandon_s`` None uses
    the stored ``calls.short_abandon``; a number recomputes it (abandoned and
    ``ended_at - entered_at <= short_abandon_s``). Naive datetimes are taken in ``tz``.
    """
    start, end, _ = _period(start, end, tz)
    params: dict[str, Any] = {"start": start, "end": end, "sl": float(sl_seconds)}
    if queue:
        params["queue"] = queue
    if short_abandon_s is not None:
        params["short_s"] = float(short_abandon_s)
    records = await _fetch(db, _kpi_sql(by, queue, short_abandon_s), params, tz, _BITMAP)
    out: Rows = []
    for r in records:
        row = {"period": _label(r["bucket"], by, start, end)}
        row.update({k: _plain(r[k]) for k in KPI_COLUMNS[1:]})
        out.append(row)
    return out


# --- abandons ------------------------------------------------------------------------------------

ABANDON_COLUMNS = (
    "entered_at", "call_id", "caller", "customer_id", "customer_name", "vip", "stage", "node", "queue",
    "waited_s", "ivr_s", "queue_wait_s", "ring_s", "short_abandon", "after_sl", "overflows", "missed_rings",
    "hung_up_by", "ended_at",
)


async def abandons(
    db: Any,
    start: datetime,
    end: datetime,
    *,
    queue: str | None = None,
    stages: Sequence[str] | None = None,
    sl_seconds: float = DEFAULT_SL_SECONDS,
    short_abandon_s: float | None = None,
    include_short: bool = True,
    limit: int | None = None,
    tz: str = "UTC",
) -> Rows:
    """The abandoned calls themselves, oldest first: when, who (caller, CRM customer), where
    (stage, IVR node or queue), how long they waited.

    ``queue``: calls whose last queue (``calls.queue``) is that queue, whatever the stage (a
    caller sent from the queue back to the IVR and lost there is listed with stage ``ivr``).
    ``waited_s`` = ``ended_at - entered_at``; ``after_sl``: lost in a queue (stage queue or
    ringing) after more than ``sl_seconds`` there. Times are returned in ``tz``.
    """
    start, end, zone = _period(start, end, tz)
    bad = [s for s in stages or () if s not in ABANDON_STAGES]
    if bad:
        raise ValueError(f"unknown abandon stage(s): {', '.join(bad)}")
    params: dict[str, Any] = {"start": start, "end": end, "sl": float(sl_seconds)}
    where = ["c.entered_at >= :start", "c.entered_at < :end", "c.outcome = 'abandoned'"]
    if queue:
        where.append("c.queue = :queue")
        params["queue"] = queue
    if stages:
        where.append("c.abandon_stage = ANY(:stages::text[])")
        params["stages"] = list(stages)
    short = _short_sql(short_abandon_s)
    if short_abandon_s is not None:
        params["short_s"] = float(short_abandon_s)
    if not include_short:
        where.append(f"NOT {short}")
    tail = ""
    if limit is not None:
        tail = "LIMIT :limit"
        params["limit"] = int(limit)
    sql = f"""
SELECT c.entered_at, c.call_id, c.caller, c.customer_id, cu.name AS customer_name, c.vip,
       c.abandon_stage AS stage, c.abandon_node AS node, c.queue,
       round(extract(epoch FROM c.ended_at - c.entered_at)::numeric, 1)::float8 AS waited_s,
       c.ivr_s, c.queue_wait_s, c.ring_s,
       {short} AS short_abandon,
       (c.abandon_stage IN ('queue', 'ringing') AND COALESCE(c.queue_wait_s, 0) > :sl) AS after_sl,
       c.overflows, c.missed_rings, c.hung_up_by, c.ended_at
  FROM calls c
  LEFT JOIN customers cu ON cu.id = c.customer_id
 WHERE {" AND ".join(where)}
 ORDER BY c.entered_at, c.call_id
 {tail}
"""
    # Every column is already a plain Python value (no numeric in the SELECT); times come in UTC.
    out: Rows = [dict(r) for r in await _fetch(db, sql, params)]
    if zone.key != "UTC":
        for row in out:
            row["entered_at"] = row["entered_at"].astimezone(zone)
            if row["ended_at"] is not None:
                row["ended_at"] = row["ended_at"].astimezone(zone)
    return out


BY_NODE_COLUMNS = (
    "stage", "node", "abandons", "short_abandons", "avg_waited_s", "max_waited_s", "pct_of_abandons", "pct_of_calls",
)


async def abandons_by_node(
    db: Any,
    start: datetime,
    end: datetime,
    *,
    queue: str | None = None,
    short_abandon_s: float | None = None,
    tz: str = "UTC",
) -> Rows:
    """Where callers are lost: abandons per (stage, node) over the period, most first.

    ``pct_of_abandons`` = abandons / all abandons of the period; ``pct_of_calls`` = abandons /
    all calls of the period (both restricted to ``calls.queue = queue`` when given).
    """
    start, end, _ = _period(start, end, tz)
    params: dict[str, Any] = {"start": start, "end": end}
    qf = ""
    if queue:
        qf = "AND c.queue = :queue"
        params["queue"] = queue
    if short_abandon_s is not None:
        params["short_s"] = float(short_abandon_s)
    sql = f"""
WITH c AS (
    SELECT c.outcome, c.abandon_stage, c.abandon_node,
           extract(epoch FROM c.ended_at - c.entered_at)::float8 AS waited_s,
           {_short_sql(short_abandon_s)} AS short_abandon
      FROM calls c
     WHERE c.entered_at >= :start AND c.entered_at < :end {qf}
), a AS (
    SELECT c.abandon_stage AS stage, c.abandon_node AS node, count(*) AS abandons,
           count(*) FILTER (WHERE c.short_abandon) AS short_abandons,
           avg(c.waited_s) AS avg_w, max(c.waited_s) AS max_w
      FROM c WHERE c.outcome = 'abandoned' GROUP BY 1, 2
)
SELECT a.stage, a.node, a.abandons, a.short_abandons,
       round(a.avg_w::numeric, 1)::float8 AS avg_waited_s,
       round(a.max_w::numeric, 1)::float8 AS max_waited_s,
       round(100.0 * a.abandons / sum(a.abandons) OVER (), 2)::float8 AS pct_of_abandons,
       round(100.0 * a.abandons / (SELECT count(*) FROM c), 2)::float8 AS pct_of_calls
  FROM a
 ORDER BY a.abandons DESC, array_position(ARRAY['pre_answer', 'ivr', 'queue', 'ringing'], a.stage), a.node NULLS FIRST
"""
    return [{k: _plain(r[k]) for k in BY_NODE_COLUMNS} for r in await _fetch(db, sql, params, tz, _BITMAP)]


# --- agents --------------------------------------------------------------------------------------

AGENT_COLUMNS = (
    "period", "agent", "agent_name", "rings", "answered", "missed_rings", "canceled_rings", "answered_per_ring_pct",
    "talk_s", "avg_talk_s", "pauses", "paused_s", "pause_by_reason",
)

_AGENT_KINDS = ["agent_ring", "agent_connect", "agent_ring_no_answer", "agent_ring_canceled"]


def _step_filter(queue: str | None, agent: str | None) -> str:
    return (" AND e.queue = :queue" if queue else "") + (" AND e.agent = :agent" if agent else "")


def _agent_counts_sql(by: str, queue: str | None, agent: str | None) -> str:
    """Rings, answers, missed and canceled rings per (bucket, agent), the bucket as text."""
    return f"""
SELECT k.bucket::text AS bucket, k.agent, k.rings, k.answered, k.missed, k.canceled
  FROM (
    SELECT {_bucket_sql(by, "e.at")} AS bucket, e.agent,
           count(*) FILTER (WHERE e.kind = 'agent_ring') AS rings,
           count(*) FILTER (WHERE e.kind = 'agent_connect') AS answered,
           count(*) FILTER (WHERE e.kind = 'agent_ring_no_answer') AS missed,
           count(*) FILTER (WHERE e.kind = 'agent_ring_canceled') AS canceled
      FROM call_events e
     WHERE e.kind = ANY(:kinds::text[]) AND e.at >= :start AND e.at < :end AND e.agent IS NOT NULL
           {_step_filter(queue, agent)}
     GROUP BY 1, 2
  ) k
"""


def _agents_sql(by: str, queue: str | None, agent: str | None) -> str:
    ev_filter = ""
    st_filter = ""
    if queue:
        ev_filter += " AND e.queue = :queue"
        st_filter += " AND (e.queue = :queue OR e.queue IS NULL)"
    if agent:
        ev_filter += " AND e.agent = :agent"
        st_filter += " AND e.agent = :agent"
    # Call steps, in two statements: the counts of rings, answers, missed and canceled rings come
    # from ix_call_events_kind_at_agent alone (kind, at, agent: an index-only scan, no heap page
    # read; ``_agent_counts_sql``) and are passed to this one as arrays (``counts``); here the talk
    # time reads only the completes (their ``detail``).
    # Pauses: one window pass over the agent's pause events: each event opens an interval up to
    # the agent's next pause event (or the period end / now); paused intervals add up to the
    # paused time (duplicates, e.g. one event per queue, just split an interval), and a pause is
    # counted where one starts or changes reason (or where it runs into the period from before).
    return f"""
WITH counts AS (
    SELECT c.bucket::{"date" if by == "day" else "timestamp"} AS bucket, c.agent, c.rings, c.answered,
           c.missed_rings, c.canceled_rings
      FROM unnest(:c_bucket::text[], :c_agent::text[], :c_rings::bigint[], :c_answered::bigint[],
                  :c_missed::bigint[], :c_canceled::bigint[])
           AS c(bucket, agent, rings, answered, missed_rings, canceled_rings)
), talk AS (
    SELECT {_bucket_sql(by, "e.at")} AS bucket, e.agent,
           sum(COALESCE(
               (e.detail ->> 'talk_s')::float8,
               (SELECT date_part('epoch', e.at - max(x.at)) FROM call_events x
                 WHERE x.call_id = e.call_id AND x.kind = 'agent_connect' AND x.agent = e.agent
                   AND x.at <= e.at))) AS talk_s
      FROM call_events e
     WHERE e.kind = 'agent_complete' AND e.at >= :start AND e.at < :end AND e.agent IS NOT NULL{ev_filter}
     GROUP BY 1, 2
), steps AS (
    SELECT bucket, agent, COALESCE(c.rings, 0) AS rings, COALESCE(c.answered, 0) AS answered,
           COALESCE(c.missed_rings, 0) AS missed_rings, COALESCE(c.canceled_rings, 0) AS canceled_rings,
           t.talk_s
      FROM counts c
      FULL JOIN talk t USING (bucket, agent)
), p AS (
    SELECT e.agent, e.at, e.paused, COALESCE(e.reason, '') AS reason,
           lag(e.paused) OVER w AS prev_paused,
           lag(COALESCE(e.reason, '')) OVER w AS prev_reason,
           lead(e.at) OVER w AS next_at
      FROM agent_state_events e
     WHERE e.kind = 'pause' AND e.paused IS NOT NULL
       AND e.at >= :lookback AND e.at < :end{st_filter}
    WINDOW w AS (PARTITION BY e.agent ORDER BY e.at)
), spans AS (
    SELECT p.agent, COALESCE(NULLIF(p.reason, ''), '(none)') AS reason,
           greatest(p.at, :start) AS s,
           least(COALESCE(p.next_at, :end), :end, now()) AS e,
           p.at < :start OR p.prev_paused IS NOT TRUE OR p.reason <> p.prev_reason AS starts
      FROM p
     WHERE p.paused
), by_reason AS (
    SELECT {_bucket_sql(by, "sp.s")} AS bucket, sp.agent, sp.reason,
           count(*) FILTER (WHERE sp.starts) AS n, sum(date_part('epoch', sp.e - sp.s)) AS secs
      FROM spans sp
     WHERE sp.e > sp.s OR (sp.e = sp.s AND sp.s < :end AND sp.starts)
     GROUP BY 1, 2, 3
), pauses AS (
    SELECT r.bucket, r.agent, sum(r.n)::bigint AS pauses, sum(r.secs) AS paused_s,
           jsonb_object_agg(r.reason, round(r.secs::numeric, 1))::text AS pause_by_reason
      FROM by_reason r GROUP BY 1, 2
), names AS (
    SELECT DISTINCT ON (ep.interface) ep.interface, a.name AS agent_name
      FROM agent_endpoints ep JOIN agents a ON a.id = ep.agent_id
     ORDER BY ep.interface, ep.pbx, a.id
)
SELECT bucket, agent, n.agent_name,
       COALESCE(st.rings, 0) AS rings,
       COALESCE(st.answered, 0) AS answered,
       COALESCE(st.missed_rings, 0) AS missed_rings,
       COALESCE(st.canceled_rings, 0) AS canceled_rings,
       round(100.0 * st.answered / NULLIF(st.rings, 0), 2)::float8 AS answered_per_ring_pct,
       round(COALESCE(st.talk_s, 0)::numeric, 1)::float8 AS talk_s,
       round((st.talk_s / NULLIF(st.answered, 0))::numeric, 1)::float8 AS avg_talk_s,
       COALESCE(pa.pauses, 0) AS pauses,
       round(COALESCE(pa.paused_s, 0)::numeric, 1)::float8 AS paused_s,
       COALESCE(pa.pause_by_reason, '{{}}') AS pause_by_reason
  FROM steps st
  FULL JOIN pauses pa USING (bucket, agent)
  LEFT JOIN names n ON n.interface = agent
 ORDER BY bucket, agent
"""


async def agents(
    db: Any,
    start: datetime,
    end: datetime,
    *,
    queue: str | None = None,
    agent: str | None = None,
    by: str = "day",
    tz: str = "UTC",
) -> Rows:
    """Each agent's work: rings, answers, missed rings, talk time and pauses (by reason).

    One row per bucket (``by``: day | total, in ``tz``) and agent (PBX interface). Call steps
    count in the bucket in which they happened (talk: when the conversation ended). Paused time:
    each pause event opens an interval up to the agent's next pause event, cut to the period (and
    to now); paused intervals count in the bucket in which they start. ``pauses``: pauses begun
    (or changing reason) in the period, plus one already running at its start. ``queue``
    restricts call steps to that queue and pauses to events of that queue or of none.
    ``pause_by_reason``: reason -> paused seconds (``(none)``: no reason).
    """
    if by not in ("day", "total"):
        raise ValueError(f"agents: by must be day or total, not {by!r}")
    start, end, _ = _period(start, end, tz)
    params: dict[str, Any] = {"start": start, "end": end, "kinds": _AGENT_KINDS, "lookback": start - PAUSE_LOOKBACK}
    if queue:
        params["queue"] = queue
    if agent:
        params["agent"] = agent
    out: Rows = []
    # Counts: an index-only scan of ix_call_events_kind_at_agent (the planner, costing it above a
    # parallel scan of the whole table, has to be told); with a queue (not in the index) a bitmap
    # scan of it.
    only = ("SET LOCAL enable_indexscan = off",) + (
        () if queue else ("SET LOCAL enable_bitmapscan = off", "SET LOCAL enable_seqscan = off"))
    counts = await _fetch(db, _agent_counts_sql(by, queue, agent), params, tz, only)
    params.update({"c_bucket": [r["bucket"] for r in counts], "c_agent": [r["agent"] for r in counts],
                   "c_rings": [r["rings"] for r in counts], "c_answered": [r["answered"] for r in counts],
                   "c_missed": [r["missed"] for r in counts], "c_canceled": [r["canceled"] for r in counts]})
    # The planner prefers the correlated ix_call_events_at (reading every step of the period) to
    # the (kind, at) index it cannot see is as cheap with a bitmap; and it misjudges the groups.
    plan = ("SET LOCAL enable_indexscan = off", "SET LOCAL enable_sort = off")
    for r in await _fetch(db, _agents_sql(by, queue, agent), params, tz, plan):
        row = {"period": _label(r["bucket"], by, start, end)}
        row.update({k: _plain(r[k]) for k in AGENT_COLUMNS[1:]})
        row["pause_by_reason"] = json.loads(row["pause_by_reason"])
        out.append(row)
    return out


# --- first-call resolution ---------------------------------------------------------------------

FCR_COLUMNS = ("period", "queue", "answered_identified", "resolved", "repeated", "pending", "fcr_pct")


async def fcr(
    db: Any,
    start: datetime,
    end: datetime,
    *,
    queue: str | None = None,
    by: str = "day",
    window_h: float = DEFAULT_FCR_WINDOW_H,
    as_of: datetime | None = None,
    tz: str = "UTC",
) -> Rows:
    """First-call resolution of the answered calls of identified customers entered in the period.

    An answered call is *repeated* if the same customer's next call (any outcome) entered
    strictly after it and at most ``window_h`` hours later, *resolved* if no such call came and
    the window is over by ``as_of`` (default: now), else *pending*. Later calls are looked for
    beyond the period's end. ``fcr_pct`` = resolved / (resolved + repeated). ``queue``: answered
    calls whose last queue is that queue.
    """
    start, end, zone = _period(start, end, tz)
    as_of = datetime.now(UTC) if as_of is None else _aware(as_of, zone)
    window = timedelta(hours=window_h)
    params: dict[str, Any] = {"start": start, "end": end, "window": window, "as_of": as_of}
    qf = ""
    if queue:
        qf = "AND k.queue = :queue"
        params["queue"] = queue
    sql = f"""
WITH k AS (
    SELECT c.call_id, c.entered_at, c.outcome, c.queue,
           first_value(c.entered_at) OVER nxt AS next_at
      FROM calls c
     WHERE c.customer_id IS NOT NULL
       AND c.entered_at >= :start AND c.entered_at < :end::timestamptz + :window::interval
       AND c.entered_at <= :as_of::timestamptz
    WINDOW nxt AS (PARTITION BY c.customer_id ORDER BY c.entered_at
                   RANGE BETWEEN INTERVAL '1 microsecond' FOLLOWING AND UNBOUNDED FOLLOWING)
), f AS (
    SELECT {_bucket_sql(by, "k.entered_at")} AS bucket,
           CASE WHEN k.next_at <= k.entered_at + :window::interval THEN false
                WHEN :as_of::timestamptz >= k.entered_at + :window::interval THEN true END AS resolved
      FROM k
     WHERE k.outcome = 'answered' AND k.entered_at < :end {qf}
)
SELECT f.bucket, count(*) AS answered_identified,
       count(*) FILTER (WHERE f.resolved) AS resolved,
       count(*) FILTER (WHERE NOT f.resolved) AS repeated,
       count(*) FILTER (WHERE f.resolved IS NULL) AS pending,
       round(100.0 * count(*) FILTER (WHERE f.resolved) / NULLIF(count(f.resolved), 0), 2)::float8 AS fcr_pct
  FROM f GROUP BY f.bucket ORDER BY f.bucket
"""
    out: Rows = []
    for r in await _fetch(db, sql, params, tz, _BITMAP):
        row: dict[str, Any] = {"period": _label(r["bucket"], by, start, end), "queue": queue}
        row.update({k: _plain(r[k]) for k in FCR_COLUMNS[2:]})
        out.append(row)
    return out


# --- formatting ----------------------------------------------------------------------------------


def _text(value: Any, *, table: bool) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return ("yes" if value else "no") if table else ("true" if value else "false")
    if isinstance(value, float):
        return f"{value:.10g}" if table else repr(value)
    if isinstance(value, datetime | date):
        return value.isoformat(sep=" ") if table and isinstance(value, datetime) else value.isoformat()
    if isinstance(value, dict):
        if table:
            return ", ".join(f"{k}={_text(v, table=True)}" for k, v in value.items())
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def format_rows(rows: Rows, fmt: str, columns: Sequence[str] | None = None) -> str:
    """Render rows as ``table`` (aligned, numbers right-aligned), ``csv`` (header + rows) or
    ``json`` (a list of objects). ``columns`` fixes the order and is used when ``rows`` is empty."""
    cols = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    if fmt == "json":
        return json.dumps([{c: r.get(c) for c in cols} for r in rows], default=_json_default,
                          ensure_ascii=False, indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            w.writerow([_text(r.get(c), table=False) for c in cols])
        return buf.getvalue()
    if fmt != "table":
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if not rows:
        return "(no rows)\n"
    cells = [[_text(r.get(c), table=True) for c in cols] for r in rows]
    numeric = [all(_is_number(r.get(c)) for r in rows) for c in cols]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    out = [line(cols), "  ".join("-" * w for w in widths)]
    out.extend(line(row) for row in cells)
    return "\n".join(out) + "\n"


# --- command line --------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``callcenter report kpi|abandons|agents|fcr|nps|callbacks --from ISO --to ISO ...``"""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--from", dest="start", required=True, metavar="ISO",
                        help="period start, inclusive (2025-03-01 or 2025-03-01T08:00; without offset: in --tz)")
    common.add_argument("--to", dest="end", required=True, metavar="ISO", help="period end, exclusive")
    common.add_argument("--queue", help="only this queue")
    common.add_argument("--tz", default="UTC", help="time zone of days, hours and offset-less times (default UTC)")
    common.add_argument("--format", choices=(*FORMATS, "text"), default="table",
                        help="output format (default table; text is the same)")
    common.add_argument("--output", "-o", metavar="PATH", help="write to PATH instead of standard output")
    sub = parser.add_subparsers(dest="report_kind", required=True, metavar="REPORT")

    k = sub.add_parser("kpi", parents=[common], help="answer rate, abandons by stage, service level, ASA, AHT")
    k.add_argument("--by", choices=_BUCKETS, default="day", help="one row per day (default), hour, or the period")
    k.add_argument("--sl-seconds", type=float, default=DEFAULT_SL_SECONDS, metavar="T",
                   help="service-level threshold in seconds (default 20)")
    k.add_argument("--short-abandon-s", type=float, metavar="S",
                   help="recompute short abandons with this threshold (default: as recorded)")

    a = sub.add_parser("abandons", parents=[common], help="the abandoned calls (or --by-node: where callers are lost)")
    a.add_argument("--stage", action="append", choices=ABANDON_STAGES, help="only this stage (repeatable)")
    a.add_argument("--by-node", action="store_true", help="totals per stage and IVR node / queue instead of calls")
    a.add_argument("--exclude-short", action="store_true", help="leave out short abandons")
    a.add_argument("--sl-seconds", type=float, default=DEFAULT_SL_SECONDS, metavar="T",
                   help="threshold of the after_sl column (default 20)")
    a.add_argument("--short-abandon-s", type=float, metavar="S",
                   help="recompute short abandons with this threshold (default: as recorded)")
    a.add_argument("--limit", type=int, help="at most this many calls")

    g = sub.add_parser("agents", parents=[common], help="per agent: rings, answers, missed rings, talk, pauses")
    g.add_argument("--agent", help="only this agent (PBX interface, e.g. PJSIP/1001)")
    g.add_argument("--by", choices=("day", "total"), default="day")

    f = sub.add_parser("fcr", parents=[common], help="first-call resolution of answered calls")
    f.add_argument("--by", choices=_BUCKETS, default="day")
    f.add_argument("--window-hours", type=float, default=DEFAULT_FCR_WINDOW_H,
                   help="a call from the same customer within this many hours is a repeat (default 72)")

    n = sub.add_parser("nps", parents=[common], help="post-call survey NPS per queue, agent, team or period")
    n.add_argument("--by", choices=("queue", "agent", "team", "period", "total"), default="queue",
                   help="one row per queue (default), agent, team, period (--period) or the whole period")
    n.add_argument("--period", choices=("day", "week", "month"), default="day", help="with --by period (default day)")
    n.add_argument("--agent", help="only this agent's surveys (PBX interface, e.g. PJSIP/1001)")

    c = sub.add_parser("callbacks", parents=[common],
                       help="callbacks requested, completed, within the deadline, attempts per success")
    c.add_argument("--by", choices=("period", "queue", "period_queue", "total"), default="period",
                   help="one row per period (default), queue, period and queue, or the whole period")
    c.add_argument("--period", choices=("day", "week", "month"), default="day",
                   help="with --by period or period_queue (default day)")
    c.add_argument("--deadline-minutes", type=float, metavar="M",
                   help="deadline of requests filed without their own (default: the callback policy's, 120)")


def _parse_time(text: str, what: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{what}: not an ISO date/time: {text!r}") from None


async def _report(args: argparse.Namespace, db: Any) -> tuple[Rows, tuple[str, ...]]:
    start, end = _parse_time(args.start, "--from"), _parse_time(args.end, "--to")
    kind = args.report_kind
    if kind == "kpi":
        rows = await kpi(db, start, end, queue=args.queue, by=args.by, sl_seconds=args.sl_seconds,
                         short_abandon_s=args.short_abandon_s, tz=args.tz)
        return rows, KPI_COLUMNS
    if kind == "abandons" and args.by_node:
        rows = await abandons_by_node(db, start, end, queue=args.queue, short_abandon_s=args.short_abandon_s,
                                      tz=args.tz)
        return rows, BY_NODE_COLUMNS
    if kind == "abandons":
        rows = await abandons(db, start, end, queue=args.queue, stages=args.stage, sl_seconds=args.sl_seconds,
                              short_abandon_s=args.short_abandon_s, include_short=not args.exclude_short,
                              limit=args.limit, tz=args.tz)
        return rows, ABANDON_COLUMNS
    if kind == "agents":
        return await agents(db, start, end, queue=args.queue, agent=args.agent, by=args.by, tz=args.tz), AGENT_COLUMNS
    if kind == "fcr":
        rows = await fcr(db, start, end, queue=args.queue, by=args.by, window_h=args.window_hours, tz=args.tz)
        return rows, FCR_COLUMNS
    if kind in ("nps", "callbacks"):
        return await _survey_or_callbacks(args, db, start, end)
    raise ValueError(f"unknown report {kind!r}")


async def _survey_or_callbacks(args: argparse.Namespace, db: Any, start: datetime,
                               end: datetime) -> tuple[Rows, tuple[str, ...]]:
    """``nps`` and ``callbacks``: the SQL reports of the survey and callback packages (they run
    on the SQLAlchemy engine of a ``Database``)."""
    from callcenter.callbacks.core import CallbackPolicy
    from callcenter.callbacks.reports import callback_columns, callback_report
    from callcenter.survey.reports import nps_columns, nps_report

    start, end, _ = _period(start, end, args.tz)
    engine = getattr(db, "engine", db)
    if args.report_kind == "nps":
        nps_rows = await nps_report(engine, start, end, by=args.by, period=args.period, tz=args.tz,
                                    queue=args.queue, agent=args.agent)
        return [r.row(args.by) for r in nps_rows], nps_columns(args.by)
    if args.deadline_minutes is not None and not args.deadline_minutes > 0:
        raise ValueError("--deadline-minutes must be more than 0")
    policy = CallbackPolicy(deadline=timedelta(minutes=args.deadline_minutes)) if args.deadline_minutes else None
    cb_rows = await callback_report(engine, start, end, by=args.by, period=args.period, tz=args.tz, policy=policy,
                                    queue=args.queue)
    return [r.row(args.by) for r in cb_rows], callback_columns(args.by)


def run(args: argparse.Namespace, settings: Any) -> int:
    """Run one report and print it; 0 on success, 1 if the database has no schema, 2 for bad
    arguments (one line on standard error, no traceback)."""
    from callcenter.storage.db import current_revision, open_database

    async def main() -> tuple[int, str]:
        db = await open_database(settings)
        try:
            if await current_revision(db.engine) is None:
                return 1, "the database has no schema yet: run `callcenter db upgrade` first"
            rows, cols = await _report(args, db)
            fmt = "table" if args.format == "text" else args.format
            if fmt == "table" and args.report_kind in ("kpi", "fcr"):  # queue None: all calls
                rows = [{**r, "queue": "(all)" if r["queue"] is None else r["queue"]} for r in rows]
            return 0, format_rows(rows, fmt, cols)
        finally:
            await db.close()

    try:
        code, text = asyncio.run(main())
    except ValueError as exc:
        print(f"callcenter report: {exc}", file=sys.stderr)
        return 2
    except asyncpg.PostgresError as exc:
        print(f"callcenter report: {exc}", file=sys.stderr)
        return 1
    if code != 0:
        print(f"callcenter report: {text}", file=sys.stderr)
        return code
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0
