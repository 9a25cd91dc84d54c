"""Per-call journey: a pure reducer from PBX-neutral events to journey records.

One *call* is everything that carries the same ``call_id`` (Asterisk ``Linkedid``): the IVR,
every queue it waited in (overflow, transfer), every agent whose phone rang for it. The
reducer keeps where the caller is *now* (``location``) so that, when the call ends, the
attribution step can say at which step a caller who hung up was lost.

``step(state, event, now) -> (state, records)`` is pure: no I/O, no clock, no asyncio. ``now``
is the controller's time (``JourneyRecord.controller_at``); every duration is computed from
the PBX's own ``event.at`` only, so a slow controller never stretches a wait. Durations are
clamped at zero because PBX times of different frames may be slightly out of order.

Records are append-only: ``(call_id, seq)`` is the recorder's idempotency key, ``seq`` starts
at 1 and grows by one per record of the call. Feeding the same events again yields the same
records with the same seqs. Nothing already emitted is ever changed; when later evidence
changes the meaning of an earlier record (see *provisional abandon*), a new record says so
and names the earlier one in ``detail["rewrites_seq"]``.

Provisional abandon (why): Asterisk reports a caller *moved out of* a queue by an AMI
``Redirect`` exactly like a caller hanging up in it: ``QueueCallerAbandon`` + queue_log
``ABANDON``, then ``QueueCallerJoin`` in the new queue 1 ms later with the same Uniqueid
(overflow_redirect trace). So a ``QueueLeft(reason=abandon)`` only closes the stint as
"abandoned" provisionally: if, before the call ends, the same call joins a queue again, or is
visibly alive elsewhere (an IVR node, the controller attaching, digits), the stint is rewritten
to "moved" (an ``overflow`` / ``moved_to_ivr`` record). If the call ends first, the abandon
stands. No lookahead past the call's own end is needed. A move the controller made itself
(``note_move``) is "moved" from the start, whatever reason the PBX gives.

Ringing at the moment of leaving (why): Asterisk cancels the member's ringing *before* it
reports the abandon (``DialEnd DialStatus=CANCEL`` -> queue_log ``RINGCANCELED``, then
``QueueCallerAbandon``). So "an agent phone was ringing when the caller left" is: an agent is
still ringing at the ``QueueLeft``, or an agent's ring was *canceled* since the last ring
attempt started. A ring that ended with ``AgentRingNoAnswer`` (timeout, or a 486 busy which
Asterisk 22 reports as NOANSWER with RingTime 0) does not count: the caller then waits in
the queue with no phone ringing (the ``retry`` pause).

PBX answer (why): on Asterisk the dialplan runs before ``Answer()`` (``from-pstn`` NoOp/Set),
so an ``IvrNodeEntered`` alone does not mean the caller was answered; only ``CallAnswered``
(or evidence that needs an answered channel: digits, prompts, a queue, an agent) moves the
call out of ``pre_answer``. Exception: when the call's ``CallArrived`` was never seen (the
controller attached mid-call) an IVR node is taken as proof of answer.

Records kinds (``JourneyRecord.kind``):

===================== ====================================================================
arrived               CallArrived (detail: caller, caller_name, did, unique_id, context)
answered_by_pbx       CallAnswered (the PBX, not an agent, answered the caller's leg)
controller_attached   ControllerAttached / ``controller_released`` ControllerReleased
ivr_node              IvrNodeEntered (``ivr_node`` = the node)
digits                DigitsCollected (detail: digits, timeout, hangup, command_id)
dtmf                  DtmfReceived (detail: digit)
prompt_finished       PromptFinished (detail: result, hangup, command_id): a prompt played, or
                      any command that failed or was cut off (a control command's success,
                      e.g. SET VARIABLE, is no event: the ``routed`` note holds the decision)
variable              VariableSet (detail: name, value)
queue_join            QueueJoined (detail: position, count, after = previous stint outcome)
overflow              queue -> queue move (detail: from_queue, to_queue, by = controller |
                      observed (a redirect: PBX-reported, or an abandon followed by a join) |
                      timeout (the dialplan's next Queue()) | implicit (join without a leave),
                      rewrites_seq = the provisional queue_leave it turns into "moved", if any)
moved_to_ivr          a provisional abandon rescinded because the call is alive in the IVR
agent_ring            AgentOffered
agent_ring_no_answer  AgentRingNoAnswer (detail: ring_ms)
agent_ring_canceled   AgentRingCanceled
agent_connect         AgentConnected (detail: hold_s, ring_s as the PBX reports them)
agent_complete        AgentCompleted (detail: ended_by, talk_s, hold_s)
queue_leave           QueueLeft (detail: reason, outcome, provisional, position, hold_s)
spy_start / spy_stop  SpyStarted / SpyStopped (detail: mode, spyer_channel, target_channel)
originate_result      OriginateResult about a live call (detail: request_id, success, reason)
ended                 CallEnded (detail: cause, cause_text, hung_up_by, location)
move_requested        the controller moved the call (``note_move``)
customer              the CRM identified the caller (``note_customer``)
<any other>           routing-layer notes (``note``): e.g. ``closed``, ``callback``,
                      ``voicemail``, ``routing``; they may carry rules_version / rule_id
===================== ====================================================================

Agent-state events (``AgentStatusChanged``, ``AgentPauseChanged``, ``QueueMemberChanged``)
are not part of a call's journey and produce no record.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from callcenter.domain.events import (
    AgentCompleted,
    AgentConnected,
    AgentOffered,
    AgentPauseChanged,
    AgentRingCanceled,
    AgentRingNoAnswer,
    AgentStatusChanged,
    CallAnswered,
    CallArrived,
    CallEnded,
    ControllerAttached,
    ControllerReleased,
    DigitsCollected,
    DtmfReceived,
    Event,
    HangupParty,
    IvrNodeEntered,
    OriginateResult,
    PromptFinished,
    QueueJoined,
    QueueLeaveReason,
    QueueLeft,
    QueueMemberChanged,
    SpyStarted,
    SpyStopped,
    VariableSet,
)

_T = TypeVar("_T")

_REPLACERS: dict[type, Callable[[Any, dict[str, Any]], Any]] = {}
_FIELDS: dict[type, frozenset[str]] = {}  # field names per class, filled with its replacer


def _make_replacer(cls: type) -> Callable[[Any, dict[str, Any]], Any]:
    """A copy function specialised for ``cls``: direct slot reads and writes, no per-field name
    lookups in a loop (generated once per class)."""
    names = [f.name for f in dataclasses.fields(cls)]
    body = ["def replacer(obj, changes):", "    new = new_(cls)"]
    body += [f"    set_(new, {n!r}, obj.{n})" for n in names]
    body += ["    for k, v in changes.items():",
             "        if k not in names:",
             "            raise TypeError(f'{cls.__name__} has no field {k!r}')",
             "        set_(new, k, v)",
             "    return new"]
    _FIELDS[cls] = frozenset(names)
    scope: dict[str, Any] = {"new_": object.__new__, "set_": object.__setattr__, "cls": cls,
                             "names": _FIELDS[cls]}
    exec("\n".join(body), scope)
    fn: Callable[[Any, dict[str, Any]], Any] = scope["replacer"]
    return fn


def replace(obj: _T, /, **changes: Any) -> _T:
    """``dataclasses.replace`` for the reducer's frozen states, without re-running ``__init__``.

    The states are already valid; ``dataclasses.replace`` costs ~60-130 us a call here (it
    rebuilds keyword arguments and runs ``__init__``), and one call's journey makes ~30-40 of
    them: profiles at 150-200 calls/s showed it as the controller's largest CPU cost. A
    generated slot copy is much cheaper; unknown field names still raise.

    Inside a reducer call (``step``, ``note``...), the state that call copied for itself (see
    ``_Private``) is changed in place instead: nobody else holds it yet, so the result is the
    same as a copy, and one event costs one copy of the ~50-field state instead of three or
    four."""
    cls = type(obj)
    fn = _REPLACERS.get(cls)
    if fn is None:  # also fills _FIELDS, which the in-place path reads
        fn = _REPLACERS[cls] = _make_replacer(cls)
    if obj is _owned[0]:
        names = _FIELDS[cls]
        for k, v in changes.items():
            if k not in names:
                raise TypeError(f"{cls.__name__} has no field {k!r}")
            _set(obj, k, v)
        return obj
    result: _T = fn(obj, changes)
    return result


_set = object.__setattr__
# The one state the running reducer call may change in place (a list: no ``global`` needed).
_owned: list[Any] = [None]


class _Private(Generic[_T]):
    """``with _Private(state, **changes) as state:`` a private copy of ``state`` (with
    ``changes``) that ``replace`` changes in place until the block ends. The reducer is not
    re-entrant: one private state at a time."""

    __slots__ = ("state",)

    def __init__(self, state: _T, **changes: Any) -> None:
        self.state: _T = replace(state, **changes)

    @classmethod
    def fresh(cls, obj: _T) -> _Private[_T]:
        """An object its maker alone holds (just built): changed in place without a first copy."""
        private: _Private[_T] = object.__new__(cls)
        private.state = obj
        return private

    def __enter__(self) -> _T:
        _owned[0] = self.state
        return self.state

    def __exit__(self, *exc: object) -> None:
        _owned[0] = None


if TYPE_CHECKING:
    from callcenter.analytics.attribution import CallSummary

Location = Literal["pre_answer", "ivr", "queue", "left_queue", "talking", "after_talk"]
StintOutcome = Literal["answered", "abandoned", "moved", "timeout", "exit_key"]

# Event types that describe agents, not calls: never part of a journey.
AGENT_STATE_EVENTS: tuple[type[Event], ...] = (AgentStatusChanged, AgentPauseChanged, QueueMemberChanged)
# Event types that only make sense for a call we already follow: they never open a journey
# (a spy leg or an originate result on its own is not an inbound call).
ATTACH_ONLY_EVENTS: tuple[type[Event], ...] = (
    SpyStarted,
    SpyStopped,
    OriginateResult,
    ControllerReleased,
    VariableSet,
)

_LEAVE_OUTCOME: dict[QueueLeaveReason, StintOutcome] = {
    QueueLeaveReason.ANSWERED: "answered",
    QueueLeaveReason.ABANDON: "abandoned",
    QueueLeaveReason.TIMEOUT: "timeout",
    QueueLeaveReason.EXIT_KEY: "exit_key",
    QueueLeaveReason.REDIRECT: "moved",
}


def _secs(start: datetime | None, end: datetime | None) -> float:
    """Non-negative seconds between two PBX times (0 if either is missing or out of order)."""
    if start is None or end is None:
        return 0.0
    return max(0.0, (end - start).total_seconds())


@dataclass(frozen=True, slots=True, kw_only=True)
class JourneyRecord:
    """One step of a call's journey (a future ``call_events`` row)."""

    call_id: str
    seq: int
    kind: str
    pbx_at: datetime  # PBX time of the step (notes: the latest PBX time seen for the call)
    controller_at: datetime
    ivr_node: str | None = None
    queue: str | None = None
    agent: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    rules_version: str | None = None
    rule_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, dict):
                value = {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in value.items()}
            out[f.name] = value
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Stint:
    """One visit of a queue. ``outcome`` is None while the caller is still in it."""

    queue: str
    joined_at: datetime
    left_at: datetime | None = None
    outcome: StintOutcome | None = None
    agent: str | None = None
    provisional: bool = False  # "abandoned" that a later sign of life may turn into "moved"
    by_controller: bool = False  # moved by a controller-made move (note_move)
    moved_to: str | None = None  # next queue after a move/overflow (None: IVR or unknown)
    ringing_at_leave: bool = False
    leave_seq: int | None = None  # seq of the queue_leave record that closed it

    @property
    def open(self) -> bool:
        return self.outcome is None


@dataclass(frozen=True, slots=True, kw_only=True)
class JourneyState:
    """Everything known about one live call. Immutable: ``step`` returns a new one."""

    call_id: str
    pbx: str
    seq: int = 0
    arrival_seen: bool = False
    unique_id: str | None = None
    caller: str | None = None
    caller_name: str | None = None
    did: str | None = None
    entered_at: datetime
    last_at: datetime
    pbx_answered_at: datetime | None = None
    location: Location = "pre_answer"
    # IVR
    ivr_node: str | None = None
    ivr_path: tuple[tuple[str, datetime, bool], ...] = ()  # (node, entered at, before an agent answered)
    passive_nodes: frozenset[str] = frozenset()  # nodes the PBX reported as non-interactive (hold)
    digits: tuple[str, ...] = ()
    ivr_since: datetime | None = None  # open IVR phase (only before the first agent answer)
    ivr_total_s: float | None = None  # None: never in the IVR phase
    digits_before_answer: bool = False  # the controller collected digits before an agent answered
    # queues
    stints: tuple[Stint, ...] = ()
    pending_moves: tuple[tuple[str, str | None], ...] = ()  # controller moves not yet seen leaving
    overflows: int = 0
    # agent phones
    ringing: frozenset[str] = frozenset()
    canceled_since_offer: frozenset[str] = frozenset()
    ring_since: datetime | None = None
    ring_total_s: float | None = None  # None: no agent phone ever rang
    offered_agents: tuple[str, ...] = ()
    missed_rings: int = 0
    # agent conversation
    answered_at: datetime | None = None
    answered: bool = False
    agent: str | None = None  # first agent who took the call
    answer_queue: str | None = None
    talk_since: datetime | None = None
    talk_total_s: float | None = None
    completed_by: HangupParty | None = None
    # controller / routing notes
    markers: tuple[tuple[str, Mapping[str, Any]], ...] = ()  # (kind, detail)
    customer_id: int | None = None
    vip: bool | None = None
    rules_version: str | None = None  # of the latest routing record that named one
    rule_id: str | None = None
    # end
    ended: bool = False
    ended_at: datetime | None = None
    end_cause: int | None = None
    end_cause_text: str | None = None
    end_hung_up_by: HangupParty | None = None
    end_location: Location | None = None

    # -- derived ---------------------------------------------------------------------------
    @property
    def open_stint(self) -> Stint | None:
        if self.stints and self.stints[-1].open:
            return self.stints[-1]
        return None

    @property
    def last_stint(self) -> Stint | None:
        return self.stints[-1] if self.stints else None

    @property
    def ringing_now(self) -> bool:
        """An agent phone is ringing, or its ringing was just canceled by the caller leaving."""
        return bool(self.ringing or self.canceled_since_offer)


# -- helpers (all pure) ------------------------------------------------------------------------


def _new_state(event: Event) -> JourneyState:
    assert event.call_id is not None
    return JourneyState(call_id=event.call_id, pbx=event.pbx, entered_at=event.at, last_at=event.at)


def _emit(
    state: JourneyState,
    out: list[JourneyRecord],
    kind: str,
    now: datetime,
    pbx_at: datetime,
    *,
    queue: str | None = None,
    agent: str | None = None,
    ivr_node: str | None = None,
    detail: dict[str, Any] | None = None,
    rules_version: str | None = None,
    rule_id: str | None = None,
) -> JourneyState:
    seq = state.seq + 1
    if rules_version is not None or rule_id is not None:
        state = replace(state, rules_version=rules_version, rule_id=rule_id)
    out.append(
        JourneyRecord(
            call_id=state.call_id,
            seq=seq,
            kind=kind,
            pbx_at=pbx_at,
            controller_at=now,
            ivr_node=ivr_node if ivr_node is not None else state.ivr_node,
            queue=queue,
            agent=agent,
            detail=detail or {},
            rules_version=rules_version,
            rule_id=rule_id,
        )
    )
    return replace(state, seq=seq)


def _with_last_stint(state: JourneyState, stint: Stint) -> JourneyState:
    return replace(state, stints=(*state.stints[:-1], stint))


def _close_ivr(state: JourneyState, at: datetime) -> JourneyState:
    if state.ivr_since is None:
        return state
    total = (state.ivr_total_s or 0.0) + _secs(state.ivr_since, at)
    return replace(state, ivr_since=None, ivr_total_s=total)


def _enter_ivr(state: JourneyState, at: datetime) -> JourneyState:
    """The caller is (again) in the IVR phase. IVR time after an agent answered (post-call
    survey, transfer back to a menu) is not "time to reach an agent", so it isn't counted."""
    state = replace(state, location="ivr")
    if state.ivr_since is None and not state.answered:
        state = replace(state, ivr_since=at, ivr_total_s=state.ivr_total_s or 0.0)
    return state


def _stop_ring(state: JourneyState, agent: str | None, at: datetime, *, all_: bool = False) -> JourneyState:
    ringing = frozenset() if all_ else state.ringing - {agent}
    if state.ringing and not ringing and state.ring_since is not None:
        total = (state.ring_total_s or 0.0) + _secs(state.ring_since, at)
        return replace(state, ringing=ringing, ring_since=None, ring_total_s=total)
    return replace(state, ringing=ringing)


def _start_talk(state: JourneyState, at: datetime, agent: str | None, queue: str | None) -> JourneyState:
    state = _close_ivr(state, at)
    changes: dict[str, Any] = {"location": "talking"}
    if not state.answered:
        changes.update(answered=True, answered_at=at, answer_queue=queue)
    if state.agent is None and agent is not None:
        changes["agent"] = agent
    if state.talk_since is None:
        changes["talk_since"] = at
        changes["talk_total_s"] = state.talk_total_s or 0.0
    return replace(state, **changes)


def _stop_talk(state: JourneyState, at: datetime) -> JourneyState:
    if state.talk_since is None:
        return state
    total = (state.talk_total_s or 0.0) + _secs(state.talk_since, at)
    return replace(state, talk_since=None, talk_total_s=total)


def _close_open_stint(
    state: JourneyState, at: datetime, outcome: StintOutcome, *, agent: str | None = None, **extra: Any
) -> JourneyState:
    stint = state.open_stint
    if stint is None:
        return state
    closed = replace(
        stint,
        left_at=at,
        outcome=outcome,
        agent=agent if agent is not None else stint.agent,
        ringing_at_leave=state.ringing_now,
        **extra,
    )
    state = _with_last_stint(state, closed)
    # app_queue stops ringing every member when the caller leaves the queue.
    state = _stop_ring(state, None, at, all_=True)
    return replace(state, canceled_since_offer=frozenset())


def _rescind_abandon(
    state: JourneyState, out: list[JourneyRecord], now: datetime, at: datetime, *, to_queue: str | None
) -> JourneyState:
    """The last stint's provisional abandon was a move: the caller is still alive."""
    stint = state.last_stint
    if stint is None or not stint.provisional:
        return state
    state = _with_last_stint(state, replace(stint, outcome="moved", provisional=False, moved_to=to_queue))
    detail = {
        "from_queue": stint.queue,
        "to_queue": to_queue,
        "by": "observed",
        "rewrites_seq": stint.leave_seq,
        "stint_outcome": "moved",
    }
    if to_queue is not None:
        state = replace(state, overflows=state.overflows + 1)
        return _emit(state, out, "overflow", now, at, queue=to_queue, detail=detail)
    return _emit(state, out, "moved_to_ivr", now, at, queue=stint.queue, detail=detail)


def _mark_answered_from_pbx(state: JourneyState, at: datetime) -> JourneyState:
    """Evidence that the PBX answered the caller (digits, prompts) without a CallAnswered."""
    if state.location == "pre_answer":
        state = _enter_ivr(state, at)
        if state.pbx_answered_at is None:
            state = replace(state, pbx_answered_at=at)
    return state


# -- the reducer ---------------------------------------------------------------------------------


def step(state: JourneyState | None, event: Event, now: datetime) -> tuple[JourneyState, list[JourneyRecord]]:
    """Apply one event of a call to its journey; return the new state and the new records.

    ``state`` None starts a journey from ``event``. The event's ``call_id`` must be set and,
    with a state, equal to ``state.call_id`` (``ValueError`` otherwise). Events after the
    call ended change nothing.
    """
    if event.call_id is None:
        raise ValueError("journey events need a call_id")
    if state is None:
        state = _new_state(event)
    elif event.call_id != state.call_id:
        raise ValueError(f"event of call {event.call_id!r} fed to journey of {state.call_id!r}")
    if state.ended or isinstance(event, AGENT_STATE_EVENTS):
        return state, []
    out: list[JourneyRecord] = []
    at = event.at
    with _Private(state, last_at=max(state.last_at, at)) as state:
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            state = handler(state, event, now, out)
    return state, out


def _on_arrived(state: JourneyState, ev: CallArrived, now: datetime, out: list[JourneyRecord]) -> JourneyState:
    if state.arrival_seen:
        return state  # a second leg announced as arrival: the call exists already
    state = replace(
        state,
        arrival_seen=True,
        unique_id=ev.unique_id,
        caller=ev.caller_number or state.caller,
        caller_name=ev.caller_name or state.caller_name,
        did=ev.did or state.did,
        entered_at=min(state.entered_at, ev.at),
    )
    detail = {
        "caller": ev.caller_number,
        "caller_name": ev.caller_name,
        "did": ev.did,
        "unique_id": ev.unique_id,
        "context": ev.context,
    }
    return _emit(state, out, "arrived", now, ev.at, detail=detail)


def _on_answered(state: JourneyState, ev: CallAnswered, now: datetime, out: list[JourneyRecord]) -> JourneyState:
    if state.pbx_answered_at is not None:
        return state
    state = replace(state, pbx_answered_at=ev.at)
    if state.location == "pre_answer":
        state = _enter_ivr(state, ev.at)
    return _emit(state, out, "answered_by_pbx", now, ev.at)


def _on_attached(state: JourneyState, ev: ControllerAttached, now: datetime, out: list[JourneyRecord]) -> JourneyState:
    state = replace(
        state,
        caller=state.caller or ev.caller_number,
        caller_name=state.caller_name or ev.caller_name,
        did=state.did or ev.did,
    )
    state = _rescind_abandon(state, out, now, ev.at, to_queue=None)
    if state.location == "left_queue":
        state = _enter_ivr(state, ev.at)
    return _emit(state, out, "controller_attached", now, ev.at)


def _on_released(state: JourneyState, ev: ControllerReleased, now: datetime, out: list[JourneyRecord]) -> JourneyState:
    return _emit(state, out, "controller_released", now, ev.at)


def _on_ivr_node(state: JourneyState, ev: IvrNodeEntered, now: datetime, out: list[JourneyRecord]) -> JourneyState:
    state = _rescind_abandon(state, out, now, ev.at, to_queue=None)
    state = replace(state, ivr_node=ev.node, ivr_path=(*state.ivr_path, (ev.node, ev.at, not state.answered)))
    if not ev.interactive:
        state = replace(state, passive_nodes=state.passive_nodes | {ev.node})
    if state.location == "pre_answer" and not state.arrival_seen:
        # We never saw the call arrive (controller started mid-call): a menu means answered.
        state = _enter_ivr(state, ev.at)
    elif state.location == "left_queue":
        state = _enter_ivr(state, ev.at)
    return _emit(state, out, "ivr_node", now, ev.at, ivr_node=ev.node)


def _on_digits(state: JourneyState, ev: DigitsCollected, now: datetime, out: list[JourneyRecord]) -> JourneyState:
    if not ev.hangup:
        state = _rescind_abandon(state, out, now, ev.at, to_queue=None)
        if state.location == "left_queue":
            state = _enter_ivr(state, ev.at)
    state = _mark_answered_from_pbx(state, ev.at)
    if not state.answered:
        state = replace(state, digits_before_answer=True)
    if ev.digits:
        state = replace(state, digits=(*state.digits, ev.digits))
    detail = {
        "digits": ev.digits,
        "timeout": not ev.digits and not ev.hangup,
        "hangup": ev.hangup,
        "command_id": ev.command_id,
    }
    return _emit(state, out, "digits", now, ev.at, detail=detail)


def _on_dtmf(state: JourneyState, ev: DtmfReceived, now: datetime, out: list[JourneyRecord]) -> JourneyState:
    state = _mark_answered_from_pbx(state, ev.at)
    return _emit(state, out, "dtmf", now, ev.at, detail={"digit": ev.digit})


def _on_prompt(state: JourneyState, ev: PromptFinished, now: datetime, out: list[JourneyRecord]) -> JourneyState:
    state = _mark_answered_from_pbx(state, ev.at)
    detail = {"result": ev.result, "hangup": ev.hangup, "command_id": ev.command_id}
    return _emit(state, out, "prompt_finished", now, ev.at, detail=detail)


def _on_variable(state: JourneyState, ev: VariableSet, now: datetime, out: list[JourneyRecord]) -> JourneyState:
    return _emit(state, out, "variable", now, ev.at, detail={"name": ev.name, "value": ev.value})


def _on_queue_joined(state: JourneyState, ev: QueueJoined, now: datetime, out: list[JourneyRecord]) -> JourneyState:
    at = ev.at
    prev = state.last_stint
    if prev is not None and prev.open:
        # Joined a queue without having left the previous one (a PBX that does not report the
        # leave of a transfer): the previous visit ended here, as a move.
        state = _close_open_stint(state, at, "moved", moved_to=ev.queue)
        state = replace(state, overflows=state.overflows + 1)
        move = {"from_queue": prev.queue, "to_queue": ev.queue, "by": "implicit", "rewrites_seq": None}
        state = _emit(state, out, "overflow", now, at, queue=ev.queue, detail=move)
    elif prev is not None and prev.provisional:
        state = _rescind_abandon(state, out, now, at, to_queue=ev.queue)
    elif prev is not None and state.location == "left_queue" and prev.outcome in ("moved", "timeout"):
        # Controller move (already "moved") or the dialplan's next Queue() after a timeout.
        by = "controller" if prev.by_controller else ("observed" if prev.outcome == "moved" else "timeout")
        state = _with_last_stint(state, replace(prev, moved_to=ev.queue))
        state = replace(state, overflows=state.overflows + 1)
        move = {"from_queue": prev.queue, "to_queue": ev.queue, "by": by, "rewrites_seq": None}
        state = _emit(state, out, "overflow", now, at, queue=ev.queue, detail=move)
    if state.location == "pre_answer" and state.pbx_answered_at is None:
        # Queue() answers the channel itself unless told not to; either way the caller is now
        # past the answer step.
        state = replace(state, pbx_answered_at=at)
    state = _close_ivr(state, at)
    if state.location == "talking":
        state = _stop_talk(state, at)  # transferred by the agent into another queue
    after = prev.outcome if prev is not None else None
    state = _stop_ring(state, None, at, all_=True)
    stint = Stint(queue=ev.queue, joined_at=at)
    state = replace(state, stints=(*state.stints, stint), location="queue", canceled_since_offer=frozenset())
    detail = {"position": ev.position, "count": ev.count, "after": after}
    return _emit(state, out, "queue_join", now, at, queue=ev.queue, detail=detail)


def _on_offered(state: JourneyState, ev: AgentOffered, now: datetime, out: list[JourneyRecord]) -> JourneyState:
    changes: dict[str, Any] = {"canceled_since_offer": frozenset()}
    if not state.ringing:
        changes["ring_since"] = ev.at
        changes["ring_total_s"] = state.ring_total_s or 0.0
    changes["ringing"] = state.ringing | {ev.agent}
    if ev.agent not in state.offered_agents:
        changes["offered_agents"] = (*state.offered_agents, ev.agent)
    state = replace(state, **changes)
    detail = {"agent_name": ev.agent_name, "agent_channel": ev.agent_channel}
    return _emit(state, out, "agent_ring", now, ev.at, queue=ev.queue, agent=ev.agent, detail=detail)


def _on_ring_no_answer(
    state: JourneyState, ev: AgentRingNoAnswer, now: datetime, out: list[JourneyRecord]
) -> JourneyState:
    state = _stop_ring(state, ev.agent, ev.at)
    changes: dict[str, Any] = {"missed_rings": state.missed_rings + 1}
    if ev.agent not in state.offered_agents:
        changes["offered_agents"] = (*state.offered_agents, ev.agent)
    state = replace(state, **changes)
    detail = {"ring_ms": ev.ring_ms, "agent_name": ev.agent_name}
    return _emit(state, out, "agent_ring_no_answer", now, ev.at, queue=ev.queue, agent=ev.agent, detail=detail)


def _on_ring_canceled(
    state: JourneyState, ev: AgentRingCanceled, now: datetime, out: list[JourneyRecord]
) -> JourneyState:
    if ev.agent in state.ringing:
        state = _stop_ring(state, ev.agent, ev.at)
        if state.open_stint is not None:
            state = replace(state, canceled_since_offer=state.canceled_since_offer | {ev.agent})
    detail = {"agent_name": ev.agent_name}
    return _emit(state, out, "agent_ring_canceled", now, ev.at, queue=ev.queue, agent=ev.agent, detail=detail)


def _on_connected(state: JourneyState, ev: AgentConnected, now: datetime, out: list[JourneyRecord]) -> JourneyState:
    at = ev.at
    stint = state.last_stint
    if stint is not None and stint.provisional and (ev.queue is None or ev.queue == stint.queue):
        # The "abandon" was followed by an agent of the same queue taking the call: the PBX
        # reported things out of order, the stint was in fact answered.
        state = _with_last_stint(state, replace(stint, outcome="answered", provisional=False, agent=ev.agent))
    elif stint is not None and stint.provisional:
        state = _rescind_abandon(state, out, now, at, to_queue=ev.queue)  # alive, with an agent elsewhere
    elif stint is not None and stint.open:
        state = _close_open_stint(state, at, "answered", agent=ev.agent)
    elif stint is not None and stint.outcome == "answered" and stint.agent is None:
        # QueueCallerLeave comes before AgentConnect on Asterisk 22 (answered traces).
        state = _with_last_stint(state, replace(stint, agent=ev.agent))
    state = _stop_ring(state, ev.agent, at, all_=True)
    state = replace(state, canceled_since_offer=frozenset())
    if ev.agent not in state.offered_agents:
        state = replace(state, offered_agents=(*state.offered_agents, ev.agent))
    state = _start_talk(state, at, ev.agent, ev.queue)
    detail = {"hold_s": ev.hold_s, "ring_s": ev.ring_s, "agent_name": ev.agent_name}
    return _emit(state, out, "agent_connect", now, at, queue=ev.queue, agent=ev.agent, detail=detail)


def _on_completed(state: JourneyState, ev: AgentCompleted, now: datetime, out: list[JourneyRecord]) -> JourneyState:
    if not state.answered:
        # A completed conversation proves an agent took the call even if we missed the connect.
        state = replace(state, answered=True, agent=state.agent or ev.agent, answer_queue=ev.queue)
    state = _stop_talk(state, ev.at)
    state = replace(state, location="after_talk", completed_by=ev.ended_by)
    detail = {"ended_by": ev.ended_by.value, "talk_s": ev.talk_s, "hold_s": ev.hold_s}
    return _emit(state, out, "agent_complete", now, ev.at, queue=ev.queue, agent=ev.agent, detail=detail)


def _on_queue_left(state: JourneyState, ev: QueueLeft, now: datetime, out: list[JourneyRecord]) -> JourneyState:
    at = ev.at
    stint = state.open_stint
    outcome = _LEAVE_OUTCOME[ev.reason]
    provisional = False
    matched = stint is not None and stint.queue == ev.queue
    if matched:
        assert stint is not None
        move = next((m for m in state.pending_moves if m[0] == ev.queue), None)
        by_controller = False
        if move is not None:
            # An agent answering at the same moment wins over the move; either way it's used up.
            state = replace(state, pending_moves=tuple(m for m in state.pending_moves if m is not move))
            if outcome != "answered":
                outcome, by_controller = "moved", True
        provisional = outcome == "abandoned"
        state = _close_open_stint(
            state,
            at,
            outcome,
            provisional=provisional,
            by_controller=by_controller,
            moved_to=move[1] if move is not None and by_controller else None,
            leave_seq=state.seq + 1,
        )
        if outcome == "answered":
            state = _start_talk(state, at, None, ev.queue)
        else:
            state = replace(state, location="left_queue")
    detail = {
        "reason": ev.reason.value,
        "outcome": outcome if matched else None,
        "provisional": provisional,
        "position": ev.position,
        "hold_s": ev.hold_s,
    }
    if not matched:
        detail["unmatched"] = True  # no open stint of this queue (duplicate or out of order)
    return _emit(state, out, "queue_leave", now, at, queue=ev.queue, detail=detail)


def _on_spy(state: JourneyState, ev: SpyStarted | SpyStopped, now: datetime, out: list[JourneyRecord]) -> JourneyState:
    kind = "spy_start" if isinstance(ev, SpyStarted) else "spy_stop"
    detail = {
        "mode": ev.mode.value if ev.mode is not None else None,
        "spyer_channel": ev.spyer_channel,
        "target_channel": ev.target_channel,
    }
    return _emit(state, out, kind, now, ev.at, detail=detail)


def _on_originate(state: JourneyState, ev: OriginateResult, now: datetime, out: list[JourneyRecord]) -> JourneyState:
    detail = {"request_id": ev.request_id, "success": ev.success, "reason": ev.reason}
    return _emit(state, out, "originate_result", now, ev.at, detail=detail)


def _on_ended(state: JourneyState, ev: CallEnded, now: datetime, out: list[JourneyRecord]) -> JourneyState:
    at = ev.at
    end_location = state.location
    if state.open_stint is not None:
        # The caller's leg died while queued and the PBX never said the caller left the queue.
        state = _close_open_stint(state, at, "abandoned")
    state = _close_ivr(state, at)
    state = _stop_ring(state, None, at, all_=True)
    state = _stop_talk(state, at)
    last = state.last_stint
    if last is not None and last.provisional:
        # The call ended with nothing after the abandon: it stands.
        state = _with_last_stint(state, replace(last, provisional=False))
    state = replace(
        state,
        ended=True,
        ended_at=at,
        end_cause=ev.cause,
        end_cause_text=ev.cause_text,
        end_hung_up_by=ev.hung_up_by,
        end_location=end_location,
    )
    detail = {
        "cause": ev.cause,
        "cause_text": ev.cause_text,
        "hung_up_by": ev.hung_up_by.value,
        "location": end_location,
    }
    return _emit(state, out, "ended", now, at, detail=detail)


_HANDLERS: dict[type[Event], Callable[[Any, Any, datetime, list[JourneyRecord]], JourneyState]] = {
    CallArrived: _on_arrived,
    CallAnswered: _on_answered,
    ControllerAttached: _on_attached,
    ControllerReleased: _on_released,
    IvrNodeEntered: _on_ivr_node,
    DigitsCollected: _on_digits,
    DtmfReceived: _on_dtmf,
    PromptFinished: _on_prompt,
    VariableSet: _on_variable,
    QueueJoined: _on_queue_joined,
    AgentOffered: _on_offered,
    AgentRingNoAnswer: _on_ring_no_answer,
    AgentRingCanceled: _on_ring_canceled,
    AgentConnected: _on_connected,
    AgentCompleted: _on_completed,
    QueueLeft: _on_queue_left,
    SpyStarted: _on_spy,
    SpyStopped: _on_spy,
    OriginateResult: _on_originate,
    CallEnded: _on_ended,
}


# -- controller / routing notes (pure, like step) ------------------------------------------------


def note(
    state: JourneyState,
    kind: str,
    now: datetime,
    *,
    pbx_at: datetime | None = None,
    detail: Mapping[str, Any] | None = None,
    ivr_node: str | None = None,
    queue: str | None = None,
    agent: str | None = None,
    rules_version: str | None = None,
    rule_id: str | None = None,
) -> tuple[JourneyState, list[JourneyRecord]]:
    """Append a controller/routing record (``closed``, ``callback``, ``voicemail``, a routing
    decision...). The attribution reads ``kind`` and boolean ``detail`` flags of these markers.
    ``pbx_at`` defaults to the latest PBX time seen for the call (the store keys steps by PBX
    time). Notes on an ended call change nothing."""
    if state.ended:
        return state, []
    out: list[JourneyRecord] = []
    d = dict(detail or {})
    with _Private(state, markers=(*state.markers, (kind, d))) as state:
        state = _emit(
            state,
            out,
            kind,
            now,
            pbx_at if pbx_at is not None else state.last_at,
            queue=queue,
            agent=agent,
            ivr_node=ivr_node,
            detail=d,
            rules_version=rules_version,
            rule_id=rule_id,
        )
    return state, out


def note_move(
    state: JourneyState,
    from_queue: str,
    to_queue: str | None,
    now: datetime,
    *,
    rules_version: str | None = None,
    rule_id: str | None = None,
) -> tuple[JourneyState, list[JourneyRecord]]:
    """The controller moves the call out of ``from_queue`` (to ``to_queue``, or elsewhere if
    None). Its leave of ``from_queue`` is then "moved", never an abandon, whatever the PBX
    reports. Best noted *before* sending the move; if the PBX already reported the leave as a
    (provisional) abandon, that stint is rewritten at once."""
    if state.ended:
        return state, []
    out: list[JourneyRecord] = []
    last = state.last_stint
    detail: dict[str, Any] = {"from_queue": from_queue, "to_queue": to_queue, "rewrites_seq": None}
    with _Private(state) as state:
        if last is not None and last.provisional and last.queue == from_queue:
            state = _with_last_stint(
                state, replace(last, outcome="moved", provisional=False, by_controller=True, moved_to=to_queue)
            )
            detail["rewrites_seq"] = last.leave_seq
        else:
            state = replace(state, pending_moves=(*state.pending_moves, (from_queue, to_queue)))
        state = _emit(
            state,
            out,
            "move_requested",
            now,
            state.last_at,
            queue=from_queue,
            detail=detail,
            rules_version=rules_version,
            rule_id=rule_id,
        )
    return state, out


def note_customer(
    state: JourneyState,
    now: datetime,
    *,
    customer_id: int | None,
    vip: bool | None,
    tier: str | None = None,
) -> tuple[JourneyState, list[JourneyRecord]]:
    """The CRM identified the caller at call time (``vip`` from the customer's tier)."""
    if state.ended:
        return state, []
    out: list[JourneyRecord] = []
    with _Private(state, customer_id=customer_id, vip=vip) as state:
        detail = {"customer_id": customer_id, "vip": vip, "tier": tier}
        return _emit(state, out, "customer", now, state.last_at, detail=detail), out


# -- the book of live calls ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BookUpdate:
    """What one event did: the new records and, when the call ended, its summary."""

    records: list[JourneyRecord]
    summary: CallSummary | None = None


class JourneyBook:
    """Journeys of the live calls, keyed by call_id. Pure (no I/O, no clock): the shell feeds it
    events and persists what comes back.

    - events with ``call_id`` None (agent state) and agent-state events are ignored;
    - spy, originate, release and variable events only attach to a call already followed;
    - ``CallEnded`` returns the call's ``CallSummary`` and forgets the call; later events of
      that call (other legs hanging up after the caller) are dropped, the last
      ``ended_memory`` ended call ids are remembered for this (``late_events`` counts them);
    - ``short_abandon_s`` and ``hold_nodes`` configure the attribution (see
      ``callcenter.analytics.attribution``); ``summarize`` replaces it altogether.
    """

    def __init__(
        self,
        *,
        short_abandon_s: float = 5.0,
        hold_nodes: Iterable[str] = (),
        ended_memory: int = 10_000,
        summarize: Callable[[JourneyState], CallSummary] | None = None,
    ) -> None:
        if summarize is None:
            # Imported here: attribution imports this module (it reads JourneyState).
            from callcenter.analytics.attribution import summarize as default_summarize

            holds = frozenset(hold_nodes)
            self._summarize: Callable[[JourneyState], CallSummary] = lambda j: default_summarize(
                j, short_abandon_s=short_abandon_s, hold_nodes=holds
            )
        else:
            self._summarize = summarize
        self._live: dict[str, JourneyState] = {}
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._ended_memory = ended_memory
        self.late_events = 0

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._live

    def state(self, call_id: str) -> JourneyState | None:
        return self._live.get(call_id)

    def live_call_ids(self) -> list[str]:
        return list(self._live)

    def feed(self, event: Event, now: datetime) -> BookUpdate:
        call_id = event.call_id
        if call_id is None or isinstance(event, AGENT_STATE_EVENTS):
            return BookUpdate([])
        if call_id in self._ended:
            self.late_events += 1
            return BookUpdate([])
        state = self._live.get(call_id)
        if state is None and isinstance(event, ATTACH_ONLY_EVENTS):
            return BookUpdate([])
        state, records = step(state, event, now)
        if not state.ended:
            self._live[call_id] = state
            return BookUpdate(records)
        self._live.pop(call_id, None)
        self._ended[call_id] = None
        while len(self._ended) > self._ended_memory:
            self._ended.popitem(last=False)
        return BookUpdate(records, self._summarize(state))

    def _apply(
        self, call_id: str, fn: Callable[[JourneyState], tuple[JourneyState, list[JourneyRecord]]]
    ) -> list[JourneyRecord]:
        state = self._live.get(call_id)
        if state is None:
            return []  # unknown or already ended call: nothing to annotate
        state, records = fn(state)
        self._live[call_id] = state
        return records

    def note_controller_move(
        self,
        call_id: str,
        from_queue: str,
        to_queue: str | None,
        *,
        now: datetime,
        rules_version: str | None = None,
        rule_id: str | None = None,
    ) -> list[JourneyRecord]:
        return self._apply(
            call_id,
            lambda s: note_move(s, from_queue, to_queue, now, rules_version=rules_version, rule_id=rule_id),
        )

    def note_customer(
        self, call_id: str, *, customer_id: int | None, vip: bool | None, tier: str | None = None, now: datetime
    ) -> list[JourneyRecord]:
        return self._apply(call_id, lambda s: note_customer(s, now, customer_id=customer_id, vip=vip, tier=tier))

    def note(self, call_id: str, kind: str, *, now: datetime, **kwargs: Any) -> list[JourneyRecord]:
        """Routing-layer record (``closed``, ``callback``, ``voicemail``...); see ``note()``."""
        return self._apply(call_id, lambda s: note(s, kind, now, **kwargs))

    def drop(self, call_id: str) -> JourneyState | None:
        """Forget a live call without a summary (e.g. the PBX says the channel is gone but the
        CallEnded was lost). Returns its last state."""
        return self._live.pop(call_id, None)
