"""Callback figures in SQL against hand-computed figures on a few inserted requests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from callcenter.callbacks.core import CallbackPolicy
from callcenter.callbacks.reports import callback_report


def _t(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


START, END = _t(1, 0), _t(4, 0)

# (queue, created, status, attempts, closed, outcome, deadline_at); default deadline: created + 2 h
ROWS = [
    ("sales", _t(2, 9), "completed", 1, _t(2, 9, 30), "completed", None),  # within
    ("sales", _t(2, 9), "completed", 4, _t(2, 12), "completed", None),  # 1 h late
    ("support", _t(2, 10), "completed", 2, _t(2, 10, 30), "completed", _t(2, 10, 15)),  # late: own deadline
    ("sales", _t(2, 10), "failed", 4, _t(2, 11), "attempts_exhausted", None),
    ("support", _t(3, 9), "expired", 2, _t(3, 11), "deadline_passed", None),
    ("sales", _t(3, 9), "open", 1, None, None, None),
    ("sales", _t(3, 9), "completed", 2, _t(3, 10), "completed", _t(3, 12)),  # within
    ("sales", _t(5, 9), "completed", 1, _t(5, 9, 5), "completed", None),  # outside the period
]


@pytest.fixture
async def engine(database):
    async with database.engine.begin() as conn:
        for queue, created, status, attempts, closed, outcome, deadline in ROWS:
            await conn.execute(text(
                "INSERT INTO callbacks (phone, source, queue, status, due_at, created_at, attempts, closed_at, "
                "outcome, deadline_at) VALUES ('+12025550100', 'api', :q, :s, :c, :c, :a, :cl, :o, :d)"),
                {"q": queue, "s": status, "c": created, "a": attempts, "cl": closed, "o": outcome, "d": deadline})
    return database.engine


def _table(rows):
    return {(r.period, r.queue): (r.requested, r.completed, r.within_deadline, r.attempts,
                                  r.attempts_per_success, r.failed, r.expired, r.open) for r in rows}


async def test_per_day(engine) -> None:
    rows = await callback_report(engine, START, END, by="period")
    assert _table(rows) == {
        # 2nd: attempts 1+4+2+4; of the 3 completed 1+4+2 = 7 -> 7/3 per success; within: only the first
        ("2026-11-02", None): (4, 3, 1, 11, 7 / 3, 1, 0, 0),
        ("2026-11-03", None): (3, 1, 1, 5, 2.0, 0, 1, 1),
    }
    assert rows[0].within_deadline_pct == 25.0


async def test_per_queue(engine) -> None:
    assert _table(await callback_report(engine, START, END, by="queue")) == {
        (None, "sales"): (5, 3, 2, 12, 7 / 3, 1, 0, 1),
        (None, "support"): (2, 1, 0, 4, 2.0, 0, 1, 0),
    }


async def test_per_day_and_queue_and_total(engine) -> None:
    assert _table(await callback_report(engine, START, END, by="period_queue")) == {
        ("2026-11-02", "sales"): (3, 2, 1, 9, 2.5, 1, 0, 0),
        ("2026-11-02", "support"): (1, 1, 0, 2, 2.0, 0, 0, 0),
        ("2026-11-03", "sales"): (2, 1, 1, 3, 2.0, 0, 0, 1),
        ("2026-11-03", "support"): (1, 0, 0, 2, None, 0, 1, 0),
    }
    assert _table(await callback_report(engine, START, END, by="total")) == {
        (None, None): (7, 4, 2, 16, 9 / 4, 1, 1, 1)}


async def test_policy_deadline_applies_to_requests_without_their_own(engine) -> None:
    # with 4 h the second request (closed 3 h after filing) is in time; the third keeps its own deadline
    rows = await callback_report(engine, START, END, by="total", policy=CallbackPolicy(deadline=timedelta(hours=4)))
    assert rows[0].within_deadline == 3


async def test_bad_arguments_are_refused(engine) -> None:
    with pytest.raises(ValueError):
        await callback_report(engine, START, END, by="agent")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await callback_report(engine, START, END, period="year")  # type: ignore[arg-type]


async def test_queue_filter_and_named_columns(engine) -> None:
    from callcenter.callbacks.reports import callback_columns

    rows = await callback_report(engine, START, END, by="period", queue="support")
    assert _table(rows) == {
        ("2026-11-02", None): (1, 1, 0, 2, 2.0, 0, 0, 0),
        ("2026-11-03", None): (1, 0, 0, 2, None, 0, 1, 0),
    }
    first = rows[0].row("period")
    assert list(first) == list(callback_columns("period")) and "queue" not in first
    assert (first["period"], first["within_deadline_pct"], first["attempts_per_success"]) == ("2026-11-02", 0.0, 2.0)
    (total,) = await callback_report(engine, START, END, by="total")
    t = total.row("total")
    assert list(t) == list(callback_columns("total"))
    # 2 of 7 in time; 9 attempts over 4 completed
    assert (t["requested"], t["within_deadline"], t["within_deadline_pct"], t["attempts_per_success"]) == (
        7, 2, 28.57, 2.25)
    both = (await callback_report(engine, START, END, by="period_queue"))[0].row("period_queue")
    assert (both["period"], both["queue"], both["attempts_per_success"]) == ("2026-11-02", "sales", 2.5)
