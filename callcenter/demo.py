"""``callcenter demo``: the whole product on one machine, in one command.

What runs (everything real but the phones):
- an embedded PostgreSQL in a temporary directory, migrated;
- a demo CRM: 10,000 customers (300 VIPs, some with a personal agent), agents, a team;
- the example routing rules (config/routing.example.yaml);
- the Asterisk simulator speaking real AMI on loopback, running the project's own dialplan
  (or, with ``--pbx freeswitch``, the FreeSWITCH simulator speaking real ESL, running the shipped
  XML dialplan and mod_callcenter sample), with a traffic model (arrivals, IVR choices, callers'
  patience, agents' behaviour) on
  virtual time (``--speed`` times faster than real time, starting on a weekday morning in the
  rules' time zone, so the office is open);
- the controller daemon itself (``run_daemon``): AMI or ESL client, routing with CRM lookups,
  journeys into PostgreSQL, the HTTP API and the wallboard.

It prints the wallboard URL with a demo supervisor token, a live summary every few seconds,
and at the end the KPI and abandons reports: where callers were lost, VIPs vs the others,
callers served via the IVR vs directly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

log = logging.getLogger("callcenter.demo")

ROOT = Path(__file__).resolve().parents[1]
DEMO_RULES = ROOT / "config" / "routing.example.yaml"
N_CUSTOMERS = 10_000
N_VIPS = 300
NUMBER_BASE = 2_025_500_000  # customers' numbers: +1 202 550 0000 ... (the traffic's callers)

# agents: extension, name, queues, penalty
AGENTS = [
    ("1001", "Alice Senior", ("vip", "sales", "support"), 0),
    ("1002", "Bob Senior", ("vip", "sales", "support", "billing"), 0),
    ("1003", "Carol", ("support", "billing"), 0),
    ("1004", "Dan", ("sales", "support"), 1),
    ("1020", "Junior One", ("junior",), 0),
    ("1021", "Junior Two", ("junior", "support"), 1),
]
OVERLOAD = [("1010", "Carol Backoffice"), ("1011", "Dave Backoffice")]  # the rules' overload group


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pbx", choices=["asterisk", "freeswitch"], default="asterisk", help="which PBX to simulate")
    p.add_argument("--rate", type=float, default=240.0, help="calls per hour of simulated time (default 240)")
    p.add_argument("--minutes", type=float, default=2.0, help="real minutes of traffic (default 2)")
    p.add_argument("--speed", type=float, default=20.0, help="simulated seconds per real second (default 20)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--port", type=int, default=8080, help="HTTP port for the API and wallboard (0: any free)")


def run(args: argparse.Namespace, settings: Any) -> int:
    try:
        return asyncio.run(_demo(args))
    except KeyboardInterrupt:
        return 130


def _epoch(tz: str) -> float:
    """Next Tuesday 09:30 in the rules' time zone: the office is open and the day starts."""
    zone = ZoneInfo(tz)
    now = datetime.now(zone)
    day = now + timedelta(days=(1 - now.weekday()) % 7 or 7)
    return day.replace(hour=9, minute=30, second=0, microsecond=0).timestamp()


def _interface(pbx: str, ext: str) -> str:
    """What the agent is called on that PBX: app_queue interfaces vs mod_callcenter agent names."""
    return ext if pbx == "freeswitch" else f"PJSIP/{ext}"


async def _seed(dsn: str, rng: random.Random, pbx: str = "asterisk") -> dict[str, Any]:
    import asyncpg

    from callcenter.storage.db import asyncpg_dsn

    node = f"demo-{pbx}"

    conn = await asyncpg.connect(**asyncpg_dsn(dsn))
    try:
        agent_ids = {}
        for ext, name, _, _ in AGENTS + [(e, n, (), 0) for e, n in OVERLOAD]:
            aid = await conn.fetchval(
                "INSERT INTO agents (name, extension, skills) VALUES ($1, $2, '{}') RETURNING id", name, ext)
            await conn.execute(
                "INSERT INTO agent_endpoints (agent_id, pbx, interface) VALUES ($1, $2, $3)",
                aid, node, _interface(pbx, ext))
            agent_ids[ext] = aid
        team = await conn.fetchval("INSERT INTO teams (name) VALUES ('Front office') RETURNING id")
        supervisor = await conn.fetchval("INSERT INTO agents (name, extension) VALUES ('Sam Supervisor', '1009') "
                                         "RETURNING id")
        await conn.execute("INSERT INTO agent_endpoints (agent_id, pbx, interface) VALUES ($1, $2, $3)",
                           supervisor, node, _interface(pbx, "1009"))
        await conn.execute("INSERT INTO team_members (team_id, agent_id, role) VALUES ($1, $2, 'supervisor')",
                           team, supervisor)
        for aid in agent_ids.values():
            await conn.execute("INSERT INTO team_members (team_id, agent_id, role) VALUES ($1, $2, 'agent')", team, aid)
        with contextlib.suppress(asyncpg.UndefinedTableError):  # the API's table of team-owned queues
            for q in ("sales", "support", "vip", "junior", "billing"):
                await conn.execute("INSERT INTO team_queues (team_id, queue) VALUES ($1, $2)", team, q)
        first = ["Anna", "Boris", "Carla", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jürgen", "Kim", "Lena"]
        last = ["Ivanova", "Smith", "Müller", "Díaz", "Kowalski", "Nakamura", "Okafor", "Rossi", "Dubois", "Larsen"]
        vip_rows = set(rng.sample(range(N_CUSTOMERS), N_VIPS))
        seniors = [agent_ids["1001"], agent_ids["1002"]]
        customers = []
        for i in range(N_CUSTOMERS):
            vip = i in vip_rows
            customers.append((
                i + 1, f"{rng.choice(first)} {rng.choice(last)}", "vip" if vip else "standard",
                rng.choice(["smb", "enterprise", "consumer"]), rng.choice(["en", "de", "ru"]),
                rng.choice(seniors) if vip and rng.random() < 0.5 else None,
                rng.choice(["customer", "customer", "lead"]) if not vip else "customer",
            ))
        await conn.copy_records_to_table("customers", records=customers, columns=[
            "id", "name", "tier", "segment", "language", "assigned_agent_id", "stage"])
        await conn.execute(f"SELECT setval(pg_get_serial_sequence('customers', 'id'), {N_CUSTOMERS})")
        await conn.copy_records_to_table("customer_phones", columns=["customer_id", "e164"], records=[
            (i + 1, f"+1{NUMBER_BASE + i}") for i in range(N_CUSTOMERS)])
        await conn.execute("ANALYZE")
        return {"supervisor": supervisor, "vips": sorted(vip_rows)}
    finally:
        await conn.close()


class DemoTraffic:
    """The simulator's traffic model, with callers drawn from the demo CRM (70 % known)."""

    def __init__(self, sim: Any, rate: float, seed: int, vips: list[int]) -> None:
        from callcenter.sim.traffic import AgentProfile, Dist, Traffic, TrafficModel

        agents = tuple(
            AgentProfile(ext, name, queues=queues, penalty=pen, pauses_per_hour=0.6,
                         ring_no_answer_p=0.08 if ext.startswith("102") else 0.04)
            for ext, name, queues, pen in AGENTS
        )
        model = TrafficModel(
            rate_per_hour=rate, talk=Dist.lognormal(150.0, 0.6), controller_share=1.0,
            controller_did="5550110", ring_patience=Dist.exp(40.0), agents=agents,
        )
        self.traffic = Traffic(sim, model, seed=seed)
        base_script = self.traffic.script
        rng = random.Random(f"{seed}:crm-callers")
        vip_set = vips

        def script(index: int) -> Any:
            s = base_script(index)
            r = rng.random()
            if r < 0.08:  # VIPs call more often than their share of the base
                n = NUMBER_BASE + rng.choice(vip_set)
            elif r < 0.7:
                n = NUMBER_BASE + rng.randrange(N_CUSTOMERS)
            else:
                n = NUMBER_BASE + N_CUSTOMERS + rng.randrange(90_000)  # unknown callers: leads
            from dataclasses import replace

            return replace(s, number=str(n))

        self.traffic.script = script  # type: ignore[method-assign]
        sim.add_endpoint("1009", "Sam Supervisor", caller_name="Supervisor")
        for ext, name in OVERLOAD:
            sim.add_endpoint(ext, name, caller_name=f"Agent {name}")


def _simulator(args: argparse.Namespace, tz: str, vips: list[int]) -> tuple[Any, DemoTraffic, dict[str, Any]]:
    """The simulated PBX with the demo's queues, agents and traffic, and the daemon's settings
    entry for it (the port is added once it listens). The PBX password is a throwaway of this
    run, handed to the daemon through the environment like a real secret."""
    import os
    import secrets

    if args.pbx == "freeswitch":
        from callcenter.sim.freeswitch import FreeswitchSim

        password = secrets.token_hex(16)
        fs = FreeswitchSim(seed=args.seed, speed=args.speed, epoch=_epoch(tz), password=password)
        # The shipped mod_callcenter sample (dialplans/freeswitch) gives the queues; the demo's
        # agents and their tiers (level = penalty) replace its sample tiers.
        fs.tiers.clear()
        fs.queues["vip@default"].strategy = "ring-all"
        traffic = DemoTraffic(fs, args.rate, args.seed, vips)
        for ext, _ in OVERLOAD:  # the rules' helper group joins queues with tier add
            fs.add_agent(ext)
        traffic.traffic.install_agents()
        os.environ["CALLCENTER_DEMO_ESL_SECRET"] = password
        return fs, traffic, {"name": "demo-freeswitch", "type": "freeswitch", "host": "127.0.0.1",
                             "secret_env": "CALLCENTER_DEMO_ESL_SECRET", "mode": "control"}
    from callcenter.sim.asterisk import AsteriskSim

    sim = AsteriskSim(seed=args.seed, speed=args.speed, epoch=_epoch(tz), lab=False, noise=False, username="demo",
                      secret="demo-secret")
    traffic = DemoTraffic(sim, args.rate, args.seed, vips)
    for q in ("sales", "support", "vip", "junior", "billing"):
        sim.add_queue(q, strategy="ringall" if q == "vip" else "rrmemory", weight=10 if q == "vip" else 0)
    # Static members exist before the controller connects, as queues.conf members do;
    # the controller learns them from its QueueStatus resync.
    traffic.traffic.install_agents()
    os.environ["CALLCENTER_DEMO_AMI_SECRET"] = "demo-secret"
    return sim, traffic, {"name": "demo-asterisk", "type": "asterisk", "host": "127.0.0.1", "username": "demo",
                          "secret_env": "CALLCENTER_DEMO_AMI_SECRET", "mode": "control"}


async def _demo(args: argparse.Namespace) -> int:
    from callcenter.api.auth import create_token
    from callcenter.logs import setup_logging
    from callcenter.routing.loader import load_rules
    from callcenter.settings import Settings
    from callcenter.storage import db as dbmod
    from callcenter.storage.embedded import EmbeddedPostgres

    setup_logging("WARNING", "text")
    rules = load_rules(DEMO_RULES)
    rng = random.Random(args.seed)
    out = sys.stdout
    with tempfile.TemporaryDirectory(prefix="callcenter-demo-") as tmp_s:
        tmp = Path(tmp_s)
        t0 = time.monotonic()
        pg = EmbeddedPostgres(tmp / "pg", cleanup="delete")
        await asyncio.to_thread(pg.start)
        try:
            dsn = pg.dsn("postgres")
            await asyncio.to_thread(dbmod.upgrade, dsn)
            seeded = await _seed(dsn, rng, args.pbx)
            print(f"PostgreSQL (embedded) ready, schema migrated, demo CRM: {N_CUSTOMERS:,} customers "
                  f"({N_VIPS} VIPs), {len(AGENTS)} agents  [{time.monotonic() - t0:.1f} s]", file=out)

            sim, traffic, pbx_settings = _simulator(args, rules.timezone, seeded["vips"])
            await sim.start()
            settings = Settings.model_validate({
                "database": {"dsn": dsn},
                "pbx": [{**pbx_settings, "port": sim.port}],
                "rules": {"path": str(DEMO_RULES)},
                "http": {"host": "127.0.0.1", "port": args.port},
                "journey": {"spill_dir": str(tmp / "journal")},
            })
            stop = asyncio.Event()
            ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

            from callcenter.app import run_daemon

            daemon = asyncio.create_task(run_daemon(
                settings, stop=stop, clock=sim.clock,
                on_ready=lambda ctl, db: ready.set_result((ctl, db))))
            done, _ = await asyncio.wait({daemon, ready}, return_when=asyncio.FIRST_COMPLETED)
            if daemon in done:
                print(f"the controller did not start (exit {daemon.result()})", file=sys.stderr)
                return 1
            controller, database = ready.result()
            token, _ = await create_token(database.engine, name="demo supervisor", role="supervisor",
                                          agent_id=seeded["supervisor"])
            admin, _ = await create_token(database.engine, name="demo admin", role="admin")
            base = f"http://127.0.0.1:{controller.http_port}"
            print(f"\nWallboard:  {base}/wallboard?token={token}", file=out)
            print(f"API:        curl -H 'Authorization: Bearer {admin}' {base}/api/v1/live/queues", file=out)
            print(f"Simulated time starts {datetime.fromtimestamp(sim.now(), ZoneInfo(rules.timezone)):%A %H:%M %Z}"
                  f", {args.speed:g}x real time; {args.rate:g} calls/h for {args.minutes:g} real minutes.\n", file=out)

            traffic.traffic.start(duration_s=args.minutes * 60 * args.speed)
            started = sim.now()
            deadline = time.monotonic() + args.minutes * 60
            try:
                while time.monotonic() < deadline:
                    await asyncio.sleep(min(5.0, max(deadline - time.monotonic(), 0.1)))
                    _summary(controller, sim, started, out)
                print("\nno new calls; letting the calls in progress finish ...", file=out)
                finish = time.monotonic() + 60
                while controller.live.calls and time.monotonic() < finish:  # noqa: ASYNC110
                    await asyncio.sleep(1.0)
            finally:
                traffic.traffic.stop()
                stop.set()
                await daemon
                await sim.close()
            await _reports(dsn, datetime.fromtimestamp(started - 60, UTC), datetime.fromtimestamp(sim.now() + 60, UTC),
                           rules.timezone, out)
        finally:
            await asyncio.to_thread(pg.close)
    return 0


def _summary(controller: Any, sim: Any, started: float, out: Any) -> None:
    now = controller.clock()
    stats = controller.stats
    queues = [controller.live.queue_dict(q, now) for q in sorted(controller.live.queues)]
    waiting = sum(q["waiting"] for q in queues)
    answered = sum(q["answered_today"] for q in queues)
    abandoned = sum(q["abandoned_today"] for q in queues)
    talking = sum(1 for c in controller.live.calls.values() if c.stage == "talking")
    minutes = (sim.now() - started) / 60
    busy = ", ".join(f"{q['queue']} {q['waiting']}w/{q['agents_available']}a" for q in queues if q["waiting"])
    print(f"[{minutes:5.1f} sim-min] live {len(controller.live.calls):3d} (talking {talking:2d}, waiting {waiting:2d})"
          f"  ended {stats.calls_ended:4d}  queue answered {answered:4d} abandoned {abandoned:3d}"
          + (f"  | {busy}" if busy else ""), file=out)


async def _reports(dsn: str, start: datetime, end: datetime, tz: str, out: Any) -> None:
    from callcenter.analytics import reports
    from callcenter.storage import db as dbmod

    database = dbmod.Database(dsn, dbmod.make_engine(dsn, pool_size=2))
    try:
        print("\n=== KPI (whole simulated period) ===", file=out)
        rows = await reports.kpi(database, start, end, by="total", tz=tz)
        print(reports.format_rows(rows, "table"), file=out)
        print("\n=== Where callers were lost (abandons by stage and node) ===", file=out)
        print(reports.format_rows(await reports.abandons_by_node(database, start, end, tz=tz), "table"), file=out)
        print("\n=== The abandoned calls (first 15) ===", file=out)
        print(reports.format_rows(await reports.abandons(database, start, end, limit=15, tz=tz), "table"), file=out)
        conn = await database.pool()
        for title, view in (("VIP vs others", "cc_vip_vs_other"), ("via IVR vs direct", "cc_ivr_vs_direct")):
            recs = await conn.fetch(f"SELECT * FROM {view}")
            print(f"\n=== {title} ({view}) ===", file=out)
            print(reports.format_rows([dict(r) for r in recs], "table"), file=out)
    finally:
        await database.close()
