"""FreeSWITCH ESL events -> PBX-neutral domain events (functional core, no I/O).

``FreeswitchTranslator`` is fed every ESL event the adapter (or ``callcenter replay --pbx
freeswitch``) reads, with the time it happened, and returns the domain events it implies --
the same events ``AsteriskTranslator`` emits for the same situations, so journeys, summaries
and the live registry do not care which PBX a call came from. Every rule below cites what was
measured on FreeSWITCH 1.10.12 (tests/fixtures/freeswitch/TRACES_README.md); the replay tests
pin the resulting event sequence per trace.

Call identity
    ``call_id`` is the caller leg's ``Unique-ID``, and every ``channel`` is a channel UUID (what
    ``uuid_*`` commands address; channel names like ``sofia/internal/1001@...`` are not unique).
    Agent legs that mod_callcenter originates carry ``variable_cc_member_session_uuid`` = the
    caller's UUID (``CC-Member-Session-UUID``; ``CC-Member-UUID`` is mod_callcenter's own member
    id and changes with every queue the caller joins, overflow_transfer). Originated legs
    without it (supervisors, callbacks) are not calls: their spy events belong to the call of
    the channel they spy on.

Which leg is the caller
    ``CHANNEL_CREATE`` with ``Call-Direction: inbound``: the SIP profile created it for an
    incoming INVITE. Agent and supervisor legs are ``outbound`` in every trace, so they never
    produce ``CallArrived``.

IVR nodes (observed dialplans)
    ``IvrNodeEntered`` is emitted (a) for every ``CC_NODE`` the dialplan or the controller sets
    on the caller leg (``set``/``export`` executions, or a changed ``variable_CC_NODE`` on a
    later event after ``uuid_setvar``); once a call names its nodes no node is guessed for it
    any more; and (b) otherwise for the ``context,destination`` the caller waits in: the first
    ``CHANNEL_EXECUTE`` of an application that plays to the caller or reads its input
    (``play_and_get_digits``, ``playback``, ``read``, ``ivr``... see ``DEFAULT_IVR_APPS``) after
    the caller's dialplan position changed. ``park`` is such a place too, but one where the
    caller only waits for the controller: ``interactive=False`` (the lab's 5550199 answer+park).
    The lab IVR (``public,5550100``: set, set, answer, sleep, play_and_get_digits, transfer) is
    one node; the queue extensions (``queue_1``: set, callcenter) are not nodes. No node is
    guessed while queued or after the caller hung up.

Controller (park)
    ``CHANNEL_PARK`` of the caller -> ``ControllerAttached``; ``CHANNEL_UNPARK`` (``uuid_transfer``
    out of park, park_controller_flow) -> ``ControllerReleased``. Applications the controller
    runs on the parked channel with ``sendmsg`` (or ``uuid_broadcast``) do not unpark it
    (sendmsg_ivr: EXECUTE/EXECUTE_COMPLETE then PRIVATE_COMMAND, no UNPARK); their
    ``CHANNEL_EXECUTE_COMPLETE`` becomes ``DigitsCollected`` for ``play_and_get_digits`` (digits
    from ``variable_<var_name>``, only when ``variable_read_result`` is ``success``: the variable
    stays on the channel after a later failure) and ``PromptFinished`` for anything else but a
    control application that completed (``set``, ``export``, ``answer``...: ``_CONTROL_APPS``;
    setting channel state is not a step of the caller's journey, the controller's ``routed``
    note holds what it carries out; one cut off by a hangup or answering ``-ERR`` still is).
    ``command_id`` is the ``Application-UUID``, which is the ``Event-UUID`` of the sendmsg that
    started it (the adapter maps it back to its command id). A completion whose
    ``Answer-State`` is ``hangup`` is flagged ``hangup`` (park_hangup_in_ivr).

Queues (mod_callcenter ``CUSTOM callcenter::info``)
    ``member-queue-start`` -> ``QueueJoined``. ``bridge-agent-start`` -> ``QueueLeft(answered)``
    then ``AgentConnected`` (the order Asterisk reports them in; mod_callcenter keeps the member
    until the end of the conversation and only then sends ``member-queue-end`` ``Terminated``,
    which closes the stay only if the bridge was missed). ``member-queue-end`` ``Cancel`` maps
    ``CC-Cancel-Reason``: ``BREAK_OUT`` -> ``abandon`` -- also what a ``uuid_transfer`` out of the
    queue looks like (overflow_transfer): the journey turns that provisional abandon into a
    move when the caller shows up again --, ``TIMEOUT``/``NO_AGENT_TIMEOUT`` -> ``timeout``,
    ``EXIT_WITH_KEY`` -> ``exit_key``. ``hold_s`` = Leaving - Joined (epoch seconds).

Agent rings
    ``agent-offering`` -> ``AgentOffered`` (the agent leg does not exist yet; ``agent_channel`` is
    None). The ring ends at the agent leg's ``CHANNEL_HANGUP`` before it was bridged:
    ``ORIGINATOR_CANCEL``/``LOSE_RACE``/``PICKED_OFF`` (the caller left or was moved:
    queue_abandon, overflow_transfer) -> ``AgentRingCanceled``; anything else
    (``ALLOTTED_TIMEOUT`` = leg_timeout, busy, rejected) -> ``AgentRingNoAnswer``. That hangup
    comes *before* ``member-queue-end`` (the order Asterisk's DialEnd CANCEL has), while
    ``bridge-agent-fail`` comes after the caller's hangup; it is used only when no agent leg was
    seen. ``bridge-agent-end`` -> ``AgentCompleted`` (talk = Bridge-Terminated - Answered).

Who hung up
    ``variable_sip_hangup_disposition`` of ``CHANNEL_HANGUP_COMPLETE``: ``recv_bye``/``recv_cancel``
    on the caller leg = the caller; ``send_*`` on the caller leg = FreeSWITCH ended it: the
    agent if the bridged agent leg says ``recv_*`` (answered_agent_hangup), else the system
    (``uuid_kill`` in park_controller_flow, dialplan hangups, timeouts). Without a SIP
    disposition: the agent if the bridged agent leg hung up first, else unknown.

End of the call
    ``CallEnded`` is emitted at the caller leg's ``CHANNEL_DESTROY``: the session is destroyed
    only after mod_callcenter released it, so every ``bridge-agent-end``/``member-queue-end`` of
    the call has been translated by then (in every trace they come after the caller's
    ``CHANNEL_HANGUP_COMPLETE`` but before its DESTROY). Its ``at`` is the caller's
    ``CHANNEL_HANGUP`` time -- when the caller left -- raised to the latest event already
    emitted for the call so the stream stays in time order. ``cause`` is the Q.850 code
    (``variable_hangup_cause_q850``; 16 for every BYE, bridged or not, unlike Asterisk's 0).

Agents (no call)
    ``agent-state-change``: ``Waiting`` -> available, ``Receiving`` -> ringing, ``In a queue call``
    -> in_use, ``Idle`` -> unavailable. ``agent-status-change`` (it carries only the new status,
    agent_status_break): ``On Break`` -> paused (reason ``break``), ``Available``/``Available (On
    Demand)`` -> not paused (and available again after ``Logged Out``), ``Logged Out`` ->
    unavailable. Unchanged repeats are dropped. mod_callcenter's status is per agent, not per
    queue: ``queue`` is None.

Supervisors
    Eavesdrop has no event of its own: the spied channel gets ``MEDIA_BUG_START``/``STOP`` with
    ``Media-Bug-Function: eavesdrop`` (whisper_barge). The spyer is the leg whose
    ``CHANNEL_EXECUTE`` of ``eavesdrop``/``three_way`` named that UUID just before. Mode:
    ``three_way`` = barge; ``eavesdrop`` with ``eavesdrop_whisper_aleg`` or ``_bleg`` = whisper
    (both = barge), neither = listen -- the variables the controller's originate sets (see
    actions.py). In ``eavesdrop`` the supervisor's DTMF switches modes (0 listen,
    1/2 whisper, 3 barge, measured at RTP level; on unless ``eavesdrop_enable_dtmf=false``,
    whisper_audio switched with no variable set): reported as SpyStopped + SpyStarted.
    ``SpyStopped`` comes from ``MEDIA_BUG_STOP`` when one spyer is on that channel, else from
    the end of the spyer's application or its hangup.

Unknown events are counted in ``unknown`` and never fatal.
"""

from __future__ import annotations

import json
import re
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from callcenter.domain.events import (
    AgentCompleted,
    AgentConnected,
    AgentOffered,
    AgentPauseChanged,
    AgentRingCanceled,
    AgentRingNoAnswer,
    AgentStatus,
    AgentStatusChanged,
    CallAnswered,
    CallArrived,
    CallbackDialed,
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
    SpyMode,
    SpyStarted,
    SpyStopped,
    VariableSet,
)
from callcenter.pbx.freeswitch.message import EslEvent

__all__ = [
    "DEFAULT_IVR_APPS",
    "DEFAULT_WATCHED_VARIABLES",
    "HANDLED_EVENTS",
    "HOLD_APPS",
    "IGNORED_CC_ACTIONS",
    "IGNORED_EVENTS",
    "SUBSCRIPTIONS",
    "FreeswitchTranslator",
    "agent_state_status",
    "parse_table",
]

# Applications during which the caller waits in an IVR node (mod_dptools / mod_spandsp names).
DEFAULT_IVR_APPS: frozenset[str] = frozenset(
    {
        "play_and_get_digits",
        "playback",
        "endless_playback",
        "read",
        "ivr",
        "phrase",
        "say",
        "speak",
        "record",
        "voicemail",
        "park",
    }
)

# Of those, the places where the caller only waits (park for the controller, music).
HOLD_APPS: frozenset[str] = frozenset({"park", "endless_playback"})
# Applications that only set channel state (what the controller's SetVariable / display name
# run with sendmsg); their completion is no PromptFinished unless it failed or was cut off.
_CONTROL_APPS: frozenset[str] = frozenset({
    "set", "export", "unset", "multiset", "push", "unshift", "set_global", "set_profile_var",
    "answer", "pre_answer", "ring_ready", "log", "info", "hash",
})

# Caller-leg variables reported as ``VariableSet`` (the fail-open path sets CC_FAILOPEN).
DEFAULT_WATCHED_VARIABLES: frozenset[str] = frozenset({"CC_FAILOPEN"})

NODE_VARIABLE = "CC_NODE"
_NODE_HEADER = "variable_" + NODE_VARIABLE

# Events that carry nothing the domain needs; they are not "unknown".
IGNORED_EVENTS: frozenset[str] = frozenset(
    {
        "API",
        "CALL_UPDATE",
        "CHANNEL_BRIDGE",  # bridge-agent-start says who and when, with the queue
        "CHANNEL_CALLSTATE",
        "CHANNEL_HOLD",
        "CHANNEL_ORIGINATE",
        "CHANNEL_OUTGOING",
        "CHANNEL_PROGRESS",
        "CHANNEL_PROGRESS_MEDIA",
        "CHANNEL_STATE",
        "CHANNEL_UNBRIDGE",
        "CHANNEL_UNHOLD",
        "CODEC",
        "HEARTBEAT",
        "MESSAGE_QUERY",
        "MESSAGE_WAITING",
        "PLAYBACK_START",
        "PLAYBACK_STOP",
        "PRESENCE_IN",
        "PRIVATE_COMMAND",
        "RECV_INFO",
        "RECV_RTCP_MESSAGE",
        "RE_SCHEDULE",
        "SEND_MESSAGE",
    }
)

# mod_callcenter actions with nothing for the domain: counts, replies to our own ``agent get``
# queries, configuration echoes (agent-add / agent-contact-change: overflow_transfer).
IGNORED_CC_ACTIONS: frozenset[str] = frozenset(
    {
        "members-count",
        "agent-status-get",
        "agent-state-get",
        "agent-uuid-get",
        "agent-add",
        "agent-del",
        "agent-contact-change",
        "agent-max-no-answer",  # followed by its own agent-status-change
    }
)

_CALLCENTER = "callcenter::info"

_AGENT_STATES: dict[str, AgentStatus] = {
    "Waiting": AgentStatus.AVAILABLE,
    "Receiving": AgentStatus.RINGING,
    "In a queue call": AgentStatus.IN_USE,
    "Idle": AgentStatus.UNAVAILABLE,
}

# Agent-leg hangup causes that mean "the ringing was called off", not "the agent did not take it".
_CANCEL_CAUSES = frozenset({"ORIGINATOR_CANCEL", "LOSE_RACE", "PICKED_OFF"})

_CANCEL_REASONS: dict[str, QueueLeaveReason] = {
    "BREAK_OUT": QueueLeaveReason.ABANDON,
    "TIMEOUT": QueueLeaveReason.TIMEOUT,
    "NO_AGENT_TIMEOUT": QueueLeaveReason.TIMEOUT,
    "EXIT_WITH_KEY": QueueLeaveReason.EXIT_KEY,
}

# ``originate_disposition`` of a callback's bridge to the customer -> Asterisk's DIALSTATUS words
# (CallbackDialed); no disposition at all = the agent hung up before the customer was dialled.
_DIAL_STATUS: dict[str, str] = {
    "SUCCESS": "ANSWER",
    "NO_ANSWER": "NOANSWER",
    "NO_USER_RESPONSE": "NOANSWER",
    "ALLOTTED_TIMEOUT": "NOANSWER",
    "USER_BUSY": "BUSY",
    "CALL_REJECTED": "BUSY",
    "ORIGINATOR_CANCEL": "CANCEL",
    "NORMAL_CIRCUIT_CONGESTION": "CONGESTION",
    "SWITCH_CONGESTION": "CONGESTION",
}

# BACKGROUND_JOB of an originate: ``-ERR <CAUSE>`` -> the reason words Asterisk's OriginateResult uses.
_ORIGINATE_REASONS: dict[str, str] = {
    "NO_ANSWER": "no_answer",
    "NO_USER_RESPONSE": "no_answer",
    "ALLOTTED_TIMEOUT": "no_answer",
    "USER_BUSY": "busy",
    "CALL_REJECTED": "busy",
    "NORMAL_CIRCUIT_CONGESTION": "congestion",
    "SWITCH_CONGESTION": "congestion",
    "ORIGINATOR_CANCEL": "hangup",
    "NORMAL_CLEARING": "hangup",
}

_DTMF_SPY_MODES: dict[str, SpyMode] = {
    "0": SpyMode.LISTEN,
    "1": SpyMode.WHISPER,
    "2": SpyMode.WHISPER,
    "3": SpyMode.BARGE,
}

_GONE_MAX = 4096
_ORIGINATION_UUID = re.compile(r"origination_uuid=([0-9a-fA-F-]{36})")

LegKind = Literal["caller", "agent", "originated"]


def agent_state_status(state: str | None) -> AgentStatus:
    """mod_callcenter agent *state* -> the device-like ``AgentStatus``."""
    return _AGENT_STATES.get(state or "", AgentStatus.UNKNOWN)


def parse_table(text: str) -> list[dict[str, str]]:
    """A ``callcenter_config ... list`` reply: a ``|``-separated header line, rows, ``+OK``.
    ``queue list members sales`` (no domain) replies just ``+OK``: no rows."""
    lines = [line for line in text.replace("\r", "").split("\n") if line.strip()]
    if not lines or "|" not in lines[0]:
        return []
    header = lines[0].split("|")
    rows: list[dict[str, str]] = []
    for line in lines[1:]:
        if line.startswith(("+OK", "-ERR")):
            break
        values = line.split("|")
        if len(values) == len(header):
            rows.append(dict(zip(header, values, strict=True)))
    return rows


def _int(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _diff(a: str | None, b: str | None) -> int | None:
    """``b - a`` of two epoch-second strings (mod_callcenter's CC-*-Time headers)."""
    x, y = _int(a), _int(b)
    if x is None or y is None or x <= 0 or y <= 0:
        return None
    return max(0, y - x)


def _true(value: str | None) -> bool:
    return (value or "").lower() in ("true", "yes", "on", "1")


def _known(value: str | None) -> str | None:
    return None if value is None or value in ("", "_undef_", "undefined") else value


@dataclass(slots=True)
class _Offer:
    queue: str | None
    at: datetime
    leg: str | None = None  # the agent leg UUID once it exists
    closed: bool = False


@dataclass(slots=True)
class _Leg:
    uuid: str
    call_id: str
    kind: LegKind
    agent: str | None = None
    queue: str | None = None
    answered: bool = False  # agent leg bridged to the caller (bridge-agent-start)
    hangup_at: datetime | None = None
    hangup_cause: str | None = None
    disposition: str | None = None
    seen_at: datetime | None = None
    # originated legs (supervisors)
    vars: dict[str, str] = field(default_factory=dict)
    spy_pending: tuple[str, SpyMode] | None = None  # (target uuid, mode) executed, bug not started
    spying: tuple[str, str, SpyMode] | None = None  # (spied call, target uuid, mode)
    spy_app: str | None = None  # eavesdrop | three_way


@dataclass(slots=True)
class _Call:
    call_id: str
    observed_from_start: bool
    did: str | None = None
    caller_number: str | None = None
    caller_name: str | None = None
    answered: bool = False
    controlled: bool = False
    # IVR node guessing
    position: tuple[str, str] | None = None
    node_armed: bool = True
    named_nodes: bool = False
    node_var: str | None = None
    # queue stay
    queue: str | None = None
    offers: dict[str, _Offer] = field(default_factory=dict)  # agent -> ring in progress
    connected_agent_leg: str | None = None
    agent_hangup_at: datetime | None = None  # of the connected agent leg (it may be destroyed first)
    agent_disposition: str | None = None
    # end
    hangup_at: datetime | None = None
    cause: int | None = None
    cause_text: str | None = None
    disposition: str | None = None
    last_at: datetime | None = None


class FreeswitchTranslator:
    """Stateful, I/O-free ESL -> domain event translator (one per FreeSWITCH node).

    ``feed(ev, at)`` for every ESL event read (plain or JSON, decoded to ``EslEvent``);
    ``resync(...)`` after each (re)connect with ``show channels as json`` and, optionally, the
    ``callcenter_config`` agent and member lists. ``unknown`` counts events it has no rule for.
    """

    def __init__(
        self,
        pbx_name: str,
        *,
        watch_variables: Iterable[str] = DEFAULT_WATCHED_VARIABLES,
        ivr_apps: Iterable[str] = DEFAULT_IVR_APPS,
    ) -> None:
        self.pbx = pbx_name
        self.unknown: Counter[str] = Counter()
        self._watched = frozenset(watch_variables)
        self._ivr_apps = frozenset(a.lower() for a in ivr_apps)
        self._legs: dict[str, _Leg] = {}
        self._calls: dict[str, _Call] = {}
        self._agent_status: dict[str, AgentStatus] = {}
        self._agent_pause: dict[str, tuple[bool, str | None]] = {}
        self._agent_logged_out: dict[str, bool] = {}
        self._gone: OrderedDict[str, None] = OrderedDict()
        self._tiers: set[tuple[str, str]] = set()  # (agent, queue@domain) tiers known

    # -- public API ---------------------------------------------------------------------------
    def feed(self, ev: EslEvent, at: datetime) -> list[Event]:
        """Translate one ESL event received at ``at``."""
        name = ev.name
        handler = _HANDLERS.get(name)
        if handler is None:
            # Ignored by name (half of an ALL stream): nothing else of the event is read.
            if name == "CUSTOM":
                subclass = ev.get("Event-Subclass")
                if subclass != _CALLCENTER:
                    self.unknown[f"CUSTOM {subclass}"] += 1
                    return []
                return self._on_callcenter(ev, at)
            if name not in IGNORED_EVENTS:
                self.unknown[name or "<no Event-Name>"] += 1
            return []
        # A CC_NODE set by uuid_setvar shows on the next event of the leg: before the handler, so
        # a ``set CC_NODE=...`` execution (which still carries the old value) is not undone.
        # (_watch_node_var inlined: it runs for half of all events.)
        events: list[Event] = []
        uuid = ev.get("Unique-ID")
        leg = self._legs.get(uuid) if uuid else None
        if leg is not None and leg.kind == "caller":
            call = self._calls.get(leg.call_id)
            if call is not None:
                value = ev.get(_NODE_HEADER)
                if value and call.node_var != value:
                    events = self._named_node(call, value, at)
        events += handler(self, ev, at)
        if events:
            calls = self._calls
            for e in events:
                call = calls.get(e.call_id or "")
                if call is not None and (call.last_at is None or e.at > call.last_at):
                    call.last_at = e.at
        return events

    def caller_channel(self, call_id: str) -> str | None:
        """The caller leg's UUID of a live call (what uuid_* commands and sendmsg address)."""
        return call_id if call_id in self._calls else None

    def call_of_channel(self, uuid: str) -> str | None:
        leg = self._legs.get(uuid)
        return leg.call_id if leg is not None and leg.kind != "originated" else None

    def call_of_agent(self, agent: str) -> str | None:
        """The call an agent is ringing for or talking to (the most recent), if any."""
        found = None
        for leg in self._legs.values():
            if leg.kind == "agent" and leg.agent == agent and leg.hangup_at is None:
                found = leg.call_id
                if leg.answered:
                    return found
        return found

    def is_controlled(self, call_id: str) -> bool:
        """True while the caller leg sits in ``park`` (sendmsg executes run there)."""
        call = self._calls.get(call_id)
        return bool(call and call.controlled)

    def queue_of(self, call_id: str) -> str | None:
        call = self._calls.get(call_id)
        return call.queue if call else None

    def live_calls(self) -> list[str]:
        return list(self._calls)

    def resync(
        self,
        channels_json: str | Mapping[str, Any],
        *,
        at: datetime,
        snapshot_at: datetime | None = None,
        members: Iterable[str] = (),
        agents: str | None = None,
        tiers: str | None = None,
    ) -> list[Event]:
        """Reconcile with a fresh snapshot after a (re)connect.

        ``channels_json``: the reply to ``show channels as json`` (``{"row_count": 0}`` when idle,
        api_replies). Calls tracked here whose caller UUID is not listed ended while the link was
        down: ``CallEnded`` (cause unknown, hung_up_by unknown); supervisors no longer listed
        stop spying. Inbound channels we did not know are adopted: ``CallArrived`` (+
        ``CallAnswered`` if answered, + ``ControllerAttached`` if parked -- CHANNEL_PARK is
        one-shot). ``members``: ``callcenter_config queue list members <queue>@<domain>`` replies;
        a known caller waiting in one is (re)announced with ``QueueJoined``. ``agents``: the
        ``callcenter_config agent list`` reply; status/state differences are announced.
        ``tiers``: the ``callcenter_config tier list`` reply (api_replies: queue|agent|state|level|
        position): which agent serves which queue, announced as ``QueueMemberChanged`` (added for
        a tier not known yet, removed for one no longer listed). mod_callcenter fires no event
        when a tier is added or deleted, so this list (and ``tier_changed`` for the controller's
        own ``tier add``/``tier del``) is how the queues' agents are known.

        ``snapshot_at`` (when the request was sent, on the clock of ``feed``'s ``at``) protects
        channels first seen after it; channels whose DESTROY was already handled are not adopted
        from a snapshot that still lists them.
        """
        data = json.loads(channels_json) if isinstance(channels_json, str) else channels_json
        rows = [r for r in data.get("rows") or [] if isinstance(r, Mapping) and r.get("uuid")]
        live = {str(r["uuid"]): r for r in rows}
        events: list[Event] = []

        # 1. what vanished while we were away
        for uuid, leg in list(self._legs.items()):
            if uuid in live:
                continue
            if snapshot_at is not None and leg.seen_at is not None and leg.seen_at >= snapshot_at:
                continue
            del self._legs[uuid]
            self._forget(uuid)
            events.extend(self._stop_spy(leg, at))
            if leg.kind == "caller" and self._calls.pop(leg.call_id, None) is not None:
                events.append(
                    CallEnded(pbx=self.pbx, call_id=leg.call_id, at=at, channel=uuid, cause=None,
                              hung_up_by=HangupParty.UNKNOWN)
                )

        # 2. what appeared: inbound callers only (agent legs are re-read with their next event)
        for uuid, row in live.items():
            if uuid in self._legs or uuid in self._gone or row.get("direction") != "inbound":
                continue
            events.extend(self._adopt_row(uuid, row, at))

        # 3. members waiting in queues
        for reply in members:
            for m in parse_table(reply):
                call = self._calls.get(m.get("session_uuid", ""))
                queue = m.get("queue")
                if call is None or not queue or call.queue == queue or m.get("state") not in ("Waiting", "Trying"):
                    continue
                call.queue = queue
                events.append(QueueJoined(pbx=self.pbx, call_id=call.call_id, at=at, channel=call.call_id,
                                          queue=queue))

        # 4. tiers (queue memberships); None = not asked, nothing changes
        if tiers is not None:
            listed: dict[tuple[str, str], int | None] = {}
            for t in parse_table(tiers):
                if t.get("agent") and t.get("queue"):
                    listed[(t["agent"], t["queue"])] = _int(t.get("level"))
            for agent, queue in sorted(self._tiers - set(listed)):
                events.extend(self.tier_changed(agent, queue, False, at))
            for (agent, queue), level in listed.items():
                if (agent, queue) not in self._tiers:
                    events.extend(self.tier_changed(agent, queue, True, at, level=level))

        # 5. agents
        for a in parse_table(agents or ""):
            name = a.get("name")
            if not name:
                continue
            events.extend(self._status_events(name, a.get("status"), at))
            events.extend(self._state_event(name, a.get("state"), at))
        return events

    def tier_changed(self, agent: str, queue: str, added: bool, at: datetime, *,
                     level: int | None = None) -> list[Event]:
        """An agent's tier in a queue was added or deleted (resync, or a ``tier add``/``tier del``
        that succeeded): ``QueueMemberChanged`` once per change."""
        key = (agent, queue)
        if (key in self._tiers) == added:
            return []
        if added:
            self._tiers.add(key)
        else:
            self._tiers.discard(key)
        return [QueueMemberChanged(pbx=self.pbx, call_id=None, at=at, agent=agent, queue=queue, added=added,
                                   penalty=level)]

    # -- bookkeeping --------------------------------------------------------------------------
    def _forget(self, uuid: str) -> None:
        self._gone[uuid] = None
        if len(self._gone) > _GONE_MAX:
            self._gone.popitem(last=False)

    def _track(self, leg: _Leg, at: datetime) -> _Leg:
        leg.seen_at = at
        self._legs[leg.uuid] = leg
        return leg

    def _new_call(
        self, uuid: str, at: datetime, *, observed: bool, number: str | None, name: str | None,
        did: str | None, context: str | None,
    ) -> tuple[_Call, CallArrived]:
        self._track(_Leg(uuid, uuid, "caller"), at)
        call = _Call(uuid, observed_from_start=observed, did=did, caller_number=number, caller_name=name)
        self._calls[uuid] = call
        arrived = CallArrived(
            pbx=self.pbx, call_id=uuid, at=at, channel=uuid, unique_id=uuid, caller_number=number,
            caller_name=name, did=did, context=context,
        )
        return call, arrived

    def _adopt_row(self, uuid: str, row: Mapping[str, Any], at: datetime) -> list[Event]:
        call, arrived = self._new_call(
            uuid, at, observed=False,
            number=_known(str(row.get("initial_cid_num") or row.get("cid_num") or "")),
            name=_known(str(row.get("initial_cid_name") or row.get("cid_name") or "")),
            did=_known(str(row.get("initial_dest") or "")),
            context=_known(str(row.get("initial_context") or row.get("context") or "")),
        )
        call.position = (str(row.get("context") or ""), str(row.get("dest") or ""))
        call.node_armed = False
        events: list[Event] = [arrived]
        if row.get("callstate") in ("ACTIVE", "HELD"):
            call.answered = True
            events.append(CallAnswered(pbx=self.pbx, call_id=uuid, at=at, channel=uuid))
        if row.get("application") == "park":
            call.controlled = True
            events.append(self._attached(call, at))
        return events

    def _caller(self, ev: EslEvent, at: datetime, events: list[Event]) -> _Call | None:
        """The call of an event only a caller leg produces; adopts a caller seen mid-life."""
        uuid = ev.get("Unique-ID") or ""
        leg = self._legs.get(uuid)
        if leg is not None:
            return self._calls.get(leg.call_id) if leg.kind == "caller" else None
        if not uuid or uuid in self._gone or ev.get("Call-Direction") != "inbound":
            return None
        if ev.get("variable_cc_member_session_uuid"):
            return None
        call, arrived = self._new_call(
            uuid, at, observed=False,
            number=_known(ev.get("Caller-Caller-ID-Number")), name=_known(ev.get("Caller-Caller-ID-Name")),
            did=_known(ev.get("Caller-Destination-Number")), context=_known(ev.get("Caller-Context")),
        )
        call.position = (ev.get("Caller-Context") or "", ev.get("Caller-Destination-Number") or "")
        events.append(arrived)
        if ev.get("Answer-State") == "answered":
            call.answered = True
            events.append(CallAnswered(pbx=self.pbx, call_id=uuid, at=at, channel=uuid))
        return call

    def _attached(self, call: _Call, at: datetime) -> ControllerAttached:
        return ControllerAttached(
            pbx=self.pbx, call_id=call.call_id, at=at, channel=call.call_id, caller_number=call.caller_number,
            caller_name=call.caller_name, did=call.did,
        )

    def _agent_leg(self, ev: EslEvent, at: datetime) -> _Leg | None:
        """An agent leg mod_callcenter originated (adopted from any of its events)."""
        uuid = ev.get("Unique-ID") or ""
        leg = self._legs.get(uuid)
        if leg is not None:
            return leg if leg.kind == "agent" else None
        call_id = ev.get("variable_cc_member_session_uuid")
        if not uuid or not call_id or uuid in self._gone or ev.get("variable_cc_side") == "member":
            return None
        leg = self._track(_Leg(uuid, call_id, "agent", agent=ev.get("variable_cc_agent"),
                               queue=ev.get("variable_cc_queue")), at)
        call = self._calls.get(call_id)
        if call is not None and leg.agent in call.offers:
            call.offers[leg.agent].leg = uuid
        return leg

    # -- channel lifecycle --------------------------------------------------------------------
    def _on_create(self, ev: EslEvent, at: datetime) -> list[Event]:
        uuid = ev.get("Unique-ID")
        if not uuid or uuid in self._legs:
            return []
        if ev.get("variable_cc_member_session_uuid") and ev.get("variable_cc_side") != "member":
            self._agent_leg(ev, at)
            return []
        if ev.get("Call-Direction") != "inbound":
            leg = self._track(_Leg(uuid, uuid, "originated"), at)
            self._remember_vars(leg, ev)
            return []
        dest = _known(ev.get("Caller-Destination-Number"))
        call, arrived = self._new_call(
            uuid, at, observed=True,
            number=_known(ev.get("Caller-Caller-ID-Number")), name=_known(ev.get("Caller-Caller-ID-Name")),
            did=dest, context=_known(ev.get("Caller-Context")),
        )
        call.position = (ev.get("Caller-Context") or "", dest or "")
        return [arrived]

    def _on_answer(self, ev: EslEvent, at: datetime) -> list[Event]:
        events: list[Event] = []
        call = self._caller(ev, at, events)
        if call is None or call.answered:
            return events
        call.answered = True
        events.append(CallAnswered(pbx=self.pbx, call_id=call.call_id, at=at, channel=call.call_id))
        return events

    def _on_hangup(self, ev: EslEvent, at: datetime) -> list[Event]:
        uuid = ev.get("Unique-ID") or ""
        leg = self._legs.get(uuid) or self._agent_leg(ev, at)
        if leg is None or leg.hangup_at is not None:
            return []
        leg.hangup_at = at
        leg.hangup_cause = ev.get("Hangup-Cause")
        if leg.kind == "caller":
            call = self._calls.get(leg.call_id)
            if call is not None and call.hangup_at is None:
                call.hangup_at = at
            return []
        if leg.kind == "agent":
            call = self._calls.get(leg.call_id)
            if call is not None and call.connected_agent_leg == leg.uuid:
                call.agent_hangup_at = at
            return self._ring_ended(leg, leg.hangup_cause or "", at, ring_ms=None)
        return self._stop_spy(leg, at)

    def _on_hangup_complete(self, ev: EslEvent, at: datetime) -> list[Event]:
        leg = self._legs.get(ev.get("Unique-ID") or "")
        if leg is None:
            return []
        leg.disposition = ev.get("variable_sip_hangup_disposition")
        if leg.hangup_at is None:
            leg.hangup_at = at
        if leg.kind == "originated":
            return self._callback_dialed(ev, leg, at)
        if leg.kind == "agent":
            call = self._calls.get(leg.call_id)
            if call is not None and call.connected_agent_leg == leg.uuid:
                call.agent_disposition = leg.disposition
                call.agent_hangup_at = call.agent_hangup_at or leg.hangup_at
        if leg.kind == "caller":
            call = self._calls.get(leg.call_id)
            if call is not None:
                call.disposition = leg.disposition
                call.cause = _int(ev.get("variable_hangup_cause_q850"))
                call.cause_text = ev.get("Hangup-Cause")
                if call.hangup_at is None:
                    call.hangup_at = at
        return []

    def _callback_dialed(self, ev: EslEvent, leg: _Leg, at: datetime) -> list[Event]:
        """The agent leg of an agent-first callback ended (``CC_CALLBACK_ID`` from the
        controller's originate, only on that leg): how dialling the customer went, from the
        ``originate_disposition`` that ``bridge`` left on it. An agent who never answered is
        the originate's own failure (BACKGROUND_JOB ``-ERR``), not reported here."""
        callback_id, attempt = _int(ev.get("variable_CC_CALLBACK_ID")), _int(ev.get("variable_CC_CALLBACK_ATTEMPT"))
        if callback_id is None or attempt is None or not _int(ev.get("Caller-Channel-Answered-Time")):
            return []
        disposition = ev.get("variable_originate_disposition") or ""
        status = _DIAL_STATUS.get(disposition, "CHANUNAVAIL") if disposition else "CANCEL"
        return [CallbackDialed(pbx=self.pbx, call_id=None, at=at, channel=leg.uuid, callback_id=callback_id,
                               attempt=attempt, dial_status=status, callback_call_id=leg.uuid)]

    def _on_destroy(self, ev: EslEvent, at: datetime) -> list[Event]:
        uuid = ev.get("Unique-ID") or ""
        leg = self._legs.pop(uuid, None)
        self._forget(uuid)
        if leg is None:
            return []
        events = self._stop_spy(leg, at)
        if leg.kind != "caller":
            return events
        call = self._calls.pop(leg.call_id, None)
        if call is None:
            return events
        ended_at = call.hangup_at or at
        if call.last_at is not None and call.last_at > ended_at:
            ended_at = call.last_at
        events.append(
            CallEnded(
                pbx=self.pbx, call_id=call.call_id, at=ended_at, channel=uuid, cause=call.cause,
                cause_text=call.cause_text, hung_up_by=self._hangup_party(call),
            )
        )
        return events

    def _hangup_party(self, call: _Call) -> HangupParty:
        disposition = call.disposition or ""
        if disposition.startswith("recv_"):
            return HangupParty.CALLER  # the caller's BYE/CANCEL
        if disposition.startswith("send_"):
            if (call.agent_disposition or "").startswith("recv_"):
                return HangupParty.AGENT
            return HangupParty.SYSTEM  # uuid_kill, a dialplan hangup, a timeout
        if call.agent_hangup_at is not None and call.hangup_at is not None and call.agent_hangup_at < call.hangup_at:
            return HangupParty.AGENT
        return HangupParty.UNKNOWN

    # -- dialplan / controller ----------------------------------------------------------------
    def _watch_node_var(self, ev: EslEvent, at: datetime, uuid: str | None = None) -> list[Event]:
        """``uuid_setvar <uuid> CC_NODE x`` emits nothing itself: the next event of the caller leg
        carries ``variable_CC_NODE``. Read only on the events of a live call's caller leg (a
        search of the whole event when it is absent, as on most events)."""
        leg = self._legs.get((uuid if uuid is not None else ev.get("Unique-ID")) or "")
        if leg is None or leg.kind != "caller":
            return []
        call = self._calls.get(leg.call_id)
        if call is None:
            return []
        value = ev.get(_NODE_HEADER)
        if not value or call.node_var == value:
            return []
        return self._named_node(call, value, at)

    def _named_node(self, call: _Call, value: str, at: datetime) -> list[Event]:
        call.node_var = value
        call.named_nodes = True
        call.node_armed = False
        return [IvrNodeEntered(pbx=self.pbx, call_id=call.call_id, at=at, channel=call.call_id, node=value)]

    def _on_execute(self, ev: EslEvent, at: datetime) -> list[Event]:
        uuid = ev.get("Unique-ID") or ""
        leg = self._legs.get(uuid)
        app = (ev.get("Application") or "").lower()
        data = ev.get("Application-Data") or ""
        if leg is not None and leg.kind == "originated":
            self._remember_vars(leg, ev)
            if app in ("eavesdrop", "three_way") and data:
                leg.spy_pending = (data.strip(), self._spy_mode(leg, app))
                leg.spy_app = app
            return []
        events: list[Event] = []
        call = self._caller(ev, at, events)
        if call is None:
            return events
        if app in ("set", "export") and "=" in data:
            name, _, value = data.partition("=")
            name = name.strip().lstrip("_")
            if name == NODE_VARIABLE and value:
                if value != call.node_var:
                    events.extend(self._named_node(call, value, at))
            elif name in self._watched:
                events.append(VariableSet(pbx=self.pbx, call_id=call.call_id, at=at, channel=uuid, name=name,
                                          value=value))
            return events
        position = (ev.get("Caller-Context") or "", ev.get("Caller-Destination-Number") or "")
        if position != call.position:
            call.position = position
            call.node_armed = True
        if (
            call.node_armed
            and not call.named_nodes
            and call.queue is None
            and not call.controlled
            and call.hangup_at is None
            and app in self._ivr_apps
        ):
            call.node_armed = False
            events.append(
                IvrNodeEntered(pbx=self.pbx, call_id=call.call_id, at=at, channel=uuid, node=",".join(position),
                               interactive=app not in HOLD_APPS)
            )
        return events

    def _on_execute_complete(self, ev: EslEvent, at: datetime) -> list[Event]:
        uuid = ev.get("Unique-ID") or ""
        leg = self._legs.get(uuid)
        app = (ev.get("Application") or "").lower()
        if leg is not None and leg.kind == "originated":
            if app in ("eavesdrop", "three_way"):
                leg.spy_pending = None
                return self._stop_spy(leg, at)
            return []
        if leg is None or leg.kind != "caller":
            return []
        call = self._calls.get(leg.call_id)
        if call is None or not call.controlled or app == "park":
            return []
        command_id = ev.get("Application-UUID")
        hangup = ev.get("Answer-State") == "hangup" or call.hangup_at is not None
        if app == "play_and_get_digits":
            args = (ev.get("Application-Data") or "").split(" ")
            var_name = args[7] if len(args) > 7 else ""
            ok = ev.get("variable_read_result") == "success"
            digits = (ev.get("variable_" + var_name) or "") if ok and var_name else ""
            return [DigitsCollected(pbx=self.pbx, call_id=call.call_id, at=at, channel=uuid, digits=digits,
                                    command_id=command_id, hangup=hangup)]
        response = ev.get("Application-Response")
        if app in _CONTROL_APPS and not hangup and not (response or "").startswith("-ERR"):
            return []  # an acknowledgement, not a step of the journey (see the module notes)
        return [PromptFinished(pbx=self.pbx, call_id=call.call_id, at=at, channel=uuid, command_id=command_id,
                               result=None if response in (None, "_none_") else response, hangup=hangup)]

    def _on_park(self, ev: EslEvent, at: datetime) -> list[Event]:
        events: list[Event] = []
        call = self._caller(ev, at, events)
        if call is None or call.controlled:
            return events
        call.controlled = True
        events.append(self._attached(call, at))
        return events

    def _on_unpark(self, ev: EslEvent, at: datetime) -> list[Event]:
        leg = self._legs.get(ev.get("Unique-ID") or "")
        call = self._calls.get(leg.call_id) if leg is not None and leg.kind == "caller" else None
        if call is None or not call.controlled:
            return []
        call.controlled = False
        return [ControllerReleased(pbx=self.pbx, call_id=call.call_id, at=at, channel=call.call_id)]

    def _on_dtmf(self, ev: EslEvent, at: datetime) -> list[Event]:
        uuid = ev.get("Unique-ID") or ""
        digit = ev.get("DTMF-Digit") or ""
        leg = self._legs.get(uuid)
        if leg is None:
            return []
        if leg.kind == "originated":
            return self._spy_dtmf(leg, digit, at)
        return [DtmfReceived(pbx=self.pbx, call_id=leg.call_id, at=at, channel=uuid, digit=digit)]

    # -- mod_callcenter -----------------------------------------------------------------------
    def _on_callcenter(self, ev: EslEvent, at: datetime) -> list[Event]:
        action = ev.get("CC-Action") or ""
        handler = _CC_HANDLERS.get(action)
        if handler is None:
            if action not in IGNORED_CC_ACTIONS:
                self.unknown[f"callcenter::info {action}"] += 1
            return []
        events = handler(self, ev, at)
        for e in events:
            call = self._calls.get(e.call_id or "")
            if call is not None and (call.last_at is None or e.at > call.last_at):
                call.last_at = e.at
        return events

    def _member_call(self, ev: EslEvent, at: datetime, events: list[Event]) -> _Call | None:
        session = ev.get("CC-Member-Session-UUID") or ""
        call = self._calls.get(session)
        if call is not None:
            return call
        if ev.get("Unique-ID") == session:  # fired on the member channel itself: adopt it
            return self._caller(ev, at, events)
        return None

    def _on_member_start(self, ev: EslEvent, at: datetime) -> list[Event]:
        events: list[Event] = []
        call = self._member_call(ev, at, events)
        queue = ev.get("CC-Queue")
        if call is None or not queue:
            return events
        call.queue = queue
        call.offers.clear()
        events.append(QueueJoined(pbx=self.pbx, call_id=call.call_id, at=at, channel=call.call_id, queue=queue))
        return events

    def _left(self, call: _Call, queue: str, reason: QueueLeaveReason, at: datetime,
              hold_s: int | None) -> list[Event]:
        call.queue = None
        return [QueueLeft(pbx=self.pbx, call_id=call.call_id, at=at, channel=call.call_id, queue=queue,
                          reason=reason, hold_s=hold_s)]

    def _on_member_end(self, ev: EslEvent, at: datetime) -> list[Event]:
        call = self._calls.get(ev.get("CC-Member-Session-UUID") or "")
        queue = ev.get("CC-Queue") or ""
        if call is None or call.queue != queue:
            return []  # answered: already left at bridge-agent-start
        cause = ev.get("CC-Cause") or ""
        hold_s = _diff(ev.get("CC-Member-Joined-Time"), ev.get("CC-Member-Leaving-Time"))
        if cause == "Terminated":
            return self._left(call, queue, QueueLeaveReason.ANSWERED, at, None)
        reason = _CANCEL_REASONS.get(ev.get("CC-Cancel-Reason") or "", QueueLeaveReason.ABANDON)
        return self._left(call, queue, reason, at, hold_s)

    def _on_offering(self, ev: EslEvent, at: datetime) -> list[Event]:
        call = self._calls.get(ev.get("CC-Member-Session-UUID") or "")
        agent = ev.get("CC-Agent")
        if call is None or not agent:
            return []
        queue = ev.get("CC-Queue")
        call.offers[agent] = _Offer(queue, at)
        return [AgentOffered(pbx=self.pbx, call_id=call.call_id, at=at, channel=call.call_id, queue=queue,
                             agent=agent, agent_channel=None)]

    def _ring_ended(self, leg: _Leg, cause: str, at: datetime, ring_ms: int | None) -> list[Event]:
        call = self._calls.get(leg.call_id)
        offer = call.offers.get(leg.agent or "") if call is not None else None
        if call is None or offer is None or offer.closed or leg.answered:
            return []
        if offer.leg is not None and offer.leg != leg.uuid:
            return []
        return self._close_offer(call, leg.agent or "", offer, cause, at, ring_ms)

    def _close_offer(self, call: _Call, agent: str, offer: _Offer, cause: str, at: datetime,
                     ring_ms: int | None) -> list[Event]:
        offer.closed = True
        if cause in _CANCEL_CAUSES:
            return [AgentRingCanceled(pbx=self.pbx, call_id=call.call_id, at=at, channel=call.call_id,
                                      queue=offer.queue, agent=agent)]
        if ring_ms is None:
            ring_ms = round((at - offer.at).total_seconds() * 1000)
        return [AgentRingNoAnswer(pbx=self.pbx, call_id=call.call_id, at=at, channel=call.call_id,
                                  queue=offer.queue, agent=agent, ring_ms=ring_ms)]

    def _on_bridge_fail(self, ev: EslEvent, at: datetime) -> list[Event]:
        call = self._calls.get(ev.get("CC-Member-Session-UUID") or "")
        agent = ev.get("CC-Agent") or ""
        offer = call.offers.get(agent) if call is not None else None
        if call is None or offer is None or offer.closed:
            return []
        ring_s = _diff(ev.get("CC-Agent-Called-Time"), ev.get("CC-Agent-Aborted-Time"))
        return self._close_offer(call, agent, offer, ev.get("CC-Hangup-Cause") or "", at,
                                 None if ring_s is None else ring_s * 1000)

    def _on_bridge_start(self, ev: EslEvent, at: datetime) -> list[Event]:
        call = self._calls.get(ev.get("CC-Member-Session-UUID") or "")
        agent = ev.get("CC-Agent") or ""
        if call is None or not agent:
            return []
        queue = ev.get("CC-Queue")
        agent_uuid = ev.get("CC-Agent-UUID") or ev.get("Unique-ID")
        leg = self._legs.get(agent_uuid or "") or self._agent_leg(ev, at)
        if leg is not None:
            leg.answered = True
        offer = call.offers.get(agent)
        if offer is not None:
            offer.closed = True
        call.connected_agent_leg = agent_uuid
        events: list[Event] = []
        if queue and call.queue == queue:
            events.extend(self._left(call, queue, QueueLeaveReason.ANSWERED, at, None))
        answered = ev.get("CC-Agent-Answered-Time")
        events.append(
            AgentConnected(
                pbx=self.pbx, call_id=call.call_id, at=at, channel=call.call_id, queue=queue, agent=agent,
                hold_s=_diff(ev.get("CC-Member-Joined-Time"), answered),
                ring_s=_diff(ev.get("CC-Agent-Called-Time"), answered), agent_channel=agent_uuid,
            )
        )
        return events

    def _on_bridge_end(self, ev: EslEvent, at: datetime) -> list[Event]:
        call = self._calls.get(ev.get("CC-Member-Session-UUID") or "")
        agent = ev.get("CC-Agent") or ""
        if call is None or not agent:
            return []
        agent_leg = self._legs.get(ev.get("CC-Agent-UUID") or "")
        agent_disposition = (agent_leg.disposition if agent_leg is not None else None) or call.agent_disposition
        caller = call.disposition or ""
        if caller.startswith("recv_"):
            ended_by = HangupParty.CALLER
        elif (agent_disposition or "").startswith("recv_"):
            ended_by = HangupParty.AGENT
        elif caller.startswith("send_"):
            ended_by = HangupParty.SYSTEM
        else:
            ended_by = HangupParty.UNKNOWN
        answered = ev.get("CC-Agent-Answered-Time")
        return [
            AgentCompleted(
                pbx=self.pbx, call_id=call.call_id, at=at, channel=call.call_id, queue=ev.get("CC-Queue"),
                agent=agent, hold_s=_diff(ev.get("CC-Member-Joined-Time"), answered),
                talk_s=_diff(answered, ev.get("CC-Bridge-Terminated-Time")), ended_by=ended_by,
            )
        ]

    def _state_event(self, agent: str, state: str | None, at: datetime) -> list[Event]:
        status = agent_state_status(state)
        if state is None or status is AgentStatus.UNKNOWN or self._agent_status.get(agent) == status:
            return []
        self._agent_status[agent] = status
        return [AgentStatusChanged(pbx=self.pbx, call_id=None, at=at, agent=agent, status=status)]

    def _pause_event(self, agent: str, paused: bool, reason: str | None, at: datetime) -> list[Event]:
        if self._agent_pause.get(agent) == (paused, reason):
            return []
        self._agent_pause[agent] = (paused, reason)
        return [AgentPauseChanged(pbx=self.pbx, call_id=None, at=at, agent=agent, paused=paused, reason=reason)]

    def _status_events(self, agent: str, status: str | None, at: datetime) -> list[Event]:
        if status == "Logged Out":
            self._agent_logged_out[agent] = True
            if self._agent_status.get(agent) == AgentStatus.UNAVAILABLE:
                return []
            self._agent_status[agent] = AgentStatus.UNAVAILABLE
            return [AgentStatusChanged(pbx=self.pbx, call_id=None, at=at, agent=agent,
                                       status=AgentStatus.UNAVAILABLE)]
        if status == "On Break":
            return self._pause_event(agent, True, "break", at)
        if status in ("Available", "Available (On Demand)"):
            events = self._pause_event(agent, False, None, at)
            if self._agent_logged_out.pop(agent, False):
                self._agent_status[agent] = AgentStatus.AVAILABLE
                events.append(AgentStatusChanged(pbx=self.pbx, call_id=None, at=at, agent=agent,
                                                 status=AgentStatus.AVAILABLE))
            return events
        return []

    def _on_agent_state(self, ev: EslEvent, at: datetime) -> list[Event]:
        agent = ev.get("CC-Agent")
        return self._state_event(agent, ev.get("CC-Agent-State"), at) if agent else []

    def _on_agent_status(self, ev: EslEvent, at: datetime) -> list[Event]:
        agent = ev.get("CC-Agent")
        return self._status_events(agent, ev.get("CC-Agent-Status"), at) if agent else []

    # -- supervisors --------------------------------------------------------------------------
    @staticmethod
    def _remember_vars(leg: _Leg, ev: EslEvent) -> None:
        for key in ("eavesdrop_whisper_aleg", "eavesdrop_whisper_bleg", "eavesdrop_enable_dtmf"):
            value = ev.get("variable_" + key)
            if value is not None:
                leg.vars[key] = value
        if (ev.get("Application") or "").lower() == "set":
            name, _, value = (ev.get("Application-Data") or "").partition("=")
            if name.startswith("eavesdrop_"):
                leg.vars[name] = value

    @staticmethod
    def _spy_mode(leg: _Leg, app: str) -> SpyMode:
        if app == "three_way":
            return SpyMode.BARGE
        aleg = _true(leg.vars.get("eavesdrop_whisper_aleg"))
        bleg = _true(leg.vars.get("eavesdrop_whisper_bleg"))
        if aleg and bleg:
            return SpyMode.BARGE
        return SpyMode.WHISPER if aleg or bleg else SpyMode.LISTEN

    def _spy_event(self, cls: type[SpyStarted] | type[SpyStopped], call_id: str, spyer: str, target: str,
                   mode: SpyMode, at: datetime) -> Event:
        return cls(pbx=self.pbx, call_id=call_id, at=at, channel=spyer, spyer_channel=spyer, target_channel=target,
                   mode=mode)

    def _on_bug_start(self, ev: EslEvent, at: datetime) -> list[Event]:
        if ev.get("Media-Bug-Function") != "eavesdrop":
            return []
        target = ev.get("Media-Bug-Target") or ev.get("Unique-ID") or ""
        target_leg = self._legs.get(target)
        if target_leg is None or target_leg.kind == "originated":
            return []
        spyer = next((leg for leg in self._legs.values()
                      if leg.spy_pending is not None and leg.spy_pending[0] == target), None)
        if spyer is None or spyer.spy_pending is None:
            return []
        mode = spyer.spy_pending[1]
        spyer.spy_pending = None
        spyer.spying = (target_leg.call_id, target, mode)
        return [self._spy_event(SpyStarted, target_leg.call_id, spyer.uuid, target, mode, at)]

    def _on_bug_stop(self, ev: EslEvent, at: datetime) -> list[Event]:
        if ev.get("Media-Bug-Function") != "eavesdrop":
            return []
        target = ev.get("Media-Bug-Target") or ev.get("Unique-ID") or ""
        spyers = [leg for leg in self._legs.values() if leg.spying is not None and leg.spying[1] == target]
        if len(spyers) != 1:
            return []  # which one stopped is told by its application's end / hangup
        return self._stop_spy(spyers[0], at)

    def _stop_spy(self, leg: _Leg, at: datetime) -> list[Event]:
        if leg.spying is None:
            return []
        call_id, target, mode = leg.spying
        leg.spying = None
        return [self._spy_event(SpyStopped, call_id, leg.uuid, target, mode, at)]

    def _spy_dtmf(self, leg: _Leg, digit: str, at: datetime) -> list[Event]:
        # In eavesdrop, DTMF 0 = listen, 1/2 = whisper (to the other / the spied party), 3 = barge.
        # On by default: whisper_audio switched modes by DTMF with no eavesdrop_* variable set;
        # only eavesdrop_enable_dtmf=false turns it off. three_way has no such keys.
        mode = _DTMF_SPY_MODES.get(digit)
        if leg.spying is None or mode is None or leg.spy_app != "eavesdrop":
            return []
        if (leg.vars.get("eavesdrop_enable_dtmf") or "").lower() in ("false", "no", "off", "0"):
            return []
        call_id, target, old = leg.spying
        if mode == old:
            return []
        leg.spying = (call_id, target, mode)
        return [
            self._spy_event(SpyStopped, call_id, leg.uuid, target, old, at),
            self._spy_event(SpyStarted, call_id, leg.uuid, target, mode, at),
        ]

    def _on_background_job(self, ev: EslEvent, at: datetime) -> list[Event]:
        if (ev.get("Job-Command") or "").strip() != "originate":
            return []
        body = (ev.body or "").strip()
        ok = body.startswith("+OK")
        detail = body[3:].strip() if ok else body.removeprefix("-ERR").strip()
        extra = {"job_uuid": ev.get("Job-UUID") or ""}
        # our originates name the new leg (origination_uuid): the adapter maps it to its command
        found = _ORIGINATION_UUID.search(ev.get("Job-Command-Arg") or "")
        if found:
            extra["origination_uuid"] = found.group(1)
        if ok and detail:
            extra["uuid"] = detail
        elif detail:
            extra["cause"] = detail
        return [
            OriginateResult(
                pbx=self.pbx, call_id=None, at=at, channel=extra.get("uuid"), request_id=ev.get("Job-UUID") or "",
                success=ok, reason="answered" if ok else _ORIGINATE_REASONS.get(detail, detail.lower() or None),
                extra=extra,
            )
        ]


_Handler = Any  # Callable[[FreeswitchTranslator, EslEvent, datetime], list[Event]]

_HANDLERS: dict[str, _Handler] = {
    "CHANNEL_CREATE": FreeswitchTranslator._on_create,
    "CHANNEL_ANSWER": FreeswitchTranslator._on_answer,
    "CHANNEL_EXECUTE": FreeswitchTranslator._on_execute,
    "CHANNEL_EXECUTE_COMPLETE": FreeswitchTranslator._on_execute_complete,
    "CHANNEL_PARK": FreeswitchTranslator._on_park,
    "CHANNEL_UNPARK": FreeswitchTranslator._on_unpark,
    "CHANNEL_HANGUP": FreeswitchTranslator._on_hangup,
    "CHANNEL_HANGUP_COMPLETE": FreeswitchTranslator._on_hangup_complete,
    "CHANNEL_DESTROY": FreeswitchTranslator._on_destroy,
    "DTMF": FreeswitchTranslator._on_dtmf,
    "MEDIA_BUG_START": FreeswitchTranslator._on_bug_start,
    "MEDIA_BUG_STOP": FreeswitchTranslator._on_bug_stop,
    "BACKGROUND_JOB": FreeswitchTranslator._on_background_job,
}

_CC_HANDLERS: dict[str, _Handler] = {
    "member-queue-start": FreeswitchTranslator._on_member_start,
    "member-queue-resume": FreeswitchTranslator._on_member_start,
    "member-queue-end": FreeswitchTranslator._on_member_end,
    "agent-offering": FreeswitchTranslator._on_offering,
    "bridge-agent-start": FreeswitchTranslator._on_bridge_start,
    "bridge-agent-end": FreeswitchTranslator._on_bridge_end,
    "bridge-agent-fail": FreeswitchTranslator._on_bridge_fail,
    "agent-state-change": FreeswitchTranslator._on_agent_state,
    "agent-status-change": FreeswitchTranslator._on_agent_status,
}

HANDLED_EVENTS: frozenset[str] = frozenset(_HANDLERS) | {"CUSTOM"}

# What to subscribe to (``event json <these>``): every event name a handler exists for, then
# CUSTOM with the one subclass read (words after CUSTOM are subclasses). FreeSWITCH filters
# before sending, so a listener subscribed to this receives about half of an ALL stream (the
# captures) and the translator sees everything it acts on. BACKGROUND_JOB is listed too
# (originate results); the ESL client adds it and HEARTBEAT anyway.
SUBSCRIPTIONS: tuple[str, ...] = (*sorted(_HANDLERS), "CUSTOM", _CALLCENTER)
