"""NPS reports over ``survey_responses``, in SQL.

The database only counts (answered, promoters, passives, detractors per group); the NPS itself
is ``survey.core.Nps`` so that the figure on a report and the one the shell logs are computed
by one formula. Unanswered surveys (score NULL) are counted in ``responses`` and
``unanswered`` and never enter the NPS: a caller who hung up is not a 0.

Groups: ``queue``, ``agent`` (the PBX interface stored with the response), ``team`` (agent
interface -> ``agent_endpoints`` -> ``team_members``; a response of an agent in two teams counts
in both, once each), ``period`` (``day | week | month`` in the report's time zone) or ``total``.
``queue`` and ``agent`` keep only that queue's / agent's responses, whatever the grouping.

``NPS_COLUMNS`` and ``NpsRow.row(by)`` are the report's row as the API and the CLI show it: the
group under its own name (``queue``, ``agent`` + ``agent_name``, ``team``, ``period``; none for
``total``), then the counts and the percentages (of the answered responses, except
``response_rate``: answered of offered).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from callcenter.survey.core import Nps

By = Literal["queue", "agent", "team", "period", "total"]
Period = Literal["day", "week", "month"]
PERIODS = ("day", "week", "month")
BYS = ("queue", "agent", "team", "period", "total")
NPS_COLUMNS = ("responses", "answered", "unanswered", "promoters", "passives", "detractors", "promoters_pct",
               "passives_pct", "detractors_pct", "nps", "response_rate")


def nps_columns(by: By) -> tuple[str, ...]:
    """The columns of a report grouped ``by``: the group's own column(s), then ``NPS_COLUMNS``."""
    if by not in BYS:
        raise ValueError(f"by must be queue, agent, team, period or total, not {by!r}")
    group: tuple[str, ...] = {"agent": ("agent", "agent_name"), "total": ()}.get(by, (by,))
    return group + NPS_COLUMNS


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


@dataclass(frozen=True, slots=True)
class NpsRow:
    key: str | None  # queue, agent, team name, period start (YYYY-MM-DD), or None for total
    figures: Nps
    name: str | None = None  # by agent: the agent's name (agent_endpoints -> agents), if known

    @property
    def nps(self) -> float | None:
        return self.figures.score

    @property
    def unanswered(self) -> int:
        return self.figures.responses - self.figures.answered

    def to_dict(self) -> dict[str, object]:
        f = self.figures
        return {"key": self.key, "responses": f.responses, "answered": f.answered, "unanswered": self.unanswered,
                "promoters": f.promoters, "passives": f.passives, "detractors": f.detractors,
                "nps": None if f.score is None else round(f.score, 1),
                "response_rate": None if f.response_rate is None else round(f.response_rate, 1)}

    def row(self, by: By) -> dict[str, Any]:
        """The row under the column names of ``nps_columns(by)``. Percentages are of the answered
        responses (``None`` when none was answered: a survey nobody answered is no 0)."""
        f = self.figures
        out: dict[str, Any] = {}
        if by == "agent":
            out.update(agent=self.key, agent_name=self.name)
        elif by != "total":
            out[by] = self.key
        d = self.to_dict()
        out.update({k: d[k] for k in ("responses", "answered", "unanswered", "promoters", "passives", "detractors")})
        out.update(promoters_pct=_pct(f.promoters, f.answered), passives_pct=_pct(f.passives, f.answered),
                   detractors_pct=_pct(f.detractors, f.answered), nps=d["nps"], response_rate=d["response_rate"])
        return out


def _source(by: By, period: Period) -> tuple[str, str]:
    """(key expression, FROM clause) for one grouping."""
    if by == "queue":
        return "s.queue", "survey_responses s"
    if by == "agent":
        return "s.agent", "survey_responses s"
    if by == "period":
        if period not in PERIODS:
            raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {period!r}")
        # The wall-clock date in the report's zone: a day is the zone's day, not UTC's.
        return f"to_char(date_trunc('{period}', s.at AT TIME ZONE :tz), 'YYYY-MM-DD')", "survey_responses s"
    if by == "team":
        # DISTINCT: one agent interface may be listed on several PBXs; a response counts once per team.
        return "s.team", (
            "(SELECT DISTINCT r.id, r.score, r.answered, r.at, r.queue, r.agent, t.name AS team "
            " FROM survey_responses r "
            " JOIN agent_endpoints e ON e.interface = r.agent "
            " JOIN team_members tm ON tm.agent_id = e.agent_id "
            " JOIN teams t ON t.id = tm.team_id) s")
    if by == "total":
        return "NULL::text", "survey_responses s"
    raise ValueError(f"by must be queue, agent, team, period or total, not {by!r}")


async def nps_report(engine: AsyncEngine, start: datetime, end: datetime, *, by: By = "queue",
                     period: Period = "day", tz: str = "UTC", queue: str | None = None,
                     agent: str | None = None) -> list[NpsRow]:
    """NPS per group over the responses stored in ``[start, end)``, ordered by key; ``queue``
    / ``agent`` (PBX interface): only that queue's / agent's responses."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    key, source = _source(by, period)
    params: dict[str, Any] = {"start": start, "end": end, "tz": tz}
    where = "s.at >= :start AND s.at < :end"
    if queue is not None:
        where += " AND s.queue = :queue"
        params["queue"] = queue
    if agent is not None:
        where += " AND s.agent = :agent"
        params["agent"] = agent
    # The agent's name: any agent owning that interface (one, in practice).
    name = ("(SELECT min(a.name) FROM agent_endpoints e JOIN agents a ON a.id = e.agent_id "
            "WHERE e.interface = s.agent)" if by == "agent" else "NULL::text")
    sql = (f"SELECT {key} AS key, {name} AS name, count(*) AS responses, "
           "count(*) FILTER (WHERE s.answered) AS answered, "
           "count(*) FILTER (WHERE s.score >= 9) AS promoters, "
           "count(*) FILTER (WHERE s.score BETWEEN 7 AND 8) AS passives, "
           "count(*) FILTER (WHERE s.score <= 6) AS detractors "
           f"FROM {source} WHERE {where} GROUP BY 1 ORDER BY 1 NULLS LAST")
    async with engine.connect() as conn:
        rows = (await conn.execute(text(sql), params)).all()
    return [NpsRow(r.key, Nps(r.responses, r.answered, r.promoters, r.passives, r.detractors), r.name)
            for r in rows]
