"""Asterisk AMI events -> PBX-neutral domain events (functional core, no I/O).

``AsteriskTranslator`` is fed every AMI message the adapter (or ``callcenter replay``) reads,
with the time it happened, and returns the domain events that message implies. It keeps just
enough per-channel state to say *whose* leg a channel is and to turn Asterisk's facts into
decisions the PBX never states itself (who hung up, why a caller left a queue). Every rule
below cites the behaviour measured in ``tests/fixtures/asterisk/TRACES_README.md`` (Asterisk
22.10.1); the replay tests pin the resulting event sequence per trace.

Call identity
    ``call_id`` is the caller leg's ``Linkedid``. Asterisk copies it to every channel created on
    behalf of the call (queue member legs, transfers), so every leg of one call carries the same
    ``call_id`` without bookkeeping. Originated channels (supervisor spy legs, callbacks) start
    their own Linkedid and are not calls: their spy events are attributed to the *spied* call
    (``SpyeeLinkedid``).

Which leg is the caller
    A ``Newchannel`` in state 4 (Ring) whose Uniqueid is its own Linkedid is an inbound call:
    the channel driver created it for an incoming INVITE. Channels Asterisk dials out (queue
    member legs, Originate) are born in state 0 (Down) -- seen for every agent leg and both spy
    legs in the traces -- so they never produce ``CallArrived``.

IVR nodes (observed dialplans)
    ``IvrNodeEntered`` is emitted (a) for every ``CC_NODE`` the dialplan or the controller sets
    on the caller leg (the explicit name always wins: once a call has set ``CC_NODE`` no node is
    guessed for it any more), and (b) otherwise for a ``context,exten`` the caller *waits in*:
    the first ``Newexten`` of an application that plays to the caller or waits for its input
    (``BackGround``, ``WaitExten``, ``Read``, ``Playback``, ``MusicOnHold`` ... see
    ``DEFAULT_IVR_APPS``) after the caller's dialplan position moved to a new ``context,exten``.
    So the lab's ``ivr-main`` (``Set``, ``Set``, ``BackGround``, ``WaitExten``) is one node
    ``ivr-main,s``, while pass-through extensions (``from-pstn,5550100`` doing Answer/Set/Goto,
    ``ivr-main,1`` doing Set/Goto, ``cc-queue,sales`` running Queue) are not nodes. No node is
    guessed while the call is in a queue, driven by the controller (AsyncAGI), or hanging up
    (the ``cc-hangup`` handler's Newexten arrive after the hangup request).

Why a caller left a queue (``QueueLeft.reason``), decided at ``QueueCallerLeave``
    * ``answered``: a member leg's ``DialEnd DialStatus=ANSWER`` was seen during this queue stay
      (Asterisk sends QueueCallerLeave *before* AgentConnect, so AgentConnect cannot be waited for).
    * ``redirect``: ``QueueCallerAbandon`` came, but the caller leg moved in the dialplan while
      queued (a ``Newexten`` between QueueCallerJoin and the abandon). Queue() itself never runs
      dialplan on the caller, so such a Newexten means an AMI Redirect/async goto pulled it out;
      the overflow_redirect trace shows exactly this: Newexten cc-queue,support then
      QueueCallerAbandon for sales. Asterisk calls it an abandon -- the ``hold_s``/``position``
      of that abandon are kept.
    * ``abandon``: any other ``QueueCallerAbandon`` (caller hangup: HangupRequest precedes it).
    * ``exit_key``: neither, but the caller pressed a DTMF key within ``EXIT_KEY_WINDOW`` before
      leaving (queues.conf ``context=`` exits).
    * ``timeout``: none of the above -- Queue() gave up on the caller (timeout, leavewhenempty).

Who hung up (``CallEnded.hung_up_by``)
    The last fact wins: ``AgentComplete Reason`` (caller/agent; transfer counts as agent) if the
    conversation was the last thing that happened; otherwise the first hangup request after it:
    ``HangupRequest`` on the caller leg = the caller (its BYE), ``HangupRequest`` on the
    connected agent leg = the agent, ``SoftHangupRequest`` on the caller leg without a
    HangupRequest first = the system (AMI Hangup, i.e. the controller or an admin). A caller leg
    that ends with no request at all ran off its dialplan / hit an absolute timeout: system.
    ``cause`` is the ``Hangup`` event's own Cause: it is 0 ("Unknown") for callers who hang up
    while not bridged (IVR, waiting in queue) and 16 for bridged calls, as measured.

AsyncAGI
    ``AsyncAGIStart`` -> ``ControllerAttached`` (Env URL-decoded: caller number/name, DID);
    ``AsyncAGIExec`` -> ``DigitsCollected`` for ``GET DATA`` (the command text comes from the
    preceding ``AGIExecStart``: commands run one at a time per channel; its own CommandId is an
    internal number, so the controller's ``CommandId`` is taken from AsyncAGIExec only), else
    ``PromptFinished``, except for a control command that succeeded (``SET VARIABLE``,
    ``ASYNCAGI BREAK``, ``ANSWER``...: ``_AGI_CONTROL``): setting state on the channel is not a
    step of the caller's journey (the controller's ``routed`` note holds what those commands
    carry out), so its acknowledgement produces no event; a failed or cut-off one does.
    ``AsyncAGIEnd`` -> ``ControllerReleased``. An AGI result of -1 means the
    command was cut off; it is a hangup only if a hangup request on the channel preceded it --
    the fail-open absolute timeout produces the same -1 with no request (asyncagi_no_controller
    phase E), and the caller then continues into the fallback queue.
"""

from __future__ import annotations

import re
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import unquote

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
from callcenter.pbx.asterisk.message import AmiMessage

# [cc-callback] reports the customer leg of a callback with UserEvent(CcCallback, ...).
CALLBACK_USER_EVENT = "CcCallback"

__all__ = [
    "DEFAULT_IVR_APPS",
    "DEFAULT_WATCHED_VARIABLES",
    "EXIT_KEY_WINDOW",
    "HANDLED_EVENTS",
    "IGNORED_EVENTS",
    "AsteriskTranslator",
    "decode_agi_env",
    "device_state",
    "spy_mode_from_options",
]

# Of those, the ones where the caller only waits (redirect_flow: MusicOnHold in park-like until
# the controller Redirects the call): a place, not a menu.
HOLD_APPS: frozenset[str] = frozenset({"musiconhold"})

# Applications during which the caller "waits in" an IVR node (lower case; AMI spells them as
# registered, e.g. ``BackGround``).
DEFAULT_IVR_APPS: frozenset[str] = frozenset(
    {
        "background",
        "waitexten",
        "read",
        "readexten",
        "playback",
        "controlplayback",
        "musiconhold",
        "record",
        "saydigits",
        "saynumber",
        "sayalpha",
        "sayphonetic",
        "voicemail",
        "voicemailmain",
        "directory",
    }
)

# Caller-leg variables reported as ``VariableSet`` (names without the inheritance underscores).
# CC_FAILOPEN is set by the fail-open ``T`` extension: the only trace of a controller timeout.
DEFAULT_WATCHED_VARIABLES: frozenset[str] = frozenset({"CC_FAILOPEN"})

# A DTMF key this close before QueueCallerLeave (no answer, no abandon) = exit by key.
EXIT_KEY_WINDOW = timedelta(seconds=2)

# Events that carry nothing the domain needs (or that are list items of our own actions, which
# the adapter reads through resync()). They are not "unknown".
IGNORED_EVENTS: frozenset[str] = frozenset(
    {
        "AGIExecEnd",  # says 200/Success even when the AGI result is -1: AsyncAGIExec is the truth
        "BridgeCreate",
        "BridgeDestroy",
        "BridgeEnter",
        "BridgeLeave",
        "BridgeMerge",
        "CoreShowChannel",
        "CoreShowChannelsComplete",
        "DeviceStateChange",  # QueueMemberStatus carries the member's device state
        "DialState",
        "DTMFBegin",
        "EndpointList",
        "EndpointListComplete",
        "FullyBooted",
        "HangupHandlerPop",
        "HangupHandlerPush",
        "HangupHandlerRun",
        "MusicOnHoldStart",
        "MusicOnHoldStop",
        "NewAccountCode",
        "NewCallerid",
        "NewConnectedLine",
        "QueueEntry",
        "QueueMember",
        "QueueParams",
        "QueueStatusComplete",
        "QueueSummary",
        "QueueSummaryComplete",
        "RequestBadFormat",
        "RTCPReceived",
        "RTCPSent",
        "Status",
        "StatusComplete",
        "SuccessfulAuth",
        "ChallengeSent",
    }
)

_CALLER_STATE_RING = "4"  # AST_STATE_RING: an incoming channel
_STATE_UP = "6"

_DEVICE_STATES: dict[str, AgentStatus] = {
    "0": AgentStatus.UNKNOWN,
    "1": AgentStatus.AVAILABLE,  # NOT_INUSE
    "2": AgentStatus.IN_USE,  # INUSE
    "3": AgentStatus.IN_USE,  # BUSY
    "4": AgentStatus.UNAVAILABLE,  # INVALID
    "5": AgentStatus.UNAVAILABLE,  # UNAVAILABLE
    "6": AgentStatus.RINGING,  # RINGING
    "7": AgentStatus.RINGING,  # RINGINUSE
    "8": AgentStatus.ON_HOLD,  # ONHOLD
}

# OriginateResponse Reason codes (AST_CONTROL_* of the outgoing leg).
_ORIGINATE_REASONS: dict[str, str] = {
    "0": "failed",
    "1": "hangup",
    "3": "no_answer",
    "4": "answered",
    "5": "busy",
    "8": "congestion",
}

_GONE_MAX = 4096
_AGI_REPLY = re.compile(r"^(?P<code>\d{3})(?: result=(?P<result>\S*))?")
# AGI commands that only set or read channel state, or hand the channel back (upper case, by
# prefix; "SET " covers SET VARIABLE/CALLERID/CONTEXT/EXTENSION/PRIORITY/MUSIC/AUTOHANGUP).
_AGI_CONTROL = ("SET ", "ASYNCAGI BREAK", "ANSWER", "NOOP", "VERBOSE", "GET VARIABLE", "GET FULL VARIABLE",
                "DATABASE ", "CHANNEL STATUS", "HANGUP")
_UNKNOWN_VALUES = frozenset({"", "<unknown>", "unknown"})

LegKind = Literal["caller", "agent", "originated", "other"]


def device_state(code: str | None) -> AgentStatus:
    """Map an Asterisk device state number (QueueMemberStatus ``Status``) to ``AgentStatus``."""
    return _DEVICE_STATES.get(code or "", AgentStatus.UNKNOWN)


def spy_mode_from_options(options: str) -> SpyMode:
    """ChanSpy options -> mode: ``B`` barges, ``w``/``W`` whisper, anything else listens.

    Option arguments in parentheses (``v(-1)``, ``e(1001:1002)``) are dropped first so their
    letters cannot be mistaken for flags."""
    flags = re.sub(r"\([^)]*\)", "", options)
    if "B" in flags:
        return SpyMode.BARGE
    if "w" in flags or "W" in flags:
        return SpyMode.WHISPER
    return SpyMode.LISTEN


def decode_agi_env(env: str) -> dict[str, str]:
    """``AsyncAGIStart`` ``Env``: URL-encoded ``agi_key: value`` lines ending in a blank line."""
    out: dict[str, str] = {}
    for line in unquote(env).split("\n"):
        key, sep, value = line.partition(": ")
        if sep:
            out[key.strip()] = value
        elif line.endswith(":"):  # ``agi_accountcode: `` with the value empty after strip
            out[line[:-1].strip()] = ""
    return out


def _int(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _known(value: str | None) -> str | None:
    return None if value is None or value in _UNKNOWN_VALUES else value


def _var_name(name: str) -> str:
    # ``__CC_DID`` / ``_CC_DID`` are the inherited spellings of CC_DID.
    return name.lstrip("_")


@dataclass(slots=True)
class _Leg:
    channel: str
    uniqueid: str
    call_id: str
    kind: LegKind
    # queue member legs (AgentCalled)
    queue: str | None = None
    interface: str | None = None
    member_name: str | None = None
    answered: bool = False
    ring_closed: bool = False  # AgentRingNoAnswer or AgentRingCanceled already emitted
    direct: bool = False  # dialled by the caller's own Dial() (sticky routing), not by a queue
    dialed_at: datetime | None = None
    # any leg
    hangup_requested: bool = False
    agi_command: str | None = None
    # originated legs
    spy_mode_app: SpyMode | None = None
    spy_mode_var: SpyMode | None = None
    spying: tuple[str, str, SpyMode | None] | None = None  # (spied call id, target, mode)
    seen_at: datetime | None = None  # when we first heard of it (resync races)


@dataclass(slots=True)
class _Call:
    call_id: str
    caller_channel: str
    observed_from_start: bool
    answered: bool = False
    controlled: bool = False
    vars: dict[str, str] = field(default_factory=dict)
    # IVR node guessing
    position: tuple[str, str] | None = None
    node_armed: bool = False
    named_nodes: bool = False  # the dialplan/controller sets CC_NODE itself
    # queue stay
    queue: str | None = None
    queue_answered: bool = False
    moved_in_queue: bool = False
    abandon: tuple[str, int | None, int | None] | None = None  # (queue, position, hold_s)
    last_dtmf_at: datetime | None = None
    # hangup attribution
    connected_agent_channel: str | None = None
    end_party: HangupParty | None = None


Handler = Callable[[AmiMessage, datetime], list[Event]]


class AsteriskTranslator:
    """Stateful, I/O-free AMI -> domain event translator (one per PBX node).

    ``feed(msg, at)`` for every AMI message read (responses are ignored), ``resync(...)`` after
    each (re)connect with the CoreShowChannels / QueueStatus list items. ``unknown`` counts AMI
    events it has no rule for; they are never fatal.
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
        self._watched = frozenset(_var_name(v) for v in watch_variables)
        self._interesting_vars = self._watched | {"CC_NODE", "CC_DID", "CC_SPY_MODE"}
        self._ivr_apps = frozenset(a.lower() for a in ivr_apps)
        self._legs: dict[str, _Leg] = {}
        self._calls: dict[str, _Call] = {}
        self._member_status: dict[str, str] = {}
        self._member_pause: dict[tuple[str, str], tuple[bool, str | None]] = {}
        # Uniqueids whose Hangup we handled, so a snapshot taken just before cannot revive them.
        self._gone: OrderedDict[str, None] = OrderedDict()
        self._members: set[tuple[str, str]] = set()  # (interface, queue) memberships we know of
        self._handlers: dict[str, Handler] = {
            "Newchannel": self._on_newchannel,
            "Newstate": self._on_newstate,
            "Newexten": self._on_newexten,
            "VarSet": self._on_varset,
            "DTMFEnd": self._on_dtmf_end,
            "Rename": self._on_rename,
            "HangupRequest": self._on_hangup_request,
            "SoftHangupRequest": self._on_soft_hangup_request,
            "Hangup": self._on_hangup,
            "AsyncAGIStart": self._on_async_agi_start,
            "AGIExecStart": self._on_agi_exec_start,
            "AsyncAGIExec": self._on_async_agi_exec,
            "AsyncAGIEnd": self._on_async_agi_end,
            "QueueCallerJoin": self._on_queue_caller_join,
            "QueueCallerAbandon": self._on_queue_caller_abandon,
            "QueueCallerLeave": self._on_queue_caller_leave,
            "AgentCalled": self._on_agent_called,
            "DialBegin": self._on_dial_begin,
            "DialEnd": self._on_dial_end,
            "AgentRingNoAnswer": self._on_agent_ring_no_answer,
            "AgentConnect": self._on_agent_connect,
            "AgentComplete": self._on_agent_complete,
            "QueueMemberStatus": self._on_queue_member_status,
            "QueueMemberPause": self._on_queue_member_pause,
            "QueueMemberAdded": self._on_queue_member_added,
            "QueueMemberRemoved": self._on_queue_member_removed,
            "ChanSpyStart": self._on_chanspy_start,
            "ChanSpyStop": self._on_chanspy_stop,
            "OriginateResponse": self._on_originate_response,
            "UserEvent": self._on_user_event,
        }

    # -- public API ---------------------------------------------------------------------------
    def feed(self, msg: AmiMessage, at: datetime) -> list[Event]:
        """Translate one AMI message received at ``at``; responses yield nothing."""
        name = msg.event
        if name is None:
            return []
        handler = self._handlers.get(name)
        if handler is None:
            if name not in IGNORED_EVENTS:
                self.unknown[name] += 1
            return []
        return handler(msg, at)

    def caller_channel(self, call_id: str) -> str | None:
        """The caller leg's channel name of a live call (what AGI/Redirect/Hangup act on)."""
        call = self._calls.get(call_id)
        return call.caller_channel if call else None

    def call_of_channel(self, channel: str) -> str | None:
        leg = self._legs.get(channel)
        return leg.call_id if leg and leg.kind != "originated" else None

    def is_controlled(self, call_id: str) -> bool:
        """True while the call sits in ``AGI(agi:async)`` (AGI commands can be sent)."""
        call = self._calls.get(call_id)
        return bool(call and call.controlled)

    def live_calls(self) -> list[str]:
        return list(self._calls)

    def has_call(self, call_id: str | None) -> bool:
        """O(1); ``live_calls()`` copies every live call id (per AGI command, with thousands of
        calls waiting, that made command handling quadratic)."""
        return call_id is not None and call_id in self._calls

    def resync(
        self,
        channels: Iterable[AmiMessage],
        queue_status: Iterable[AmiMessage] = (),
        *,
        at: datetime,
        snapshot_at: datetime | None = None,
    ) -> list[Event]:
        """Reconcile with a fresh snapshot after a (re)connect.

        ``channels``: the ``CoreShowChannel`` items of ``CoreShowChannels``; ``queue_status``:
        the ``QueueMember``/``QueueEntry`` items of ``QueueStatus``. Calls tracked here whose
        caller leg is no longer up ended while the link was down: ``CallEnded`` with
        ``cause=None`` and ``hung_up_by=unknown``. Channels we did not know are adopted: an
        unknown caller leg gets ``CallArrived`` (+ ``CallAnswered`` if up, +
        ``ControllerAttached`` if it sits in ``AGI(agi:async)`` -- AsyncAGIStart is one-shot, a
        controller that connects later must find waiting channels itself). Member device and
        pause states are re-announced where they differ from what we knew.

        Live events keep flowing while the snapshot is taken: ``snapshot_at`` (when the
        CoreShowChannels request was sent, on the clock of ``feed``'s ``at``) protects channels
        first seen after it from being closed, and channels whose Hangup was already handled
        are not adopted from a snapshot that still listed them.
        """
        events: list[Event] = []
        live: dict[str, AmiMessage] = {}
        for m in channels:
            if m.event == "CoreShowChannel" and m.get("Channel"):
                live[m["Channel"]] = m

        # 1. what vanished while we were away
        for channel, leg in list(self._legs.items()):
            if channel in live:
                continue
            if snapshot_at is not None and leg.seen_at is not None and leg.seen_at >= snapshot_at:
                continue
            del self._legs[channel]
            if leg.spying is not None:
                spied, target, mode = leg.spying
                events.append(self._spy_event(SpyStopped, spied, channel, target, mode, at))
            if leg.kind == "caller" and leg.call_id in self._calls:
                del self._calls[leg.call_id]
                events.append(
                    CallEnded(
                        pbx=self.pbx,
                        call_id=leg.call_id,
                        at=at,
                        channel=channel,
                        cause=None,
                        hung_up_by=HangupParty.UNKNOWN,
                    )
                )

        # 2. what appeared: callers first so their legs can be attached
        fresh = [m for ch, m in live.items() if ch not in self._legs and m.get("Uniqueid") not in self._gone]
        fresh.sort(key=lambda m: m.get("Uniqueid") != m.get("Linkedid"))
        for m in fresh:
            events.extend(self._adopt(m, at))

        # 3. queue entries and members. Memberships are announced (QueueMemberChanged) when the
        # snapshot shows one we did not know: at the first connect that is all of them, and
        # without them nobody downstream knows who staffs a queue (routing's "agents available",
        # overflow's "no agent logged in") until a member happens to change state.
        snapshot: set[tuple[str, str]] = set()
        for m in queue_status:
            if m.event == "QueueEntry":
                events.extend(self._adopt_queue_entry(m, at))
            elif m.event == "QueueMember":
                iface = m.get("Location") or m.get("Interface")
                queue = m.get("Queue")
                if not iface:
                    continue
                if queue:
                    snapshot.add((iface, queue))
                    if (iface, queue) not in self._members:
                        self._members.add((iface, queue))
                        events.append(QueueMemberChanged(pbx=self.pbx, call_id=None, at=at, agent=iface, queue=queue,
                                                         added=True, agent_name=_known(m.get("Name")),
                                                         penalty=_int(m.get("Penalty"))))
                events.extend(self._member_status_event(iface, m.get("Status"), _known(m.get("Name")), at))
                events.extend(self._member_pause_event(m, iface, _known(m.get("Name")), at))
        if any(m.event == "QueueMember" for m in queue_status):
            # removed while the link was down (QueueRemove, a reload of queues.conf)
            for iface, queue in sorted(self._members - snapshot):
                self._members.discard((iface, queue))
                self._member_pause.pop((iface, queue), None)
                events.append(QueueMemberChanged(pbx=self.pbx, call_id=None, at=at, agent=iface, queue=queue,
                                                 added=False))
        return events

    # -- leg/call bookkeeping -----------------------------------------------------------------
    def _leg(self, msg: AmiMessage, at: datetime, prefix: str = "") -> _Leg | None:
        channel = msg.get(prefix + "Channel")
        if not channel:
            return None
        leg = self._legs.get(channel)
        if leg is not None:
            return leg
        uniqueid = msg.get(prefix + "Uniqueid") or ""
        linkedid = msg.get(prefix + "Linkedid") or uniqueid
        if not linkedid:
            return None
        # Seen mid-life (we connected after its Newchannel): a leg of its Linkedid's call;
        # promoted to caller by the first caller-only event (queue join, AsyncAGI).
        return self._track(_Leg(channel, uniqueid, linkedid, "other" if uniqueid != linkedid else "originated"), at)

    def _track(self, leg: _Leg, at: datetime) -> _Leg:
        leg.seen_at = at
        self._legs[leg.channel] = leg
        return leg

    def _caller(self, msg: AmiMessage, at: datetime, events: list[Event]) -> tuple[_Leg, _Call] | None:
        """The caller leg + call for an event only a caller leg produces; adopts unseen calls."""
        leg = self._leg(msg, at)
        if leg is None:
            return None
        call = self._calls.get(leg.call_id)
        if leg.kind == "caller" and call is not None:
            return leg, call
        if call is None and leg.uniqueid == leg.call_id:
            leg.kind = "caller"
            call = _Call(leg.call_id, leg.channel, observed_from_start=False)
            self._calls[leg.call_id] = call
            events.append(self._arrived(msg, leg, call, at, did=None))
            if msg.get("ChannelState") == _STATE_UP:
                call.answered = True
                events.append(CallAnswered(pbx=self.pbx, call_id=call.call_id, at=at, channel=leg.channel))
            return leg, call
        return None

    def _arrived(self, msg: AmiMessage, leg: _Leg, call: _Call, at: datetime, did: str | None) -> CallArrived:
        return CallArrived(
            pbx=self.pbx,
            call_id=call.call_id,
            at=at,
            channel=leg.channel,
            unique_id=leg.uniqueid,
            caller_number=_known(msg.get("CallerIDNum")),
            caller_name=_known(msg.get("CallerIDName")),
            did=did,
            context=msg.get("Context"),
        )

    def _adopt(self, m: AmiMessage, at: datetime) -> list[Event]:
        events: list[Event] = []
        channel = m["Channel"]
        uniqueid = m.get("Uniqueid") or ""
        linkedid = m.get("Linkedid") or uniqueid
        app = (m.get("Application") or "").lower()
        data = m.get("ApplicationData") or ""
        if uniqueid != linkedid:
            kind: LegKind = "agent" if app == "appqueue" else "other"
            self._track(_Leg(channel, uniqueid, linkedid, kind), at)
            return events
        if app in ("appdial", "appdial2", "appqueue", "chanspy"):
            leg = self._track(_Leg(channel, uniqueid, linkedid, "originated"), at)
            if app == "chanspy":
                leg.spy_mode_app = spy_mode_from_options(data.rpartition(",")[2] if "," in data else "")
            return events
        leg = self._track(_Leg(channel, uniqueid, linkedid, "caller"), at)
        call = _Call(linkedid, channel, observed_from_start=False)
        self._calls[linkedid] = call
        events.append(self._arrived(m, leg, call, at, did=None))
        if m.get("ChannelState") == _STATE_UP:
            call.answered = True
            events.append(CallAnswered(pbx=self.pbx, call_id=linkedid, at=at, channel=channel))
        if app == "agi" and data.startswith("agi:async"):
            call.controlled = True
            events.append(
                ControllerAttached(
                    pbx=self.pbx,
                    call_id=linkedid,
                    at=at,
                    channel=channel,
                    caller_number=_known(m.get("CallerIDNum")),
                    caller_name=_known(m.get("CallerIDName")),
                    did=None,
                )
            )
        return events

    def _adopt_queue_entry(self, m: AmiMessage, at: datetime) -> list[Event]:
        leg = self._legs.get(m.get("Channel") or "")
        if leg is None or leg.kind != "caller":
            return []
        call = self._calls.get(leg.call_id)
        queue = m.get("Queue")
        if call is None or not queue or call.queue == queue:
            return []
        self._start_queue_stay(call, queue)
        return [
            QueueJoined(
                pbx=self.pbx,
                call_id=call.call_id,
                at=at,
                channel=leg.channel,
                queue=queue,
                position=_int(m.get("Position")),
            )
        ]

    @staticmethod
    def _start_queue_stay(call: _Call, queue: str) -> None:
        call.queue = queue
        call.queue_answered = False
        call.moved_in_queue = False
        call.abandon = None
        call.last_dtmf_at = None
        call.connected_agent_channel = None

    # -- channel lifecycle --------------------------------------------------------------------
    def _on_newchannel(self, msg: AmiMessage, at: datetime) -> list[Event]:
        channel = msg.get("Channel")
        uniqueid = msg.get("Uniqueid") or ""
        linkedid = msg.get("Linkedid") or uniqueid
        if not channel or not uniqueid:
            return []
        if uniqueid != linkedid:
            self._track(_Leg(channel, uniqueid, linkedid, "other"), at)
            return []
        if msg.get("ChannelState") != _CALLER_STATE_RING:
            # Down-state channel with its own Linkedid: Originate (spy leg, callback).
            self._track(_Leg(channel, uniqueid, linkedid, "originated"), at)
            return []
        leg = self._track(_Leg(channel, uniqueid, linkedid, "caller"), at)
        call = _Call(linkedid, channel, observed_from_start=True)
        call.position = (msg.get("Context") or "", msg.get("Exten") or "")
        self._calls[linkedid] = call
        exten = msg.get("Exten")
        did = None if exten in (None, "", "s") else exten
        return [self._arrived(msg, leg, call, at, did=did)]

    def _on_newstate(self, msg: AmiMessage, at: datetime) -> list[Event]:
        leg = self._legs.get(msg.get("Channel") or "")
        if leg is None or leg.kind != "caller" or msg.get("ChannelState") != _STATE_UP:
            return []
        call = self._calls.get(leg.call_id)
        if call is None or call.answered:
            return []
        call.answered = True
        return [CallAnswered(pbx=self.pbx, call_id=call.call_id, at=at, channel=leg.channel)]

    def _on_rename(self, msg: AmiMessage, at: datetime) -> list[Event]:
        old, new = msg.get("Channel"), msg.get("Newname")
        if old and new and old in self._legs:
            leg = self._legs.pop(old)
            leg.channel = new
            self._legs[new] = leg
            call = self._calls.get(leg.call_id)
            if call is not None and call.caller_channel == old:
                call.caller_channel = new
        return []

    def _on_newexten(self, msg: AmiMessage, at: datetime) -> list[Event]:
        leg = self._legs.get(msg.get("Channel") or "")
        if leg is None:
            return []
        app = msg.get("Application") or ""
        if leg.kind == "originated":
            if app.lower() == "chanspy":
                # AppData ``PJSIP/1001,qw``: what ChanSpy really runs with (whisper_barge trace).
                data = msg.get("AppData") or ""
                leg.spy_mode_app = spy_mode_from_options(data.rpartition(",")[2] if "," in data else "")
            return []
        if leg.kind != "caller":
            return []
        call = self._calls.get(leg.call_id)
        if call is None:
            return []
        position = (msg.get("Context") or "", msg.get("Exten") or "")
        if call.queue is not None:
            # Queue() runs no dialplan on the caller: a location change now is a Redirect.
            call.moved_in_queue = True
        if not leg.hangup_requested and call.connected_agent_channel is None:
            # The call goes on in the dialplan after a conversation: the next hangup decides.
            call.end_party = None
        if position != call.position:
            call.position = position
            call.node_armed = True
        if (
            call.node_armed
            and not call.named_nodes
            and call.queue is None
            and not call.controlled
            and not leg.hangup_requested
            and app.lower() in self._ivr_apps
        ):
            call.node_armed = False
            return [
                IvrNodeEntered(pbx=self.pbx, call_id=call.call_id, at=at, channel=leg.channel, node=",".join(position),
                               interactive=app.lower() not in HOLD_APPS)
            ]
        return []

    def _on_varset(self, msg: AmiMessage, at: datetime) -> list[Event]:
        # VarSet is about half of all AMI traffic (up to 240 per call in the traces) and almost
        # all of it is app_queue/RTP bookkeeping: look at the name before anything else.
        name = _var_name(msg.get("Variable") or "")
        if name not in self._interesting_vars:
            return []
        leg = self._legs.get(msg.get("Channel") or "")
        if leg is None:
            return []
        value = msg.get("Value") or ""
        if leg.kind == "originated":
            if name == "CC_SPY_MODE" and value in SpyMode._value2member_map_:
                leg.spy_mode_var = SpyMode(value)
            return []
        if leg.kind != "caller":
            return []
        call = self._calls.get(leg.call_id)
        if call is None:
            return []
        call.vars[name] = value
        events: list[Event] = []
        if name == "CC_NODE" and value:
            call.named_nodes = True
            call.node_armed = False
            events.append(IvrNodeEntered(pbx=self.pbx, call_id=call.call_id, at=at, channel=leg.channel, node=value))
        if name in self._watched:
            events.append(
                VariableSet(pbx=self.pbx, call_id=call.call_id, at=at, channel=leg.channel, name=name, value=value)
            )
        return events

    def _on_dtmf_end(self, msg: AmiMessage, at: datetime) -> list[Event]:
        # Only Direction=Received: a digit relayed through a bridge shows up again as "Sent" on
        # the other leg.
        if msg.get("Direction") != "Received":
            return []
        leg = self._legs.get(msg.get("Channel") or "")
        if leg is None or leg.kind not in ("caller", "agent", "other"):
            return []
        call = self._calls.get(leg.call_id)
        if leg.kind == "caller" and call is not None:
            call.last_dtmf_at = at
        return [
            DtmfReceived(pbx=self.pbx, call_id=leg.call_id, at=at, channel=leg.channel, digit=msg.get("Digit") or "")
        ]

    def _on_hangup_request(self, msg: AmiMessage, at: datetime) -> list[Event]:
        leg = self._legs.get(msg.get("Channel") or "")
        if leg is None:
            return []
        leg.hangup_requested = True
        call = self._calls.get(leg.call_id)
        if call is None or call.end_party is not None:
            return []
        if leg.kind == "caller":
            call.end_party = HangupParty.CALLER  # the caller's BYE (channel driver hangup)
        elif leg.channel == call.connected_agent_channel:
            call.end_party = HangupParty.AGENT
        return []

    def _on_soft_hangup_request(self, msg: AmiMessage, at: datetime) -> list[Event]:
        leg = self._legs.get(msg.get("Channel") or "")
        if leg is None:
            return []
        leg.hangup_requested = True
        call = self._calls.get(leg.call_id)
        if leg.kind == "caller" and call is not None and call.end_party is None:
            call.end_party = HangupParty.SYSTEM  # AMI Hangup / internal softhangup
        return []

    def _on_hangup(self, msg: AmiMessage, at: datetime) -> list[Event]:
        channel = msg.get("Channel") or ""
        uniqueid = msg.get("Uniqueid")
        if uniqueid:
            self._gone[uniqueid] = None
            if len(self._gone) > _GONE_MAX:
                self._gone.popitem(last=False)
        leg = self._legs.pop(channel, None)
        if leg is None:
            return []
        events: list[Event] = []
        if leg.spying is not None:  # ChanSpyStop normally comes first; never leave one open
            spied, target, mode = leg.spying
            events.append(self._spy_event(SpyStopped, spied, channel, target, mode, at))
        if leg.kind != "caller":
            return events
        call = self._calls.pop(leg.call_id, None)
        if call is None:
            return events
        party = call.end_party
        if party is None:
            party = HangupParty.SYSTEM if call.observed_from_start else HangupParty.UNKNOWN
        events.append(
            CallEnded(
                pbx=self.pbx,
                call_id=call.call_id,
                at=at,
                channel=channel,
                cause=_int(msg.get("Cause")),
                cause_text=msg.get("Cause-txt"),
                hung_up_by=party,
            )
        )
        return events

    # -- AsyncAGI -----------------------------------------------------------------------------
    def _on_async_agi_start(self, msg: AmiMessage, at: datetime) -> list[Event]:
        events: list[Event] = []
        found = self._caller(msg, at, events)
        if found is None:
            return events
        leg, call = found
        call.controlled = True
        env = decode_agi_env(msg.get("Env") or "")
        did = call.vars.get("CC_DID") or _known(env.get("agi_dnid")) or _known(env.get("agi_extension"))
        events.append(
            ControllerAttached(
                pbx=self.pbx,
                call_id=call.call_id,
                at=at,
                channel=leg.channel,
                caller_number=_known(env.get("agi_callerid")) or _known(msg.get("CallerIDNum")),
                caller_name=_known(env.get("agi_calleridname")) or _known(msg.get("CallerIDName")),
                did=did,
            )
        )
        return events

    def _on_agi_exec_start(self, msg: AmiMessage, at: datetime) -> list[Event]:
        leg = self._legs.get(msg.get("Channel") or "")
        if leg is not None:
            leg.agi_command = msg.get("Command")
        return []

    def _on_async_agi_exec(self, msg: AmiMessage, at: datetime) -> list[Event]:
        leg = self._legs.get(msg.get("Channel") or "")
        if leg is None:
            return []
        command = (leg.agi_command or "").strip()
        leg.agi_command = None
        reply = unquote(msg.get("Result") or "").strip()
        command_id = msg.get("CommandId") or msg.get("CommandID")
        m = _AGI_REPLY.match(reply)
        code = m.group("code") if m else None
        value = m.group("result") if m else None
        cut_off = value == "-1"
        upper = command.upper()
        if code == "200" and not cut_off and upper.startswith(_AGI_CONTROL):
            return []  # an acknowledgement, not a step of the journey (see the module notes)
        hangup = cut_off and leg.hangup_requested
        if code == "200" and upper.startswith("GET DATA"):
            return [
                DigitsCollected(
                    pbx=self.pbx,
                    call_id=leg.call_id,
                    at=at,
                    channel=leg.channel,
                    digits="" if cut_off else (value or ""),
                    command_id=command_id,
                    hangup=hangup,
                )
            ]
        return [
            PromptFinished(
                pbx=self.pbx,
                call_id=leg.call_id,
                at=at,
                channel=leg.channel,
                command_id=command_id,
                result=reply,
                hangup=hangup,
            )
        ]

    def _on_async_agi_end(self, msg: AmiMessage, at: datetime) -> list[Event]:
        leg = self._legs.get(msg.get("Channel") or "")
        if leg is None:
            return []
        call = self._calls.get(leg.call_id)
        if call is not None:
            call.controlled = False
        return [ControllerReleased(pbx=self.pbx, call_id=leg.call_id, at=at, channel=leg.channel)]

    # -- queue: caller side -------------------------------------------------------------------
    def _on_queue_caller_join(self, msg: AmiMessage, at: datetime) -> list[Event]:
        events: list[Event] = []
        found = self._caller(msg, at, events)
        queue = msg.get("Queue")
        if found is None or not queue:
            return events
        leg, call = found
        self._start_queue_stay(call, queue)
        events.append(
            QueueJoined(
                pbx=self.pbx,
                call_id=call.call_id,
                at=at,
                channel=leg.channel,
                queue=queue,
                position=_int(msg.get("Position")),
                count=_int(msg.get("Count")),
            )
        )
        return events

    def _on_queue_caller_abandon(self, msg: AmiMessage, at: datetime) -> list[Event]:
        # Emitted at the QueueCallerLeave that always follows (README: "it comes before
        # QueueCallerLeave"), so the reason is decided once.
        leg = self._legs.get(msg.get("Channel") or "")
        call = self._calls.get(leg.call_id) if leg else None
        if call is not None:
            call.abandon = (msg.get("Queue") or "", _int(msg.get("Position")), _int(msg.get("HoldTime")))
        return []

    def _on_queue_caller_leave(self, msg: AmiMessage, at: datetime) -> list[Event]:
        leg = self._legs.get(msg.get("Channel") or "")
        call = self._calls.get(leg.call_id) if leg else None
        queue = msg.get("Queue") or ""
        if leg is None or call is None:
            return []
        position = _int(msg.get("Position"))
        hold_s: int | None = None
        if call.abandon is not None and call.abandon[0] == queue:
            _, position, hold_s = call.abandon
            reason = QueueLeaveReason.REDIRECT if call.moved_in_queue else QueueLeaveReason.ABANDON
        elif call.queue_answered:
            reason = QueueLeaveReason.ANSWERED
        elif call.last_dtmf_at is not None and at - call.last_dtmf_at <= EXIT_KEY_WINDOW:
            reason = QueueLeaveReason.EXIT_KEY
        else:
            reason = QueueLeaveReason.TIMEOUT
        call.queue = None
        call.abandon = None
        call.moved_in_queue = False
        return [
            QueueLeft(
                pbx=self.pbx,
                call_id=call.call_id,
                at=at,
                channel=leg.channel,
                queue=queue,
                reason=reason,
                position=position,
                hold_s=hold_s,
            )
        ]

    # -- queue: member side -------------------------------------------------------------------
    def _member(self, msg: AmiMessage) -> _Leg | None:
        leg = self._legs.get(msg.get("DestChannel") or "")
        return leg if leg is not None and leg.kind == "agent" else None

    def _on_agent_called(self, msg: AmiMessage, at: datetime) -> list[Event]:
        dest = msg.get("DestChannel")
        interface = msg.get("Interface") or ""
        call_id = msg.get("Linkedid") or msg.get("DestLinkedid")
        if not dest or not call_id:
            return []
        leg = self._legs.get(dest)
        if leg is None:
            leg = self._track(_Leg(dest, msg.get("DestUniqueid") or "", call_id, "agent"), at)
        leg.kind = "agent"
        leg.call_id = call_id
        leg.queue = msg.get("Queue")
        leg.interface = interface
        leg.member_name = _known(msg.get("MemberName"))
        return [
            AgentOffered(
                pbx=self.pbx,
                call_id=call_id,
                at=at,
                channel=msg.get("Channel"),
                queue=leg.queue,
                agent=interface,
                agent_name=leg.member_name,
                agent_channel=dest,
            )
        ]

    def _on_dial_begin(self, msg: AmiMessage, at: datetime) -> list[Event]:
        """A Dial() by the caller's own channel, not by app_queue: the dialplan rings the
        customer's personal agent first (sticky routing, cc-queue with CC_STICKY_AGENT).

        For queue members AgentCalled always comes first (answered_caller_hangup: AgentCalled,
        then DialBegin for the same DestChannel), so a DialBegin whose DestChannel no
        AgentCalled announced is a direct dial. Its fields are the ones app_queue's dials
        show (Channel* caller snapshot, Dest* callee snapshot, DialString = the dialled
        interface): both go through the same dial API in Asterisk (main/dial.c / app_dial.c
        publish ast_channel_publish_dial for either)."""
        caller, dest = msg.get("Channel"), msg.get("DestChannel")
        if not caller or not dest:
            return []
        known = self._legs.get(dest)
        if known is not None and known.kind != "other":  # a queue member (AgentCalled) or a spy leg
            return []
        call = self._calls.get(msg.get("Linkedid") or "")
        if call is None or call.caller_channel != caller:
            return []
        # The agent is the DestChannel's device (PJSIP/1002-00000005 -> PJSIP/1002): app_dial's
        # DialString is only the resource ("1002" for Dial(PJSIP/1002); whisper_barge's
        # Originate shows DialString: 1009), unlike app_queue's full interface.
        interface = dest.rsplit("-", 1)[0]
        # The callee's Newchannel came first and tracked it as an "other" leg of the call.
        leg = known or self._track(_Leg(dest, msg.get("DestUniqueid") or "", call.call_id, "agent"), at)
        leg.kind, leg.call_id = "agent", call.call_id
        leg.interface, leg.direct, leg.dialed_at = interface, True, at
        leg.member_name = _known(msg.get("DestCallerIDName"))
        return [AgentOffered(pbx=self.pbx, call_id=call.call_id, at=at, channel=caller, queue=None,
                             agent=interface, agent_name=leg.member_name, agent_channel=dest)]

    def _on_direct_dial_end(self, leg: _Leg, msg: AmiMessage, at: datetime) -> list[Event]:
        status = msg.get("DialStatus") or ""
        ring_s = (at - leg.dialed_at).total_seconds() if leg.dialed_at else None
        common: dict[str, Any] = {"pbx": self.pbx, "call_id": leg.call_id, "at": at, "channel": msg.get("Channel"),
                                  "queue": None, "agent": leg.interface or "", "agent_name": leg.member_name}
        if status == "ANSWER":
            leg.answered = leg.ring_closed = True
            call = self._calls.get(leg.call_id)
            if call is not None:
                call.connected_agent_channel = leg.channel
            return [AgentConnected(**common, hold_s=None, ring_s=round(ring_s) if ring_s is not None else None,
                                   agent_channel=leg.channel)]
        if leg.ring_closed or leg.answered:
            return []
        leg.ring_closed = True
        if status == "CANCEL":  # the caller hung up while the agent's phone rang
            return [AgentRingCanceled(**common)]
        # NOANSWER (Dial's timeout: CC_STICKY_S), BUSY, CHANUNAVAIL, CONGESTION: the queue comes next.
        return [AgentRingNoAnswer(**common, ring_ms=round(ring_s * 1000) if ring_s is not None else None)]

    def _on_dial_end(self, msg: AmiMessage, at: datetime) -> list[Event]:
        # Originate-created legs have only Dest* fields (no caller Channel): nothing to do.
        if not msg.get("Channel"):
            return []
        member = self._member(msg)
        if member is None:
            return []
        if member.direct:
            return self._on_direct_dial_end(member, msg, at)
        status = msg.get("DialStatus")
        if status == "ANSWER":
            member.answered = True
            call = self._calls.get(member.call_id)
            if call is not None:
                call.queue_answered = True
            return []
        # A member still ringing when the caller leaves/is moved/another member answers gets
        # DialEnd CANCEL and no AgentRingNoAnswer. A ring timeout gives AgentRingNoAnswer and
        # then DialEnd NOANSWER *and* CANCEL; a redirect gives CANCEL twice: report once.
        if status == "CANCEL" and not member.ring_closed and not member.answered:
            member.ring_closed = True
            return [
                AgentRingCanceled(
                    pbx=self.pbx,
                    call_id=member.call_id,
                    at=at,
                    channel=msg.get("Channel"),
                    queue=member.queue,
                    agent=member.interface or "",
                    agent_name=member.member_name,
                )
            ]
        return []

    def _on_agent_ring_no_answer(self, msg: AmiMessage, at: datetime) -> list[Event]:
        member = self._member(msg)
        if member is not None:
            member.ring_closed = True
        call_id = msg.get("Linkedid") or (member.call_id if member else None)
        return [
            AgentRingNoAnswer(
                pbx=self.pbx,
                call_id=call_id,
                at=at,
                channel=msg.get("Channel"),
                queue=msg.get("Queue"),
                agent=msg.get("Interface") or "",
                agent_name=_known(msg.get("MemberName")),
                ring_ms=_int(msg.get("RingTime")),  # milliseconds, unlike every other queue time
            )
        ]

    def _on_agent_connect(self, msg: AmiMessage, at: datetime) -> list[Event]:
        call_id = msg.get("Linkedid")
        call = self._calls.get(call_id or "")
        if call is not None:
            call.connected_agent_channel = msg.get("DestChannel")
        return [
            AgentConnected(
                pbx=self.pbx,
                call_id=call_id,
                at=at,
                channel=msg.get("Channel"),
                queue=msg.get("Queue"),
                agent=msg.get("Interface") or "",
                agent_name=_known(msg.get("MemberName")),
                hold_s=_int(msg.get("HoldTime")),
                ring_s=_int(msg.get("RingTime")),
                agent_channel=msg.get("DestChannel"),
            )
        ]

    def _on_agent_complete(self, msg: AmiMessage, at: datetime) -> list[Event]:
        reason = (msg.get("Reason") or "").lower()
        ended_by = {
            "caller": HangupParty.CALLER,
            "agent": HangupParty.AGENT,
            "transfer": HangupParty.AGENT,
        }.get(reason, HangupParty.UNKNOWN)
        call_id = msg.get("Linkedid")
        call = self._calls.get(call_id or "")
        if call is not None:
            call.connected_agent_channel = None
            call.end_party = ended_by if ended_by is not HangupParty.UNKNOWN else call.end_party
        return [
            AgentCompleted(
                pbx=self.pbx,
                call_id=call_id,
                at=at,
                channel=msg.get("Channel"),
                queue=msg.get("Queue"),
                agent=msg.get("Interface") or "",
                agent_name=_known(msg.get("MemberName")),
                hold_s=_int(msg.get("HoldTime")),
                talk_s=_int(msg.get("TalkTime")),
                ended_by=ended_by,
            )
        ]

    # -- queue members (no call) --------------------------------------------------------------
    def _member_status_event(self, interface: str, status: str | None, name: str | None, at: datetime) -> list[Event]:
        # QueueMemberStatus repeats once per queue the interface is in, with the same device
        # state: report a device state change once.
        if status is None or self._member_status.get(interface) == status:
            return []
        self._member_status[interface] = status
        return [
            AgentStatusChanged(
                pbx=self.pbx, call_id=None, at=at, agent=interface, status=device_state(status), agent_name=name
            )
        ]

    def _member_pause_event(self, msg: AmiMessage, interface: str, name: str | None, at: datetime) -> list[Event]:
        # Pause is per queue in app_queue (QueuePause with or without Queue:), so the event
        # carries the queue; unchanged repeats are dropped.
        queue = msg.get("Queue") or ""
        paused = msg.get("Paused") in ("1", "true", "yes")
        reason = (msg.get("PausedReason") or None) if paused else None
        key = (interface, queue)
        if self._member_pause.get(key) == (paused, reason):
            return []
        self._member_pause[key] = (paused, reason)
        return [
            AgentPauseChanged(
                pbx=self.pbx,
                call_id=None,
                at=at,
                agent=interface,
                paused=paused,
                reason=reason,
                agent_name=name,
                queue=queue or None,
            )
        ]

    def _on_queue_member_status(self, msg: AmiMessage, at: datetime) -> list[Event]:
        interface = msg.get("Interface")
        if not interface:
            return []
        if msg.get("Queue"):
            self._members.add((interface, msg["Queue"]))
        return self._member_status_event(interface, msg.get("Status"), _known(msg.get("MemberName")), at)

    def _on_queue_member_pause(self, msg: AmiMessage, at: datetime) -> list[Event]:
        interface = msg.get("Interface")
        if not interface:
            return []
        if msg.get("Queue"):
            self._members.add((interface, msg["Queue"]))
        return self._member_pause_event(msg, interface, _known(msg.get("MemberName")), at)

    def _on_queue_member_added(self, msg: AmiMessage, at: datetime) -> list[Event]:
        interface, queue = msg.get("Interface"), msg.get("Queue")
        if not interface or not queue:
            return []
        paused = msg.get("Paused") in ("1", "true", "yes")
        self._member_pause[(interface, queue)] = (paused, (msg.get("PausedReason") or None) if paused else None)
        self._members.add((interface, queue))
        return [
            QueueMemberChanged(
                pbx=self.pbx,
                call_id=None,
                at=at,
                agent=interface,
                queue=queue,
                added=True,
                agent_name=_known(msg.get("MemberName")),
                penalty=_int(msg.get("Penalty")),
            )
        ]

    def _on_queue_member_removed(self, msg: AmiMessage, at: datetime) -> list[Event]:
        interface, queue = msg.get("Interface"), msg.get("Queue")
        if not interface or not queue:
            return []
        self._member_pause.pop((interface, queue), None)
        self._members.discard((interface, queue))
        return [
            QueueMemberChanged(
                pbx=self.pbx,
                call_id=None,
                at=at,
                agent=interface,
                queue=queue,
                added=False,
                agent_name=_known(msg.get("MemberName")),
                penalty=_int(msg.get("Penalty")),
            )
        ]

    # -- supervisor spy -----------------------------------------------------------------------
    def _spy_event(
        self,
        cls: type[SpyStarted] | type[SpyStopped],
        call_id: str,
        spyer: str,
        target: str,
        mode: SpyMode | None,
        at: datetime,
    ) -> Event:
        return cls(
            pbx=self.pbx, call_id=call_id, at=at, channel=spyer, spyer_channel=spyer, target_channel=target, mode=mode
        )

    def _on_chanspy_start(self, msg: AmiMessage, at: datetime) -> list[Event]:
        spyer = msg.get("SpyerChannel")
        target = msg.get("SpyeeChannel")
        spied = msg.get("SpyeeLinkedid")
        if not spyer or not target or not spied:
            return []
        leg = self._leg(msg, at, prefix="Spyer")
        mode = None
        if leg is not None:
            # ChanSpyStart says nothing about whisper/barge: the spyer's own ChanSpy AppData
            # does, else the CC_SPY_MODE our Originate set.
            mode = leg.spy_mode_app or leg.spy_mode_var
            leg.spying = (spied, target, mode)
        return [self._spy_event(SpyStarted, spied, spyer, target, mode, at)]

    def _on_chanspy_stop(self, msg: AmiMessage, at: datetime) -> list[Event]:
        spyer = msg.get("SpyerChannel")
        target = msg.get("SpyeeChannel")
        spied = msg.get("SpyeeLinkedid")
        if not spyer or not target or not spied:
            return []
        leg = self._legs.get(spyer)
        mode = None
        if leg is not None:
            mode = leg.spying[2] if leg.spying else (leg.spy_mode_app or leg.spy_mode_var)
            leg.spying = None
        return [self._spy_event(SpyStopped, spied, spyer, target, mode, at)]

    def _on_originate_response(self, msg: AmiMessage, at: datetime) -> list[Event]:
        # An *event* that also carries Response: and the Originate's ActionID.
        code = msg.get("Reason") or ""
        extra = {"reason_code": code}
        if msg.get("Uniqueid"):
            extra["uniqueid"] = msg["Uniqueid"]
        return [
            OriginateResult(
                pbx=self.pbx,
                call_id=None,
                at=at,
                channel=_known(msg.get("Channel")),
                request_id=msg.get("ActionID") or "",
                success=msg.get("Response") == "Success",
                reason=_ORIGINATE_REASONS.get(code, code or None),
                extra=extra,
            )
        ]

    def _on_user_event(self, msg: AmiMessage, at: datetime) -> list[Event]:
        """``UserEvent(CcCallback, CallbackId: n, Attempt: n, DialStatus: ...)`` from
        ``[cc-callback]``: the customer leg of an agent-first callback ended. Other user events
        (the admin's own) are not ours and are ignored."""
        if (msg.get("UserEvent") or "") != CALLBACK_USER_EVENT:
            return []
        try:
            callback_id = int(msg.get("CallbackId") or "")
            attempt = int(msg.get("Attempt") or "")
        except ValueError:
            self.unknown["UserEvent CcCallback without CallbackId/Attempt"] += 1
            return []
        return [CallbackDialed(
            pbx=self.pbx, call_id=None, at=at, channel=_known(msg.get("Channel")), callback_id=callback_id,
            attempt=attempt, dial_status=(msg.get("DialStatus") or "").upper(),
            callback_call_id=_known(msg.get("Linkedid")) or _known(msg.get("Uniqueid")),
        )]


HANDLED_EVENTS: frozenset[str] = frozenset(AsteriskTranslator("_")._handlers)
