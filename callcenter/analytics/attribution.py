"""Call attribution: turn a finished journey into one ``calls`` row (``CallSummary``).

Answers "at which step did the caller hang up (and go to a competitor)": in the IVR (which
menu node), in a queue (which queue), or while an agent's phone was ringing; plus the answer
rate, callers served via the IVR vs directly, VIP vs others and first-call resolution.

Built like wazo-call-logd's generator/interpretor: ``summarize`` runs a pipeline of small
named steps ``(draft, journey) -> draft`` over the final ``JourneyState``; each step fills a
few fields of a frozen ``CallSummary`` with ``dataclasses.replace``. Pure: no I/O, no clock.

Definitions (the ``calls`` row):

outcome (exactly one, first rule that matches):
    ``answered``   an agent connected: ``AgentConnected``, or an ``AgentCompleted`` /
                   ``QueueLeft(reason=answered)`` proving it when the connect was missed.
                   The PBX answering the caller's leg (IVR, music) is *not* an answer.
    ``callback``   not answered, and the routing layer noted a callback for the call (a
                   record of kind ``callback`` or with ``detail["callback"] is True``).
    ``voicemail``  not answered, a ``voicemail`` record (or ``detail["voicemail"]``).
    ``closed``     not answered, a closed-hours marker: a ``closed`` record (or
                   ``detail["closed"]``) the routing layer writes when it plays the closed
                   message. Precedence callback > voicemail > closed: a caller who reached
                   the closed message and then left a voicemail "left a voicemail".
    ``failed``     not answered, no marker, and the call was ended by the PBX/controller
                   (``CallEnded.hung_up_by == system``) or with a Q.850 failure cause (see
                   ``FAILURE_CAUSES``: routing/network/resource/protocol errors). The caller
                   did not choose to leave. Note: Asterisk ends *every* unbridged caller BYE
                   with ``Cause: 0`` (Unknown), which therefore is not a failure.
    ``abandoned``  everything else: not answered and the caller (or an unknown party) ended it.

abandon_stage (None unless outcome is ``abandoned``) — where the caller was at the end:
    ``pre_answer`` the PBX never answered the caller's leg (hung up while it rang);
    ``ivr``        answered by the PBX, not in a queue (menus, prompts, parked for the
                   controller, back in a menu after a queue);
    ``queue``      in a queue (or just out of it) and no agent phone ringing;
    ``ringing``    in a queue while at least one agent phone was ringing for the call (a ring
                   the PBX canceled because the caller left counts; a ring that ended in
                   ring-no-answer, e.g. a 486 busy, does not).
abandon_node: the IVR node (stage ivr; None if no node was ever named) or the queue name
    (stages queue / ringing); None for pre_answer and non-abandoned calls.
short_abandon: outcome abandoned and ``ended_at - entered_at <= short_abandon_s`` (default 5 s,
    measured from the call's entry, i.e. misdials and instant regrets).
answered_via_ivr: answered, and before the agent answered the caller was in an IVR *menu*: an IVR
    node that is not a hold node, or a controller digit collection. ``hold_nodes`` (config) names
    the nodes where callers only wait (e.g. music on hold while the controller decides, the lab's
    ``park-like,s``): they are IVR-stage places for abandon attribution but not menus, so a direct
    line that parks callers on hold still counts as "served directly". False otherwise (also for
    unanswered calls).
vip / customer_id: from the CRM at call time (``JourneyBook.note_customer``); None if unknown.
entered_at: CallArrived (or the first event seen); answered_at: first agent answer;
ended_at: CallEnded. All PBX times.
ivr_s: seconds the PBX-answered caller spent outside queues before the first agent answer
    (menus, prompts, parking); None if never in that phase (pre-answer hang-up, direct to queue
    counts the few ms between answer and queue).
queue_wait_s: sum of ``wait_s`` over all stints (the answered stint up to the agent answer);
    None if the call never joined a queue.
ring_s: seconds during which at least one agent phone rang for the call (union of ring
    intervals over all stints); None if no phone ever rang.
talk_s: seconds connected to agents (connect -> complete, or the call's end); None if never.
stints: every queue visit in order: queue, joined_at, left_at, wait_s, outcome
    (answered | abandoned | moved | timeout | exit_key), agent, moved_to. "moved" = left by a
    controller move or an observed redirect (abandon followed by a new queue/IVR while alive).
overflows: number of queue -> queue moves of unanswered stints (moved or timed out, then
    joined another queue).
queue: the last queue the call was in; agent: the first agent who answered.
hung_up_by: for answered calls who ended the conversation (``AgentCompleted.ended_by``, i.e.
    queue_log COMPLETECALLER/COMPLETEAGENT) if known, else what ``CallEnded`` says. Not guessed:
    a GET DATA result -1 means caller hang-up *or* the absolute timeout (asyncagi traces).
offered_agents: how many distinct agents' phones rang for the call; missed_rings: how many
    rings ended in ring-no-answer (timeout, busy/486, reject).
rules_version / rule_id: of the latest routing record that named them (routing fills them).
Beyond the ``calls`` columns (for replay and debugging): ivr_path, the IVR nodes entered in
order; end_cause, the final hangup cause; partial, the call's arrival was not seen (the
controller joined mid-call): treat its numbers with care.
"""

from __future__ import annotations

import bisect
import dataclasses
import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from callcenter.calls.journey import JourneyBook, JourneyState, Stint, _Private, replace  # fast slot copy
from callcenter.domain.events import Event, HangupParty

Outcome = Literal["answered", "abandoned", "callback", "closed", "voicemail", "failed"]
AbandonStage = Literal["pre_answer", "ivr", "queue", "ringing"]

OUTCOMES: tuple[str, ...] = ("answered", "abandoned", "callback", "closed", "voicemail", "failed")
ABANDON_STAGES: tuple[str, ...] = ("pre_answer", "ivr", "queue", "ringing")

# Q.850 causes that mean the network/PBX failed the call, not that somebody hung up:
# 1 unallocated number, 2/3 no route, 27 destination out of order, 28 invalid number format,
# 34-47 resource unavailable class (no circuit, network out of order, temporary failure,
# congestion...), 50-79 service not available / not implemented, 81-111 invalid message and
# protocol errors. Not included: 0 (Asterisk's cause for any unbridged BYE), 16/31 normal,
# 17 busy, 18/19 no answer, 21 rejected, 127 interworking (what a SIP CANCEL often maps to).
FAILURE_CAUSES: frozenset[int] = frozenset({1, 2, 3, 27, 28, *range(34, 48), *range(50, 80), *range(81, 112)})

DEFAULT_SHORT_ABANDON_S = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueStint:
    queue: str
    joined_at: datetime
    left_at: datetime | None
    wait_s: float
    outcome: str
    agent: str | None = None
    moved_to: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallSummary:
    """One finished call (the future ``calls`` row). See the module docstring."""

    call_id: str
    pbx: str
    outcome: Outcome = "abandoned"
    abandon_stage: AbandonStage | None = None
    abandon_node: str | None = None
    short_abandon: bool = False
    answered_via_ivr: bool = False
    vip: bool | None = None
    customer_id: int | None = None
    did: str | None = None
    caller: str | None = None
    entered_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    ivr_s: float | None = None
    queue_wait_s: float | None = None
    ring_s: float | None = None
    talk_s: float | None = None
    stints: tuple[QueueStint, ...] = ()
    overflows: int = 0
    queue: str | None = None
    agent: str | None = None
    hung_up_by: HangupParty = HangupParty.UNKNOWN
    offered_agents: int = 0
    missed_rings: int = 0
    rules_version: str | None = None
    rule_id: str | None = None
    ivr_path: tuple[str, ...] = ()
    end_cause: int | None = None
    partial: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: datetimes ISO 8601, enums as values, tuples as lists, stints as dicts."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


Step = Callable[[CallSummary, JourneyState], CallSummary]


def _secs(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _end(j: JourneyState) -> datetime:
    return j.ended_at if j.ended_at is not None else j.last_at


# -- the steps -------------------------------------------------------------------------------


def identity(d: CallSummary, j: JourneyState) -> CallSummary:
    return replace(
        d,
        did=j.did,
        caller=j.caller,
        customer_id=j.customer_id,
        vip=j.vip,
        rules_version=j.rules_version,
        rule_id=j.rule_id,
        partial=not j.arrival_seen,
        end_cause=j.end_cause,
    )


def timeline(d: CallSummary, j: JourneyState) -> CallSummary:
    return replace(d, entered_at=j.entered_at, answered_at=j.answered_at, ended_at=j.ended_at)


def _final_stint(s: Stint, end: datetime) -> QueueStint:
    left = s.left_at if s.left_at is not None else end
    # A provisional abandon still open (live summary) reads as what it is so far.
    outcome = s.outcome if s.outcome is not None else "abandoned"
    return QueueStint(
        queue=s.queue,
        joined_at=s.joined_at,
        left_at=s.left_at,
        wait_s=round(_secs(s.joined_at, left) or 0.0, 3),
        outcome=outcome,
        agent=s.agent,
        moved_to=s.moved_to,
    )


def queues(d: CallSummary, j: JourneyState) -> CallSummary:
    stints = tuple(_final_stint(s, _end(j)) for s in j.stints)
    wait = round(sum(s.wait_s for s in stints), 3) if stints else None
    last_queue = stints[-1].queue if stints else j.answer_queue
    return replace(d, stints=stints, queue_wait_s=wait, overflows=j.overflows, queue=last_queue)


def agents(d: CallSummary, j: JourneyState) -> CallSummary:
    return replace(
        d,
        agent=j.agent,
        offered_agents=len(j.offered_agents),
        missed_rings=j.missed_rings,
        ring_s=_r(j.ring_total_s),
        talk_s=_r(j.talk_total_s),
    )


def ivr_step(hold_nodes: Iterable[str] = ()) -> Step:
    holds = frozenset(hold_nodes)

    def ivr(d: CallSummary, j: JourneyState) -> CallSummary:
        menu = j.digits_before_answer or any(
            before and node not in holds and node not in j.passive_nodes for node, _, before in j.ivr_path
        )
        return replace(
            d,
            ivr_s=_r(j.ivr_total_s),
            ivr_path=tuple(node for node, _, _ in j.ivr_path),
            answered_via_ivr=j.answered and menu,
        )

    return ivr


def _has_marker(j: JourneyState, name: str) -> bool:
    return any(kind == name or detail.get(name) is True for kind, detail in j.markers)


def outcome(d: CallSummary, j: JourneyState) -> CallSummary:
    result: Outcome
    if j.answered:
        result = "answered"
    elif _has_marker(j, "callback"):
        result = "callback"
    elif _has_marker(j, "voicemail"):
        result = "voicemail"
    elif _has_marker(j, "closed"):
        result = "closed"
    elif j.end_hung_up_by == HangupParty.SYSTEM or (j.end_cause is not None and j.end_cause in FAILURE_CAUSES):
        result = "failed"
    else:
        result = "abandoned"
    return replace(d, outcome=result)


def abandon_point(d: CallSummary, j: JourneyState) -> CallSummary:
    """Where an abandoned caller was when the call ended (``JourneyState.end_location``)."""
    if d.outcome != "abandoned":
        return replace(d, abandon_stage=None, abandon_node=None)
    where = j.end_location if j.end_location is not None else j.location
    stint = j.last_stint
    stage: AbandonStage
    node: str | None
    if where in ("queue", "left_queue") and stint is not None:
        if stint.outcome == "moved":
            # Caught between a move's leave and its join: in queue-land, no phone ringing.
            stage, node = "queue", stint.moved_to or stint.queue
        else:
            stage = "ringing" if stint.ringing_at_leave else "queue"
            node = stint.queue
    elif where == "pre_answer":
        stage, node = "pre_answer", None
    else:
        stage, node = "ivr", j.ivr_node
    return replace(d, abandon_stage=stage, abandon_node=node)


def short_abandon_step(threshold_s: float = DEFAULT_SHORT_ABANDON_S) -> Step:
    def short_abandon(d: CallSummary, j: JourneyState) -> CallSummary:
        dur = _secs(d.entered_at, d.ended_at)
        return replace(d, short_abandon=d.outcome == "abandoned" and dur is not None and dur <= threshold_s)

    return short_abandon


def hangup_party(d: CallSummary, j: JourneyState) -> CallSummary:
    party: HangupParty = HangupParty.UNKNOWN
    if j.answered and j.completed_by is not None and j.completed_by != HangupParty.UNKNOWN:
        party = j.completed_by
    elif j.end_hung_up_by is not None:
        party = j.end_hung_up_by
    return replace(d, hung_up_by=party)


def default_steps(short_abandon_s: float = DEFAULT_SHORT_ABANDON_S, hold_nodes: Iterable[str] = ()) -> tuple[Step, ...]:
    """The pipeline, in order (``outcome`` before the steps that read it)."""
    return (
        identity,
        timeline,
        queues,
        agents,
        ivr_step(hold_nodes),
        outcome,
        abandon_point,
        short_abandon_step(short_abandon_s),
        hangup_party,
    )


def summarize(
    journey: JourneyState,
    *,
    short_abandon_s: float = DEFAULT_SHORT_ABANDON_S,
    hold_nodes: Iterable[str] = (),
    steps: Iterable[Step] | None = None,
) -> CallSummary:
    """Run the pipeline over a journey (normally one that ended).

    The steps' ``replace`` calls change the one draft in place (nobody else holds it until it
    is returned) instead of copying its ~30 fields nine times: 160 -> ~70 us a call. A step
    therefore must not keep the draft it was given; it returns ``replace(d, ...)``."""
    with _Private.fresh(CallSummary(call_id=journey.call_id, pbx=journey.pbx)) as draft:
        for fn in steps if steps is not None else default_steps(short_abandon_s, hold_nodes):
            draft = fn(draft, journey)
    return draft


def summarize_events(
    events: Iterable[Event],
    *,
    short_abandon_s: float = DEFAULT_SHORT_ABANDON_S,
    hold_nodes: Iterable[str] = (),
    customers: Mapping[str, tuple[int | None, bool | None]] | None = None,
) -> list[dict[str, Any]]:
    """Summaries (``to_dict()``) of every call that *ends* in ``events``, in order of ending.

    Calls still live at the end of the input are not summarized (their outcome is not known
    yet; a trace cut mid-call would otherwise report a fake abandon). ``customers`` maps a
    caller number to ``(customer_id, vip)``, standing in for the CRM lookup done at call time.
    Events are taken with their own PBX time as the controller time.
    """
    book = JourneyBook(short_abandon_s=short_abandon_s, hold_nodes=hold_nodes)
    identified: set[str] = set()
    out: list[dict[str, Any]] = []
    for ev in events:
        update = book.feed(ev, ev.at)
        call_id = ev.call_id
        if customers and update.summary is None and call_id is not None and call_id not in identified:
            state = book.state(call_id)
            if state is not None and state.caller is not None:
                identified.add(call_id)
                if state.caller in customers:
                    cid, vip = customers[state.caller]
                    book.note_customer(call_id, customer_id=cid, vip=vip, now=ev.at)
        if update.summary is not None:
            out.append(update.summary.to_dict())
    return out


# -- first-call resolution -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FcrMark:
    """``repeat_of``: the earlier answered call this one repeats (same customer, within the
    window), else None. ``first_contact_resolved``: for an answered call with a known customer,
    whether it resolved the matter on first contact (no call from the customer within the
    window after it); None for unanswered calls, unknown customers, or while the window is
    still open. (Both are columns of the ``calls`` row.)"""

    repeat_of: str | None
    first_contact_resolved: bool | None


def first_call_resolution(
    calls: Iterable[tuple[int | str | None, datetime, str, str]],
    *,
    window: timedelta = timedelta(hours=72),
    as_of: datetime | None = None,
) -> dict[str, FcrMark]:
    """First-call resolution over ``(customer_id, entered_at, outcome, call_id)`` tuples.

    A call from the same customer entering strictly after an ANSWERED call and at most
    ``window`` after it marks that answered call as not resolved on first contact, and is a
    ``repeat_of`` the most recent such answered call. Any later call counts (an abandoned
    retry too: the customer needed to call again). ``as_of`` (the end of the data): an
    answered call with no repeat whose window is not over by then gets ``first_contact_resolved=None``.
    """
    marks: dict[str, FcrMark] = {}
    by_customer: dict[int | str, list[tuple[datetime, str, str]]] = {}
    for customer_id, entered_at, outcome_, call_id in calls:
        if customer_id is None or customer_id == "":
            marks[call_id] = FcrMark(None, None)
            continue
        by_customer.setdefault(customer_id, []).append((entered_at, call_id, outcome_))
    for rows in by_customer.values():
        rows.sort()
        times = [t for t, _, _ in rows]
        # latest_answered[k]: index of the latest answered call among rows[0..k], or -1.
        latest_answered: list[int] = []
        last = -1
        for k, (_, _, oc) in enumerate(rows):
            if oc == "answered":
                last = k
            latest_answered.append(last)
        for t, call_id, oc in rows:
            # repeat_of: latest answered call entered strictly before t, within the window.
            before = bisect.bisect_left(times, t) - 1
            prev = latest_answered[before] if before >= 0 else -1
            repeat_of = rows[prev][1] if prev >= 0 and t - rows[prev][0] <= window else None
            resolved: bool | None = None
            if oc == "answered":
                nxt = bisect.bisect_right(times, t)
                if nxt < len(rows) and rows[nxt][0] - t <= window:
                    resolved = False
                elif as_of is None or as_of >= t + window:
                    resolved = True
            marks[call_id] = FcrMark(repeat_of, resolved)
    return marks
