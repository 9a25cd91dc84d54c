"""Composition root: builds the controller from the settings and owns every long-lived task.

    PBX adapters --events--> Controller.on_event --> JourneyBook (pure) --> Recorder (journal, DB)
                                                \\--> call driver (routing, issue-by-issue)  --> adapter.execute

The ``Controller`` is the imperative shell around the pure journey reducer: it feeds events,
persists the records and summaries that come back, and hands calls waiting for the controller
(AsyncAGI, park) to the call driver. Every task is owned by one ``asyncio.TaskGroup``; a stop
signal (SIGINT/SIGTERM) closes the PBX links, then flushes the recorder (to the database if it
answers, else to the journal, replayed at the next start); a second signal forces exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from callcenter.bus import Bus
from callcenter.calls.journey import JourneyBook
from callcenter.calls.live import LiveRegistry
from callcenter.domain.commands import Command, ReleaseCall
from callcenter.domain.events import (
    AgentOffered,
    AgentPauseChanged,
    AgentStatusChanged,
    CallEnded,
    ControllerAttached,
    Event,
    QueueMemberChanged,
)
from callcenter.logs import call_context
from callcenter.pbx.port import CommandResult, PbxPort
from callcenter.settings import PbxSettings, Settings
from callcenter.storage.recorder import Recorder

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# A call driver takes over a call handed to the controller and runs its commands through
# ``Controller.execute`` (routing, IVR). It is called in event order, inside the event
# dispatcher, may act at once (``Controller.send_many``), and returns an awaitable for the rest
# of its work, which the controller runs in the call's own task (an ``async def`` is a driver
# that does everything there). Without one, calls are released at once to the dialplan's
# default queue (the dialplan's own fail-open path, without waiting for it).
CallDriver = Callable[[ControllerAttached], Awaitable[Any]]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class ControllerStats:
    events: int = 0
    records: int = 0
    calls_ended: int = 0
    handler_errors: int = 0
    commands: int = 0
    command_failures: int = 0


@dataclass
class Controller:
    recorder: Recorder
    adapters: dict[str, PbxPort] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)  # pbx name -> control | observe
    short_abandon_s: float = 5.0
    driver: CallDriver | None = None
    clock: Clock = utcnow
    stats: ControllerStats = field(default_factory=ControllerStats)
    bus: Bus = field(default_factory=Bus)
    live: LiveRegistry = field(default_factory=LiveRegistry)

    def __post_init__(self) -> None:
        self.book = JourneyBook(short_abandon_s=self.short_abandon_s)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.listeners: list[Callable[[Event], None]] = []  # extra observers (tests, metrics)
        self.http_port: int | None = None

    def add_pbx(self, adapter: PbxPort, mode: str = "control") -> None:
        self.adapters[adapter.name] = adapter
        self.modes[adapter.name] = mode
        adapter.subscribe(self.on_event)

    # -- events ---------------------------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        """Called by the adapters' dispatchers, in PBX order. Never raises: one bad event is
        logged with its call id and the next one is handled as usual."""
        self.stats.events += 1
        with call_context(event.call_id):
            try:
                self._handle(event)
            except Exception:
                self.stats.handler_errors += 1
                log.exception("controller: failed to handle %s", event.type)
            for listener in self.listeners:
                try:
                    listener(event)
                except Exception:
                    log.exception("controller: listener failed on %s", event.type)

    def _handle(self, event: Event) -> None:
        self.live.apply(event)
        self._notify(event)
        if isinstance(event, AgentStatusChanged | AgentPauseChanged | QueueMemberChanged):
            self.recorder.submit_agent_event(event)
            return
        update = self.book.feed(event, self.clock())
        if update.records:
            self.stats.records += len(update.records)
            self.recorder.submit_records(update.records, pbx=event.pbx)
        if update.summary is not None:
            self.stats.calls_ended += 1
            self.recorder.submit_summary(update.summary)
        if isinstance(event, ControllerAttached) and self.modes.get(event.pbx) == "control":
            self._start_driving(event)

    def _notify(self, event: Event) -> None:
        """Live notifications for the API's SSE stream, the wallboard and webhooks."""
        if not self.bus.subscribers and not self.bus.hooks:
            return  # nobody listens: building the dicts would be pure cost on every event
        now = self.clock()
        if isinstance(event, AgentStatusChanged | AgentPauseChanged | QueueMemberChanged):
            agent = self.live.agents.get(event.agent)
            if agent is not None:
                self.bus.publish("agent", agent.to_dict(now), agent=event.agent,
                                 queue=getattr(event, "queue", None))
            return
        if event.call_id is None:
            return
        call = self.live.calls.get(event.call_id)
        if isinstance(event, CallEnded):
            self.bus.publish("call_ended", {"call_id": event.call_id, "cause": event.cause,
                                            "hung_up_by": event.hung_up_by.value})
        elif call is not None:
            self.bus.publish("call", {**call.to_dict(now), "event": event.type}, queue=call.queue,
                             agent=call.agent)
        if isinstance(event, AgentOffered) and call is not None:
            # Screen pop: before (or as) the agent's phone rings, who is calling.
            self.bus.publish("screen_pop", {
                "call_id": event.call_id, "agent": event.agent, "queue": event.queue,
                "caller": call.caller, "caller_name": call.caller_name, "did": call.did,
                "customer": call.customer,
            }, agent=event.agent, queue=event.queue)
        queue = getattr(event, "queue", None)
        if isinstance(queue, str) and queue:
            self.bus.publish("queue", self.live.queue_dict(queue, now), queue=queue)

    # -- driving calls --------------------------------------------------------------------------
    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start_driving(self, event: ControllerAttached) -> None:
        """Hand the call to the driver, here, in event order: a driver may act at once (routing
        sends its decision from here when the CRM answer is at hand) and returns the rest,
        which runs in the call's own task."""
        if self.driver is None:
            self._spawn(self.execute(event.pbx, self._release(event)), f"release-{event.call_id}")
            return
        try:
            rest = self.driver(event)
        except Exception:
            log.exception("controller: call driver failed; releasing the call to the default queue")
            self._spawn(self.execute(event.pbx, self._release(event)), f"release-{event.call_id}")
            return
        self._spawn(self._drive(event, rest), f"drive-{event.call_id}")

    async def _drive(self, event: ControllerAttached, rest: Awaitable[Any]) -> None:
        with call_context(event.call_id):
            try:
                await rest
            except Exception:
                # One bad call never stops the others, and the caller is never stuck: release it.
                log.exception("controller: call driver failed; releasing the call to the default queue")
                await self.execute(event.pbx, self._release(event))

    # -- journey notes from the shell (routing decisions, moves, customers) ------------------------
    def note(self, call_id: str, kind: str, **kwargs: Any) -> None:
        records = self.book.note(call_id, kind, now=self.clock(), **kwargs)
        self._submit_notes(call_id, records)

    def note_customer(self, call_id: str, *, customer_id: int | None, vip: bool | None,
                      tier: str | None = None) -> None:
        records = self.book.note_customer(call_id, customer_id=customer_id, vip=vip, tier=tier, now=self.clock())
        self._submit_notes(call_id, records)

    def note_move(self, call_id: str, from_queue: str, to_queue: str | None, **kwargs: Any) -> None:
        records = self.book.note_controller_move(call_id, from_queue, to_queue, now=self.clock(), **kwargs)
        self._submit_notes(call_id, records)

    def _submit_notes(self, call_id: str, records: list[Any] | None) -> None:
        if not records:
            return
        state = self.book.state(call_id)
        self.stats.records += len(records)
        self.recorder.submit_records(records, pbx=state.pbx if state is not None else "")

    @staticmethod
    def _release(event: ControllerAttached) -> Command:
        return ReleaseCall(call_id=event.call_id, channel=event.channel)

    async def execute(self, pbx: str, cmd: Command) -> CommandResult:
        adapter = self.adapters.get(pbx)
        if adapter is None:
            return CommandResult(cmd.command_id, False, f"no PBX named {pbx!r}")
        if self.modes.get(pbx) == "observe":
            return CommandResult(cmd.command_id, False, f"PBX {pbx!r} is in observe mode")
        self.stats.commands += 1
        try:
            result = await adapter.execute(cmd)
        except Exception as exc:  # the adapter should not raise; never let one call stop others
            log.exception("controller: %s failed", cmd.kind)
            result = CommandResult(cmd.command_id, False, f"{type(exc).__name__}: {exc}")
        if not result.ok:
            self.stats.command_failures += 1
            log.warning("controller: %s %s failed: %s", cmd.kind, cmd.command_id, result.error)
        return result

    def send_many(self, pbx: str, cmds: list[Command]) -> Awaitable[list[CommandResult]] | None:
        """``execute_many`` with the commands already on the PBX socket when this returns, if the
        adapter can do that for them (``AsteriskAdapter.send_many``: a pipelined batch, the
        link up, the call's turn free). None: nothing was sent, use ``execute_many``. The
        returned awaitable has the results."""
        adapter = self.adapters.get(pbx)
        send = getattr(adapter, "send_many", None)
        if send is None or not cmds or self.modes.get(pbx) != "control":
            return None
        sent: Awaitable[list[CommandResult]] | None = send(cmds)
        if sent is None:
            return None
        self.stats.commands += len(cmds)
        return self._checked(sent)

    async def _checked(self, sent: Awaitable[list[CommandResult]]) -> list[CommandResult]:
        return self._failures_noted(await sent)

    def _failures_noted(self, results: list[CommandResult]) -> list[CommandResult]:
        for r in results:
            if not r.ok:
                self.stats.command_failures += 1
                log.warning("controller: %s failed: %s", r.command_id, r.error)
        return results

    async def execute_many(self, pbx: str, cmds: list[Command]) -> list[CommandResult]:
        """Commands for one call in order; pipelined when the adapter can (see AsteriskAdapter)."""
        adapter = self.adapters.get(pbx)
        many = getattr(adapter, "execute_many", None)
        if adapter is None or many is None or self.modes.get(pbx) == "observe":
            out = []
            for cmd in cmds:
                out.append(await self.execute(pbx, cmd))
            return out
        self.stats.commands += len(cmds)
        try:
            results: list[CommandResult] = await many(cmds)
        except Exception as exc:
            log.exception("controller: command batch failed")
            results = [CommandResult(c.command_id, False, f"{type(exc).__name__}: {exc}") for c in cmds]
        return self._failures_noted(results)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def write_pid_file() -> Path:
    """``callcenter rules reload`` sends SIGHUP to the pid written here."""
    import os

    from callcenter.routing.cli import default_pid_file

    path = default_pid_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")
    return path


def _build_routing(settings: Settings, controller: Controller, database: Any) -> Any:
    """Routing when a rules file is configured; an invalid file stops start-up (ConfigError)."""
    if settings.rules.path is None:
        log.warning("no routing rules (rules.path): calls handed to the controller go to the dialplan's default "
                    "queue; journeys are still recorded")
        return None
    from callcenter.crm.lookup import CrmLookup
    from callcenter.crm.repository import CustomerRepository
    from callcenter.routing.service import RoutingService, RulesHolder

    holder = RulesHolder(settings.rules.path)
    rules = holder.load()
    log.info("routing rules %s loaded from %s", rules.version, settings.rules.path)
    index = None
    if settings.crm.routing_index:
        from callcenter.crm.index import RoutingIndex

        index = RoutingIndex(database.connect_kwargs())
        index.start()  # loads in the background; lookups go to the database until it is ready
    crm = CrmLookup(CustomerRepository(database.engine, default_region=settings.crm.default_region,
                                       pool=database.lookup_pool),
                    budget_ms=settings.crm.lookup_budget_ms, cache_size=settings.crm.cache_size,
                    max_inflight=settings.crm.lookup_max_inflight, index=index)
    from callcenter.api.metrics import ROUTING_LATENCY

    return RoutingService(controller, holder, crm, database.engine,
                          pbx_types={p.name: p.type for p in settings.pbx}, region=settings.crm.default_region,
                          observe_latency=ROUTING_LATENCY.observe)


def _start_callbacks(settings: Settings, controller: Controller, database: Any,
                     adapters: Sequence[tuple[PbxPort, str]], routing: Any = None) -> list[Any]:
    """The callback dispatcher per PBX the controller drives (Asterisk or FreeSWITCH): requests
    live in PostgreSQL (from the IVR, rules or the API) and are dispatched agent first."""
    from callcenter.callbacks.service import CallbackService

    out = []
    for adapter, mode in adapters:
        if mode != "control":
            continue
        pbx_queue = functools.partial(routing.pbx_queue, pbx=adapter.name) if routing is not None else None
        cb = CallbackService(controller, database.engine, pbx=adapter.name, interval=5.0, pbx_queue=pbx_queue)
        cb.start()
        out.append(cb)
    return out


async def _start_http(settings: Settings, database: Any, controller: Controller, routing: Any) -> Any:
    """The HTTP API, wallboard, SSE and metrics (``http.port: 0`` picks a free port)."""
    from callcenter.api.context import ApiContext
    from callcenter.api.server import bound_port, start_http

    ctx = ApiContext(database=database, controller=controller, settings=settings,
                     rules=routing.rules if routing is not None else None)
    runner = await start_http(ctx, settings.http.host, settings.http.port)
    controller.http_port = bound_port(runner)
    log.info("HTTP API on http://%s:%d/api/v1 (wallboard: /wallboard)", settings.http.host, controller.http_port)
    return runner


def build_adapter(pbx: PbxSettings, record: Path | None = None, timeout: float | None = None,
                  clock: Clock | None = None) -> PbxPort:
    if pbx.type == "asterisk":
        from callcenter.pbx.asterisk.adapter import AsteriskAdapter
        from callcenter.pbx.asterisk.trace import TraceWriter

        path = record or pbx.record
        writer = TraceWriter(path) if path else None
        assert pbx.port is not None and pbx.username is not None
        return AsteriskAdapter.connect(
            pbx.name, pbx.host, pbx.port, pbx.username, pbx.secret_value(), record=writer,
            action_timeout=timeout or pbx.action_timeout_s, client_options={"clock": clock} if clock else None,
        )
    if pbx.type == "freeswitch":
        from callcenter.pbx.freeswitch.adapter import FreeswitchAdapter
        from callcenter.pbx.freeswitch.trace import TraceWriter as EslTraceWriter

        path = record or pbx.record
        assert pbx.port is not None
        options: dict[str, Any] = {"clock": clock} if clock else {}
        return FreeswitchAdapter.connect(
            pbx.name, pbx.host, pbx.port, pbx.secret_value(), record=EslTraceWriter(path) if path else None,
            client_options={"command_timeout": timeout or pbx.action_timeout_s}, **options,
        )
    raise ValueError(f"PBX {pbx.name!r}: type {pbx.type!r} is not supported by this version")


async def run_daemon(settings: Settings, *, record: Path | None = None, migrate: bool = False,
                     stop: asyncio.Event | None = None, clock: Clock | None = None,
                     on_ready: Callable[[Controller, Any], Awaitable[None] | None] | None = None) -> int:
    """``callcenter run``: until SIGINT/SIGTERM (or ``stop`` is set).

    ``clock`` replaces the wall clock for PBX receipt times and journeys (the demo runs on the
    simulator's virtual time); ``on_ready(controller, database)`` runs once everything is up."""
    from callcenter.storage import db as dbmod

    if not settings.pbx:
        log.error("no PBX configured: add one under 'pbx:' in the settings (see config/callcenter.example.yaml)")
        return 2
    adapters = []
    for i, pbx in enumerate(settings.pbx):
        rec = None
        if record is not None:
            rec = record if len(settings.pbx) == 1 else record.with_name(f"{record.stem}.{pbx.name}{record.suffix}")
        adapters.append((build_adapter(pbx, rec, clock=clock), pbx.mode))
        del i

    database = await dbmod.open_database(settings)
    try:
        if migrate or database.embedded is not None:
            await asyncio.to_thread(dbmod.upgrade, database.dsn)
        if await dbmod.current_revision(database.engine) is None:
            log.error("the database has no schema: run `callcenter db upgrade` (or `callcenter run --migrate`)")
            return 2
        recorder = Recorder(database.connect_kwargs(), settings.journey.spill_path(),
                            fcr_window_h=settings.journey.fcr_window_h)
        controller = Controller(recorder, short_abandon_s=settings.journey.short_abandon_s, clock=clock or utcnow)
        for adapter, mode in adapters:
            controller.add_pbx(adapter, mode)
        database.lookup_pool = await database.pool() if settings.rules.path is not None else None
        routing = _build_routing(settings, controller, database)
        if routing is not None:
            # Calls handed back after an answered conversation (dialplan [cc-survey], enabled by
            # CC_SURVEY) get the post-call survey; every other call is routed.
            from callcenter.survey.service import SurveyService

            controller.driver = SurveyService(controller, database.engine).wrap(routing.begin)

        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            if signals == 1:
                log.info("stopping (again to force)")
                stop.set()
            else:
                log.warning("forced exit")
                raise SystemExit(130)

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, on_signal)
        if routing is not None:
            holder = routing.rules
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signal.SIGHUP, holder.reload)
        pid_file = write_pid_file()

        await recorder.start()
        overflow = asyncio.create_task(routing.overflow_loop(), name="overflow") if routing else None
        callbacks = _start_callbacks(settings, controller, database, adapters, routing)
        http = None
        try:
            http = await _start_http(settings, database, controller, routing)
            for adapter, _ in adapters:
                # A PBX that is down at start is not fatal: the client keeps reconnecting.
                try:
                    await adapter.start()
                    log.info("connected to %s", adapter.name)
                except Exception as exc:
                    log.error("PBX %s: %s", adapter.name, exc)
                    if type(exc).__name__ == "LoginError":
                        return 2
            if on_ready is not None:
                maybe = on_ready(controller, database)
                if asyncio.iscoroutine(maybe):
                    await maybe
            await stop.wait()
        finally:
            if http is not None:
                from callcenter.api.server import stop_http

                await stop_http(http)
            if overflow is not None:
                overflow.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await overflow
            for adapter, _ in adapters:
                with contextlib.suppress(Exception):
                    await adapter.close()
            for cb in callbacks:
                await cb.close()
            await controller.close()
            if routing is not None:
                await routing.close()
            await recorder.close()
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
            with contextlib.suppress(FileNotFoundError):
                pid_file.unlink()
        return 0
    finally:
        await database.close()
