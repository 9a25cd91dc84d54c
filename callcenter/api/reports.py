"""Analyst reports over HTTP: the ``callcenter report`` functions as JSON or CSV.

Reports are for admins and analysts only (supervisors read live state of their teams, not the
history): the NPS and callback reports too.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from callcenter.analytics import reports as rep
from callcenter.api.models import AbandonsQuery, AgentsReportQuery, CallbacksReportQuery, KpiQuery, NpsReportQuery
from callcenter.api.problems import ApiProblem
from callcenter.api.router import Call, route
from callcenter.callbacks.core import CallbackPolicy
from callcenter.callbacks.reports import callback_columns, callback_report
from callcenter.survey.reports import nps_columns, nps_report

ANALYSTS = {"admin", "analyst"}
FORMATS = ("application/json", "text/csv")


def _wants_csv(c: Call) -> bool:
    if c.query.format is not None:
        return bool(c.query.format == "csv")
    accept = c.request.headers.get("Accept", "")
    return "text/csv" in accept and "application/json" not in accept


def _render(c: Call, name: str, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> Any:
    if _wants_csv(c):
        return web.Response(text=rep.format_rows(rows, "csv", columns), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    q = c.query
    return {"report": name, "from": q.start.isoformat(), "to": q.end.isoformat(), "tz": q.tz,
            "columns": list(columns), "rows": [{k: r.get(k) for k in columns} for r in rows]}


def _invalid(exc: ValueError) -> ApiProblem:
    return ApiProblem(422, str(exc), kind="validation-error",
                      errors=[{"in": "query", "path": "", "pointer": "#/", "detail": str(exc), "type": "value_error"}])


async def _guard(coro: Any) -> Any:
    try:
        return await coro
    except ValueError as exc:  # bad time zone, period end before start...
        raise _invalid(exc) from None


def _period(c: Call) -> tuple[datetime, datetime]:
    """The query's period as aware datetimes (offset-less times are in ``tz``); 422 for an
    unknown zone or an empty period."""
    try:
        start, end, _ = rep._period(c.query.start, c.query.end, c.query.tz)
    except ValueError as exc:
        raise _invalid(exc) from None
    return start, end


@route("GET", "/api/v1/reports/kpi", roles=ANALYSTS, query=KpiQuery, produces=FORMATS, tag="reports",
       summary="Answer rate, abandons by stage, service level, ASA, AHT (JSON or CSV)")
async def report_kpi(c: Call) -> Any:
    q: KpiQuery = c.query
    rows = await _guard(rep.kpi(c.ctx.database, q.start, q.end, queue=q.queue, by=q.by, sl_seconds=q.sl_seconds,
                                short_abandon_s=q.short_abandon_s, tz=q.tz))
    return _render(c, "kpi", rows, rep.KPI_COLUMNS)


@route("GET", "/api/v1/reports/abandons", roles=ANALYSTS, query=AbandonsQuery, produces=FORMATS, tag="reports",
       summary="Abandoned calls, or (by_node) where callers are lost")
async def report_abandons(c: Call) -> Any:
    q: AbandonsQuery = c.query
    if q.by_node:
        rows = await _guard(rep.abandons_by_node(c.ctx.database, q.start, q.end, queue=q.queue,
                                                 short_abandon_s=q.short_abandon_s, tz=q.tz))
        return _render(c, "abandons_by_node", rows, rep.BY_NODE_COLUMNS)
    rows = await _guard(rep.abandons(c.ctx.database, q.start, q.end, queue=q.queue, stages=q.stage,
                                     sl_seconds=q.sl_seconds, short_abandon_s=q.short_abandon_s,
                                     include_short=not q.exclude_short, limit=q.limit, tz=q.tz))
    return _render(c, "abandons", rows, rep.ABANDON_COLUMNS)


@route("GET", "/api/v1/reports/agents", roles=ANALYSTS, query=AgentsReportQuery, produces=FORMATS, tag="reports",
       summary="Per agent: rings, answers, missed rings, talk time, pauses by reason")
async def report_agents(c: Call) -> Any:
    q: AgentsReportQuery = c.query
    rows = await _guard(rep.agents(c.ctx.database, q.start, q.end, queue=q.queue, agent=q.agent, by=q.by, tz=q.tz))
    return _render(c, "agents", rows, rep.AGENT_COLUMNS)


@route("GET", "/api/v1/reports/nps", roles=ANALYSTS, query=NpsReportQuery, produces=FORMATS, tag="reports",
       summary="Post-call survey NPS per queue, agent, team or period (JSON or CSV)")
async def report_nps(c: Call) -> Any:
    """NPS = % promoters (9-10) - % detractors (0-6) of the answered surveys of the period;
    ``responses`` counts every offered survey, ``unanswered`` those the caller did not answer
    (never counted as 0); ``nps`` is null when nothing was answered."""
    q: NpsReportQuery = c.query
    start, end = _period(c)
    rows = await _guard(nps_report(c.ctx.database.engine, start, end, by=q.by, period=q.period, tz=q.tz,
                                   queue=q.queue, agent=q.agent))
    return _render(c, "nps", [r.row(q.by) for r in rows], nps_columns(q.by))


@route("GET", "/api/v1/reports/callbacks", roles=ANALYSTS, query=CallbacksReportQuery, produces=FORMATS,
       tag="reports", summary="Callbacks requested, completed, within the deadline, attempts per success")
async def report_callbacks(c: Call) -> Any:
    """Requests filed in the period (a request belongs to the period of its filing), by period,
    queue, both, or in total. ``within_deadline``: completed by their own deadline, else by
    filing time + ``deadline_minutes``; ``attempts_per_success``: attempts of the completed
    requests per completed request."""
    q: CallbacksReportQuery = c.query
    start, end = _period(c)
    policy = CallbackPolicy(deadline=timedelta(minutes=q.deadline_minutes)) if q.deadline_minutes else None
    rows = await _guard(callback_report(c.ctx.database.engine, start, end, by=q.by, period=q.period, tz=q.tz,
                                        policy=policy, queue=q.queue))
    return _render(c, "callbacks", [r.row(q.by) for r in rows], callback_columns(q.by))
