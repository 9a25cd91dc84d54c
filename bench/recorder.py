"""Recorder: journey steps per second into PostgreSQL, and zero loss while the database is down.

1. Throughput: ``--events`` journey records (plus one calls row per 10 records) submitted as
   fast as the recorder takes them; time until all are committed (journal fsync + COPY).
2. Outage: a steady ``--rate`` records/s for ``--outage`` seconds of PostgreSQL *stopped*
   (pg_ctl stop, fast) plus a few seconds before and after; then PostgreSQL starts again,
   the journal is replayed, and every submitted record must be in the table exactly once.

    python bench/recorder.py                          # 300,000 events; 60 s outage
    python bench/recorder.py --events 20000 --outage 3   # smoke
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callcenter.analytics.attribution import CallSummary
from callcenter.calls.journey import JourneyRecord
from callcenter.storage import db as dbmod
from callcenter.storage.embedded import EmbeddedPostgres
from callcenter.storage.recorder import Recorder

T0 = datetime(2026, 11, 2, tzinfo=UTC)


def records(call: int, n: int) -> list[JourneyRecord]:
    at = T0 + timedelta(seconds=call)
    return [JourneyRecord(call_id=f"b-{call}", seq=i, kind="queue_join" if i % 2 else "agent_ring",
                          pbx_at=at + timedelta(milliseconds=i), controller_at=at, queue="sales",
                          agent="PJSIP/1001", detail={"position": i}) for i in range(1, n + 1)]


def summary(call: int) -> CallSummary:
    at = T0 + timedelta(seconds=call)
    return CallSummary(call_id=f"b-{call}", pbx="bench", outcome="answered", entered_at=at,  # type: ignore[arg-type]
                       ended_at=at + timedelta(seconds=60), queue="sales", agent="PJSIP/1001")


async def count(kwargs: dict, table: str) -> int:
    conn = await asyncpg.connect(**kwargs)
    try:
        return await conn.fetchval(f"SELECT count(*) FROM {table}")
    finally:
        await conn.close()


async def throughput(pg: EmbeddedPostgres, tmp: Path, n_events: int) -> dict:
    kwargs = dbmod.asyncpg_dsn(pg.dsn("postgres"))
    rec = Recorder(kwargs, tmp / "journal-t", batch_size=5000, flush_interval=0.05)
    await rec.start()
    t = time.perf_counter()
    calls = n_events // 10
    for c in range(calls):
        rec.submit_records(records(c, 10), pbx="bench")
        rec.submit_summary(summary(c))
        if c % 500 == 0:
            await asyncio.sleep(0)  # let the writer run, as an event loop with PBX traffic would
    await rec.drain(timeout=600)
    elapsed = time.perf_counter() - t
    await rec.close()
    rows = await count(kwargs, "call_events")
    return {"events": rows, "calls": await count(kwargs, "calls"), "seconds": elapsed,
            "rows_per_s": (rows + calls) / elapsed}


async def outage(pg: EmbeddedPostgres, tmp: Path, rate: int, outage_s: float) -> dict:
    kwargs = dbmod.asyncpg_dsn(pg.dsn("postgres"))
    conn = await asyncpg.connect(**kwargs)
    await conn.execute("TRUNCATE call_events, calls")
    await conn.close()
    rec = Recorder(kwargs, tmp / "journal-o", flush_interval=0.05, db_timeout=2.0, retry_max=2.0)
    await rec.start()
    submitted = 0
    call = 10_000_000
    per_tick = max(rate // 20, 1)  # 20 ticks/s

    async def load(seconds: float) -> None:
        nonlocal submitted, call
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            call += 1
            recs = records(call, per_tick)
            rec.submit_records(recs, pbx="bench")
            submitted += len(recs)
            await asyncio.sleep(0.05)

    await load(3)
    t_stop = time.perf_counter()
    await asyncio.to_thread(pg.stop)
    await load(outage_s)
    backlog = rec.backlog_rows
    journal_bytes = sum(p.stat().st_size for p in (tmp / "journal-o").glob("journal-*.jsonl"))
    await asyncio.to_thread(pg.start)
    down_s = time.perf_counter() - t_stop
    await load(3)
    t = time.perf_counter()
    await rec.drain(timeout=300)
    catch_up = time.perf_counter() - t
    await rec.close()
    stored = await count(kwargs, "call_events")
    return {"submitted": submitted, "stored": stored, "down_s": down_s, "backlog": backlog,
            "journal_mb": journal_bytes / 1e6, "catch_up_s": catch_up, "failures": rec.stats.db_failures}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--rate", type=int, default=2_000, help="records/s during the outage test")
    ap.add_argument("--outage", type=float, default=60.0, help="seconds PostgreSQL is stopped")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cc-bench-") as tmp_s:
        tmp = Path(tmp_s)
        pg = EmbeddedPostgres(tmp / "pg", cleanup="delete")
        await asyncio.to_thread(pg.start)
        try:
            await asyncio.to_thread(dbmod.upgrade, pg.dsn("postgres"))
            t = await throughput(pg, tmp, args.events)
            o = await outage(pg, tmp, args.rate, args.outage)
        finally:
            pg.close()
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}")
    print(f"{'figure':<52}{'value':>14}   target")
    print(f"{'journey records committed':<52}{t['events']:>14,}   = {args.events:,}")
    print(f"{'throughput (rows/s into PostgreSQL, journaled)':<52}{t['rows_per_s']:>14,.0f}")
    print(f"{'outage: PostgreSQL stopped for (s)':<52}{o['down_s']:>14.1f}   {args.outage:g}")
    print(f"{'outage: records submitted':<52}{o['submitted']:>14,}")
    print(f"{'outage: records in PostgreSQL afterwards':<52}{o['stored']:>14,}   = submitted (zero loss)")
    print(f"{'outage: backlog at restart (rows) / journal (MB)':<52}{o['backlog']:>9,} / {o['journal_mb']:.1f}")
    print(f"{'outage: catch-up after restart (s)':<52}{o['catch_up_s']:>14.2f}")
    if t["events"] != args.events // 10 * 10 or o["stored"] != o["submitted"]:
        print("FAILED: records lost or duplicated", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
