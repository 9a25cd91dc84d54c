"""Analyst reports over HTTP: the ``callcenter report`` functions as JSON or CSV."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from callcenter.analytics import reports as rep
from callcenter.api.models import AbandonsQuery, AgentsReportQuery, KpiQuery
from callcenter.api.problems import ApiProblem
from callcenter.api.router import Call, route

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


async def _guard(coro: Any) -> Any:
    try:
        return await coro
    except ValueError as exc:  # bad time zone, period end before start...
        raise ApiProblem(422, str(exc), kind="validation-error",
                         errors=[{"in": "query", "path": "", "pointer": "#/", "detail": str(exc),
                                  "type": "value_error"}]) from None


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
