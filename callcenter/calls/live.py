"""Live state of the floor: calls, agents and queues, as the PBX events describe them now.

Pure (no I/O, no clock of its own): ``LiveRegistry.apply(event)`` updates plain dicts; the
shell feeds it every event and reads snapshots for routing (live-state conditions, overflow),
the HTTP API and the wallboard.

Estimated wait (EWT) of a queue, as most ACDs approximate it when no better model is set:
``(callers waiting + 1) * AHT / max(agents logged in and not paused, 1)``, where AHT is an
exponentially weighted average of the queue's talk times (initially ``default_aht_s``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from callcenter.domain.events import (
    AgentCompleted,
    AgentConnected,
    AgentOffered,
    AgentPauseChanged,
    AgentRingCanceled,
    AgentRingNoAnswer,
    AgentStatus,
    AgentStatusChanged,
    CallArrived,
    CallEnded,
    ControllerAttached,
    Event,
    IvrNodeEntered,
    QueueJoined,
    QueueLeft,
    QueueMemberChanged,
)


@dataclass
class LiveCall:
    call_id: str
    pbx: str
    channel: str | None
    caller: str | None
    caller_name: str | None
    did: str | None
    entered_at: datetime
    stage: str = "arrived"  # arrived | ivr | queue | ringing | talking
    node: str | None = None
    queue: str | None = None
    queue_since: datetime | None = None
    original_entry_at: datetime | None = None  # first queue entry: service level survives overflow
    agent: str | None = None
    agent_since: datetime | None = None
    ringing: set[str] = field(default_factory=set)
    customer: dict[str, Any] | None = None  # set by routing: id, name, tier
    controlled: bool = False
    provisional_abandon: str | None = None  # queue whose "abandon" may turn out to be a move

    def to_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "pbx": self.pbx,
            "caller": self.caller,
            "caller_name": self.caller_name,
            "did": self.did,
            "stage": self.stage,
            "node": self.node,
            "queue": self.queue,
            "wait_s": round((now - self.queue_since).total_seconds(), 1) if self.queue_since and self.stage in (
                "queue", "ringing") else None,
            "agent": self.agent,
            "talk_s": round((now - self.agent_since).total_seconds(), 1) if self.agent_since else None,
            "entered_at": self.entered_at.isoformat(),
            "customer": self.customer,
            "ringing": sorted(self.ringing),
        }


@dataclass
class LiveAgent:
    agent: str  # PBX interface
    pbx: str
    name: str | None = None
    status: str = AgentStatus.UNKNOWN.value
    paused: bool = False
    pause_reason: str | None = None
    since: datetime | None = None
    call_id: str | None = None
    call_since: datetime | None = None
    queues: set[str] = field(default_factory=set)
    answered_today: int = 0
    missed_today: int = 0
    talk_s_today: float = 0.0
    day: str | None = None

    @property
    def available(self) -> bool:
        return not self.paused and self.call_id is None and self.status in (
            AgentStatus.AVAILABLE.value, AgentStatus.UNKNOWN.value)

    def to_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "pbx": self.pbx,
            "name": self.name,
            "status": "paused" if self.paused else ("on_call" if self.call_id else self.status),
            "device_status": self.status,
            "paused": self.paused,
            "pause_reason": self.pause_reason,
            "call_id": self.call_id,
            "call_s": round((now - self.call_since).total_seconds(), 1) if self.call_since else None,
            "queues": sorted(self.queues),
            "answered_today": self.answered_today,
            "missed_today": self.missed_today,
            "talk_s_today": round(self.talk_s_today, 1),
        }


@dataclass
class LiveQueue:
    name: str
    waiting: dict[str, datetime] = field(default_factory=dict)  # call_id -> joined at
    members: set[str] = field(default_factory=set)
    aht_s: float | None = None
    answered_today: int = 0
    abandoned_today: int = 0
    answered_within_sl_today: int = 0
    day: str | None = None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """What routing's live-state conditions and the overflow loop read."""

    logged_in: int
    available: int
    busy: int
    paused: int
    waiting: int
    longest_wait_s: float
    estimated_wait_s: float


class LiveRegistry:
    def __init__(self, *, default_aht_s: float = 180.0, aht_weight: float = 0.2, sl_threshold_s: float = 20.0) -> None:
        self.calls: dict[str, LiveCall] = {}
        self.agents: dict[str, LiveAgent] = {}
        self.queues: dict[str, LiveQueue] = {}
        self.default_aht_s = default_aht_s
        self.aht_weight = aht_weight
        self.sl_threshold_s = sl_threshold_s

    # -- reading ----------------------------------------------------------------------------------
    def queue(self, name: str) -> LiveQueue:
        q = self.queues.get(name)
        if q is None:
            q = self.queues[name] = LiveQueue(name)
        return q

    def agent(self, interface: str, pbx: str = "") -> LiveAgent:
        a = self.agents.get(interface)
        if a is None:
            a = self.agents[interface] = LiveAgent(interface, pbx)
        return a

    def queue_stats(self, name: str, now: datetime) -> QueueStats:
        q = self.queues.get(name)
        if q is None:
            return QueueStats(0, 0, 0, 0, 0, 0.0, 0.0)
        members = [self.agents[m] for m in q.members if m in self.agents]
        unavailable_status = (AgentStatus.UNAVAILABLE.value,)
        logged_in = [a for a in members if a.status not in unavailable_status]
        paused = [a for a in logged_in if a.paused]
        busy = [a for a in logged_in if not a.paused and a.call_id is not None]
        available = [a for a in logged_in if a.available]
        # q.waiting is in join order (a dict keeps insertion order; a re-join re-inserts at the
        # end), so the longest wait is the first entry: O(1), where a scan made every event cost
        # O(calls waiting) and a floor of thousands of waiting calls quadratic.
        oldest = next(iter(q.waiting.values()), None)
        longest = (now - oldest).total_seconds() if oldest is not None else 0.0
        staffed = len(logged_in) - len(paused)
        aht = q.aht_s if q.aht_s is not None else self.default_aht_s
        ewt = 0.0 if available and not q.waiting else (len(q.waiting) + 1) * aht / max(staffed, 1)
        return QueueStats(len(logged_in), len(available), len(busy), len(paused), len(q.waiting),
                          round(max(longest, 0.0), 1), round(ewt, 1))

    def snapshot(self, now: datetime) -> dict[str, Any]:
        return {
            "calls": [c.to_dict(now) for c in sorted(self.calls.values(), key=lambda c: c.entered_at)],
            "agents": [a.to_dict(now) for a in sorted(self.agents.values(), key=lambda a: a.agent)],
            "queues": [self.queue_dict(name, now) for name in sorted(self.queues)],
        }

    def queue_dict(self, name: str, now: datetime) -> dict[str, Any]:
        s = self.queue_stats(name, now)
        q = self.queue(name)
        answered = q.answered_today
        return {
            "queue": name,
            "waiting": s.waiting,
            "longest_wait_s": s.longest_wait_s,
            "estimated_wait_s": s.estimated_wait_s,
            "agents_logged_in": s.logged_in,
            "agents_available": s.available,
            "agents_busy": s.busy,
            "agents_paused": s.paused,
            "answered_today": answered,
            "abandoned_today": q.abandoned_today,
            "service_level_today": round(q.answered_within_sl_today / answered, 3) if answered else None,
        }

    # -- updating -------------------------------------------------------------------------------
    def apply(self, ev: Event) -> None:
        handler = _HANDLERS.get(type(ev))
        if handler is not None:
            handler(self, ev)

    def _day_roll(self, obj: LiveAgent | LiveQueue, at: datetime) -> None:
        day = at.date().isoformat()
        if obj.day != day:
            obj.day = day
            if isinstance(obj, LiveAgent):
                obj.answered_today = obj.missed_today = 0
                obj.talk_s_today = 0.0
            else:
                obj.answered_today = obj.abandoned_today = obj.answered_within_sl_today = 0

    def _arrived(self, ev: CallArrived) -> None:
        if ev.call_id is None:
            return
        self.calls.setdefault(ev.call_id, LiveCall(ev.call_id, ev.pbx, ev.channel, ev.caller_number,
                                                   ev.caller_name, ev.did, ev.at))

    def _call(self, ev: Event) -> LiveCall | None:
        if ev.call_id is None:
            return None
        c = self.calls.get(ev.call_id)
        if c is None:  # adopted mid-way (controller restart, resync)
            c = self.calls[ev.call_id] = LiveCall(ev.call_id, ev.pbx, ev.channel, None, None, None, ev.at)
        return c

    def _attached(self, ev: ControllerAttached) -> None:
        c = self._call(ev)
        if c is not None:
            c.controlled = True
            c.caller = c.caller or ev.caller_number
            c.caller_name = c.caller_name or ev.caller_name
            c.did = c.did or ev.did

    def _ivr(self, ev: IvrNodeEntered) -> None:
        c = self._call(ev)
        if c is not None and c.stage in ("arrived", "ivr"):
            c.stage, c.node = "ivr", ev.node

    def _joined(self, ev: QueueJoined) -> None:
        c = self._call(ev)
        if c is None:
            return
        if c.queue:  # re-inserted below, at the end: join order is the waiting dict's order
            self.queue(c.queue).waiting.pop(c.call_id, None)
        if c.provisional_abandon is not None:
            # Asterisk reports a Redirect out of a queue exactly like an abandon; the caller is
            # still here and joins another queue: it was a move, not a loss.
            left = self.queue(c.provisional_abandon)
            left.abandoned_today = max(left.abandoned_today - 1, 0)
            c.provisional_abandon = None
        c.stage, c.queue, c.queue_since = "queue", ev.queue, ev.at
        c.original_entry_at = c.original_entry_at or ev.at
        self.queue(ev.queue).waiting[c.call_id] = ev.at

    def _offered(self, ev: AgentOffered) -> None:
        c = self._call(ev)
        if c is not None:
            c.ringing.add(ev.agent)
            if c.stage == "queue":
                c.stage = "ringing"
        a = self.agent(ev.agent, ev.pbx)
        a.name = a.name or ev.agent_name

    def _ring_end(self, ev: AgentRingNoAnswer | AgentRingCanceled) -> None:
        c = self._call(ev)
        if c is not None:
            c.ringing.discard(ev.agent)
            if not c.ringing and c.stage == "ringing":
                c.stage = "queue"
        if isinstance(ev, AgentRingNoAnswer):
            a = self.agent(ev.agent, ev.pbx)
            self._day_roll(a, ev.at)
            a.missed_today += 1

    def _connected(self, ev: AgentConnected) -> None:
        c = self._call(ev)
        if c is not None:
            c.stage, c.agent, c.agent_since = "talking", ev.agent, ev.at
            c.ringing.clear()
            if c.queue:
                q = self.queue(c.queue)
                q.waiting.pop(c.call_id, None)
                self._day_roll(q, ev.at)
                q.answered_today += 1
                entry = c.original_entry_at or c.queue_since or ev.at
                if (ev.at - entry).total_seconds() <= self.sl_threshold_s:
                    q.answered_within_sl_today += 1
        a = self.agent(ev.agent, ev.pbx)
        a.name = a.name or ev.agent_name
        a.call_id, a.call_since = ev.call_id, ev.at
        self._day_roll(a, ev.at)
        a.answered_today += 1

    def _completed(self, ev: AgentCompleted) -> None:
        a = self.agents.get(ev.agent)
        if a is not None and a.call_id == ev.call_id:
            if a.call_since is not None:
                a.talk_s_today += max((ev.at - a.call_since).total_seconds(), 0.0)
            a.call_id = a.call_since = None
        if ev.queue and ev.talk_s is not None:
            q = self.queue(ev.queue)
            q.aht_s = ev.talk_s if q.aht_s is None else (1 - self.aht_weight) * q.aht_s + self.aht_weight * ev.talk_s

    def _left(self, ev: QueueLeft) -> None:
        q = self.queue(ev.queue)
        if ev.call_id is not None and q.waiting.pop(ev.call_id, None) is not None and ev.reason.value == "abandon":
            c = self.calls.get(ev.call_id)
            # Provisional: an overflow also looks like an abandon; a re-join takes it back below.
            if c is not None:
                c.provisional_abandon = ev.queue
                self._day_roll(q, ev.at)
                q.abandoned_today += 1

    def _ended(self, ev: CallEnded) -> None:
        if ev.call_id is None:
            return
        c = self.calls.pop(ev.call_id, None)
        if c is None:
            return
        if c.queue:
            self.queue(c.queue).waiting.pop(c.call_id, None)
        for a in self.agents.values():
            if a.call_id == c.call_id:
                if a.call_since is not None:
                    a.talk_s_today += max((ev.at - a.call_since).total_seconds(), 0.0)
                a.call_id = a.call_since = None

    def _status(self, ev: AgentStatusChanged) -> None:
        a = self.agent(ev.agent, ev.pbx)
        a.name = a.name or ev.agent_name
        if a.status != ev.status.value:
            a.status, a.since = ev.status.value, ev.at
        if ev.queue:
            a.queues.add(ev.queue)
            self.queue(ev.queue).members.add(ev.agent)

    def _pause(self, ev: AgentPauseChanged) -> None:
        a = self.agent(ev.agent, ev.pbx)
        a.name = a.name or ev.agent_name
        a.paused, a.pause_reason, a.since = ev.paused, (ev.reason if ev.paused else None), ev.at
        if ev.queue:
            a.queues.add(ev.queue)
            self.queue(ev.queue).members.add(ev.agent)

    def _member(self, ev: QueueMemberChanged) -> None:
        a = self.agent(ev.agent, ev.pbx)
        a.name = a.name or ev.agent_name
        q = self.queue(ev.queue)
        if ev.added:
            a.queues.add(ev.queue)
            q.members.add(ev.agent)
        else:
            a.queues.discard(ev.queue)
            q.members.discard(ev.agent)


_HANDLERS: dict[type, Any] = {
    CallArrived: LiveRegistry._arrived,
    ControllerAttached: LiveRegistry._attached,
    IvrNodeEntered: LiveRegistry._ivr,
    QueueJoined: LiveRegistry._joined,
    AgentOffered: LiveRegistry._offered,
    AgentRingNoAnswer: LiveRegistry._ring_end,
    AgentRingCanceled: LiveRegistry._ring_end,
    AgentConnected: LiveRegistry._connected,
    AgentCompleted: LiveRegistry._completed,
    QueueLeft: LiveRegistry._left,
    CallEnded: LiveRegistry._ended,
    AgentStatusChanged: LiveRegistry._status,
    AgentPauseChanged: LiveRegistry._pause,
    QueueMemberChanged: LiveRegistry._member,
}
