"""Overflow planning: which waiting calls move, which agent groups join or leave. Pure.

The shell calls ``overflow_actions`` periodically (and on queue events) with the live state,
the calls waiting, the groups it has added, and the time; it executes the actions
(``overflow_commands``) and remembers what it did (``WaitingCall.steps_done``, the active
groups). Nothing is remembered here, so the same inputs always give the same plan.

Semantics (docs/routing.md has the admin's view):

- ``move_to`` steps, per waiting call, in step order: the first step whose triggers all hold,
  that this call has not taken yet (``steps_done``), and whose target admits the call's tier,
  moves it. At most one move per call per evaluation; a step never moves the same call twice
  (so ``a -> b -> a`` chains terminate). ``after_wait_s`` counts from when the call entered
  *this* queue; the move keeps ``original_entry_at`` so service level is measured from the
  first queue (a caller who waited 60 s in sales did not start over in support).
- ``add_group`` steps, per queue: load = waiting calls per available agent (infinite with
  calls waiting and nobody available, 0 with no calls). The group is added when the load
  exceeds ``add_above`` (and the step's other triggers hold), and removed only once the load
  falls below ``remove_below``: between the two thresholds nothing changes (hysteresis), so
  a queue hovering around one value does not add and remove people every few seconds.
- Tier safety: a call is never moved to a queue that excludes its tier (a call whose CRM
  lookup failed only to queues that restrict no tier); that step is passed over for it.
- Order: queues in file order; per queue, group actions in step order, then moves ordered by
  (original entry, call id): the longest-waiting caller first, deterministically.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass
from datetime import datetime

from callcenter.domain.commands import AddQueueMember, Command, MoveToQueue, RemoveQueueMember
from callcenter.routing.decide import LiveState, QueueLive
from callcenter.routing.rules import GroupMember, OverflowStep, RuleSet


@dataclass(frozen=True, slots=True)
class WaitingCall:
    call_id: str
    queue: str  # logical queue it waits in
    entered_queue_at: datetime  # entered *this* queue
    original_entry_at: datetime  # entered the first queue (service level clock)
    tier: str | None  # casefolded CRM tier; None: unknown caller
    priority: int = 0
    steps_done: frozenset[str] = frozenset()  # overflow step ids already applied to this call
    lookup_failed: bool = False  # tier unknown because the CRM failed: only unrestricted targets
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class MoveCall:
    call_id: str
    from_queue: str
    to_queue: str
    priority: int
    keep_entry_at: datetime  # the original entry time, for service level
    step_id: str
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class AddGroup:
    queue: str
    group: str
    step_id: str
    load: float


@dataclass(frozen=True, slots=True)
class RemoveGroup:
    queue: str
    group: str
    step_id: str
    load: float


OverflowAction = MoveCall | AddGroup | RemoveGroup


def load(q: QueueLive) -> float:
    """Waiting calls per available agent."""
    if q.waiting <= 0:
        return 0.0
    if q.available <= 0:
        return math.inf
    return q.waiting / q.available


def _queue_triggers(step: OverflowStep, q: QueueLive | None) -> bool:
    """The queue-level triggers of ``step`` (all given must hold). No live state: none hold."""
    if step.estimated_wait_s_over is not None or step.no_agents_logged_in or step.no_agents_available:
        if q is None:
            return False
    if step.estimated_wait_s_over is not None:
        assert q is not None
        if q.estimated_wait_s is None or not q.estimated_wait_s > step.estimated_wait_s_over:
            return False
    if step.no_agents_logged_in and (q is None or q.logged_in > 0):
        return False
    if step.no_agents_available and (q is None or q.available > 0):
        return False
    return True


def _waited(call: WaitingCall, now: datetime) -> float:
    return max(0.0, (now - call.entered_queue_at).total_seconds())


def overflow_actions(
    rules: RuleSet,
    live: LiveState,
    waiting: Iterable[WaitingCall],
    active_groups: Set[tuple[str, str]],
    now: datetime,
) -> list[OverflowAction]:
    """The overflow actions due at ``now``. ``active_groups``: (queue, group) pairs the shell
    has added and not removed."""
    by_queue: dict[str, list[WaitingCall]] = {}
    for call in waiting:
        by_queue.setdefault(call.queue, []).append(call)
    out: list[OverflowAction] = []
    for qname, qcfg in rules.queues.items():
        q = live.get(qname)
        for step in qcfg.overflow:
            if step.add_group is None:
                continue
            assert step.add_above is not None and step.remove_below is not None
            if q is None:
                continue  # no live state: keep whatever is in place
            lv = load(q)
            active = (qname, step.add_group) in active_groups
            if not active and lv > step.add_above and _queue_triggers(step, q):
                if step.after_wait_s is None or q.longest_wait_s > step.after_wait_s:
                    out.append(AddGroup(qname, step.add_group, step.id, lv))
            elif active and lv < step.remove_below:
                out.append(RemoveGroup(qname, step.add_group, step.id, lv))
        moves = [s for s in qcfg.overflow if s.move_to is not None]
        if not moves:
            continue
        calls = sorted(by_queue.get(qname, ()), key=lambda c: (c.original_entry_at, c.call_id))
        due = [s for s in moves if _queue_triggers(s, q)]
        for call in calls:
            for step in due:
                assert step.move_to is not None
                if step.id in call.steps_done:
                    continue
                if step.after_wait_s is not None and _waited(call, now) < step.after_wait_s:
                    continue
                if rules.queues[step.move_to].excludes(call.tier, strict=call.lookup_failed) is not None:
                    continue
                priority = step.priority if step.priority is not None else call.priority
                out.append(
                    MoveCall(call.call_id, qname, step.move_to, priority, call.original_entry_at, step.id, call.channel)
                )
                break
    return out


def overflow_commands(
    action: OverflowAction,
    rules: RuleSet,
    *,
    pbx: str | None = None,
    pbx_type: str | None = None,
) -> list[Command]:
    """PBX-neutral commands for one action on one PBX: a move is ``MoveToQueue`` (the shell
    must ``note_controller_move`` first, so the journey records a move, not an abandon); a
    group is one ``AddQueueMember`` / ``RemoveQueueMember`` per member on that PBX."""
    if isinstance(action, MoveCall):
        target = rules.queues[action.to_queue].pbx_name(action.to_queue, pbx, pbx_type)
        return [MoveToQueue(call_id=action.call_id, channel=action.channel, queue=target, priority=action.priority)]
    queue = rules.queues[action.queue].pbx_name(action.queue, pbx, pbx_type)
    members: Sequence[GroupMember] = [m for m in rules.groups[action.group].members
                                      if m.pbx is None or m.pbx in (pbx, pbx_type)]
    if isinstance(action, AddGroup):
        return [AddQueueMember(queue=queue, agent=m.interface, member_name=m.name, penalty=m.penalty) for m in members]
    return [RemoveQueueMember(queue=queue, agent=m.interface) for m in members]
