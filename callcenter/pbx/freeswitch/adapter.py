"""``FreeswitchAdapter``: the PBX port over the FreeSWITCH Event Socket (imperative shell).

Wiring only: the ESL client (``callcenter.pbx.freeswitch.client``) owns the socket, login,
reconnects, command/reply correlation and in-order event dispatch; ``FreeswitchTranslator``
turns what it reads into domain events; ``actions.plan`` turns commands into ESL commands.
Nothing past this module sees a raw ESL message.

* Events: every ESL event goes through the translator, driven by the controller or not
  (observe mode). Subscribers are awaited inside the client's event worker (PBX order, back-
  pressure). A failing subscriber is logged and does not keep the event from the others.
* (Re)connect: the client awaits ``on_connected`` after every login. ``show channels as
  json``, ``callcenter_config queue list`` + ``queue list members <queue>`` and ``agent list``
  are read and fed to ``translator.resync``: calls that ended while the link was down are
  closed, calls we did not see start are adopted (a caller already parked is announced with
  ``ControllerAttached``: CHANNEL_PARK is one-shot), agent states re-announced.
* Commands for one call run strictly in order (one lock per call). Applications on the parked
  caller (``Execute`` steps) go out as ``sendmsg`` with ``event-lock`` and our own
  ``Event-UUID``; the step is done when the ``CHANNEL_EXECUTE_COMPLETE`` whose
  ``Application-UUID`` is that id arrives (sendmsg_ivr), so the next one never runs nested inside
  it (checks/sendmsg_no_event_lock). It fails when the channel is destroyed first, on a
  timeout (the application's own wait plus ``execute_timeout``) or when the link drops. The
  sendmsg reply itself only means "queued". Domain events carrying that id as ``command_id``
  (DigitsCollected, PromptFinished) are republished with the command's id.
* Each plan that runs applications on a parked call first renews the dialplan's fail-open
  timer (``actions.plan(lease_s=...)``), so a controller that stops talking mid-IVR still lets
  the call reach the default queue.
* Completions are seen by the event handler, i.e. in the client's event worker: await
  ``execute()`` of a command that runs applications from a task of its own (the controller
  drives each call in a task), never inline in an event subscriber.
* Originate (supervisor spy, callbacks) goes out as ``bgapi`` with our own ``Job-UUID`` and an
  ``origination_uuid`` we choose; ``execute`` returns once FreeSWITCH accepted the job (like
  Asterisk's async Originate), ``detail`` has ``request_id`` (= the command id), ``job_uuid``
  and ``channel`` (the new leg). The later ``OriginateResult`` (BACKGROUND_JOB) is republished
  with ``request_id`` = the command id.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid as uuidlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from callcenter.domain.commands import (
    AddQueueMember,
    CollectDigits,
    Command,
    Originate,
    RemoveQueueMember,
    StartSpy,
)
from callcenter.domain.events import CallEnded, DigitsCollected, Event, OriginateResult, PromptFinished
from callcenter.pbx.delivery import Delivery
from callcenter.pbx.freeswitch.actions import DEFAULT_NAMES, Api, DialplanNames, Execute, is_uuid, plan, tier_queue
from callcenter.pbx.freeswitch.client import EslClient
from callcenter.pbx.freeswitch.message import EslEvent, EslFrame
from callcenter.pbx.freeswitch.trace import TraceWriter
from callcenter.pbx.freeswitch.translate import SUBSCRIPTIONS, FreeswitchTranslator, parse_table
from callcenter.pbx.port import CommandResult, EventHandler

__all__ = ["EslClientLike", "FreeswitchAdapter"]

log = logging.getLogger(__name__)

_MAPPED_MAX = 4096


def _utcnow() -> datetime:
    return datetime.now(UTC)


class EslClientLike(Protocol):
    """What the adapter needs of ``EslClient`` (the agreed API)."""

    @property
    def connected(self) -> bool: ...

    def on_event(self, handler: Callable[[EslEvent, datetime], Awaitable[None] | None]) -> None: ...

    def on_connected(self, handler: Callable[[], Awaitable[None]]) -> None: ...

    def on_disconnected(self, handler: Callable[[Exception | None], Awaitable[None] | None]) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def api(self, command: str, timeout: float | None = None) -> str: ...

    async def sendmsg(
        self,
        uuid: str,
        app: str,
        arg: str | None = None,
        *,
        event_lock: bool = True,
        event_uuid: str | None = None,
        timeout: float | None = None,
    ) -> EslFrame: ...

    async def command(
        self, text: str, *, headers: Mapping[str, str] | Sequence[tuple[str, str]] = (), timeout: float | None = None
    ) -> EslFrame: ...


class _Gone(Exception):
    """The channel went away (CHANNEL_DESTROY) before the application completed."""


class FreeswitchAdapter:
    """``PbxPort`` for one FreeSWITCH node, on top of an ``EslClient`` (or anything with its API)."""

    def __init__(
        self,
        name: str,
        client: EslClientLike,
        *,
        translator: FreeswitchTranslator | None = None,
        names: DialplanNames | None = None,
        command_timeout: float = 10.0,
        execute_timeout: float = 120.0,
        controller_lease_s: int | None = 30,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._name = name
        self._client = client
        self.translator = translator or FreeswitchTranslator(name)
        self._names = names or DEFAULT_NAMES
        self._command_timeout = command_timeout
        self._execute_timeout = execute_timeout
        self._lease_s = controller_lease_s
        self._clock = clock  # the client's clock: resync compares it with event times
        self._handlers: list[EventHandler] = []
        self._deliver = Delivery(name, self._handlers, self._prepared).deliver
        self._locks: dict[str, asyncio.Lock] = {}
        # Event-UUID of a sendmsg -> (channel, future of its CHANNEL_EXECUTE_COMPLETE)
        self._executing: dict[str, tuple[str, asyncio.Future[EslEvent]]] = {}
        self._command_of_app: OrderedDict[str, str] = OrderedDict()  # Application-UUID -> command id
        self._command_of_job: OrderedDict[str, str] = OrderedDict()  # Job-UUID / origination_uuid -> id
        client.on_event(self._on_esl_event)
        client.on_connected(self._on_connected)
        client.on_disconnected(self._on_disconnected)

    @classmethod
    def connect(
        cls,
        name: str,
        host: str,
        port: int,
        password: str,
        *,
        record: TraceWriter | None = None,
        client_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> FreeswitchAdapter:
        """The adapter with a real ESL client (nothing connects before ``start()``).

        The client subscribes to ``translate.SUBSCRIPTIONS`` (the events the translator acts
        on, plus ``CUSTOM callcenter::info``): FreeSWITCH filters before sending, so about half
        of an ALL stream never reaches us - what keeps the listener far from FreeSWITCH's
        "too far behind" limit. ``client_options={"subscriptions": ("ALL",)}`` for a full trace.
        """
        # One clock for both: resync compares snapshot times with the client's event times.
        clock = options.pop("clock", _utcnow)
        opts: dict[str, Any] = {"subscriptions": SUBSCRIPTIONS, **(client_options or {})}
        client = EslClient(host, port, password, name=name, record=record, clock=clock, **opts)
        return cls(name, client, clock=clock, **options)

    # -- PbxPort ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def connected(self) -> bool:
        return bool(self._client.connected)

    def subscribe(self, handler: EventHandler) -> None:
        self._handlers.append(handler)

    async def start(self) -> None:
        """Connect and log in; the first resync has run (and been published) when this returns."""
        await self._client.start()

    async def close(self) -> None:
        await self._client.close()
        self._fail_executing("adapter closed")

    async def execute(self, cmd: Command) -> CommandResult:
        key = cmd.call_id or cmd.channel or cmd.command_id
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            return await self._execute(cmd)

    # -- events -------------------------------------------------------------------------------
    def _on_esl_event(self, ev: EslEvent, at: datetime) -> Awaitable[None] | None:
        # Sync: most events imply no domain event, and the controller's subscriber is synchronous:
        # no coroutine (``Delivery``). When a subscriber returns an awaitable, the client awaits
        # the rest before it hands over the next ESL event.
        name = ev.name
        if name == "CHANNEL_EXECUTE_COMPLETE":
            waiting = self._executing.get(ev.get("Application-UUID") or "")
            if waiting is not None and not waiting[1].done():
                waiting[1].set_result(ev)
        elif name == "CHANNEL_DESTROY":
            uuid = ev.unique_id
            for channel, fut in list(self._executing.values()):
                if channel == uuid and not fut.done():
                    fut.set_exception(_Gone(f"channel {uuid} is gone"))
        events = self.translator.feed(ev, at)
        return self._deliver(events) if events else None

    async def _publish(self, events: list[Event]) -> None:
        rest = self._deliver(events)
        if rest is not None:
            await rest

    def _prepared(self, event: Event) -> Event:
        """The event as subscribers see it (``_rewrite``), with the adapter's own bookkeeping
        done (a finished call's lock forgotten)."""
        event = self._rewrite(event)
        if isinstance(event, CallEnded) and event.call_id:
            lock = self._locks.get(event.call_id)
            if lock is not None and not lock.locked():
                del self._locks[event.call_id]
        return event

    def _rewrite(self, event: Event) -> Event:
        if isinstance(event, DigitsCollected | PromptFinished) and event.command_id in self._command_of_app:
            return dataclasses.replace(event, command_id=self._command_of_app[event.command_id or ""])
        if isinstance(event, OriginateResult):
            key = event.request_id if event.request_id in self._command_of_job else event.extra.get("origination_uuid")
            command_id = self._command_of_job.pop(key or "", None)
            if command_id is not None:
                self._command_of_job.pop(event.extra.get("origination_uuid") or "", None)
                self._command_of_job.pop(event.request_id, None)
                return dataclasses.replace(event, request_id=command_id)
        return event

    async def _on_connected(self) -> None:
        snapshot_at = self._clock()
        try:
            channels = await self._client.api("show channels as json", timeout=self._command_timeout)
            queues = parse_table(await self._client.api("callcenter_config queue list", timeout=self._command_timeout))
            members = []
            for q in queues:
                if q.get("name") and " " not in q["name"]:
                    cmd = f"callcenter_config queue list members {q['name']}"
                    members.append(await self._client.api(cmd, timeout=self._command_timeout))
            agents = await self._client.api("callcenter_config agent list", timeout=self._command_timeout)
            tiers = await self._client.api("callcenter_config tier list", timeout=self._command_timeout)
            events = self.translator.resync(
                channels, at=self._clock(), snapshot_at=snapshot_at, members=members, agents=agents, tiers=tiers
            )
        except Exception as exc:  # link lost again, a reply that is not JSON: stay up, log it
            log.warning("pbx %s: resync after connect failed (%s); live state may be stale", self._name, exc)
            return
        log.info("pbx %s: connected, %d live call(s) after resync", self._name, len(self.translator.live_calls()))
        await self._publish(events)

    def _on_disconnected(self, exc: Exception | None) -> None:
        # Completions of applications running now may be lost with the link: do not leave the
        # commands hanging until their timeout (their outcome is unknown; the caller decides).
        self._fail_executing("ESL link lost")
        if exc is not None:
            log.warning("pbx %s: ESL link lost (%s); reconnecting", self._name, exc)

    def _fail_executing(self, why: str) -> None:
        for _, fut in list(self._executing.values()):
            if not fut.done():
                fut.set_exception(ConnectionError(why))

    # -- commands -----------------------------------------------------------------------------
    def _fail(self, cmd: Command, error: str, detail: dict[str, Any]) -> CommandResult:
        return CommandResult(cmd.command_id, ok=False, error=error, detail=detail)

    def _caller_uuid(self, cmd: Command) -> str | None:
        if cmd.channel:
            return cmd.channel
        if cmd.call_id:
            return self.translator.caller_channel(cmd.call_id) or (cmd.call_id if is_uuid(cmd.call_id) else None)
        return None

    def _spy_uuid(self, cmd: StartSpy) -> str | None:
        """The caller's channel of the call to spy on: whisper_aleg on it reaches the agent."""
        if cmd.call_id and self.translator.caller_channel(cmd.call_id):
            return cmd.call_id
        if is_uuid(cmd.target):
            return self.translator.call_of_channel(cmd.target) or cmd.target
        return self.translator.call_of_agent(cmd.target)

    async def _agent_contact(self, agent: str) -> str | None:
        """The dial string of a mod_callcenter agent (its ``contact``), read when needed: a
        callback rings the agent the way mod_callcenter would."""
        reply = await self._client.api("callcenter_config agent list", timeout=self._command_timeout)
        for row in parse_table(reply):
            if row.get("name") == agent:
                return row.get("contact") or None
        return None

    async def _execute(self, cmd: Command) -> CommandResult:
        if isinstance(cmd, Originate) and "/" not in cmd.endpoint:
            # An agent name (the callback dispatcher names agents as mod_callcenter does).
            try:
                contact = await self._agent_contact(cmd.endpoint) if self.connected else None
            except Exception as exc:
                return self._fail(cmd, f"agent {cmd.endpoint!r}: {type(exc).__name__}: {exc}", {})
            if contact is None:
                return self._fail(cmd, f"agent {cmd.endpoint!r}: no such mod_callcenter agent (or no contact)", {})
            cmd = dataclasses.replace(cmd, endpoint=contact)
        uuid = self._caller_uuid(cmd)
        call_id = self.translator.call_of_channel(uuid) if uuid else None
        parked = bool(call_id and self.translator.is_controlled(call_id))
        leg_uuid = str(uuidlib.uuid4()) if isinstance(cmd, StartSpy | Originate) else None
        try:
            steps = plan(
                cmd,
                uuid=uuid,
                spy_uuid=self._spy_uuid(cmd) if isinstance(cmd, StartSpy) else None,
                leg_uuid=leg_uuid,
                names=self._names,
                lease_s=self._lease_s if parked else None,
            )
        except ValueError as exc:
            return self._fail(cmd, str(exc), {})
        if not self.connected:
            return self._fail(cmd, "ESL link is down", {})
        if call_id and not parked and any(isinstance(s, Execute) for s in steps):
            return self._fail(cmd, "call is not parked for the controller", {})
        detail: dict[str, Any] = {}
        for step in steps:
            if isinstance(step, Execute):
                failure = await self._run_execute(cmd, step, detail)
            elif step.background:
                failure = await self._run_background(cmd, step, leg_uuid, detail)
            else:
                failure = await self._run_api(step, detail)
            if failure is not None:
                return self._fail(cmd, failure, detail)
        if isinstance(cmd, AddQueueMember | RemoveQueueMember):
            # mod_callcenter fires no event for tier add/del: announce the membership ourselves
            await self._publish(self.translator.tier_changed(
                cmd.agent, tier_queue(cmd.queue, self._names), isinstance(cmd, AddQueueMember), self._clock(),
                level=cmd.penalty if isinstance(cmd, AddQueueMember) else None))
        return CommandResult(cmd.command_id, ok=True, detail=detail)

    async def _run_api(self, step: Api, detail: dict[str, Any]) -> str | None:
        verb = step.command.split(" ", 1)[0]
        try:
            reply = await self._client.api(step.command, timeout=self._command_timeout)
        except Exception as exc:  # CommandFailed, CommandTimeout, ConnectionLost: may or may not have run
            return f"{verb}: {type(exc).__name__}: {exc}"
        text = reply.strip()
        # api output has no status line: FreeSWITCH's convention is -ERR / -USAGE on failure
        # (park_hangup_in_ivr: uuid_transfer to a dead uuid -> -ERR No such channel!)
        if text.startswith(("-ERR", "-USAGE")):
            return f"{verb}: {text}"
        detail.setdefault("replies", []).append(text)
        return None

    async def _run_background(
        self, cmd: Command, step: Api, leg_uuid: str | None, detail: dict[str, Any]
    ) -> str | None:
        job = str(uuidlib.uuid4())
        self._remember(self._command_of_job, job, cmd.command_id)
        if leg_uuid:
            self._remember(self._command_of_job, leg_uuid, cmd.command_id)
        try:
            frame = await self._client.command(
                f"bgapi {step.command}", headers=[("Job-UUID", job)], timeout=self._command_timeout
            )
        except Exception as exc:
            self._command_of_job.pop(job, None)
            return f"bgapi {step.command.split(' ', 1)[0]}: {type(exc).__name__}: {exc}"
        detail.update(request_id=cmd.command_id, job_uuid=job, reply=frame.reply_text)
        if leg_uuid:
            detail["channel"] = leg_uuid
        return None

    async def _run_execute(self, cmd: Command, step: Execute, detail: dict[str, Any]) -> str | None:
        event_uuid = str(uuidlib.uuid4())
        fut: asyncio.Future[EslEvent] = asyncio.get_running_loop().create_future()
        self._executing[event_uuid] = (step.uuid, fut)
        self._remember(self._command_of_app, event_uuid, cmd.command_id)
        wait = self._execute_timeout
        if isinstance(cmd, CollectDigits) and step.app == "play_and_get_digits":
            wait += cmd.timeout_ms / 1000 + self._names.digit_timeout_ms / 1000 * cmd.max_digits
        try:
            try:
                await self._client.sendmsg(
                    step.uuid, step.app, step.arg, event_lock=step.event_lock, event_uuid=event_uuid,
                    timeout=self._command_timeout,
                )
            except Exception as exc:  # -ERR invalid session id: the channel is gone
                return f"sendmsg {step.app}: {type(exc).__name__}: {exc}"
            try:
                async with asyncio.timeout(wait):
                    done = await fut
            except TimeoutError:
                return f"{step.app}: no CHANNEL_EXECUTE_COMPLETE within {wait:g} s"
            except (_Gone, ConnectionError) as exc:
                return f"{step.app}: {exc}"
        finally:
            self._executing.pop(event_uuid, None)
            if fut.done() and not fut.cancelled():
                fut.exception()  # retrieved
        response = done.get("Application-Response")
        hangup = done.get("Answer-State") == "hangup"
        if step.app == "play_and_get_digits":
            var = (step.arg or "").split(" ")[7] if len((step.arg or "").split(" ")) > 7 else ""
            ok = done.get("variable_read_result") == "success"
            detail["digits"] = (done.get("variable_" + var) or "") if ok and var else ""
        elif step.app == "playback":
            detail["result"] = response
        if hangup:
            # park_hangup_in_ivr: the application completes with Answer-State hangup
            return f"{step.app}: cut off (the caller hung up)"
        return None

    @staticmethod
    def _remember(table: OrderedDict[str, str], key: str, value: str) -> None:
        table[key] = value
        while len(table) > _MAPPED_MAX:
            table.popitem(last=False)
