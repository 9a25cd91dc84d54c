"""Callback figures in SQL: the same figures as ``callbacks.core.figures`` (requested, completed,
completed within the deadline, attempts per success, failed, expired, still open), grouped by
the period the request was filed in and/or its queue.

A request belongs to the period of its ``created_at``: "of the callbacks promised in March, how
many were kept", even when the call back happened in April. The deadline is ``deadline_at``,
else ``created_at + policy.deadline`` (``CallbackRequest.deadline``). Attempts per success are
the attempts of the completed requests over their number (what reaching a customer costs);
``attempts`` is every attempt made for the group's requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from callcenter.callbacks.core import CallbackPolicy

By = Literal["period", "queue", "period_queue", "total"]
Period = Literal["day", "week", "month"]
PERIODS = ("day", "week", "month")


@dataclass(frozen=True, slots=True)
class CallbackRow:
    period: str | None  # period start YYYY-MM-DD in the report's zone
    queue: str | None
    requested: int
    completed: int
    within_deadline: int
    attempts: int
    attempts_of_completed: int
    failed: int
    expired: int
    open: int

    @property
    def attempts_per_success(self) -> float | None:
        return self.attempts_of_completed / self.completed if self.completed else None

    @property
    def within_deadline_pct(self) -> float | None:
        return 100.0 * self.within_deadline / self.requested if self.requested else None


async def callback_report(engine: AsyncEngine, start: datetime, end: datetime, *, by: By = "period",
                          period: Period = "day", tz: str = "UTC",
                          policy: CallbackPolicy | None = None) -> list[CallbackRow]:
    """Requests filed in ``[start, end)``, grouped by ``by``, ordered by period then queue."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {period!r}")
    if by not in ("period", "queue", "period_queue", "total"):
        raise ValueError(f"by must be period, queue, period_queue or total, not {by!r}")
    policy = policy or CallbackPolicy()
    per = (f"to_char(date_trunc('{period}', c.created_at AT TIME ZONE :tz), 'YYYY-MM-DD')"
           if by in ("period", "period_queue") else "NULL::text")
    queue = "c.queue" if by in ("queue", "period_queue") else "NULL::text"
    sql = (
        f"SELECT {per} AS period, {queue} AS queue, count(*) AS requested, "
        "count(*) FILTER (WHERE c.status = 'completed') AS completed, "
        "count(*) FILTER (WHERE c.status = 'completed' AND c.closed_at "
        "  <= coalesce(c.deadline_at, c.created_at + :deadline)) AS within_deadline, "
        "coalesce(sum(c.attempts), 0) AS attempts, "
        "coalesce(sum(c.attempts) FILTER (WHERE c.status = 'completed'), 0) AS attempts_of_completed, "
        "count(*) FILTER (WHERE c.status = 'failed') AS failed, "
        "count(*) FILTER (WHERE c.status = 'expired') AS expired, "
        "count(*) FILTER (WHERE c.status NOT IN ('completed', 'failed', 'canceled', 'expired')) AS open "
        "FROM callbacks c WHERE c.created_at >= :start AND c.created_at < :end "
        "GROUP BY 1, 2 ORDER BY 1 NULLS LAST, 2 NULLS LAST")
    async with engine.connect() as conn:
        rows = (await conn.execute(text(sql), {"start": start, "end": end, "tz": tz,
                                               "deadline": policy.deadline})).all()
    return [CallbackRow(r.period, r.queue, r.requested, r.completed, r.within_deadline, int(r.attempts),
                        int(r.attempts_of_completed), r.failed, r.expired, r.open) for r in rows]
