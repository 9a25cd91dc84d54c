"""Shared set-up of the API tests (no tests here): a Controller with a fake PBX port, the API on
a loopback port, a seeded organisation (two teams, their supervisors and agents, tokens of
every role) and helpers that feed PBX events to the controller.

Organisation:
    team red  (queue sales):   alice (agent, PJSIP/1001), sam  (supervisor, PJSIP/1009)
    team blue (queue support): bob   (agent, PJSIP/1002), tina (supervisor, PJSIP/1019)
Live floor after ``floor()``: call c-sales talking to alice in sales, c-wait waiting in sales,
c-support waiting in support, bob available in support.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import text

from callcenter.api.app import STATE
from callcenter.api.auth import create_token, revoke_token
from callcenter.api.context import ApiContext, ApiOptions
from callcenter.api.server import bound_port, start_http, stop_http
from callcenter.app import Controller
from callcenter.domain.commands import Command
from callcenter.domain.events import (
    AgentConnected,
    AgentOffered,
    AgentStatus,
    AgentStatusChanged,
    CallArrived,
    CallEnded,
    Event,
    QueueJoined,
    QueueMemberChanged,
)
from callcenter.pbx.port import CommandResult, EventHandler
from callcenter.settings import Settings
from callcenter.storage.db import Database
from callcenter.storage.recorder import Recorder

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


class FakePbx:
    """A PbxPort that records commands and answers ok (or ``fail_with``)."""

    def __init__(self, name: str = "ast1") -> None:
        self._name = name
        self.connected = True
        self.commands: list[Command] = []
        self.fail_with: str | None = None
        self.handlers: list[EventHandler] = []
        self.before_execute: Any = None  # async fn(cmd): runs as the PBX receives the command

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def subscribe(self, handler: EventHandler) -> None:
        self.handlers.append(handler)

    async def execute(self, cmd: Command) -> CommandResult:
        self.commands.append(cmd)
        if self.before_execute is not None:
            await self.before_execute(cmd)
        if self.fail_with:
            return CommandResult(cmd.command_id, False, self.fail_with)
        return CommandResult(cmd.command_id, True)


class FakeRules:
    def __init__(self) -> None:
        self.version = "v1"
        self.text = "rules: []\n"
        self.reload_problems: list[dict[str, Any]] = []

    def current(self) -> dict[str, Any]:
        return {"version": self.version, "path": "routing.yaml", "text": self.text}

    def validate(self, text: str) -> list[dict[str, Any]]:
        if "bad" in text:
            return [{"line": 1, "column": 1, "path": "rules", "message": "bad rule"}]
        return []

    def reload(self) -> dict[str, Any]:
        if self.reload_problems:
            return {"ok": False, "problems": self.reload_problems}
        self.version = "v2"
        return {"ok": True, "version": self.version}


@dataclass
class Env:
    ctx: ApiContext
    pbx: FakePbx
    base: str
    http: aiohttp.ClientSession
    ids: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    clock: list[datetime] = field(default_factory=lambda: [T0])
    state: Any = None  # the app's ApiState (spies, metrics, webhooks)
    app: Any = None  # the aiohttp Application

    @property
    def controller(self) -> Controller:
        return self.ctx.controller

    @property
    def engine(self) -> Any:
        return self.ctx.database.engine

    def feed(self, *events: Event) -> None:
        for e in events:
            self.controller.on_event(e)

    def tick(self, seconds: float) -> None:
        self.clock[0] += timedelta(seconds=seconds)

    async def req(self, method: str, path: str, who: str | None = "admin", *, json: Any = None,
                  data: Any = None, headers: dict[str, str] | None = None,
                  params: Any = None) -> tuple[int, Any, aiohttp.ClientResponse]:
        h = dict(headers or {})
        if who is not None:
            h["Authorization"] = f"Bearer {self.tokens.get(who, who)}"
        async with self.http.request(method, self.base + path, json=json, data=data, headers=h,
                                     params=params) as resp:
            raw = await resp.read()
            ctype = resp.headers.get("Content-Type", "")
            body: Any = raw.decode(errors="replace")
            if "json" in ctype and raw:
                import json as _json

                body = _json.loads(raw)
            return resp.status, body, resp

    async def audit_rows(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(text("SELECT * FROM audit_log ORDER BY id"))).mappings()]


async def _agent(conn: Any, name: str, pbx: str, interface: str) -> int:
    insert = text("INSERT INTO agents (name) VALUES (:n) RETURNING id")
    agent_id = (await conn.execute(insert, {"n": name})).scalar_one()
    await conn.execute(text("INSERT INTO agent_endpoints (agent_id, pbx, interface) VALUES (:a, :p, :i)"),
                       {"a": agent_id, "p": pbx, "i": interface})
    return int(agent_id)


async def seed(env: Env) -> None:
    ids = env.ids
    async with env.engine.begin() as conn:
        ids["alice"] = await _agent(conn, "Alice", "ast1", "PJSIP/1001")
        ids["bob"] = await _agent(conn, "Bob", "ast1", "PJSIP/1002")
        ids["sam"] = await _agent(conn, "Sam", "ast1", "PJSIP/1009")
        ids["tina"] = await _agent(conn, "Tina", "ast1", "PJSIP/1019")
        for team, agent, sup, queue in (("red", "alice", "sam", "sales"), ("blue", "bob", "tina", "support")):
            tid = (await conn.execute(text("INSERT INTO teams (name) VALUES (:n) RETURNING id"),
                                      {"n": team})).scalar_one()
            ids[team] = int(tid)
            await conn.execute(text("INSERT INTO team_members (team_id, agent_id, role) VALUES "
                                    "(:t, :a, 'agent'), (:t, :s, 'supervisor')"),
                               {"t": tid, "a": ids[agent], "s": ids[sup]})
            await conn.execute(text("INSERT INTO team_queues (team_id, queue) VALUES (:t, :q)"), {"t": tid, "q": queue})
    for who, role, agent in (("admin", "admin", None), ("sup_red", "supervisor", "sam"),
                             ("sup_blue", "supervisor", "tina"), ("analyst", "analyst", None),
                             ("alice", "agent", "alice"), ("bob", "agent", "bob"),
                             ("revoked", "admin", None)):
        token, row = await create_token(env.engine, name=who, role=role,
                                        agent_id=ids[agent] if agent else None)
        env.tokens[who] = token
        ids[f"token:{who}"] = row["id"]
    await revoke_token(env.engine, ids["token:revoked"])
    token, row = await create_token(env.engine, name="expired", role="admin",
                                    expires_at=datetime.now(UTC) - timedelta(seconds=1))
    env.tokens["expired"] = token


def floor(env: Env) -> None:
    """Agents logged in; a call talking to alice in sales, one waiting in sales, one in support."""
    at = env.clock[0]
    p = "ast1"
    for agent, queue in (("PJSIP/1001", "sales"), ("PJSIP/1002", "support")):
        env.feed(QueueMemberChanged(pbx=p, call_id=None, at=at, agent=agent, queue=queue, added=True),
                 AgentStatusChanged(pbx=p, call_id=None, at=at, agent=agent, status=AgentStatus.AVAILABLE,
                                    queue=queue))
    arrive(env, "c-sales", "sales", "+12025550101", "Ivanova")
    env.feed(AgentOffered(pbx=p, call_id="c-sales", at=at, queue="sales", agent="PJSIP/1001"),
             AgentConnected(pbx=p, call_id="c-sales", at=at, queue="sales", agent="PJSIP/1001"))
    env.tick(5)
    arrive(env, "c-wait", "sales", "+12025550102", "Petrov")
    env.tick(5)
    arrive(env, "c-support", "support", "+12025550103", "Smith")
    env.tick(10)


def arrive(env: Env, call_id: str, queue: str, caller: str, name: str) -> None:
    at = env.clock[0]
    env.feed(CallArrived(pbx="ast1", call_id=call_id, at=at, channel=f"PJSIP/trunk-{call_id}", unique_id=call_id,
                         caller_number=caller, caller_name=name, did="100"),
             QueueJoined(pbx="ast1", call_id=call_id, at=at, queue=queue))


def offer_and_connect(env: Env, call_id: str, queue: str, agent: str) -> None:
    at = env.clock[0]
    env.feed(AgentOffered(pbx="ast1", call_id=call_id, at=at, queue=queue, agent=agent),
             AgentConnected(pbx="ast1", call_id=call_id, at=at, queue=queue, agent=agent))


def end(env: Env, call_id: str) -> None:
    env.feed(CallEnded(pbx="ast1", call_id=call_id, at=env.clock[0], cause=16))


@contextlib.asynccontextmanager
async def api_env(database: Database, tmp_path: Path, *, max_body: int = 4096,
                  options: ApiOptions | None = None, adapter: Any = None,
                  clock_fn: Any = None) -> AsyncIterator[Env]:
    """``adapter``: a real PBX adapter instead of the FakePbx (named ast1); ``clock_fn``: the
    controller's clock (default: the test clock, moved by ``Env.tick``)."""
    clock = [T0]
    recorder = Recorder(database.connect_kwargs(), tmp_path / "spill")
    controller = Controller(recorder, clock=clock_fn or (lambda: clock[0]))
    pbx = adapter if adapter is not None else FakePbx()
    controller.add_pbx(pbx)
    settings = Settings.model_validate({"http": {"max_body_bytes": max_body}})
    opts = options or ApiOptions(sse_heartbeat_s=0.2, webhook_backoff_s=0.05, webhook_backoff_max_s=0.2,
                                 webhook_timeout_s=2.0, webhook_refresh_s=0.0)
    ctx = ApiContext(database=database, controller=controller, settings=settings, rules=FakeRules(), options=opts)
    await recorder.start()
    runner = await start_http(ctx, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            env = Env(ctx, pbx, f"http://127.0.0.1:{bound_port(runner)}", http, clock=clock,
                      state=runner.app[STATE], app=runner.app)
            await seed(env)
            yield env
    finally:
        await stop_http(runner)
        await controller.close()
        await recorder.close()
