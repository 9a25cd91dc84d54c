"""The routing shell: looks the caller up, asks the pure core, drives the call, watches queues.

For each call handed to the controller (``ControllerAttached``):

1. CRM lookup within its time budget (``CrmLookup``): a slow or down database means the
   fallback rule routes the call and the journey says so (``routed`` record,
   ``detail.lookup_failed``). Calls are never held up by the CRM.
2. ``decide()`` (pure) over the caller, the customer, the live queue state and the rules that
   are current at that moment; the journey records the rules version and the rule id, and the
   customer (id, VIP) for attribution; the live call gets the customer card for screen pops.
3. The decision's commands run through the adapter in order: display name first (so the
   agent's phone shows ``VIP Ivanova A.`` from the first ring), an announcement, then the
   queue with its priority, or the IVR: each ``CollectDigits`` result goes through the pure
   ``ivr_next`` until the caller leaves the menu (queue, callback, voicemail, hang-up).
4. An unknown caller becomes a CRM lead after routing, off the critical path.

The overflow loop (every ``overflow_interval`` s) feeds the live state to the pure planner and
carries out its moves (``MoveToQueue``, noted in the journey as controller moves: one call, two
stints, never an abandon) and agent-group changes (``AddQueueMember``/``RemoveQueueMember``).

``RulesHolder`` owns the current rules: an invalid file at start-up stops the daemon with the
precise errors; on reload (SIGHUP, ``callcenter rules reload``, the admin API) an invalid file
is refused with the same errors and the running rules stay. A call keeps the RuleSet it
started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from callcenter.callbacks.dialog import (
    Ask,
    Declined,
    Failed,
    Filed,
    Step,
    ask_commands,
    dialog_next,
    dialog_start,
    failed_commands,
    filed_commands,
    offer_start,
)
from callcenter.crm.lookup import CrmLookup, LookupResult
from callcenter.crm.phones import PhoneError, to_e164
from callcenter.crm.repository import CustomerCard
from callcenter.domain.commands import Command, ReleaseCall
from callcenter.domain.events import CallArrived, CallEnded, ControllerAttached, Event
from callcenter.logs import call_context
from callcenter.pbx.port import CommandResult
from callcenter.routing.decide import (
    CallInfo,
    Decision,
    LiveState,
    QueueLive,
    decide,
    decide_after_ivr,
    decision_commands,
)
from callcenter.routing.ivr import IvrCollect, IvrInvalid, ivr_commands, ivr_next
from callcenter.routing.loader import load_rules_checked, parse_rules_checked, reload_rules
from callcenter.routing.overflow import (
    AddGroup,
    MoveCall,
    RemoveGroup,
    WaitingCall,
    overflow_actions,
    overflow_commands,
)
from callcenter.routing.rules import RuleSet
from callcenter.yamlconf import ConfigError

if TYPE_CHECKING:
    from callcenter.app import Controller
    from callcenter.calls.live import LiveRegistry

log = logging.getLogger(__name__)


def _problem_dict(p: Any) -> dict[str, Any]:
    return {"file": p.file, "line": p.line, "column": p.column, "path": p.path, "message": p.message}


class RulesHolder:
    """The current routing rules (also the HTTP API's ``RulesPort``)."""

    def __init__(self, path: Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self.rules: RuleSet | None = None
        self.text: str | None = None
        self.loaded_at: datetime | None = None
        self.reloads = 0
        self.refused = 0
        self.listeners: list[Callable[[RuleSet], None]] = []

    def load(self) -> RuleSet:
        """At start-up: an invalid file is fatal (ConfigError with every problem)."""
        if self.path is None:
            raise ConfigError("no routing rules file configured (rules.path in the settings)")
        rules, warnings = load_rules_checked(self.path)
        for w in warnings:
            log.warning("rules: %s", w)
        self._set(rules)
        return rules

    def _set(self, rules: RuleSet) -> None:
        self.rules = rules
        assert self.path is not None
        self.text = self.path.read_text(encoding="utf-8")
        self.loaded_at = datetime.now(UTC)
        for listener in self.listeners:
            listener(rules)

    # -- RulesPort --------------------------------------------------------------------------------
    def current(self) -> dict[str, Any]:
        return {
            "version": self.rules.version if self.rules else None,
            "path": str(self.path) if self.path else None,
            "text": self.text,
            "loaded_at": self.loaded_at.isoformat() if self.loaded_at else None,
        }

    def validate(self, candidate: str) -> list[dict[str, Any]]:
        try:
            parse_rules_checked(candidate, "candidate")
        except ConfigError as exc:
            return [_problem_dict(p) for p in exc.problems] or [
                {"file": "candidate", "line": None, "column": None, "path": "", "message": str(exc)}]
        return []

    def reload(self) -> dict[str, Any]:
        if self.path is None:
            return {"ok": False, "problems": [{"message": "no rules file configured"}]}
        new, problems, changed = reload_rules(self.path, self.rules)
        if new is None:
            self.refused += 1
            for p in problems:
                log.error("rules reload refused, the running rules (%s) stay: %s",
                          self.rules.version if self.rules else "-", p)
            return {"ok": False, "version": self.rules.version if self.rules else None,
                    "problems": [_problem_dict(p) for p in problems]}
        if changed:
            self._set(new)
            self.reloads += 1
            log.info("rules reloaded: version %s", new.version)
        return {"ok": True, "version": new.version, "changed": changed}


@dataclass
class RoutedCall:
    call_id: str
    pbx: str
    channel: str | None
    tier: str | None
    lookup_failed: bool
    rules: RuleSet
    priority: int = 0
    steps_done: set[str] = field(default_factory=set)


@dataclass
class RoutingStats:
    routed: int = 0
    fallback: int = 0
    lookup_failed: int = 0
    ivr_steps: int = 0
    moves: int = 0
    group_changes: int = 0
    failures: int = 0
    callbacks_filed: int = 0
    callback_failed: int = 0
    latencies_ms: list[float] = field(default_factory=list)


def _screen_card(card: CustomerCard) -> dict[str, Any]:
    """What the agent's screen pop shows of the customer."""
    return {
        "id": card.id, "name": card.name, "tier": card.tier, "vip": card.vip, "stage": card.stage,
        "segment": card.segment, "notes": card.notes, "assigned_agent": card.assigned_agent,
        "interactions": [i.summary for i in card.interactions[:3]],
    }


def _first_batch(d: Decision, commands: list[Command]) -> list[Command]:
    """The commands of a decision that go out before the shell has to wait for a result: all
    of them for a plain queue and for an IVR (up to the menu's first prompt); before the offer
    (queue with a callback offer) or the dialog (callback)."""
    if d.action == "queue" and d.callback_offer is not None:
        return commands[:-1]
    if d.action == "callback":
        return commands[:-2]
    return commands


class _LiveQueues(Mapping[str, QueueLive]):
    """The live state of a rule set's queues (by logical name), each computed on first read.

    A decision reads a few queues at most (the live conditions of the rules it tries, the
    chosen queue's callback offer), and each ``queue_stats`` walks that queue's members: with
    tens of agents in tens of queues, computing them all for every call cost more than the
    decision. Nothing else runs while a decision is taken, so the queues read are the same as
    if they had all been read at once."""

    __slots__ = ("_done", "_live", "_now", "_pbx", "_pbx_type", "_rules")

    def __init__(self, live: LiveRegistry, rules: RuleSet, pbx: str, pbx_type: str | None, now: datetime) -> None:
        self._live, self._rules, self._pbx, self._pbx_type, self._now = live, rules, pbx, pbx_type, now
        self._done: dict[str, QueueLive] = {}

    def __getitem__(self, name: str) -> QueueLive:
        q = self._done.get(name)
        if q is None:
            cfg = self._rules.queues[name]  # KeyError: not a queue of the rules
            s = self._live.queue_stats(cfg.pbx_name(name, self._pbx, self._pbx_type), self._now)
            q = self._done[name] = QueueLive(s.logged_in, s.available, s.busy, s.paused, s.waiting,
                                             s.longest_wait_s, s.estimated_wait_s)
        return q

    def __iter__(self) -> Iterator[str]:
        return iter(self._rules.queues)

    def __len__(self) -> int:
        return len(self._rules.queues)


class RoutingService:
    def __init__(
        self,
        controller: Controller,
        rules: RulesHolder,
        crm: CrmLookup | None,
        engine: AsyncEngine | None,
        *,
        pbx_types: dict[str, str],
        region: str = "US",
        overflow_interval: float = 1.0,
        create_leads: bool = True,
        observe_latency: Callable[[float], None] | None = None,
    ) -> None:
        self.controller = controller
        self.rules = rules
        self.crm = crm
        self.engine = engine
        self.pbx_types = pbx_types
        self.region = region
        self.overflow_interval = overflow_interval
        self.create_leads = create_leads
        self.observe_latency = observe_latency
        self.calls: dict[str, RoutedCall] = {}
        self.active_groups: set[tuple[str, str]] = set()
        self.stats = RoutingStats()
        self._sticky_cache: dict[tuple[int, str], str | None] = {}
        self._background: set[asyncio.Task[Any]] = set()
        controller.driver = self.begin
        controller.listeners.append(self._on_event)

    # -- per call -------------------------------------------------------------------------------
    def _on_event(self, ev: Event) -> None:
        if isinstance(ev, CallEnded) and ev.call_id is not None:
            self.calls.pop(ev.call_id, None)
        elif (isinstance(ev, CallArrived) and ev.caller_number and self.crm is not None
              and self.controller.modes.get(ev.pbx) == "control"):
            # Look the caller up while the PBX still answers the call: by the time it is handed
            # to the controller (ControllerAttached) the CRM card is there or on its way.
            self.crm.prefetch(ev.caller_number)

    def pbx_queue(self, queue: str, pbx: str) -> str:
        """A queue's name on ``pbx`` under the rules running now (its own name when the rules
        do not list it)."""
        rules = self.rules.rules
        q = rules.queues.get(queue) if rules is not None else None
        return q.pbx_name(queue, pbx, self.pbx_types.get(pbx)) if q is not None else queue

    def live_state(self, rules: RuleSet, pbx: str, now: datetime) -> LiveState:
        """The rules' queues as they are now, each read when the decision first asks for it."""
        return LiveState(_LiveQueues(self.controller.live, rules, pbx, self.pbx_types.get(pbx), now))

    def begin(self, ev: ControllerAttached) -> Awaitable[None]:
        """The controller's call driver: called in event order, inside the PBX dispatcher's
        callback; returns what is left to do for the call (the controller awaits it in the
        call's own task).

        When the CRM answer is already at hand (the routing index, a lookup started at the
        call's arrival that has completed, a withheld number) the decision is taken here and
        its commands are on the PBX socket before this returns: no task switch between the
        arrival event and the routing command. A sticky agent whose phone is not known yet, or
        a batch the adapter cannot put on the wire at once (FreeSWITCH, a plain AMI action),
        is carried out in the call's task after the decision. While the lookup is still
        running, ``drive`` does everything in the call's task."""
        started = time.perf_counter()
        rules = self.rules.rules
        if rules is None or ev.call_id is None:
            return self.drive(ev)
        lookup = self.crm.lookup_nowait(ev.caller_number) if self.crm else None
        if lookup is None:
            return self.drive(ev)
        now = self.controller.clock()
        call = self._call_info(ev, now)
        decision, routed = self._decide(ev, rules, call, lookup, now)
        known, sticky = self._sticky_now(decision, ev.pbx)
        if not known:
            return self._proceed(ev, call, lookup, decision, routed, started, None, None)
        commands = decision_commands(decision, ev.call_id, ev.channel, sticky_interface=sticky)
        sent = self.controller.send_many(ev.pbx, _first_batch(decision, commands))
        return self._proceed(ev, call, lookup, decision, routed, started, commands, sent)

    async def drive(self, ev: ControllerAttached) -> None:
        """A call from its arrival to leaving the controller's hands, waiting for the CRM."""
        started = time.perf_counter()
        rules = self.rules.rules
        assert ev.call_id is not None
        if rules is None:
            await self.controller.execute(ev.pbx, ReleaseCall(call_id=ev.call_id, channel=ev.channel))
            return
        now = self.controller.clock()
        call = self._call_info(ev, now)
        lookup = await self.crm.lookup(ev.caller_number) if self.crm else LookupResult(
            call.caller_e164, None, withheld=call.withheld, failed=True, reason="no CRM configured")
        decision, routed = self._decide(ev, rules, call, lookup, now)
        await self._proceed(ev, call, lookup, decision, routed, started, None, None)

    def _call_info(self, ev: ControllerAttached, now: datetime) -> CallInfo:
        return CallInfo.from_caller(ev.caller_number, ev.did, now, pbx=ev.pbx, pbx_type=self.pbx_types.get(ev.pbx),
                                    region=self.region)

    def _decide(self, ev: ControllerAttached, rules: RuleSet, call: CallInfo, lookup: LookupResult, now: datetime
                ) -> tuple[Decision, RoutedCall]:
        """The pure decision, recorded in the journey; the call is the service's from now on."""
        assert ev.call_id is not None
        decision = decide(call, lookup.card, self.live_state(rules, ev.pbx, now), rules,
                          lookup_failed=lookup.failed, explain=False)
        self._record_decision(ev, decision, lookup)
        routed = RoutedCall(ev.call_id, ev.pbx, ev.channel, tier=decision.tier, lookup_failed=lookup.failed,
                            rules=rules, priority=decision.priority)
        self.calls[ev.call_id] = routed
        return decision, routed

    async def _proceed(self, ev: ControllerAttached, call: CallInfo, lookup: LookupResult, decision: Decision,
                       routed: RoutedCall, started: float, commands: list[Command] | None,
                       sent: Awaitable[list[CommandResult]] | None) -> None:
        """Carry a decision out. ``commands``/``sent``: the decision's commands and the results
        of its first batch (``_first_batch``) when ``begin`` already put that on the wire."""
        assert ev.call_id is not None
        if commands is None:
            sticky = await self._sticky_interface(decision, ev.pbx)
            commands = decision_commands(decision, ev.call_id, ev.channel, sticky_interface=sticky)
        if decision.action == "ivr":
            # what comes before the menu (display name, announcement) and the menu's first
            # prompt, pipelined; then the menu, from that prompt's digits
            results = await self._results(ev.pbx, commands, sent)
            if all(r.ok for r in results[:-1]):
                await self._ivr(ev, routed, decision, commands[-1], call, started, first=results[-1])
            else:
                self.stats.failures += 1
        else:
            await self._carry_out(ev, routed, decision, commands, call, started, sent=sent)
        if lookup.unknown and self.create_leads and self.engine is not None and self.crm is not None and lookup.e164:
            self._spawn(self._lead(ev, lookup.e164))

    async def _run(self, pbx: str, commands: list[Command], *, started: float | None = None,
                   sent: Awaitable[list[CommandResult]] | None = None) -> bool:
        """A decision's commands, pipelined by the adapter where the PBX allows it; ``sent``:
        their results when they are already on the wire (``begin``)."""
        if not commands:
            return True
        results = await self._results(pbx, commands, sent)
        if started is not None:
            self._latency(started)
        if any(not r.ok for r in results):
            self.stats.failures += 1
            return False
        return True

    async def _results(self, pbx: str, commands: list[Command],
                       sent: Awaitable[list[CommandResult]] | None) -> list[CommandResult]:
        return await sent if sent is not None else await self.controller.execute_many(pbx, commands)

    def _latency(self, started: float) -> None:
        ms = (time.perf_counter() - started) * 1000
        self.stats.latencies_ms.append(ms)
        if len(self.stats.latencies_ms) > 100_000:
            del self.stats.latencies_ms[:50_000]
        if self.observe_latency is not None:
            self.observe_latency(ms / 1000)

    async def _ivr(self, ev: ControllerAttached, routed: RoutedCall, decision: Decision, collect_cmd: Command,
                   call: CallInfo, started: float, *, first: CommandResult) -> None:
        """The menu from its first prompt (``collect_cmd``, already run: ``first``) on."""
        assert ev.call_id is not None and decision.ivr is not None and decision.ivr_menu is not None
        menu = routed.rules.ivr[decision.ivr_menu]
        step: Any = decision.ivr
        pending: list[Command] = [collect_cmd]
        done: CommandResult | None = first
        while True:
            self.stats.ivr_steps += 1
            node, tries = step.node, step.tries
            digits: str | None = None
            for cmd in pending:
                if done is not None:  # the menu's first prompt went out with the decision
                    result, done = done, None
                else:
                    result = await self.controller.execute(ev.pbx, cmd)
                if not result.ok:
                    return  # caller gone or the call left the controller (fail-open took it)
                if cmd.kind == "collect_digits":
                    digits = result.detail.get("digits") or None
            step = ivr_next(menu, node, digits, tries)
            if isinstance(step, IvrCollect | IvrInvalid):
                pending = ivr_commands(step, ev.call_id, ev.channel)
                if isinstance(step, IvrInvalid):
                    step = step.next
                continue
            final = decide_after_ivr(decision, step, call, routed.rules,
                                     self.live_state(routed.rules, ev.pbx, self.controller.clock()))
            self.controller.note(ev.call_id, "ivr_exit", rules_version=final.rules_version, rule_id=final.rule_id,
                                 detail={"node": step.node, "digits": step.digits, "action": final.action,
                                         "queue": final.queue})
            routed.priority = final.priority
            await self._carry_out(ev, routed, final, decision_commands(final, ev.call_id, ev.channel), call, started)
            return

    def _record_decision(self, ev: ControllerAttached, d: Decision, lookup: LookupResult) -> None:
        assert ev.call_id is not None
        self.stats.routed += 1
        self.stats.fallback += d.fallback
        self.stats.lookup_failed += lookup.failed
        card = lookup.card
        if card is not None:
            self.controller.note_customer(ev.call_id, customer_id=card.id, vip=card.vip, tier=card.tier)
            live = self.controller.live.calls.get(ev.call_id)
            if live is not None:
                live.customer = _screen_card(card)
                if lookup.from_index and lookup.e164:
                    # the index holds what routing reads; notes and past interactions for the
                    # agent's screen come from the database, off the call's path
                    self._spawn(self._full_card(ev.call_id, lookup.e164))
        self.controller.note(
            ev.call_id, "routed", rules_version=d.rules_version, rule_id=d.rule_id,
            detail={"action": d.action, "queue": d.queue, "pbx_queue": d.pbx_queue, "priority": d.priority,
                    "ivr_menu": d.ivr_menu, "display_name": d.display_name, "fallback": d.fallback,
                    "lookup_failed": lookup.failed, "lookup_reason": lookup.reason,
                    "lookup_ms": round(lookup.ms, 2), "closed": d.closed},
        )
        with call_context(ev.call_id):
            log.info("routed by rule %s (%s): %s %s prio %s%s", d.rule_id, d.rules_version, d.action,
                     d.queue or d.ivr_menu or "", d.priority, " [CRM lookup failed]" if lookup.failed else "")

    async def _full_card(self, call_id: str, e164: str) -> None:
        assert self.crm is not None
        try:
            card = await self.crm.repo.lookup_e164(e164)
        except Exception as exc:
            with call_context(call_id):
                log.warning("screen pop: could not read the customer card of %s: %s", e164, exc)
            return
        live = self.controller.live.calls.get(call_id)
        if card is not None and live is not None:
            live.customer = _screen_card(card)

    def _after_exit(self, ev: ControllerAttached, d: Decision) -> None:
        """Outcome markers the journey's attribution reads (closed, voicemail; ``callback`` is noted
        when the request is filed)."""
        assert ev.call_id is not None
        if d.closed:
            self.controller.note(ev.call_id, "closed", rules_version=d.rules_version, rule_id=d.rule_id,
                                 detail={"calendar": d.closed_calendar,
                                         "next_open": d.next_open.isoformat() if d.next_open else None})
        if d.action == "voicemail":
            self.controller.note(ev.call_id, "voicemail", rules_version=d.rules_version, rule_id=d.rule_id,
                                 detail={"mailbox": d.mailbox})

    # -- callbacks ----------------------------------------------------------------------------
    async def _carry_out(self, ev: ControllerAttached, routed: RoutedCall, d: Decision, commands: list[Command],
                         call: CallInfo, started: float, *, sent: Awaitable[list[CommandResult]] | None = None) -> None:
        """A decision that leaves the controller's hands (queue, callback, voicemail, hang-up),
        with the callback dialog where it applies: for a ``callback`` action the caller confirms
        or keys the number (and picks a topic) before the request is filed; for a queue with a
        callback offer the offer is played before ``RouteToQueue`` (always the last command)."""
        assert ev.call_id is not None
        if d.action == "callback":
            # display name / announcement, then the dialog instead of CC_CALLBACK + HangUp
            self._after_exit(ev, d)  # the closed-hours marker, when that is why
            if await self._run(ev.pbx, commands[:-2], started=started, sent=sent):
                await self._callback_dialog(ev, d, d.callback_queue or "", call, routed.rules, offered=False,
                                            first=None)
            return
        if d.action == "queue" and d.callback_offer is not None:
            offer = d.callback_offer
            if not await self._run(ev.pbx, commands[:-1], started=started, sent=sent):
                return
            first = offer_start(offer.prompt, offer.key, offer.timeout_ms, call.caller_e164)
            taken = await self._callback_dialog(ev, d, offer.queue, call, routed.rules, offered=True, first=first)
            if taken is not None:
                return  # filed (or the caller hung up): not queued
            await self._run(ev.pbx, commands[-1:])
            self._after_exit(ev, d)
            return
        await self._run(ev.pbx, commands, started=started, sent=sent)
        self._after_exit(ev, d)

    def _keyed_phone(self, digits: str) -> str | None:
        """A number keyed by the caller, normalised like CRM numbers (None: not a valid number)."""
        try:
            return to_e164(digits, self.region)
        except PhoneError:
            return None

    async def _callback_dialog(self, ev: ControllerAttached, d: Decision, queue: str, call: CallInfo,
                               rules: RuleSet, *, offered: bool, first: Ask | None) -> Step | None:
        """Run the pure callback dialog on the call. Returns the final step, or None when an
        offer was declined (the caller joins the queue)."""
        assert ev.call_id is not None
        dialog = rules.callback
        step: Step = first if first is not None else dialog_start(dialog, call.caller_e164)
        gone = False
        while isinstance(step, Ask):
            digits: str | None = None
            for cmd in ask_commands(step, ev.call_id, ev.channel):
                result = await self.controller.execute(ev.pbx, cmd)
                if not result.ok:
                    gone = True  # hang-up, or the call left the controller (fail-open)
                    break
                if cmd.kind == "collect_digits":
                    digits = result.detail.get("digits") or None
            previous = step
            step = dialog_next(step, digits, dialog, self._keyed_phone, hung_up=gone, offered=offered)
            if previous.stage == "offer":
                self.controller.note(ev.call_id, "callback_offer", rules_version=d.rules_version, rule_id=d.rule_id,
                                     detail={"queue": queue, "accepted": isinstance(step, Ask),
                                             "estimated_wait_s": d.callback_offer.estimated_wait_s
                                             if d.callback_offer else None})
            if gone:
                break
        if isinstance(step, Declined):
            return None
        if isinstance(step, Failed):
            self.stats.callback_failed += 1
            with call_context(ev.call_id):
                log.warning("callback not filed: %s", step.reason)
            self.controller.note(ev.call_id, "callback_failed", rules_version=d.rules_version, rule_id=d.rule_id,
                                 detail={"queue": queue, "reason": step.reason})
            if not gone:
                await self._run(ev.pbx, failed_commands(dialog, ev.call_id, ev.channel))
            return step
        assert isinstance(step, Filed)
        source = "queue" if offered else ("ivr" if d.ivr_menu else "rule")
        # The journey marker carries the request too: the call_events journal keeps it even if
        # the insert below has to be retried.
        self.controller.note(ev.call_id, "callback", rules_version=d.rules_version, rule_id=d.rule_id,
                             detail={"queue": queue, "phone": step.phone, "topic": step.topic,
                                     "confirmed": step.confirmed, "source": source})
        self.stats.callbacks_filed += 1
        filed = await self._file_callback(ev, d, queue, step, source, attempts=1)
        if not filed:
            self._spawn(self._file_callback(ev, d, queue, step, source, attempts=5))
        if not gone:
            await self._run(ev.pbx, filed_commands(dialog, queue, ev.call_id, ev.channel))
        return step

    async def _file_callback(self, ev: ControllerAttached, d: Decision, queue: str, step: Filed, source: str,
                             *, attempts: int) -> bool:
        """Store the request (it lives in PostgreSQL from now on; the callback service dispatches
        it). Idempotent per call and queue, so a retry after a timed-out insert files it once."""
        if self.engine is None:
            return True
        delay = 1.0
        for attempt in range(attempts):
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(
                        text("INSERT INTO callbacks (call_id, customer_id, phone, name, topic, source, queue, due_at, "
                             "created_at) SELECT :c, :cust, :p, :n, :t, :s, :q, :now, :now WHERE NOT EXISTS "
                             "(SELECT 1 FROM callbacks WHERE call_id = :c AND queue = :q)"),
                        # the controller's clock, as the call's journey (the PBX's time), not the
                        # database server's: the request is due from the moment the caller asked
                        {"c": ev.call_id, "cust": d.customer_id, "p": step.phone, "n": ev.caller_name,
                         "t": step.topic, "s": source, "q": queue, "now": self.controller.clock()},
                    )
                return True
            except Exception as exc:
                with call_context(ev.call_id or ""):
                    log.error("could not store the callback request (try %d of %d): %s; it is in the call's "
                              "journey (callback record)", attempt + 1, attempts, exc)
                if attempt + 1 < attempts:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)
        return False

    def _sticky_now(self, d: Decision, pbx: str) -> tuple[bool, str | None]:
        """(known, interface): the sticky agent's phone without asking the database, if known."""
        if not d.sticky_s or d.sticky_agent_id is None or self.engine is None:
            return True, None
        key = (d.sticky_agent_id, pbx)
        return key in self._sticky_cache, self._sticky_cache.get(key)

    async def _sticky_interface(self, d: Decision, pbx: str) -> str | None:
        known, interface = self._sticky_now(d, pbx)
        if known:
            return interface
        assert d.sticky_agent_id is not None and self.engine is not None  # else known
        key = (d.sticky_agent_id, pbx)
        if key not in self._sticky_cache:
            async with self.engine.connect() as conn:
                self._sticky_cache[key] = await conn.scalar(
                    text("SELECT interface FROM agent_endpoints WHERE agent_id = :a AND pbx = :p"),
                    {"a": d.sticky_agent_id, "p": pbx})
        return self._sticky_cache[key]

    async def _lead(self, ev: ControllerAttached, e164: str) -> None:
        assert self.crm is not None and self.engine is not None and ev.call_id is not None
        try:
            cid = await self.crm.ensure_lead(self.engine, e164, ev.caller_name)
        except Exception as exc:
            log.warning("could not create a CRM lead for %s: %s", e164, exc)
            return
        if cid is not None:
            self.controller.note_customer(ev.call_id, customer_id=cid, vip=False, tier="standard")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- overflow ------------------------------------------------------------------------------
    def waiting_calls(self, rules: RuleSet, now: datetime) -> list[WaitingCall]:
        reverse: dict[tuple[str, str], str] = {}
        out: list[WaitingCall] = []
        for c in self.controller.live.calls.values():
            if c.stage not in ("queue", "ringing") or c.queue is None or c.queue_since is None:
                continue
            key = (c.pbx, c.queue)
            if key not in reverse:
                reverse[key] = next((n for n, q in rules.queues.items()
                                     if q.pbx_name(n, c.pbx, self.pbx_types.get(c.pbx)) == c.queue), "")
            logical = reverse[key]
            if not logical:
                continue
            routed = self.calls.get(c.call_id)
            tier = routed.tier if routed else ((c.customer or {}).get("tier") or None)
            out.append(WaitingCall(
                c.call_id, logical, c.queue_since, c.original_entry_at or c.queue_since,
                tier.casefold() if isinstance(tier, str) else None,
                routed.priority if routed else 0,
                frozenset(routed.steps_done) if routed else frozenset(),
                routed.lookup_failed if routed else False,
                c.channel,
            ))
        return out

    async def overflow_tick(self, now: datetime | None = None) -> list[Any]:
        rules = self.rules.rules
        if rules is None:
            return []
        now = now or self.controller.clock()
        pbxs = [name for name, mode in self.controller.modes.items() if mode == "control"]
        done: list[Any] = []
        for pbx in pbxs:
            waiting = [w for w in self.waiting_calls(rules, now)
                       if self.controller.live.calls[w.call_id].pbx == pbx]
            actions = overflow_actions(rules, self.live_state(rules, pbx, now), waiting,
                                       frozenset(self.active_groups), now)
            for action in actions:
                if await self._overflow(pbx, rules, action, now):
                    done.append(action)
        return done

    async def _overflow(self, pbx: str, rules: RuleSet, action: Any, now: datetime) -> bool:
        commands = overflow_commands(action, rules, pbx=pbx, pbx_type=self.pbx_types.get(pbx))
        if isinstance(action, MoveCall):
            routed = self.calls.get(action.call_id)
            if routed is not None:
                routed.steps_done.add(action.step_id)
                routed.priority = action.priority
            # Tell the journey first: the PBX reports the move exactly like an abandon.
            self.controller.note_move(action.call_id, action.from_queue, action.to_queue,
                                      rules_version=rules.version, rule_id=f"overflow:{action.step_id}")
            self.stats.moves += 1
        ok = True
        for cmd in commands:
            result = await self.controller.execute(pbx, cmd)
            ok = ok and result.ok
        if isinstance(action, AddGroup) and ok:
            self.active_groups.add((action.queue, action.group))
            self.stats.group_changes += 1
        elif isinstance(action, RemoveGroup):
            self.active_groups.discard((action.queue, action.group))
            self.stats.group_changes += 1
        log.info("overflow: %s -> %s", type(action).__name__, "ok" if ok else "failed")
        return ok

    async def overflow_loop(self) -> None:
        while True:
            await asyncio.sleep(self.overflow_interval)
            try:
                await self.overflow_tick()
            except Exception:
                log.exception("overflow loop: one round failed; the next runs as usual")

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.crm is not None and self.crm.index is not None:
            await self.crm.index.close()
