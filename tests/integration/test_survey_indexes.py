"""The survey indexes of migration 0006 are the ones the real queries use: the customer card's
newest scores read ``ix_survey_responses_customer_at`` in order (no sort), the NPS report's
period reads ``ix_survey_responses_at``. The plans are those of the statements the code sends
(captured as they are executed), on a table large enough that a sequential scan would be the
planner's choice without the indexes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, text

from callcenter.api.crm import _SURVEYS_SQL
from callcenter.survey.reports import nps_report

DAY0 = datetime(2026, 8, 1, tzinfo=UTC)
DAYS = 120
ROWS = 24_000
CUSTOMERS = 2_000


@pytest.fixture
async def engine(database):
    async with database.engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO customers (id, name) SELECT i, 'customer ' || i FROM generate_series(1, :n) i"),
            {"n": CUSTOMERS})
        # every customer ~12 responses spread over 120 days; a third not answered (score NULL)
        await conn.execute(text(
            "INSERT INTO survey_responses (call_id, customer_id, agent, queue, score, answered, at) "
            "SELECT 'c' || i, 1 + i % :customers, 'PJSIP/' || (1000 + i % 40), "
            "       CASE WHEN i % 2 = 0 THEN 'sales' ELSE 'support' END, "
            "       CASE WHEN i % 3 = 0 THEN NULL ELSE i % 11 END, i % 3 <> 0, "
            "       CAST(:day0 AS timestamptz) + (i * (:days * 86400.0 / :rows)) * interval '1 second' "
            "  FROM generate_series(1, :rows) i"),
            {"customers": CUSTOMERS, "rows": ROWS, "days": DAYS, "day0": DAY0})
        await conn.execute(text("ANALYZE survey_responses"))
    return database.engine


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    out = [plan]
    for child in plan.get("Plans", ()):
        out.extend(_nodes(child))
    return out


async def _explain(engine: Any, run: Any) -> list[dict[str, Any]]:
    """The plan nodes of the one statement ``run(engine)`` sends to survey_responses, as the
    server plans it with the same parameters."""
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if "survey_responses" in statement:
            sent.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        await run(engine)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    assert len(sent) == 1, sent
    statement, params = sent[0]
    async with engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        plan = await raw.fetchval("EXPLAIN (FORMAT JSON) " + statement, *params)
    if isinstance(plan, str):  # no json codec on this connection
        plan = json.loads(plan)
    return _nodes(plan[0]["Plan"])


def _uses(nodes: list[dict[str, Any]], index: str) -> bool:
    return any(n.get("Index Name") == index for n in nodes)


async def test_the_customer_card_reads_the_newest_scores_in_index_order(engine) -> None:
    async def card(engine: Any) -> None:
        async with engine.connect() as conn:
            rows = (await conn.execute(text(_SURVEYS_SQL), {"id": 42, "n": 10})).all()
        assert len(rows) == 10 and [r.at for r in rows] == sorted((r.at for r in rows), reverse=True)

    nodes = await _explain(engine, card)
    assert _uses(nodes, "ix_survey_responses_customer_at"), nodes
    assert not any("Sort" in n["Node Type"] for n in nodes), nodes  # LIMIT stops after n index entries
    assert not any(n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "survey_responses" for n in nodes)


@pytest.mark.parametrize("by", ["queue", "period", "total"])
async def test_an_nps_report_of_a_few_days_reads_the_period_from_the_at_index(engine, by: str) -> None:
    start = DAY0 + timedelta(days=30)

    async def report(engine: Any) -> None:
        rows = await nps_report(engine, start, start + timedelta(days=3), by=by)
        assert sum(r.figures.responses for r in rows) == pytest.approx(3 * ROWS / DAYS, abs=2)

    nodes = await _explain(engine, report)
    assert _uses(nodes, "ix_survey_responses_at"), nodes
    assert not any(n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "survey_responses" for n in nodes)
