"""Callback figures in SQL: the same figures as ``callbacks.core.figures`` (requested, completed,
completed within the deadline, attempts per success, failed, expired, still open), grouped by
the period the request was filed in and/or its queue.

A request belongs to the period of its ``created_at``: "of the callbacks promised in March, how
many were kept", even when the call back happened in April. The deadline is ``deadline_at``,
else ``created_at + policy.deadline`` (``CallbackRequest.deadline``). Attempts per success are
the attempts of the completed requests over their number (what reaching a customer costs);
``attempts`` is every attempt made for the group's requests.

``callback_columns(by)`` and ``CallbackRow.row(by)`` are the report's row as the API and the CLI
show it: ``period`` and/or ``queue`` as grouped, then the figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from callcenter.callbacks.core import CallbackPolicy

By = Literal["period", "queue", "period_queue", "total"]
Period = Literal["day", "week", "month"]
PERIODS = ("day", "week", "month")
BYS = ("period", "queue", "period_queue", "total")
CALLBACK_COLUMNS = ("requested", "completed", "within_deadline", "within_deadline_pct", "attempts",
                    "attempts_per_success", "failed", "expired", "open")


def callback_columns(by: By) -> tuple[str, ...]:
    if by not in BYS:
        raise ValueError(f"by must be period, queue, period_queue or total, not {by!r}")
    group = {"period": ("period",), "queue": ("queue",), "period_queue": ("period", "queue")}.get(by, ())
    return group + CALLBACK_COLUMNS


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

    def row(self, by: By) -> dict[str, Any]:
        """The row under the names of ``callback_columns(by)`` (ratios rounded to 2 decimals)."""
        aps, pct = self.attempts_per_success, self.within_deadline_pct
        values: dict[str, Any] = {
            "period": self.period, "queue": self.queue, "requested": self.requested, "completed": self.completed,
            "within_deadline": self.within_deadline, "within_deadline_pct": None if pct is None else round(pct, 2),
            "attempts": self.attempts, "attempts_per_success": None if aps is None else round(aps, 2),
            "failed": self.failed, "expired": self.expired, "open": self.open}
        return {k: values[k] for k in callback_columns(by)}


async def callback_report(engine: AsyncEngine, start: datetime, end: datetime, *, by: By = "period",
                          period: Period = "day", tz: str = "UTC",
                          policy: CallbackPolicy | None = None, queue: str | None = None) -> list[CallbackRow]:
    """Requests filed in ``[start, end)`` (``queue``: only that queue's), grouped by ``by``,
    ordered by period then queue."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {period!r}")
    if by not in BYS:
        raise ValueError(f"by must be period, queue, period_queue or total, not {by!r}")
    policy = policy or CallbackPolicy()
    per = (f"to_char(date_trunc('{period}', c.created_at AT TIME ZONE :tz), 'YYYY-MM-DD')"
           if by in ("period", "period_queue") else "NULL::text")
    group_queue = "c.queue" if by in ("queue", "period_queue") else "NULL::text"
    only = " AND c.queue = :queue" if queue is not None else ""
    sql = (
        f"SELECT {per} AS period, {group_queue} AS queue, count(*) AS requested, "
        "count(*) FILTER (WHERE c.status = 'completed') AS completed, "
        "count(*) FILTER (WHERE c.status = 'completed' AND c.closed_at "
        "  <= coalesce(c.deadline_at, c.created_at + :deadline)) AS within_deadline, "
        "coalesce(sum(c.attempts), 0) AS attempts, "
        "coalesce(sum(c.attempts) FILTER (WHERE c.status = 'completed'), 0) AS attempts_of_completed, "
        "count(*) FILTER (WHERE c.status = 'failed') AS failed, "
        "count(*) FILTER (WHERE c.status = 'expired') AS expired, "
        "count(*) FILTER (WHERE c.status NOT IN ('completed', 'failed', 'canceled', 'expired')) AS open "
        f"FROM callbacks c WHERE c.created_at >= :start AND c.created_at < :end{only} "
        "GROUP BY 1, 2 ORDER BY 1 NULLS LAST, 2 NULLS LAST")
    async with engine.connect() as conn:
        params: dict[str, Any] = {"start": start, "end": end, "tz": tz, "deadline": policy.deadline}
        if queue is not None:
            params["queue"] = queue
        rows = (await conn.execute(text(sql), params)).all()
    return [CallbackRow(r.period, r.queue, r.requested, r.completed, r.within_deadline, int(r.attempts),
                        int(r.attempts_of_completed), r.failed, r.expired, r.open) for r in rows]
