"""NPS reports over ``survey_responses``, in SQL.

The database only counts (answered, promoters, passives, detractors per group); the NPS itself
is ``survey.core.Nps`` so that the figure on a report and the one the shell logs are computed
by one formula. Unanswered surveys (score NULL) are counted in ``responses`` and
``unanswered`` and never enter the NPS: a caller who hung up is not a 0.

Groups: ``queue``, ``agent`` (the PBX interface stored with the response), ``team`` (agent
interface -> ``agent_endpoints`` -> ``team_members``; a response of an agent in two teams counts
in both, once each), ``period`` (``day | week | month`` in the report's time zone) or ``total``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from callcenter.survey.core import Nps

By = Literal["queue", "agent", "team", "period", "total"]
Period = Literal["day", "week", "month"]
PERIODS = ("day", "week", "month")


@dataclass(frozen=True, slots=True)
class NpsRow:
    key: str | None  # queue, agent, team name, period start (YYYY-MM-DD), or None for total
    figures: Nps

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
            "(SELECT DISTINCT r.id, r.score, r.answered, r.at, t.name AS team FROM survey_responses r "
            " JOIN agent_endpoints e ON e.interface = r.agent "
            " JOIN team_members tm ON tm.agent_id = e.agent_id "
            " JOIN teams t ON t.id = tm.team_id) s")
    if by == "total":
        return "NULL::text", "survey_responses s"
    raise ValueError(f"by must be queue, agent, team, period or total, not {by!r}")


async def nps_report(engine: AsyncEngine, start: datetime, end: datetime, *, by: By = "queue",
                     period: Period = "day", tz: str = "UTC") -> list[NpsRow]:
    """NPS per group over the responses stored in ``[start, end)``, ordered by key."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    key, source = _source(by, period)
    sql = (f"SELECT {key} AS key, count(*) AS responses, count(*) FILTER (WHERE s.answered) AS answered, "
           "count(*) FILTER (WHERE s.score >= 9) AS promoters, "
           "count(*) FILTER (WHERE s.score BETWEEN 7 AND 8) AS passives, "
           "count(*) FILTER (WHERE s.score <= 6) AS detractors "
           f"FROM {source} WHERE s.at >= :start AND s.at < :end GROUP BY 1 ORDER BY 1 NULLS LAST")
    async with engine.connect() as conn:
        rows = (await conn.execute(text(sql), {"start": start, "end": end, "tz": tz})).all()
    return [NpsRow(r.key, Nps(r.responses, r.answered, r.promoters, r.passives, r.detractors)) for r in rows]
