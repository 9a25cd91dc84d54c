"""Memory per live call: the controller's resident memory with ``--calls`` concurrent calls.

The simulated Asterisk (its own process, the shipped dialplan) places ``--calls`` calls into
the controller's AsyncAGI entry; the real controller (AMI client, translator, journeys, live
registry, routing with CRM lookups, recording into PostgreSQL) routes each into a queue whose
only agent never answers, so every call stays live. RSS of the controller process is read
before the calls and once all of them wait in the queue; the difference divided by the number
of calls is the figure. Then every caller hangs up and the live state must drop to zero.

The run only counts if every call was routed by the controller and held at once: the PBX
process reports how many calls reached the controller's queue and how many the dialplan's
fail-open guard (TIMEOUT(absolute) while waiting for the controller) sent past it; the run
fails if any was diverted, or if the controller did not hold all ``--calls`` concurrently.

    python bench/memory_per_call.py                 # 10,000 concurrent calls
    python bench/memory_per_call.py --calls 500     # smoke
    python bench/memory_per_call.py --calls 10000 --progress --profile ctl.prof
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import multiprocessing as mp
import os
import platform
import queue as queue_mod
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QUEUE = "hold"
RULES = f"""
version: memory-bench
timezone: UTC
queues:
  {QUEUE}: {{}}
rules:
  - {{id: all, when: {{}}, then: {{queue: {QUEUE}}}}}
fallback: {{id: fallback, queue: {QUEUE}}}
"""


class GcClock:
    """Time the controller's process spends in the garbage collector (measured, not tuned)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = 0
        self._t0 = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._t0
            self.collections += 1


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy so far (all cores; /proc/stat)."""
    with open("/proc/stat") as fh:
        ticks = [int(x) for x in fh.readline().split()[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- the PBX process ------------------------------------------------------------------------------
def pbx(port_q: Any, cmd_q: Any, out_q: Any, calls: int, rate: float, in_flight: int, profile: str | None) -> None:
    prof = cProfile.Profile() if profile else None
    try:
        asyncio.run(_pbx(port_q, cmd_q, out_q, calls, rate, in_flight, prof))
    finally:
        if prof is not None and profile:
            prof.dump_stats(profile)


def _pbx_counts(sim: Any, placed: list[Any], max_lag: float) -> dict[str, Any]:
    """Where the placed calls are, from the simulator's own records of each call."""
    in_queue = failopen = ended = 0
    for c in placed:
        stage = c.stage
        if stage == "queue":  # (only QUEUE exists: a fail-open call to the default queue ends)
            in_queue += 1
            continue
        ended += stage == "ended"
        failopen += any(k == "failopen" for _, k, _ in c.history)
    k = sim.kernel
    return {
        "placed": len(placed),
        "in_queue": in_queue,
        "failopen": failopen,
        "ended": ended,
        "queue_len": len(sim.queues[QUEUE].entries),
        "lag_s": k.lag(),
        "max_lag_s": max(max_lag, k.lag()),
        "cpu_s": time.process_time(),
        "rss": rss_bytes(),
    }


async def _pbx(
    port_q: Any, cmd_q: Any, out_q: Any, calls: int, rate: float, in_flight: int, prof: cProfile.Profile | None
) -> None:
    from callcenter.sim.asterisk import AgentBehavior, AsteriskSim

    sim = AsteriskSim(seed=1, speed=1.0, lab=False, noise=False, username="bench", secret="bench")
    sim.add_endpoint("1001", "Nobody", behavior=AgentBehavior("noanswer"))
    # the queue's ring timeout is longer than the run: its one agent rings the first caller
    # throughout, everybody else waits for their turn
    sim.add_queue(QUEUE, members=[("PJSIP/1001", "Nobody", 0)], timeout=3600)
    await sim.start()
    port_q.put(sim.port)
    placed: list[Any] = []

    max_lag = 0.0

    async def report() -> None:
        nonlocal max_lag
        while True:
            stats = _pbx_counts(sim, placed, max_lag)
            max_lag = stats["max_lag_s"]
            out_q.put(("stats", stats))
            await asyncio.sleep(1.0)

    reporter = asyncio.create_task(report())
    await asyncio.to_thread(cmd_q.get)  # "go"
    if prof is not None:
        prof.enable()
    t0 = time.monotonic()
    routed = 0  # placed[:routed] reached the queue (or ended): the controller is done with them
    held_back = 0.0
    for i in range(calls):
        delay = t0 + held_back + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        # closed loop: at most `in_flight` calls between arrival and the queue (the controller's
        # routing backlog), so a slower controller lowers the arrival rate instead of leaving
        # calls to the dialplan's fail-open timeout
        while True:
            while routed < len(placed) and placed[routed].stage in ("queue", "ended"):
                routed += 1
            if len(placed) - routed < in_flight:
                break
            pause = time.monotonic()
            await asyncio.sleep(0.05)
            held_back += time.monotonic() - pause
        placed.append(sim.call(f"+1202{i:07d}", did="5550110", patience_s=None, talk_s=None))
    out_q.put(("placed", {"s": time.monotonic() - t0, "held_back_s": held_back}))
    await asyncio.to_thread(cmd_q.get)  # "hangup"
    if prof is not None:
        prof.disable()
    for c in placed:
        sim.caller_hangup(c)
    await asyncio.sleep(2)
    out_q.put(("hung_up", _pbx_counts(sim, placed, max_lag)))
    await asyncio.to_thread(cmd_q.get)  # "stop"
    reporter.cancel()
    await sim.close()


class PbxLink:
    """The controller's side of the PBX process's reports (the latest counts, and replies)."""

    def __init__(self, out_q: Any) -> None:
        self.out_q = out_q
        self.stats: dict[str, Any] = {}
        self.replies: list[tuple[str, Any]] = []

    def poll(self) -> None:
        while True:
            try:
                kind, value = self.out_q.get_nowait()
            except queue_mod.Empty:
                return
            if kind == "stats":
                self.stats = value
            else:
                self.replies.append((kind, value))

    async def reply(self, kind: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            for i, (k, v) in enumerate(self.replies):
                if k == kind:
                    del self.replies[i]
                    return v
            await asyncio.sleep(0.1)
        raise TimeoutError(f"the PBX process did not report {kind!r}")


# -- the controller ---------------------------------------------------------------------------------
async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=10_000, help="concurrent calls to hold (default 10,000)")
    ap.add_argument("--rate", type=float, default=400.0, help="calls placed per second at most (default 400)")
    ap.add_argument("--in-flight", type=int, default=500,
                    help="at most this many calls arrived but not yet in the queue: placing waits while the "
                         "controller is that far behind (default 500; 0: open loop, every call at --rate)")
    ap.add_argument("--progress", action="store_true", help="print the counts every 2 s while the calls arrive")
    ap.add_argument("--profile", metavar="FILE", help="cProfile the controller during the load phase into FILE")
    ap.add_argument("--profile-pbx", metavar="FILE", help="cProfile the simulated PBX process into FILE")
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
    port_q, cmd_q, out_q = ctx.Queue(), ctx.Queue(), ctx.Queue()
    proc = ctx.Process(target=pbx, args=(port_q, cmd_q, out_q, args.calls, args.rate,
                                                   args.in_flight or args.calls + 1, args.profile_pbx))
    proc.start()
    link = PbxLink(out_q)
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
        profiler = cProfile.Profile() if args.profile else None
        link.poll()
        pbx_cpu0 = link.stats.get("cpu_s", 0.0)
        machine0 = machine_busy_s()
        gc_clock = GcClock()
        cpu0 = time.process_time()
        t0 = time.monotonic()
        if profiler is not None:
            profiler.enable()
        cmd_q.put("go")

        def waiting_in_controller() -> int:
            return sum(1 for c in ctl.live.calls.values() if c.stage in ("queue", "ringing") and c.queue == QUEUE)

        # Wait until the controller holds every call in the queue, the PBX says every call is in
        # it, or a call was diverted by fail-open (then it can never get there: stop at once).
        peak_live = 0
        half: tuple[int, int] | None = None  # (live calls, RSS) once half of them are live
        last_print = 0.0
        progress: tuple[int, int] = (-1, -1)
        stalled_since = time.monotonic()
        while time.monotonic() - stalled_since < 60:  # give up after a minute without progress
            link.poll()
            live_now = len(ctl.live.calls)
            peak_live = max(peak_live, live_now)
            st = link.stats
            if (live_now, st.get("in_queue", 0)) != progress:
                progress, stalled_since = (live_now, st.get("in_queue", 0)), time.monotonic()
            # (the scan of every live call is this harness's own CPU in the controller's process:
            # only when it can decide something or is printed)
            if half is None and live_now >= args.calls // 2:
                gc.collect()
                half = (live_now, rss_bytes())
            printing = args.progress and time.monotonic() - last_print >= 2.0
            waiting = waiting_in_controller() if printing or live_now >= args.calls else 0
            if printing:
                last_print = time.monotonic()
                print(
                    f"  {last_print - t0:6.1f}s controller: live {len(ctl.live.calls):,} waiting {waiting:,} "
                    f"cpu {time.process_time() - cpu0:.1f}s | pbx: placed {st.get('placed', 0):,} "
                    f"in queue {st.get('in_queue', 0):,} fail-open {st.get('failopen', 0):,} "
                    f"lag {st.get('lag_s', 0.0):.2f}s cpu {st.get('cpu_s', 0.0):.1f}s",
                    flush=True,
                )
            if st.get("failopen", 0) or (waiting >= args.calls and st.get("in_queue", 0) >= args.calls):
                break
            await asyncio.sleep(0.5)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        load_s = time.monotonic() - t0
        load_cpu = time.process_time() - cpu0
        machine_load = machine_busy_s() - machine0
        pbx_cpu_load = link.stats.get("cpu_s", 0.0) - pbx_cpu0
        gc.callbacks.remove(gc_clock._on_gc)
        placing = await link.reply("placed", timeout=60)
        await asyncio.sleep(1.5)  # a last report from the PBX process after the load
        link.poll()
        pbx_load = dict(link.stats)
        await recorder.drain(timeout=120)
        gc.collect()
        live = len(ctl.live.calls)
        held = waiting_in_controller()
        journeys = len(ctl.book)
        during = rss_bytes()
        cmd_q.put("hangup")
        pbx_end = await link.reply("hung_up", timeout=120)
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
    failopen = max(pbx_load.get("failopen", 0), pbx_end.get("failopen", 0))
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}")
    print(f"{'figure':<48}{'value':>14}   target")
    print(f"{'calls placed by the simulated PBX':<48}{pbx_load.get('placed', 0):>14,}   {args.calls:,}")
    print(f"{'  ... in the queue, routed by the controller':<48}{pbx_load.get('in_queue', 0):>14,}   {args.calls:,}")
    print(f"{'  ... diverted by the dialplan fail-open':<48}{failopen:>14,}   0")
    print(f"{'concurrent live calls in the controller':<48}{live:>14,}   {args.calls:,}")
    print(f"{'  ... waiting in the queue (peak live)':<48}{held:>14,}   ({peak_live:,})")
    print(f"{'journeys in memory':<48}{journeys:>14,}")
    print(f"{'controller RSS before / with the calls (MB)':<48}{before / 2**20:>7.1f} / {during / 2**20:.1f}")
    print(f"{'memory per live call (KB)':<48}{per_call / 1024:>14.1f}")
    if half is not None and live > half[0]:
        marginal = (during - half[1]) / (live - half[0])
        print(f"{f'  ... from {half[0]:,} to {live:,} live calls (KB per call)':<48}{marginal / 1024:>14.1f}")
    print(f"{'time to place the calls / hold them all (s)':<48}{placing['s']:>7.1f} / {load_s:.1f}"
          f"   {args.calls / args.rate:.1f} at {args.rate:g}/s")
    print(f"{'  ... placing held back by the controller (s)':<48}{placing['held_back_s']:>14.1f}"
          f"   (at most {args.in_flight or 'any'} calls waiting for routing)")
    print(f"{'  ... mean arrival rate (calls/s)':<48}{args.calls / placing['s']:>14.0f}")
    print(f"{'controller CPU during that time (s, % of a core)':<48}{load_cpu:>7.1f} / {100 * load_cpu / load_s:.0f} %")
    print(f"{'  ... of which in the garbage collector (s)':<48}{gc_clock.seconds:>14.1f}"
          f"   ({gc_clock.collections:,} collections)")
    print(f"{'simulated PBX CPU during that time (s)':<48}{pbx_cpu_load:>14.1f}"
          f"   (its timers at most {pbx_load.get('max_lag_s', 0.0):.2f} s late)")
    print(f"{'whole machine busy during that time (CPU s)':<48}{machine_load:>14.1f}"
          f"   of {load_s * (os.cpu_count() or 1):.1f}; {machine_load - load_cpu - pbx_cpu_load:.1f} s neither"
          f" controller nor PBX (PostgreSQL, other processes)")
    print(f"{'calls ended after the hang-ups / left live':<48}{ended:>7,} / {left}")
    if live < args.calls or held < args.calls or failopen or left:
        print("FAILED: not every call was routed and held live at once, or some never ended", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
