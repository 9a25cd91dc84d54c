"""The recorder loses nothing: database outages (a real server stopped and started), a daemon
restart with rows still in the journal, a torn journal line, replays that never duplicate."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from callcenter.analytics.attribution import CallSummary
from callcenter.calls.journey import JourneyRecord
from callcenter.domain.events import AgentPauseChanged
from callcenter.storage import db as dbmod
from callcenter.storage import recorder as recorder_mod
from callcenter.storage.recorder import Recorder, record_row, write_rows

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def rec(call_id: str, seq: int, kind: str = "queue_join", queue: str | None = "sales") -> JourneyRecord:
    at = T0 + timedelta(seconds=seq)
    return JourneyRecord(call_id=call_id, seq=seq, kind=kind, pbx_at=at, controller_at=at, queue=queue,
                         detail={"position": seq, "name": "Jürgen"})


def summary(call_id: str, *, outcome: str = "answered", customer_id: int | None = None,
            entered: datetime = T0) -> CallSummary:
    return CallSummary(
        call_id=call_id, pbx="ast1", outcome=outcome,  # type: ignore[arg-type]
        abandon_stage="queue" if outcome == "abandoned" else None,  # type: ignore[arg-type]
        abandon_node="sales" if outcome == "abandoned" else None,
        customer_id=customer_id, entered_at=entered, ended_at=entered + timedelta(seconds=30), queue="sales",
    )


async def count(dsn: str, sql: str) -> int:
    conn = await asyncpg.connect(**dbmod.asyncpg_dsn(dsn))
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def recorder(dsn: str, tmp_path, **kw) -> Recorder:
    kw.setdefault("flush_interval", 0.01)
    kw.setdefault("db_timeout", 2.0)
    kw.setdefault("retry_max", 0.3)
    return Recorder(dbmod.asyncpg_dsn(dsn), tmp_path / "journal", **kw)


async def test_rows_reach_the_database_and_the_journal_is_cleaned(db_dsn, tmp_path) -> None:
    r = recorder(db_dsn, tmp_path)
    await r.start()
    r.submit_records([rec("c1", i) for i in range(1, 6)], pbx="ast1")
    r.submit_summary(summary("c1"))
    assert r.submit_agent_event(AgentPauseChanged(pbx="ast1", call_id=None, at=T0, agent="PJSIP/1001",
                                                  paused=True, reason="lunch"))
    await r.drain()
    await r.close()
    assert await count(db_dsn, "SELECT count(*) FROM call_events WHERE call_id = 'c1'") == 5
    assert await count(db_dsn, "SELECT count(*) FROM calls WHERE outcome = 'answered'") == 1
    assert await count(db_dsn, "SELECT count(*) FROM agent_state_events WHERE reason = 'lunch'") == 1
    assert await count(db_dsn, "SELECT count(*) FROM call_events WHERE detail->>'name' = 'Jürgen'") == 5
    assert list((tmp_path / "journal").glob("*.jsonl")) == []


async def test_the_recorder_plans_each_batch_for_the_tables_as_they_are_now(db_dsn, tmp_path) -> None:
    """Its statements run for the connection's life while the tables grow from nothing: a plan
    cached while ``calls`` was empty made the first-call-resolution statement 40x slower
    (routing bench). The connection plans every execution and names itself to the DBA."""
    r = recorder(db_dsn, tmp_path)
    await r.start()
    r.submit_summary(summary("c1"))
    await r.drain()
    conn = await r._db()
    assert await conn.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
    assert await count(db_dsn, "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                               "'callcenter-recorder'") == 1
    await r.close()


async def test_a_replayed_write_never_duplicates(db_dsn, tmp_path) -> None:
    r = recorder(db_dsn, tmp_path)
    await r.start()
    for _ in range(3):
        r.submit_records([rec("c2", i) for i in range(1, 4)], pbx="ast1")
        r.submit_summary(summary("c2"))
        await r.drain()
    await r.close()
    assert await count(db_dsn, "SELECT count(*) FROM call_events WHERE call_id = 'c2'") == 3
    assert await count(db_dsn, "SELECT count(*) FROM calls") == 1


async def test_nothing_is_lost_while_postgresql_is_stopped(pg_server, db_dsn, tmp_path) -> None:
    if pg_server.embedded is None:
        pytest.fail("this test needs the embedded server (unset CALLCENTER_TEST_DSN)")
    r = recorder(db_dsn, tmp_path)
    await r.start()
    r.submit_records([rec("before", i) for i in range(1, 11)], pbx="ast1")
    await r.drain()
    await asyncio.to_thread(pg_server.stop)
    try:
        for n in range(20):  # calls keep happening during the outage
            r.submit_records([rec(f"during-{n}", i) for i in range(1, 6)], pbx="ast1")
            r.submit_summary(summary(f"during-{n}", outcome="abandoned"))
            await asyncio.sleep(0.02)
        for _ in range(200):
            if r.stats.db_failures:
                break
            await asyncio.sleep(0.02)
        assert r.stats.db_failures >= 1 and not r.healthy
        assert r.backlog_rows >= 120
        assert sum(1 for _ in (tmp_path / "journal").glob("*.jsonl")) >= 1
    finally:
        await asyncio.to_thread(pg_server.start)
    r.submit_records([rec("after", 1)], pbx="ast1")
    await r.drain(timeout=30)
    assert r.healthy
    await r.close()
    assert await count(db_dsn, "SELECT count(*) FROM call_events") == 10 + 20 * 5 + 1
    assert await count(db_dsn, "SELECT count(*) FROM calls WHERE outcome = 'abandoned'") == 20
    assert list((tmp_path / "journal").glob("*.jsonl")) == []


async def test_rows_left_in_the_journal_survive_a_restart(db_dsn, tmp_path) -> None:
    # The database is unreachable for the first run (wrong port): everything stays journaled.
    bad = dbmod.asyncpg_dsn(db_dsn) | {"port": 1, "host": "127.0.0.1"}
    r1 = Recorder(bad, tmp_path / "journal", flush_interval=0.01, db_timeout=1.0, retry_max=0.2)
    await r1.start()
    r1.submit_records([rec("c3", i) for i in range(1, 8)], pbx="ast1")
    r1.submit_summary(summary("c3"))
    await asyncio.sleep(0.3)
    await r1.close(timeout=0.5)
    assert r1.stats.written == 0 and r1.stats.journaled == 8
    # simulate a crash that tore the last line of the journal (the fsync'd part is intact)
    seg = sorted((tmp_path / "journal").glob("*.jsonl"))[-1]
    with seg.open("a", encoding="utf-8") as fh:
        fh.write('["e",["c3",99')
    r2 = recorder(db_dsn, tmp_path)
    await r2.start()
    await r2.drain()
    await r2.close()
    assert await count(db_dsn, "SELECT count(*) FROM call_events WHERE call_id = 'c3'") == 7
    assert await count(db_dsn, "SELECT count(*) FROM calls WHERE call_id = 'c3'") == 1
    assert r2.stats.replayed == 8


async def test_first_call_resolution_is_maintained(db_dsn, tmp_path) -> None:
    conn = await asyncpg.connect(**dbmod.asyncpg_dsn(db_dsn))
    cid = await conn.fetchval("INSERT INTO customers (name) VALUES ('Anna') RETURNING id")
    await conn.close()
    r = recorder(db_dsn, tmp_path, fcr_window_h=72)
    await r.start()
    r.submit_summary(summary("first", customer_id=cid, entered=T0))
    await r.drain()
    r.submit_summary(summary("again", customer_id=cid, entered=T0 + timedelta(hours=30)))
    r.submit_summary(summary("much-later", customer_id=cid, entered=T0 + timedelta(hours=200)))
    await r.drain()
    await r.close()
    conn = await asyncpg.connect(**dbmod.asyncpg_dsn(db_dsn))
    rows = {x["call_id"]: (x["repeat_of"], x["first_contact_resolved"])
            for x in await conn.fetch("SELECT call_id, repeat_of, first_contact_resolved FROM calls")}
    await conn.close()
    assert rows == {"first": (None, False), "again": ("first", True), "much-later": (None, True)}


async def test_a_row_postgresql_refuses_is_dead_lettered_and_the_rest_written(db_dsn, tmp_path) -> None:
    r = recorder(db_dsn, tmp_path)
    await r.start()
    r.submit_records([rec("c4", i) for i in range(1, 4)], pbx="ast1")
    # abandoned without an abandon stage violates calls' CHECK constraint: a bug upstream
    bad = CallSummary(call_id="c4", pbx="ast1", outcome="abandoned", entered_at=T0)  # type: ignore[arg-type]
    r.submit_summary(bad)
    r.submit_records([rec("c5", 1)], pbx="ast1")
    await r.drain()
    assert r.healthy and r.stats.dead_letters == 1
    await r.close()
    assert await count(db_dsn, "SELECT count(*) FROM call_events") == 4
    assert await count(db_dsn, "SELECT count(*) FROM calls") == 0
    dead = (tmp_path / "journal" / "dead-letter.jsonl").read_text(encoding="utf-8")
    assert "CheckViolationError" in dead and '"c4"' in dead


async def test_every_call_of_a_customer_becomes_an_interaction_once(db_dsn, tmp_path) -> None:
    conn = await asyncpg.connect(**dbmod.asyncpg_dsn(db_dsn))
    cid = await conn.fetchval("INSERT INTO customers (name) VALUES ('Anna') RETURNING id")
    aid = await conn.fetchval("INSERT INTO agents (name) VALUES ('Alice') RETURNING id")
    await conn.execute("INSERT INTO agent_endpoints (agent_id, pbx, interface) VALUES ($1, 'ast1', 'PJSIP/1001')", aid)
    await conn.close()
    r = recorder(db_dsn, tmp_path)
    await r.start()
    answered = CallSummary(call_id="i1", pbx="ast1", outcome="answered", customer_id=cid, entered_at=T0,
                           queue="sales", agent="PJSIP/1001")
    for _ in range(2):  # a replay must not add a second interaction
        r.submit_summary(answered)
        r.submit_summary(summary("i2", outcome="abandoned", customer_id=cid, entered=T0 + timedelta(hours=1)))
        r.submit_summary(summary("i3"))  # no customer: no interaction
        await r.drain()
    await r.close()
    conn = await asyncpg.connect(**dbmod.asyncpg_dsn(db_dsn))
    rows = await conn.fetch("SELECT call_id, outcome, agent_id, summary, direction FROM interactions ORDER BY at")
    await conn.close()
    assert [(x["call_id"], x["outcome"], x["agent_id"], x["summary"]) for x in rows] == [
        ("i1", "answered", aid, "answered in sales"),
        ("i2", "abandoned", None, "hung up in queue at sales"),
    ]


async def test_drain_waits_for_the_batch_in_flight(db_dsn, tmp_path, monkeypatch) -> None:
    """A batch taken from the queue but still being journaled is neither pending nor in a
    segment: drain() must still wait for it (it used to return early)."""
    import callcenter.storage.recorder as recmod

    real_fsync = recmod.os.fsync

    def slow_fsync(fd: int) -> None:
        import time

        time.sleep(0.1)  # a slow disk: the batch stays in flight for a while
        real_fsync(fd)

    monkeypatch.setattr(recmod.os, "fsync", slow_fsync)
    r = recorder(db_dsn, tmp_path, batch_size=500)
    await r.start()
    r.submit_records([rec(f"burst-{n}", i) for n in range(300) for i in range(1, 11)], pbx="ast1")
    await r.drain()
    assert await count(db_dsn, "SELECT count(*) FROM call_events") == 3000  # no waiting after drain()
    await r.close()


async def test_a_steady_stream_goes_out_in_one_batch_per_flush_interval(db_dsn, tmp_path, monkeypatch) -> None:
    """Each batch costs an fsync and five statements whatever its size. Under steady load the
    writer makes one of each per ``flush_interval`` (it used to loop back to back, taking the few
    rows that came in during the previous write: ~50-row batches and a third more PostgreSQL CPU
    at 200 calls/s); a full batch still goes at once."""
    import callcenter.storage.recorder as recmod

    fsyncs = 0
    real_fsync = recmod.os.fsync

    def counted_fsync(fd: int) -> None:
        nonlocal fsyncs
        fsyncs += 1
        real_fsync(fd)

    monkeypatch.setattr(recmod.os, "fsync", counted_fsync)
    r = recorder(db_dsn, tmp_path, flush_interval=0.25, batch_size=2000)
    await r.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    n = 0
    while loop.time() - started < 1.0:  # a row every millisecond: faster than a batch is written
        n += 1
        r.submit_records([rec(f"steady-{n}", 1)], pbx="ast1")
        await asyncio.sleep(0.001)
    written_in_time, synced_in_time = r.stats.batches, fsyncs
    await r.drain()
    assert await count(db_dsn, "SELECT count(*) FROM call_events") == n
    assert 3 <= written_in_time <= 6, r.stats  # 1 s / 0.25 s, not one batch per round trip
    assert 3 <= synced_in_time <= 6  # one fsync per batch, though the journal took rows every 10 ms
    r.flush_interval = 10.0
    await asyncio.sleep(0.3)  # the writer is now waiting out the long interval
    r.submit_records([rec(f"full-{i}", 1) for i in range(2000)], pbx="ast1")
    async with asyncio.timeout(5):  # a full batch does not wait for the interval
        while r.stats.written < n + 2000:
            await asyncio.sleep(0.005)
    await r.close()


async def test_a_row_that_cannot_be_journaled_is_refused_to_its_caller_and_harms_nothing(db_dsn, tmp_path) -> None:
    """The journal line is made at submission: a value JSON cannot hold is the submitter's
    error, at once. (Encoded later in the writer, it stopped the writer and every row after it
    stayed in memory.)"""
    r = recorder(db_dsn, tmp_path)
    await r.start()
    with pytest.raises(TypeError, match="cannot journal a object"):
        r.submit_records([JourneyRecord(call_id="bad", seq=1, kind="queue_join", pbx_at=T0, controller_at=T0,
                                        queue=object())], pbx="ast1")  # type: ignore[arg-type]
    r.submit_records([rec("good", 1), rec("good", 2)], pbx="ast1")
    await r.drain(timeout=10)
    assert await count(db_dsn, "SELECT count(*) FROM call_events") == 2
    await r.close()


async def test_rows_are_journaled_within_the_journal_interval_long_before_their_database_write(
        db_dsn, tmp_path) -> None:
    """Two cadences: the journal (what a crash of the daemon can lose) every 10 ms, the database
    (five statements a batch) every flush_interval."""
    r = recorder(db_dsn, tmp_path, flush_interval=30.0, journal_interval=0.01)
    await r.start()
    r.submit_records([rec("first", 1)], pbx="ast1")  # after a quiet spell a row goes straight through
    async with asyncio.timeout(5):
        while r.stats.written < 1:
            await asyncio.sleep(0.01)
    r.submit_records([rec("early", i) for i in range(1, 4)], pbx="ast1")
    await asyncio.sleep(0.3)
    lines = [line for p in sorted((tmp_path / "journal").glob("journal-*.jsonl"))
             for line in p.read_text(encoding="utf-8").splitlines()]
    assert [line.count('"early"') for line in lines] == [0, 1, 1, 1]  # handed to the OS
    assert await count(db_dsn, "SELECT count(*) FROM call_events") == 1  # the next write waits 30 s
    await r.drain(timeout=10)  # drain() does not wait for the interval
    assert await count(db_dsn, "SELECT count(*) FROM call_events") == 4
    await r.close()


async def test_committed_segments_are_deleted_off_the_event_loop(db_dsn, tmp_path, monkeypatch) -> None:
    """A full segment whose rows are all in PostgreSQL is deleted while the recorder runs, in a
    worker thread (unlinking a 16 MB file held the event loop ~18 ms); nothing is left after close."""
    import threading

    import callcenter.storage.recorder as recmod

    threads: list[str] = []
    real_unlink = recmod._unlink

    def spy(path) -> None:  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        real_unlink(path)

    monkeypatch.setattr(recmod, "_unlink", spy)
    r = recorder(db_dsn, tmp_path, segment_bytes=4096)
    await r.start()
    for n in range(20):
        r.submit_records([rec(f"seg-{n}", i) for i in range(1, 11)], pbx="ast1")
        await r.drain()
    assert await count(db_dsn, "SELECT count(*) FROM call_events") == 200
    assert r.stats.segments_deleted >= 5 and len(threads) >= 5
    assert threading.main_thread().name not in threads
    await r.close()
    assert list((tmp_path / "journal").glob("*.jsonl")) == []


async def test_a_large_copy_gives_the_event_loop_turns_while_it_encodes(db_dsn, monkeypatch) -> None:
    """A batch's COPY is encoded a slice at a time: other callbacks (a call's routing) run
    between slices instead of waiting for the whole batch."""
    rows = [("call_events", record_row(rec("big", i), "ast1")) for i in range(1, 321)]
    consumed = 0
    real = recorder_mod._in_slices

    async def counted(batch):  # type: ignore[no-untyped-def]
        nonlocal consumed
        async for row in real(batch):
            consumed += 1
            yield row

    monkeypatch.setattr(recorder_mod, "_in_slices", counted)
    seen: set[int] = set()
    writing = True

    def tick() -> None:  # another callback of the loop: what it sees of the COPY's progress
        if writing:
            seen.add(consumed)
            asyncio.get_running_loop().call_soon(tick)

    conn = await asyncpg.connect(**dbmod.asyncpg_dsn(db_dsn))
    asyncio.get_running_loop().call_soon(tick)
    try:
        await write_rows(conn, rows, fcr_window_h=72)
    finally:
        writing = False
        await conn.close()
    # 320 rows, a turn every 32: the loop ran with the COPY part-way at each slice
    assert {n for n in seen if 0 < n < 320} >= {32, 64, 96, 128, 160, 192, 224, 256, 288}, sorted(seen)
    assert await count(db_dsn, "SELECT count(*) FROM call_events WHERE call_id = 'big'") == 320
