"""The routing decision: who is calling, which menu or queue, which priority. Pure.

``decide(call, customer, live, rules)`` walks the rules in file order; the first rule whose
conditions all hold *and* whose target admits the caller's tier wins; otherwise the fallback.
No I/O, no clock (the call carries its time), no randomness: the same inputs always give the
same ``Decision``, which records ``rule_id`` and ``rules_version`` for the call's journey and a
``trace`` of every rule tried (what ``callcenter rules explain`` prints).

Tier invariant (the reason decide() may pass over a matching rule): a caller is never routed
to a queue whose ``allowed_tiers``/``forbidden_tiers`` exclude their tier. A matching rule
whose queue (or callback queue, in or out of hours) excludes the tier is *skipped*, and the
trace says why. The fallback never violates it either: it takes the first queue of
``[its queue, *alternatives]`` that admits the tier, and validation guarantees one admits every
tier. When the CRM lookup failed the tier is unknown, so only a queue that restricts no tier
is acceptable (the caller could be a VIP). An IVR exit is checked the same way in
``decide_after_ivr``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from callcenter.crm.phones import PhoneError, is_withheld, to_e164
from callcenter.domain.commands import (
    Command,
    HangUp,
    PlayPrompt,
    ReleaseCall,
    RouteToQueue,
    SetDisplayName,
    SetVariable,
)
from callcenter.routing.calendar import is_open, next_open
from callcenter.routing.ivr import (
    IvrCallback,
    IvrCollect,
    IvrExit,
    IvrHangup,
    IvrQueue,
    IvrVoicemail,
    ivr_commands,
    ivr_start,
)
from callcenter.routing.rules import WEEKDAYS, Action, ActionKind, Rule, RuleSet, When

if TYPE_CHECKING:
    from callcenter.crm.repository import CustomerCard

# Channel variables the commands set for the dialplan/shell (see decision_commands).
VAR_VOICEMAIL = "CC_VOICEMAIL"
VAR_CALLBACK = "CC_CALLBACK"
VAR_STICKY_AGENT = "CC_STICKY_AGENT"
VAR_STICKY_S = "CC_STICKY_S"
VAR_SURVEY = "CC_SURVEY"

DISPLAY_NAME_MAX = 80


# --- inputs ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallInfo:
    """What the PBX told us about a new call. ``at`` must be timezone-aware."""

    caller: str | None  # caller id as received
    caller_e164: str | None  # normalised, or None (withheld, or not a phone number)
    withheld: bool
    did: str | None  # the dialled number
    at: datetime
    pbx: str | None = None  # PBX node name (settings ``pbx[].name``)
    pbx_type: str | None = None  # "asterisk" / "freeswitch": picks ``pbx_queue`` entries by type

    def __post_init__(self) -> None:
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError("CallInfo.at must be a timezone-aware datetime")

    @classmethod
    def from_caller(
        cls,
        caller: str | None,
        did: str | None,
        at: datetime,
        *,
        pbx: str | None = None,
        pbx_type: str | None = None,
        region: str = "US",
    ) -> CallInfo:
        """Build from a raw caller id: withheld detection and E.164 normalisation as the CRM does."""
        try:
            e164 = to_e164(caller, region)
        except PhoneError:
            e164 = None
        return cls(caller, e164, is_withheld(caller), did, at, pbx, pbx_type)


@dataclass(frozen=True, slots=True)
class QueueLive:
    """One queue right now, as the PBX reports it."""

    logged_in: int = 0
    available: int = 0
    busy: int = 0
    paused: int = 0
    waiting: int = 0
    longest_wait_s: float = 0.0
    estimated_wait_s: float | None = None  # None: the shell has no estimate


@dataclass(frozen=True, slots=True)
class LiveState:
    """Live state by *logical* queue name (the shell maps PBX queue names back)."""

    queues: Mapping[str, QueueLive] = field(default_factory=dict)

    def get(self, queue: str) -> QueueLive | None:
        return self.queues.get(queue)


# --- outputs ---------------------------------------------------------------------------------------

TraceResult = Literal["matched", "no_match", "skipped", "not_evaluated", "ivr"]


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One rule tried. ``no_match``: ``condition`` failed (``reason`` says how); ``skipped``:
    the rule matched but its target excludes the caller's tier; ``matched``: this rule decided;
    ``not_evaluated``: the CRM lookup failed; ``ivr``: what an IVR exit did (decide_after_ivr)."""

    rule_id: str
    result: TraceResult
    condition: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule_id, "result": self.result, "condition": self.condition, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class CallbackOfferPlan:
    """The caller is offered a callback before joining the queue (the queue's ``callback_offer``
    applied: its estimated wait was over the threshold when the call was routed)."""

    queue: str  # logical queue that calls back
    estimated_wait_s: float
    prompt: str
    key: str
    timeout_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {"queue": self.queue, "estimated_wait_s": self.estimated_wait_s, "prompt": self.prompt,
                "key": self.key, "timeout_ms": self.timeout_ms}


@dataclass(frozen=True, slots=True)
class Decision:
    rule_id: str
    rules_version: str
    action: ActionKind
    queue: str | None = None  # logical queue (action "queue")
    pbx_queue: str | None = None  # its name on the call's PBX
    priority: int = 0
    ivr_menu: str | None = None
    ivr_node: str | None = None  # start node (action "ivr"), or the node an IVR exit came from
    ivr: IvrCollect | None = None  # the first IVR step (action "ivr")
    display_name: str | None = None
    announcement: str | None = None
    sticky_agent: str | None = None  # assigned agent's name (CRM)
    sticky_agent_id: int | None = None
    sticky_s: int | None = None
    closed: bool = False  # the rule's closed-hours handling applied
    closed_calendar: str | None = None
    next_open: datetime | None = None
    mailbox: str | None = None  # action "voicemail"
    callback_queue: str | None = None  # action "callback"
    survey: bool = False  # action "queue": post-call survey (CC_SURVEY) for this call
    callback_offer: CallbackOfferPlan | None = None  # action "queue": offer a callback first
    fallback: bool = False
    lookup_failed: bool = False
    customer_id: int | None = None
    tier: str | None = None  # the tier routed by (casefolded); None: unknown caller or lookup failed
    trace: tuple[TraceEntry, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule_id,
            "rules_version": self.rules_version,
            "action": self.action,
            "queue": self.queue,
            "pbx_queue": self.pbx_queue,
            "priority": self.priority,
            "ivr_menu": self.ivr_menu,
            "ivr_node": self.ivr_node,
            "display_name": self.display_name,
            "announcement": self.announcement,
            "sticky_agent": self.sticky_agent,
            "sticky_agent_id": self.sticky_agent_id,
            "sticky_s": self.sticky_s,
            "closed": self.closed,
            "closed_calendar": self.closed_calendar,
            "next_open": self.next_open.isoformat() if self.next_open else None,
            "mailbox": self.mailbox,
            "callback_queue": self.callback_queue,
            "survey": self.survey,
            "callback_offer": self.callback_offer.to_dict() if self.callback_offer else None,
            "fallback": self.fallback,
            "lookup_failed": self.lookup_failed,
            "customer_id": self.customer_id,
            "tier": self.tier,
            "trace": [t.to_dict() for t in self.trace],
        }


# --- display names -------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def short_name(name: str) -> str:
    """Surname and initials: ``Anna Ivanova`` -> ``Ivanova A.``; ``Ivanova, Anna Maria`` ->
    ``Ivanova A. M.``; ``Jean-Pierre Dupont`` -> ``Dupont J.-P.``. The last word is the surname
    unless the name is written ``Surname, Given names``."""
    name = " ".join(name.split())
    if not name:
        return ""
    if "," in name:
        surname, given = (part.strip() for part in name.split(",", 1))
        given_parts = given.split()
    else:
        parts = name.split(" ")
        if len(parts) == 1:
            return parts[0]
        surname, given_parts = parts[-1], parts[:-1]
    initials = " ".join("-".join(p[0].upper() + "." for p in g.split("-") if p) for g in given_parts)
    return f"{surname} {initials}".strip()


def render_display_name(template: str, customer: CustomerCard | None, call: CallInfo) -> str | None:
    """Fill a validated template (only the placeholders of ``rules.PLACEHOLDERS``). Control
    characters are dropped and whitespace collapsed: a CRM name must not break a PBX command."""
    values = {
        "name": customer.name if customer else "",
        "name_short": short_name(customer.name) if customer else "",
        "tier": customer.tier if customer else "",
        "segment": (customer.segment or "") if customer else "",
        "caller": "" if call.withheld else (call.caller_e164 or call.caller or ""),
    }
    text = " ".join(_CONTROL.sub("", template.format(**values)).split())
    return text[:DISPLAY_NAME_MAX] or None


# --- conditions ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Ctx:
    call: CallInfo
    customer: CustomerCard | None
    live: LiveState
    rules: RuleSet
    local: datetime  # the call's time in the rules' time zone


def _listed(values: tuple[str, ...]) -> str:
    return ", ".join(values)


def _first_failure(when: When, ctx: _Ctx) -> tuple[str, str] | None:
    """The first condition of ``when`` that does not hold, as (condition, reason)."""
    c = ctx.customer
    call = ctx.call
    if when.known is not None and (c is not None) != when.known:
        return "known", ("the CRM knows the caller" if c is not None else "the caller is not in the CRM")
    if when.withheld is not None and call.withheld != when.withheld:
        return "withheld", ("the caller id is withheld" if call.withheld else "the caller id is not withheld")
    for key in ("tier", "segment", "language", "stage"):
        wanted: tuple[str, ...] | None = getattr(when, key)
        if wanted is None:
            continue
        if c is None:
            return key, "the caller is not in the CRM"
        value: str | None = getattr(c, key)
        if value is None or value.strip().casefold() not in wanted:
            return key, f"{key} is {value!r}, the rule wants {_listed(wanted)}"
    if when.tags_any is not None or when.tags_all is not None:
        if c is None:
            return ("tags_any" if when.tags_any is not None else "tags_all"), "the caller is not in the CRM"
        tags = {t.strip().casefold() for t in c.tags}
        if when.tags_any is not None and not tags & set(when.tags_any):
            return "tags_any", f"tags [{_listed(tuple(sorted(tags)))}] have none of {_listed(when.tags_any)}"
        if when.tags_all is not None and not set(when.tags_all) <= tags:
            missing = tuple(t for t in when.tags_all if t not in tags)
            return "tags_all", f"tag(s) {_listed(missing)} missing"
    if when.assigned_agent is not None:
        if c is None:
            return "assigned_agent", "the caller is not in the CRM"
        has = c.assigned_agent_id is not None or bool(c.assigned_agent)
        if has != when.assigned_agent:
            return "assigned_agent", ("the customer has an assigned agent" if has else "no assigned agent")
    if when.do_not_call is not None:
        if c is None:
            return "do_not_call", "the caller is not in the CRM"
        if c.do_not_call != when.do_not_call:
            return "do_not_call", f"do_not_call is {str(c.do_not_call).lower()}"
    if when.did is not None and call.did not in when.did:
        return "did", f"DID {call.did!r} is not one of {_listed(when.did)}"
    if when.did_pattern is not None and (call.did is None or re.fullmatch(when.did_pattern, call.did) is None):
        return "did_pattern", f"DID {call.did!r} does not match the pattern {when.did_pattern}"
    if when.weekdays is not None:
        day = WEEKDAYS[ctx.local.weekday()]
        if day not in when.weekdays:
            return "weekdays", f"{day} is not one of {_listed(when.weekdays)} ({ctx.rules.timezone})"
    if when.time_of_day is not None:
        minute = ctx.local.hour * 60 + ctx.local.minute + ctx.local.second / 60
        if not when.time_of_day.contains(minute):
            return "time_of_day", f"{ctx.local:%H:%M} is outside {when.time_of_day} ({ctx.rules.timezone})"
    if when.calendar_open is not None and not is_open(ctx.rules.calendars[when.calendar_open], call.at):
        return "calendar_open", f"calendar {when.calendar_open!r} is closed"
    if when.calendar_closed is not None and is_open(ctx.rules.calendars[when.calendar_closed], call.at):
        return "calendar_closed", f"calendar {when.calendar_closed!r} is open"
    for j, cond in enumerate(when.live):
        name = f"live[{j}]"
        q = ctx.live.get(cond.queue)
        if q is None:
            return name, f"no live state for queue {cond.queue!r}"
        if cond.available_at_least is not None and not q.available >= cond.available_at_least:
            return name, f"{cond.queue}: {q.available} available, the rule wants at least {cond.available_at_least}"
        if cond.available_exactly is not None and q.available != cond.available_exactly:
            return name, f"{cond.queue}: {q.available} available, the rule wants exactly {cond.available_exactly}"
        if cond.logged_in_at_least is not None and not q.logged_in >= cond.logged_in_at_least:
            return name, f"{cond.queue}: {q.logged_in} logged in, the rule wants at least {cond.logged_in_at_least}"
        if cond.waiting_over is not None and not q.waiting > cond.waiting_over:
            return name, f"{cond.queue}: {q.waiting} waiting, the rule wants more than {cond.waiting_over}"
        if cond.estimated_wait_s_over is not None:
            if q.estimated_wait_s is None:
                return name, f"{cond.queue}: no estimated wait"
            if not q.estimated_wait_s > cond.estimated_wait_s_over:
                return name, (
                    f"{cond.queue}: estimated wait {q.estimated_wait_s:g} s, "
                    f"the rule wants over {cond.estimated_wait_s_over:g} s"
                )
    return None


# --- actions ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Effective:
    """A rule's action after out-of-hours handling."""

    kind: ActionKind
    queue: str | None  # the queue the tier rules apply to (queue or callback queue)
    closed: bool
    calendar: str | None
    next_open: datetime | None
    announcement: str | None
    mailbox: str | None


def _effective(action: Action, ctx: _Ctx) -> _Effective:
    ch = action.closed
    if ch is not None:
        cal = ctx.rules.calendars[ch.calendar]
        if not is_open(cal, ctx.call.at):
            return _Effective(
                kind=ch.kind,
                queue=ch.callback,
                closed=True,
                calendar=ch.calendar,
                next_open=next_open(cal, ctx.call.at),
                announcement=ch.prompt,
                mailbox=ch.voicemail,
            )
    kind = action.kind
    target = action.queue if kind == "queue" else action.callback if kind == "callback" else None
    return _Effective(kind, target, False, None, None, action.announcement, action.voicemail)


def _tier(customer: CustomerCard | None) -> str | None:
    return customer.tier.strip().casefold() if customer is not None else None


def _queue_extras(
    rules: RuleSet, queue: str, action_survey: bool | None, live: LiveState | None, tier: str | None,
    lookup_failed: bool,
) -> tuple[bool, CallbackOfferPlan | None]:
    """Survey flag and callback offer for a call going to ``queue``. The offer needs the live
    estimated wait over the queue's threshold, and a calling-back queue that admits the caller
    (the tier invariant holds for callbacks as for queues)."""
    q = rules.queues[queue]
    survey = q.survey if action_survey is None else action_survey
    offer = q.callback_offer
    if offer is None or live is None:
        return survey, None
    ql = live.get(queue)
    if ql is None or ql.estimated_wait_s is None or not ql.estimated_wait_s > offer.estimated_wait_s_over:
        return survey, None
    back = offer.queue or queue
    if rules.queues[back].excludes(tier, strict=lookup_failed) is not None:
        return survey, None
    return survey, CallbackOfferPlan(back, ql.estimated_wait_s, offer.prompt, offer.key, int(offer.timeout_s * 1000))


def _build(
    rule_id: str,
    action: Action,
    eff: _Effective,
    queue: str | None,
    ctx: _Ctx,
    *,
    fallback: bool,
    lookup_failed: bool,
) -> dict[str, Any]:
    """The fields of the decision ``action`` makes (``Decision(**fields, trace=...)``): built
    as one dict and constructed once, not copied field by field (a Decision has 27)."""
    rules, call, c = ctx.rules, ctx.call, ctx.customer
    kind = eff.kind
    tier = _tier(c)
    d: dict[str, Any] = {
        "rule_id": rule_id,
        "rules_version": rules.version,
        "action": kind,
        "display_name": render_display_name(action.display_name, c, call) if action.display_name else None,
        "announcement": eff.announcement,
        "closed": eff.closed,
        "closed_calendar": eff.calendar,
        "next_open": eff.next_open,
        "fallback": fallback,
        "lookup_failed": lookup_failed,
        "customer_id": c.id if c is not None else None,
        "tier": tier,
    }
    if kind == "queue":
        assert queue is not None
        d["queue"] = queue
        d["pbx_queue"] = rules.queues[queue].pbx_name(queue, call.pbx, call.pbx_type)
        d["priority"] = action.priority or 0
        survey, offer = _queue_extras(rules, queue, action.survey, ctx.live, tier, lookup_failed)
        if survey or offer is not None:
            d["survey"] = survey
            d["callback_offer"] = offer
        if action.sticky_agent_s and c is not None and (c.assigned_agent_id is not None or c.assigned_agent):
            d["sticky_agent"] = c.assigned_agent
            d["sticky_agent_id"] = c.assigned_agent_id
            d["sticky_s"] = action.sticky_agent_s
    elif kind == "callback":
        d["callback_queue"] = queue
    elif kind == "voicemail":
        d["mailbox"] = eff.mailbox
    elif kind == "ivr":
        assert action.ivr is not None
        first = ivr_start(rules.ivr[action.ivr])
        d["ivr_menu"] = action.ivr
        d["ivr_node"] = first.node
        d["ivr"] = first
    return d


def _matched_reason(when: When, eff: _Effective, d: dict[str, Any]) -> str:
    given = when.given()
    text = f"all conditions hold ({', '.join(given)})" if given else "no conditions: matches every call"
    if eff.closed:
        text += f"; calendar {eff.calendar!r} closed: {eff.kind}"
    if d.get("sticky_s"):
        who = d.get("sticky_agent") or d.get("sticky_agent_id")
        text += f"; assigned agent {who} rings first for {d['sticky_s']} s"
    if d.get("callback_offer") is not None:
        text += "; " + _offer_note(d["callback_offer"])
    return text


def _offer_note(o: CallbackOfferPlan) -> str:
    return f"estimated wait {o.estimated_wait_s:g} s: a callback from {o.queue!r} is offered first"


def _safe_queue(rules: RuleSet, chain: list[str], tier: str | None, strict: bool) -> tuple[str | None, list[str]]:
    """The first queue of ``chain`` that may take the caller, and why the ones before could not."""
    why: list[str] = []
    for q in chain:
        reason = rules.queues[q].excludes(tier, strict=strict)
        if reason is None:
            return q, why
        why.append(f"{q}: {reason}")
    return None, why


def decide(
    call: CallInfo,
    customer: CustomerCard | None,
    live: LiveState,
    rules: RuleSet,
    *,
    lookup_failed: bool = False,
    explain: bool = True,
) -> Decision:
    """Route one call. Exactly one decision, never an exception on a validated RuleSet.

    ``lookup_failed``: the CRM did not answer in time (or failed); the rules are not evaluated
    (they may depend on the customer) and the fallback decides, with ``customer`` ignored.

    ``explain``: ``trace`` tells every rule tried and why it did or did not match (what
    ``callcenter rules explain`` prints). The routing service passes False: the same decision,
    with only the deciding rule's entry in ``trace``, without building ~50 entries per call
    on the routing path."""
    if lookup_failed:
        customer = None
    ctx = _Ctx(call, customer, live, rules, call.at.astimezone(rules.zone))
    tier = _tier(customer)
    trace: list[TraceEntry] = []
    if lookup_failed:
        if explain:
            for rule in rules.rules:
                trace.append(TraceEntry(rule.id, "not_evaluated", None, "CRM lookup failed: the fallback decides"))
    else:
        did = call.did
        for rule in rules.rules:
            when = rule.when
            if not explain and when.did is not None and did not in when.did:
                continue  # _first_failure's verdict too (it reports an earlier failing condition)
            failed = _first_failure(when, ctx)
            if failed is not None:
                if explain:
                    trace.append(TraceEntry(rule.id, "no_match", failed[0], failed[1]))
                continue
            eff = _effective(rule.then, ctx)
            if eff.queue is not None:
                reason = rules.queues[eff.queue].excludes(tier)
                if reason is not None:
                    if explain:
                        where = "closed.callback" if eff.closed else eff.kind
                        trace.append(TraceEntry(rule.id, "skipped", f"then.{where}", f"queue {eff.queue!r}: {reason}"))
                    continue
            fields = _build(rule.id, rule.then, eff, eff.queue, ctx, fallback=False, lookup_failed=False)
            trace.append(TraceEntry(rule.id, "matched", None, _matched_reason(when, eff, fields)))
            return Decision(**fields, trace=tuple(trace))

    fb = rules.fallback
    eff = _effective(fb, ctx)
    queue = eff.queue
    notes: list[str] = ["CRM lookup failed" if lookup_failed else "no rule matched" if rules.rules else "no rules"]
    if queue is not None:
        chosen, why = _safe_queue(rules, fb.chain(queue), tier, lookup_failed)
        if chosen is None:  # only reachable with an unvalidated RuleSet (model_construct)
            raise RuntimeError("the fallback has no queue that admits this caller; the rules were not validated")
        if why:
            notes.append("passed over " + "; ".join(why) + f"; took {chosen!r}")
        queue = chosen
    fields = _build(fb.id, fb, eff, queue, ctx, fallback=True, lookup_failed=lookup_failed)
    if eff.closed:
        notes.append(f"calendar {eff.calendar!r} closed: {eff.kind}")
    if fields.get("callback_offer") is not None:
        notes.append(_offer_note(fields["callback_offer"]))
    trace.append(TraceEntry(fb.id, "matched", None, "fallback: " + "; ".join(notes)))
    return Decision(**fields, trace=tuple(trace))


def decide_after_ivr(
    decision: Decision, step: IvrExit, call: CallInfo, rules: RuleSet, live: LiveState | None = None
) -> Decision:
    """The decision once the caller left the IVR at ``step``. The rule stays the one that sent
    the caller to the IVR (journeys attribute the call to it); a queue or callback choice that
    excludes the caller's tier goes to the first queue of the fallback chain that admits it.
    ``live`` (the state at the IVR exit) decides a queue's callback offer; without it none."""
    base = replace(
        decision,
        ivr=None,
        ivr_node=step.node,
        announcement=step.prompt,
        sticky_agent=None,
        sticky_agent_id=None,
        sticky_s=None,
        closed=False,
        closed_calendar=None,
        next_open=None,
        queue=None,
        pbx_queue=None,
        priority=0,
        mailbox=None,
        callback_queue=None,
        survey=False,
        callback_offer=None,
    )
    pressed = f"digits {step.digits!r}" if step.digits else "no valid input"
    how = f"{pressed} at node {step.node!r}" + (" (retries used up)" if step.via == "failure" else "")
    if isinstance(step, IvrHangup):
        entry = TraceEntry(f"ivr:{step.node}", "ivr", None, f"{how}: hang up")
        return replace(base, action="hangup", trace=(*decision.trace, entry))
    if isinstance(step, IvrVoicemail):
        entry = TraceEntry(f"ivr:{step.node}", "ivr", None, f"{how}: voicemail {step.mailbox}")
        return replace(base, action="voicemail", mailbox=step.mailbox, trace=(*decision.trace, entry))
    wanted = step.queue
    chosen, why = _safe_queue(rules, rules.fallback.chain(wanted), decision.tier, decision.lookup_failed)
    if chosen is None:  # unvalidated RuleSet only
        raise RuntimeError("no queue of the fallback chain admits this caller; the rules were not validated")
    reason = f"{how}: {'queue' if isinstance(step, IvrQueue) else 'callback'} {wanted}"
    if chosen != wanted:
        reason += "; " + "; ".join(why) + f"; took {chosen!r} from the fallback chain"
    entry = TraceEntry(f"ivr:{step.node}", "ivr", None, reason)
    if isinstance(step, IvrCallback):
        return replace(base, action="callback", callback_queue=chosen, trace=(*decision.trace, entry))
    rule = rules.rule(decision.rule_id)
    action = rule.then if isinstance(rule, Rule) else rule  # the rule (or fallback) that sent the caller to the IVR
    survey, offer = _queue_extras(rules, chosen, action.survey if action is not None else None, live,
                                  decision.tier, decision.lookup_failed)
    return replace(
        base,
        action="queue",
        queue=chosen,
        pbx_queue=rules.queues[chosen].pbx_name(chosen, call.pbx, call.pbx_type),
        priority=step.priority,
        survey=survey,
        callback_offer=offer,
        trace=(*decision.trace, entry),
    )


# --- commands --------------------------------------------------------------------------------------


def decision_commands(
    decision: Decision, call_id: str, channel: str | None, *, sticky_interface: str | None = None
) -> list[Command]:
    """The PBX-neutral commands carrying out ``decision``, in order.

    - display name (``SetDisplayName``) first, so it is set before any agent can ring;
    - the announcement (``PlayPrompt``);
    - queue: ``RouteToQueue(pbx queue, priority)``; with sticky routing and the assigned agent's
      interface (``sticky_interface``, the shell maps the CRM agent to it), ``CC_STICKY_AGENT``
      and ``CC_STICKY_S`` are set first for the dialplan to ring that agent before the queue;
      with the survey, ``CC_SURVEY=1`` (the dialplan queues with option ``c`` and hands the
      caller back after the agent hangs up). ``RouteToQueue`` is always last: a callback offer
      (``decision.callback_offer``) is played by the shell just before it;
    - ivr: the first ``CollectDigits`` (naming the start node);
    - callback: ``CC_CALLBACK=<queue>`` then ``HangUp`` (the shell files the callback request);
    - voicemail: ``CC_VOICEMAIL=<mailbox>`` then ``ReleaseCall``: there is no voicemail command
      yet; the dialplan after the AGI must branch on the variable (without that branch the call
      falls through to the default queue: fail-open, never a dead end);
    - hangup: ``HangUp``.
    """
    kw: dict[str, Any] = {"call_id": call_id, "channel": channel}
    out: list[Command] = []
    if decision.display_name:
        out.append(SetDisplayName(name=decision.display_name, **kw))
    if decision.announcement:
        out.append(PlayPrompt(prompt=decision.announcement, **kw))
    match decision.action:
        case "queue":
            assert decision.pbx_queue is not None
            if decision.sticky_s and sticky_interface:
                out.append(SetVariable(name=VAR_STICKY_AGENT, value=sticky_interface, **kw))
                out.append(SetVariable(name=VAR_STICKY_S, value=str(decision.sticky_s), **kw))
            if decision.survey:
                out.append(SetVariable(name=VAR_SURVEY, value="1", **kw))
            out.append(RouteToQueue(queue=decision.pbx_queue, priority=decision.priority, **kw))
        case "ivr":
            assert decision.ivr is not None
            out.extend(ivr_commands(decision.ivr, call_id, channel))
        case "callback":
            out.append(SetVariable(name=VAR_CALLBACK, value=decision.callback_queue or "", **kw))
            out.append(HangUp(**kw))
        case "voicemail":
            out.append(SetVariable(name=VAR_VOICEMAIL, value=decision.mailbox or "", **kw))
            out.append(ReleaseCall(**kw))
        case _:
            out.append(HangUp(**kw))
    return out


__all__ = [
    "CallInfo",
    "CallbackOfferPlan",
    "Decision",
    "LiveState",
    "QueueLive",
    "TraceEntry",
    "decide",
    "decide_after_ivr",
    "decision_commands",
    "render_display_name",
    "short_name",
]
