"""Memory per live call: the controller's resident memory with ``--calls`` concurrent calls.

The simulated Asterisk (its own process, the shipped dialplan) places ``--calls`` calls into
the controller's AsyncAGI entry; the real controller (AMI client, translator, journeys, live
registry, routing with CRM lookups, recording into PostgreSQL) routes each into a queue whose
only agent never answers, so every call stays live. RSS of the controller process is read
before the calls and once all of them wait in the queue; the difference divided by the number
of calls is the figure. Then every caller hangs up and the live state must drop to zero.

    python bench/memory_per_call.py                 # 10,000 concurrent calls
    python bench/memory_per_call.py --calls 500     # smoke
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RULES = """
version: memory-bench
timezone: UTC
queues:
  hold: {}
rules:
  - {id: all, when: {}, then: {queue: hold}}
fallback: {id: fallback, queue: hold}
"""


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def pbx(port_q, cmd_q, done_q, calls: int, rate: float) -> None:
    asyncio.run(_pbx(port_q, cmd_q, done_q, calls, rate))


async def _pbx(port_q, cmd_q, done_q, calls: int, rate: float) -> None:
    from callcenter.sim.asterisk import AgentBehavior, AsteriskSim

    sim = AsteriskSim(seed=1, speed=1.0, lab=False, noise=False, username="bench", secret="bench")
    sim.add_endpoint("1001", "Nobody", behavior=AgentBehavior("noanswer"))
    sim.add_queue("hold", members=[("PJSIP/1001", "Nobody", 0)], timeout=3600)
    await sim.start()
    port_q.put(sim.port)
    await asyncio.to_thread(cmd_q.get)  # "go"
    placed = []
    t0 = time.monotonic()
    for i in range(calls):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        placed.append(sim.call(f"+1202{i:07d}", did="5550110", patience_s=None, talk_s=None))
    done_q.put(("placed", len(placed)))
    await asyncio.to_thread(cmd_q.get)  # "hangup"
    for c in placed:
        sim.caller_hangup(c)
    await asyncio.sleep(2)
    done_q.put(("hung_up", len(placed)))
    await asyncio.to_thread(cmd_q.get)
    await sim.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=400.0, help="calls placed per second")
    args = ap.parse_args()

    from callcenter.app import Controller
    from callcenter.crm.lookup import CrmLookup
    from callcenter.crm.repository import CustomerRepository
    from callcenter.pbx.asterisk.adapter import AsteriskAdapter
    from callcenter.routing.service import RoutingService, RulesHolder
    from callcenter.storage import db as dbmod
    from callcenter.storage.embedded import EmbeddedPostgres
    from callcenter.storage.recorder import Recorder

    ctx = mp.get_context("spawn")
    port_q, cmd_q, done_q = ctx.Queue(), ctx.Queue(), ctx.Queue()
    proc = ctx.Process(target=pbx, args=(port_q, cmd_q, done_q, args.calls, args.rate))
    proc.start()
    with tempfile.TemporaryDirectory(prefix="cc-bench-") as tmp_s:
        tmp = Path(tmp_s)
        pg = EmbeddedPostgres(tmp / "pg", cleanup="delete")
        await asyncio.to_thread(pg.start)
        dsn = pg.dsn("postgres")
        await asyncio.to_thread(dbmod.upgrade, dsn)
        rules = tmp / "rules.yaml"
        rules.write_text(RULES)
        database = dbmod.Database(dsn, dbmod.make_engine(dsn, pool_size=4))
        recorder = Recorder(database.connect_kwargs(), tmp / "journal")
        await recorder.start()
        ctl = Controller(recorder)
        port = await asyncio.to_thread(port_q.get)
        adapter = AsteriskAdapter.connect("sim", "127.0.0.1", port, "bench", "bench",
                                          client_options={"ping_interval": None})
        ctl.add_pbx(adapter, "control")
        holder = RulesHolder(rules)
        holder.load()
        routing = RoutingService(ctl, holder, CrmLookup(CustomerRepository(database.engine, pool=await database.pool()),
                                                        budget_ms=200), database.engine,
                                 pbx_types={"sim": "asterisk"}, create_leads=False)
        await adapter.start()
        gc.collect()
        await asyncio.sleep(1.0)
        before = rss_bytes()
        cpu0 = time.process_time()
        t0 = time.monotonic()
        cmd_q.put("go")
        await asyncio.to_thread(done_q.get)
        # the simulated PBX (app_queue re-checks every waiting caller each second) is the slow
        # side at thousands of waiting calls on a 2-core machine: give it time
        deadline = time.monotonic() + 60 + 4 * args.calls / args.rate
        while time.monotonic() < deadline:
            waiting = sum(1 for c in ctl.live.calls.values() if c.stage in ("queue", "ringing"))
            if waiting >= args.calls:
                break
            await asyncio.sleep(0.5)
        load_s = time.monotonic() - t0
        load_cpu = time.process_time() - cpu0
        await recorder.drain(timeout=120)
        gc.collect()
        live = len(ctl.live.calls)
        journeys = len(ctl.book)
        during = rss_bytes()
        cmd_q.put("hangup")
        await asyncio.to_thread(done_q.get)
        deadline = time.monotonic() + 60
        while ctl.live.calls and time.monotonic() < deadline:  # noqa: ASYNC110 (polls the controller)
            await asyncio.sleep(0.5)
        await recorder.drain(timeout=120)
        left = len(ctl.live.calls)
        ended = ctl.stats.calls_ended
        cmd_q.put("stop")
        await adapter.close()
        await ctl.close()
        await routing.close()
        await recorder.close()
        await database.close()
        pg.close()
    proc.join(30)
    per_call = (during - before) / max(live, 1)
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}")
    print(f"{'figure':<44}{'value':>14}   target")
    print(f"{'concurrent live calls in the controller':<44}{live:>14,}   {args.calls:,}")
    print(f"{'journeys in memory':<44}{journeys:>14,}")
    print(f"{'controller RSS before / with the calls (MB)':<44}{before / 2**20:>7.1f} / {during / 2**20:.1f}")
    print(f"{'memory per live call (KB)':<44}{per_call / 1024:>14.1f}")
    print(f"{'time to place and route all calls (s)':<44}{load_s:>14.1f}")
    print(f"{'controller CPU during that time (s)':<44}{load_cpu:>14.1f}   (the rest: PBX process, PostgreSQL)")
    print(f"{'calls ended after the hang-ups / left live':<44}{ended:>7,} / {left}")
    if live < args.calls or left:
        print("FAILED: not every call was live at once, or some never ended", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
