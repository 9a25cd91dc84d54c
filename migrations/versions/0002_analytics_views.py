"""analytics views: cc_calls, cc_stints, KPIs, abandons, IVR vs direct, VIP vs other, agents, FCR

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

The ``cc_*`` views are the analysts' SQL API; docs/analytics.md documents every column and
the exact formula of every figure. Names and columns are stable: a later change that renames
or removes a column needs a new view name (adding columns at the end is fine).

Conventions: all timestamps are ``timestamptz``; ``*_day`` (date) and ``*_hour`` (timestamp
without time zone, the wall clock) are UTC. The fixed service-level threshold of the views is
20 s (column ``sl_seconds``); ``callcenter report`` computes the same figures for any
threshold, period and time zone. Pure SQL views: no table, index or constraint is touched,
so the ORM models stay the single description of the tables.
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SL = "20"  # the views' service-level threshold, seconds

# Figures of a group of calls (rows of cc_calls aliased c). Keep in step with
# callcenter/analytics/reports.py (a test checks that both give the same numbers).
CALL_COUNTS = f"""
    count(*) AS offered,
    count(*) FILTER (WHERE c.outcome = 'answered') AS answered,
    count(*) FILTER (WHERE c.outcome = 'abandoned') AS abandoned,
    count(*) FILTER (WHERE c.abandon_stage = 'pre_answer') AS abandoned_pre_answer,
    count(*) FILTER (WHERE c.abandon_stage = 'ivr') AS abandoned_ivr,
    count(*) FILTER (WHERE c.abandon_stage = 'queue') AS abandoned_queue,
    count(*) FILTER (WHERE c.abandon_stage = 'ringing') AS abandoned_ringing,
    count(*) FILTER (WHERE c.outcome = 'abandoned' AND c.short_abandon) AS short_abandons,
    count(*) FILTER (WHERE c.outcome = 'callback') AS callbacks,
    count(*) FILTER (WHERE c.outcome = 'voicemail') AS voicemails,
    count(*) FILTER (WHERE c.outcome = 'closed') AS closed,
    count(*) FILTER (WHERE c.outcome = 'failed') AS failed,
    NULL::bigint AS moved,
    NULL::bigint AS timeouts,
    NULL::bigint AS exit_keys,
    count(*) FILTER (WHERE c.outcome = 'answered' AND COALESCE(c.queue_wait_s, 0) <= {SL}) AS answered_within_sl,
    count(*) FILTER (WHERE c.abandon_stage IN ('queue', 'ringing') AND COALESCE(c.queue_wait_s, 0) > {SL})
        AS abandoned_after_sl,
    avg(COALESCE(c.queue_wait_s, 0)) FILTER (WHERE c.outcome = 'answered') AS asa,
    avg(c.talk_s) FILTER (WHERE c.outcome = 'answered') AS aht,
    avg(c.duration_s) FILTER (WHERE c.outcome = 'abandoned') AS tta
"""

# The same figures for the visits of one queue (rows of cc_stints aliased s).
STINT_COUNTS = f"""
    count(*) AS offered,
    count(*) FILTER (WHERE s.outcome = 'answered') AS answered,
    count(*) FILTER (WHERE s.outcome = 'abandoned') AS abandoned,
    0::bigint AS abandoned_pre_answer,
    0::bigint AS abandoned_ivr,
    count(*) FILTER (WHERE s.abandon_stage = 'queue') AS abandoned_queue,
    count(*) FILTER (WHERE s.abandon_stage = 'ringing') AS abandoned_ringing,
    count(*) FILTER (WHERE s.short_abandon) AS short_abandons,
    NULL::bigint AS callbacks,
    NULL::bigint AS voicemails,
    NULL::bigint AS closed,
    NULL::bigint AS failed,
    count(*) FILTER (WHERE s.outcome = 'moved') AS moved,
    count(*) FILTER (WHERE s.outcome = 'timeout') AS timeouts,
    count(*) FILTER (WHERE s.outcome = 'exit_key') AS exit_keys,
    count(*) FILTER (WHERE s.outcome = 'answered' AND s.wait_s <= {SL}) AS answered_within_sl,
    count(*) FILTER (WHERE s.outcome = 'abandoned' AND s.wait_s > {SL}) AS abandoned_after_sl,
    avg(s.wait_s) FILTER (WHERE s.outcome = 'answered') AS asa,
    avg(s.talk_s) FILTER (WHERE s.outcome = 'answered') AS aht,
    avg(s.wait_s) FILTER (WHERE s.outcome = 'abandoned') AS tta
"""

# Derived columns over the counts above (a subquery aliased k).
RATES = f"""
    {SL}::float8 AS sl_seconds,
    k.offered, k.answered, k.abandoned,
    k.abandoned_pre_answer, k.abandoned_ivr, k.abandoned_queue, k.abandoned_ringing, k.short_abandons,
    k.callbacks, k.voicemails, k.closed, k.failed, k.moved, k.timeouts, k.exit_keys,
    k.answered_within_sl, k.abandoned_after_sl,
    round(100.0 * k.answered / NULLIF(k.offered, 0), 2) AS answer_pct,
    round(100.0 * k.abandoned / NULLIF(k.offered, 0), 2) AS abandon_pct,
    round(100.0 * k.short_abandons / NULLIF(k.offered, 0), 2) AS short_abandon_pct,
    round(100.0 * k.answered_within_sl / NULLIF(k.answered, 0), 2) AS sl_pct,
    round(100.0 * k.answered_within_sl / NULLIF(k.answered + k.abandoned_after_sl, 0), 2) AS sl_pct_with_abandons,
    round(k.asa::numeric, 1) AS asa_s,
    round(k.aht::numeric, 1) AS aht_s,
    round(k.tta::numeric, 1) AS avg_time_to_abandon_s
"""

# agent interface -> (id, name) through agent_endpoints (the first PBX in name order wins).
AGENT_NAMES = """
    SELECT DISTINCT ON (ep.interface) ep.interface, a.id AS agent_id, a.name AS agent_name
      FROM agent_endpoints ep JOIN agents a ON a.id = ep.agent_id
     ORDER BY ep.interface, ep.pbx, a.id
"""

VIEWS: list[tuple[str, str]] = [
    ("cc_calls", """
SELECT
    c.call_id, c.pbx, c.caller, c.did,
    c.customer_id, cu.name AS customer_name, c.vip,
    CASE WHEN c.vip THEN 'vip' WHEN NOT c.vip THEN 'other' ELSE 'unknown' END AS vip_group,
    c.entered_at, c.answered_at, c.ended_at,
    (c.entered_at AT TIME ZONE 'UTC')::date AS entered_day,
    date_trunc('hour', c.entered_at AT TIME ZONE 'UTC') AS entered_hour,
    extract(hour FROM c.entered_at AT TIME ZONE 'UTC')::int AS entered_hour_of_day,
    extract(isodow FROM c.entered_at AT TIME ZONE 'UTC')::int AS entered_isodow,
    c.outcome, c.abandon_stage, c.abandon_node, c.short_abandon, c.answered_via_ivr,
    CASE WHEN c.outcome = 'answered' THEN CASE WHEN c.answered_via_ivr THEN 'ivr' ELSE 'direct' END END AS route,
    c.queue, c.agent, c.agent_id, ag.name AS agent_name,
    c.ivr_s, c.queue_wait_s, c.ring_s, c.talk_s,
    date_part('epoch', c.ended_at - c.entered_at) AS duration_s,
    CASE WHEN c.outcome = 'answered' THEN COALESCE(c.queue_wait_s, 0) END AS speed_of_answer_s,
    c.overflows, c.offered_agents, c.missed_rings, c.hung_up_by,
    c.repeat_of, c.first_contact_resolved, c.rules_version, c.rule_id,
    c.stints, c.recorded_at
FROM calls c
LEFT JOIN customers cu ON cu.id = c.customer_id
LEFT JOIN agents ag ON ag.id = c.agent_id
"""),
    ("cc_stints", """
SELECT
    c.call_id,
    s.ord::int AS stint_no,
    s.e ->> 'queue' AS queue,
    (s.e ->> 'joined_at')::timestamptz AS joined_at,
    (s.e ->> 'left_at')::timestamptz AS left_at,
    (s.e ->> 'wait_s')::float8 AS wait_s,
    s.e ->> 'outcome' AS outcome,
    s.e ->> 'agent' AS agent,
    s.e ->> 'moved_to' AS moved_to,
    CASE WHEN s.e ->> 'outcome' = 'abandoned'
         THEN CASE WHEN c.abandon_stage = 'ringing' THEN 'ringing' ELSE 'queue' END END AS abandon_stage,
    (s.e ->> 'outcome' = 'abandoned' AND c.short_abandon) AS short_abandon,
    c.entered_at,
    (c.entered_at AT TIME ZONE 'UTC')::date AS entered_day,
    date_trunc('hour', c.entered_at AT TIME ZONE 'UTC') AS entered_hour,
    c.outcome AS call_outcome,
    c.customer_id, c.vip,
    CASE WHEN c.vip THEN 'vip' WHEN NOT c.vip THEN 'other' ELSE 'unknown' END AS vip_group,
    c.answered_via_ivr,
    c.talk_s
FROM calls c
CROSS JOIN LATERAL jsonb_array_elements(
    CASE WHEN jsonb_typeof(c.stints) = 'array' THEN c.stints ELSE '[]'::jsonb END
) WITH ORDINALITY AS s(e, ord)
"""),
    ("cc_kpi_daily", f"""
SELECT k.day, k.queue, {RATES}
FROM (
    SELECT c.entered_day AS day, NULL::text AS queue, {CALL_COUNTS}
      FROM cc_calls c GROUP BY c.entered_day
    UNION ALL
    SELECT s.entered_day AS day, s.queue, {STINT_COUNTS}
      FROM cc_stints s GROUP BY s.entered_day, s.queue
) k
"""),
    ("cc_kpi_hourly", f"""
SELECT k.hour, k.hour::date AS day, k.queue, {RATES}
FROM (
    SELECT c.entered_hour AS hour, NULL::text AS queue, {CALL_COUNTS}
      FROM cc_calls c GROUP BY c.entered_hour
    UNION ALL
    SELECT s.entered_hour AS hour, s.queue, {STINT_COUNTS}
      FROM cc_stints s GROUP BY s.entered_hour, s.queue
) k
"""),
    ("cc_abandons", """
SELECT
    c.call_id, c.entered_at, c.entered_day, c.entered_hour, c.ended_at,
    c.caller, c.customer_id, c.customer_name, c.vip, c.vip_group,
    c.abandon_stage, c.abandon_node, c.queue,
    c.duration_s AS waited_s,
    c.ivr_s, c.queue_wait_s, c.ring_s,
    c.short_abandon, c.overflows, c.offered_agents, c.missed_rings, c.hung_up_by
FROM cc_calls c
WHERE c.outcome = 'abandoned'
"""),
    ("cc_abandons_by_node", """
SELECT
    a.entered_day AS day, a.abandon_stage, a.abandon_node,
    count(*) AS abandons,
    count(*) FILTER (WHERE a.short_abandon) AS short_abandons,
    round(avg(a.waited_s)::numeric, 1) AS avg_waited_s,
    round(max(a.waited_s)::numeric, 1) AS max_waited_s,
    round(100.0 * count(*) / sum(count(*)) OVER (PARTITION BY a.entered_day), 2) AS pct_of_abandons,
    round(100.0 * count(*) / max(d.calls), 2) AS pct_of_calls
FROM cc_abandons a
JOIN (SELECT entered_day, count(*) AS calls FROM cc_calls GROUP BY entered_day) d USING (entered_day)
GROUP BY a.entered_day, a.abandon_stage, a.abandon_node
"""),
    ("cc_ivr_vs_direct", f"""
SELECT
    c.entered_day AS day, c.route,
    count(*) AS answered,
    round(100.0 * count(*) / sum(count(*)) OVER (PARTITION BY c.entered_day), 2) AS pct_of_answered,
    {SL}::float8 AS sl_seconds,
    count(*) FILTER (WHERE c.speed_of_answer_s <= {SL}) AS answered_within_sl,
    round(100.0 * count(*) FILTER (WHERE c.speed_of_answer_s <= {SL}) / count(*), 2) AS sl_pct,
    round(avg(c.speed_of_answer_s)::numeric, 1) AS asa_s,
    round(avg(c.talk_s)::numeric, 1) AS aht_s,
    round(avg(c.ivr_s)::numeric, 1) AS avg_ivr_s,
    count(*) FILTER (WHERE c.overflows > 0) AS overflowed
FROM cc_calls c
WHERE c.outcome = 'answered'
GROUP BY c.entered_day, c.route
"""),
    ("cc_vip_vs_other", f"""
SELECT k.day, k.vip_group, {RATES}, k.overflowed
FROM (
    SELECT c.entered_day AS day, c.vip_group, {CALL_COUNTS},
           count(*) FILTER (WHERE c.overflows > 0) AS overflowed
      FROM cc_calls c GROUP BY c.entered_day, c.vip_group
) k
"""),
    ("cc_agent_pauses", f"""
WITH p AS (
    SELECT e.agent, e.at, e.paused, COALESCE(e.reason, '') AS reason,
           lag(e.paused) OVER w AS prev_paused,
           lag(COALESCE(e.reason, '')) OVER w AS prev_reason
      FROM agent_state_events e
     WHERE e.kind = 'pause' AND e.paused IS NOT NULL
    WINDOW w AS (PARTITION BY e.agent ORDER BY e.at)
), changes AS (
    SELECT p.agent, p.at, p.paused, p.reason FROM p
     WHERE p.prev_paused IS NULL OR p.paused <> p.prev_paused OR (p.paused AND p.reason <> p.prev_reason)
), spans AS (
    SELECT ch.agent, ch.at AS started_at, ch.paused, ch.reason,
           lead(ch.at) OVER (PARTITION BY ch.agent ORDER BY ch.at) AS ended_at
      FROM changes ch
)
SELECT
    sp.agent, n.agent_id, n.agent_name,
    NULLIF(sp.reason, '') AS reason,
    sp.started_at, sp.ended_at,
    (sp.started_at AT TIME ZONE 'UTC')::date AS day,
    date_part('epoch', COALESCE(sp.ended_at, now()) - sp.started_at) AS duration_s,
    sp.ended_at IS NULL AS still_paused
FROM spans sp
LEFT JOIN ({AGENT_NAMES}) n ON n.interface = sp.agent
WHERE sp.paused
"""),
    ("cc_agent_activity", f"""
WITH steps AS (
    SELECT (e.at AT TIME ZONE 'UTC')::date AS day, e.agent,
           count(*) FILTER (WHERE e.kind = 'agent_ring') AS rings,
           count(*) FILTER (WHERE e.kind = 'agent_connect') AS answered,
           count(*) FILTER (WHERE e.kind = 'agent_ring_no_answer') AS missed_rings,
           count(*) FILTER (WHERE e.kind = 'agent_ring_canceled') AS canceled_rings,
           sum(CASE WHEN e.kind = 'agent_complete' THEN COALESCE(
                   (e.detail ->> 'talk_s')::float8,
                   (SELECT date_part('epoch', e.at - max(x.at)) FROM call_events x
                     WHERE x.call_id = e.call_id AND x.kind = 'agent_connect' AND x.agent = e.agent
                       AND x.at <= e.at)) END) AS talk_s
      FROM call_events e
     WHERE e.kind IN ('agent_ring', 'agent_connect', 'agent_ring_no_answer', 'agent_ring_canceled', 'agent_complete')
       AND e.agent IS NOT NULL
     GROUP BY 1, 2
), p AS (
    SELECT e.agent, e.at, e.paused, COALESCE(e.reason, '') AS reason,
           lag(e.paused) OVER w AS prev_paused,
           lag(COALESCE(e.reason, '')) OVER w AS prev_reason,
           lead(e.at) OVER w AS next_at
      FROM agent_state_events e
     WHERE e.kind = 'pause' AND e.paused IS NOT NULL
    WINDOW w AS (PARTITION BY e.agent ORDER BY e.at)
), by_reason AS (
    SELECT (p.at AT TIME ZONE 'UTC')::date AS day, p.agent, COALESCE(NULLIF(p.reason, ''), '(none)') AS reason,
           count(*) FILTER (WHERE p.prev_paused IS NOT TRUE OR p.reason <> p.prev_reason) AS n,
           sum(date_part('epoch', COALESCE(p.next_at, now()) - p.at)) AS secs
      FROM p
     WHERE p.paused
     GROUP BY 1, 2, 3
), pauses AS (
    SELECT r.day, r.agent, sum(r.n)::bigint AS pauses, sum(r.secs) AS paused_s,
           jsonb_object_agg(r.reason, round(r.secs::numeric, 1)) AS pause_by_reason
      FROM by_reason r GROUP BY 1, 2
)
SELECT
    day, agent, n.agent_id, n.agent_name,
    COALESCE(st.rings, 0) AS rings,
    COALESCE(st.answered, 0) AS answered,
    COALESCE(st.missed_rings, 0) AS missed_rings,
    COALESCE(st.canceled_rings, 0) AS canceled_rings,
    round(100.0 * st.answered / NULLIF(st.rings, 0), 2) AS answered_per_ring_pct,
    round(COALESCE(st.talk_s, 0)::numeric, 1) AS talk_s,
    round((st.talk_s / NULLIF(st.answered, 0))::numeric, 1) AS avg_talk_s,
    COALESCE(pa.pauses, 0) AS pauses,
    round(COALESCE(pa.paused_s, 0)::numeric, 1) AS paused_s,
    COALESCE(pa.pause_by_reason, '{{}}'::jsonb) AS pause_by_reason
FROM steps st
FULL JOIN pauses pa USING (day, agent)
LEFT JOIN ({AGENT_NAMES}) n ON n.interface = agent
"""),
    ("cc_agent_timeline", """
SELECT e.at, e.agent, 'call'::text AS source, e.kind, e.call_id, e.queue,
       NULL::text AS status, NULL::boolean AS paused, NULL::text AS reason, e.detail
  FROM call_events e
 WHERE e.agent IS NOT NULL
UNION ALL
SELECT s.at, s.agent, 'state'::text AS source, s.kind, NULL::text AS call_id, s.queue,
       s.status, s.paused, s.reason, s.detail
  FROM agent_state_events s
"""),
    ("cc_first_call_resolution", """
WITH k AS (
    SELECT c.call_id, c.customer_id, c.entered_at, c.outcome, c.queue, c.agent,
           first_value(c.call_id) OVER nxt AS next_call_id,
           first_value(c.entered_at) OVER nxt AS next_call_at,
           first_value(c.outcome) OVER nxt AS next_call_outcome
      FROM calls c
     WHERE c.customer_id IS NOT NULL
    WINDOW nxt AS (PARTITION BY c.customer_id ORDER BY c.entered_at
                   RANGE BETWEEN INTERVAL '1 microsecond' FOLLOWING AND UNBOUNDED FOLLOWING)
)
SELECT
    k.call_id, k.customer_id, cu.name AS customer_name,
    k.entered_at, (k.entered_at AT TIME ZONE 'UTC')::date AS entered_day,
    k.queue, k.agent,
    k.entered_at + INTERVAL '72 hours' AS window_ends_at,
    CASE WHEN k.next_call_at <= k.entered_at + INTERVAL '72 hours' THEN k.next_call_id END AS repeat_call_id,
    CASE WHEN k.next_call_at <= k.entered_at + INTERVAL '72 hours' THEN k.next_call_at END AS repeat_call_at,
    CASE WHEN k.next_call_at <= k.entered_at + INTERVAL '72 hours' THEN k.next_call_outcome END AS repeat_call_outcome,
    CASE WHEN k.next_call_at <= k.entered_at + INTERVAL '72 hours' THEN false
         WHEN now() >= k.entered_at + INTERVAL '72 hours' THEN true END AS resolved
FROM k
LEFT JOIN customers cu ON cu.id = k.customer_id
WHERE k.outcome = 'answered'
"""),
    ("cc_fcr_daily", """
SELECT
    f.entered_day AS day,
    count(*) AS answered_identified,
    count(*) FILTER (WHERE f.resolved) AS resolved,
    count(*) FILTER (WHERE NOT f.resolved) AS repeated,
    count(*) FILTER (WHERE f.resolved IS NULL) AS pending,
    round(100.0 * count(*) FILTER (WHERE f.resolved) / NULLIF(count(f.resolved), 0), 2) AS fcr_pct
FROM cc_first_call_resolution f
GROUP BY f.entered_day
"""),
]


def upgrade() -> None:
    for name, body in VIEWS:
        op.execute(f"CREATE VIEW {name} AS {body}")


def downgrade() -> None:
    for name, _ in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")
