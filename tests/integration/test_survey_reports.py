"""NPS reports in SQL against hand-computed figures on a few inserted responses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from callcenter.survey.reports import nps_report

D2 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
D3 = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
LATE_D2 = datetime(2026, 11, 2, 23, 30, tzinfo=UTC)  # already 3 Nov in Tokyo (+9)
START, END = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 4, tzinfo=UTC)

# (call, queue, agent, score, at); NULL score = not answered
ROWS = [
    ("r1", "sales", "PJSIP/1001", 10, D2),
    ("r2", "sales", "PJSIP/1001", 9, D2),
    ("r3", "sales", "PJSIP/1002", 7, D2),
    ("r4", "sales", "PJSIP/1002", 3, D2),
    ("r5", "sales", "PJSIP/1001", None, LATE_D2),
    ("r6", "support", "PJSIP/1003", 0, D3),
    ("r7", "support", "PJSIP/1003", 8, D3),
    ("r8", "support", "PJSIP/1001", None, D3),
    ("r9", "support", "PJSIP/1001", None, D3),
    ("r10", "sales", "PJSIP/1001", 10, datetime(2026, 11, 5, tzinfo=UTC)),  # outside the period
]


@pytest.fixture
async def engine(database):
    async with database.engine.begin() as conn:
        from sqlalchemy import text

        for call, queue, agent, score, at in ROWS:
            await conn.execute(text(
                "INSERT INTO survey_responses (call_id, agent, queue, score, answered, at) "
                "VALUES (:c, :a, :q, :s, :ans, :at)"),
                {"c": call, "a": agent, "q": queue, "s": score, "ans": score is not None, "at": at})
        # Alice (1001) has an endpoint on two PBXs: her responses must still count once.
        # Bob (1002) is in both teams.
        await conn.execute(text("INSERT INTO agents (id, name) VALUES (1, 'Alice'), (2, 'Bob'), (3, 'Carol')"))
        await conn.execute(text(
            "INSERT INTO agent_endpoints (agent_id, pbx, interface) VALUES "
            "(1, 'ast1', 'PJSIP/1001'), (1, 'ast2', 'PJSIP/1001'), (2, 'ast1', 'PJSIP/1002'), "
            "(3, 'ast1', 'PJSIP/1003')"))
        await conn.execute(text("INSERT INTO teams (id, name) VALUES (1, 'north'), (2, 'south')"))
        await conn.execute(text("INSERT INTO team_members (team_id, agent_id) VALUES (1, 1), (1, 2), (2, 2), (2, 3)"))
    return database.engine


def _table(rows):
    return {r.key: (r.figures.responses, r.figures.answered, r.unanswered, r.figures.promoters,
                    r.figures.passives, r.figures.detractors, r.nps) for r in rows}


async def test_nps_per_queue_unanswered_counted_apart(engine) -> None:
    # sales: 10, 9, 7, 3 answered + 1 not: (2 - 1) / 4 = +25; support: 0, 8 + 2 not: (0 - 1) / 2 = -50
    assert _table(await nps_report(engine, START, END, by="queue")) == {
        "sales": (5, 4, 1, 2, 1, 1, 25.0),
        "support": (4, 2, 2, 0, 1, 1, -50.0),
    }


async def test_nps_per_agent(engine) -> None:
    assert _table(await nps_report(engine, START, END, by="agent")) == {
        "PJSIP/1001": (5, 2, 3, 2, 0, 0, 100.0),
        "PJSIP/1002": (2, 2, 0, 0, 1, 1, -50.0),
        "PJSIP/1003": (2, 2, 0, 0, 1, 1, -50.0),
    }


async def test_nps_per_team_counts_an_agent_with_two_endpoints_once(engine) -> None:
    # north = Alice + Bob: r1 r2 r5 r8 r9 r3 r4; south = Bob + Carol: r3 r4 r6 r7
    assert _table(await nps_report(engine, START, END, by="team")) == {
        "north": (7, 4, 3, 2, 1, 1, 25.0),
        "south": (4, 4, 0, 0, 2, 2, -50.0),
    }


async def test_nps_per_day_in_the_reports_time_zone(engine) -> None:
    assert _table(await nps_report(engine, START, END, by="period", period="day")) == {
        "2026-11-02": (5, 4, 1, 2, 1, 1, 25.0),
        "2026-11-03": (4, 2, 2, 0, 1, 1, -50.0),
    }
    # r5 (23:30 UTC) is on the 3rd in Tokyo
    assert _table(await nps_report(engine, START, END, by="period", period="day", tz="Asia/Tokyo")) == {
        "2026-11-02": (4, 4, 0, 2, 1, 1, 25.0),
        "2026-11-03": (5, 2, 3, 0, 1, 1, -50.0),
    }
    (month,) = await nps_report(engine, START, END, by="period", period="month")
    assert month.key == "2026-11-01" and month.figures.responses == 9


async def test_total_nps_zero_is_not_none_and_no_answers_is_none(engine) -> None:
    (total,) = await nps_report(engine, START, END, by="total")
    # 2 promoters, 2 passives, 2 detractors over 6 answered: 0, a real score
    assert _table([total]) == {None: (9, 6, 3, 2, 2, 2, 0.0)}
    assert total.to_dict()["response_rate"] == 66.7
    only_unanswered = await nps_report(engine, datetime(2026, 11, 2, 23, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC),
                                       by="total")
    assert only_unanswered[0].nps is None and only_unanswered[0].unanswered == 1


async def test_bad_arguments_are_refused(engine) -> None:
    with pytest.raises(ValueError):
        await nps_report(engine, START, END, by="period", period="fortnight")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await nps_report(engine, datetime(2026, 11, 1), END)


async def test_queue_and_agent_filters_apply_to_every_grouping(engine) -> None:
    # sales only: per agent 1001 = 10, 9, (not answered) -> +100; 1002 = 7, 3 -> -50
    assert _table(await nps_report(engine, START, END, by="agent", queue="sales")) == {
        "PJSIP/1001": (3, 2, 1, 2, 0, 0, 100.0),
        "PJSIP/1002": (2, 2, 0, 0, 1, 1, -50.0),
    }
    # Alice (1001) only, per queue: sales r1 r2 r5; support r8 r9 (both not answered -> no NPS)
    assert _table(await nps_report(engine, START, END, by="queue", agent="PJSIP/1001")) == {
        "sales": (3, 2, 1, 2, 0, 0, 100.0),
        "support": (2, 0, 2, 0, 0, 0, None),
    }
    # per team, support only: north (Alice r8 r9) has no answer; south (Carol r6 r7) 0 and 8
    assert _table(await nps_report(engine, START, END, by="team", queue="support")) == {
        "north": (2, 0, 2, 0, 0, 0, None),
        "south": (2, 2, 0, 0, 1, 1, -50.0),
    }
    assert await nps_report(engine, START, END, by="total", queue="nowhere") == []


async def test_rows_name_their_columns(engine) -> None:
    from callcenter.survey.reports import nps_columns

    rows = await nps_report(engine, START, END, by="agent")
    alice = rows[0].row("agent")
    assert list(alice) == list(nps_columns("agent"))
    assert (alice["agent"], alice["agent_name"]) == ("PJSIP/1001", "Alice")  # one name, not one per endpoint
    assert (alice["promoters_pct"], alice["detractors_pct"], alice["nps"], alice["response_rate"]) == (
        100.0, 0.0, 100.0, 40.0)
    (total,) = await nps_report(engine, START, END, by="total")
    t = total.row("total")
    assert list(t) == list(nps_columns("total")) and "agent" not in t
    # 2 of 6 promoters, 2 of 6 detractors: NPS = 33.3 - 33.3 = 0
    assert (t["promoters_pct"], t["passives_pct"], t["detractors_pct"], t["nps"]) == (33.3, 33.3, 33.3, 0.0)
    (quiet,) = await nps_report(engine, datetime(2026, 11, 2, 23, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC),
                                by="queue")
    q = quiet.row("queue")
    assert (q["queue"], q["unanswered"], q["nps"], q["promoters_pct"], q["detractors_pct"]) == (
        "sales", 1, None, None, None)
    with pytest.raises(ValueError):
        nps_columns("customer")  # type: ignore[arg-type]
