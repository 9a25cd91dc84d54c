"""The controller's real pieces on a simulated PBX, for end-to-end tests: PostgreSQL (the test
server), the recorder, the controller, the PBX's real client and adapter on loopback, and (with
rules) the routing shell with the survey in front of it, as the composition root wires them.

    async with stack(db_dsn, tmp_path, sim, rules=RULES) as s:
        call = s.sim.call(...)

``sim`` is an ``AsteriskSim`` or a ``FreeswitchSim`` (started here, closed on exit)."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from callcenter.app import Controller
from callcenter.crm.lookup import CrmLookup
from callcenter.crm.repository import CustomerRepository
from callcenter.domain.events import Event, IvrNodeEntered
from callcenter.pbx.asterisk.adapter import AsteriskAdapter
from callcenter.pbx.freeswitch.adapter import FreeswitchAdapter
from callcenter.routing.service import RoutingService, RulesHolder
from callcenter.sim.asterisk import AsteriskSim
from callcenter.sim.freeswitch import FreeswitchSim
from callcenter.storage import db as dbmod
from callcenter.storage.recorder import Recorder
from callcenter.survey.service import SurveyService

PBX = "pbx1"


@dataclass
class Stack:
    sim: Any
    database: dbmod.Database
    recorder: Recorder
    controller: Controller
    adapter: Any
    holder: RulesHolder | None
    routing: RoutingService | None
    survey: SurveyService | None
    pbx_type: str

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(**dbmod.asyncpg_dsn(self.database.dsn))
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()


@asynccontextmanager
async def stack(
    db_dsn: str,
    tmp_path: Path,
    sim: AsteriskSim | FreeswitchSim,
    *,
    rules: str | None = None,
    survey: bool = True,
    budget_ms: int = 500,
    **routing_options: Any,
) -> AsyncIterator[Stack]:
    await sim.start()
    database = dbmod.Database(db_dsn, dbmod.make_engine(db_dsn, pool_size=2))
    recorder = Recorder(database.connect_kwargs(), tmp_path / "journal", flush_interval=0.02)
    await recorder.start()
    controller = Controller(recorder, clock=sim.clock)
    if isinstance(sim, FreeswitchSim):
        pbx_type = "freeswitch"
        adapter: Any = FreeswitchAdapter.connect(PBX, "127.0.0.1", sim.port, "ClueCon", clock=sim.clock,
                                                 client_options={"heartbeat_timeout": None})
    else:
        pbx_type = "asterisk"
        adapter = AsteriskAdapter.connect(PBX, "127.0.0.1", sim.port, "cc", "s",
                                          client_options={"clock": sim.clock, "ping_interval": None})
    controller.add_pbx(adapter, "control")
    holder = routing = surveys = None
    if rules is not None:
        path = tmp_path / "rules.yaml"
        path.write_text(textwrap.dedent(rules), encoding="utf-8")
        holder = RulesHolder(path)
        holder.load()
        crm = CrmLookup(CustomerRepository(database.engine), budget_ms=budget_ms)
        routing = RoutingService(controller, holder, crm, database.engine, pbx_types={PBX: pbx_type},
                                 **routing_options)
        if survey:
            surveys = SurveyService(controller, database.engine, queues=None)
            controller.driver = surveys.wrap(routing.begin)  # what the composition root does
    await adapter.start()
    try:
        yield Stack(sim, database, recorder, controller, adapter, holder, routing, surveys, pbx_type)
    finally:
        await adapter.close()
        await controller.close()
        if routing is not None:
            await routing.close()
        await recorder.close()
        await database.close()
        await sim.close()


def hang_up_at_survey(sim: Any, call_ids: set[str]) -> Callable[[Event], None]:
    """A controller listener: the callers of ``call_ids`` hang up as soon as the survey question
    is asked (the caller who leaves without answering)."""

    def on_event(ev: Event) -> None:
        if isinstance(ev, IvrNodeEntered) and ev.node == "survey" and ev.call_id in call_ids:
            for call in sim.calls:
                if call.channel == ev.channel:
                    sim.caller_hangup(call)

    return on_event
