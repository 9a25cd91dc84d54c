"""A simulated Asterisk 22 that speaks real AMI on loopback and plays whole calls.

The AMI traffic imitates the captures in ``tests/fixtures/asterisk`` (Asterisk 22.10.1, see
TRACES_README.md there): the same events, fields, order and quirks for the same situations.
What the controller's translator reads is reproduced exactly; noise (VarSet bookkeeping,
DeviceStateChange) is reduced and switchable (``noise=False``); RTCPSent is not produced.

Layers
    * :class:`~callcenter.sim.kernel.Kernel` -- virtual time. ``speed=10`` runs ten times faster
      than real time; ``speed=math.inf`` is stepped (``advance()``), for controller-less runs.
      Given the same seed and the same AMI input at the same virtual times, the output is the same.
    * the dialplan -- ``dialplans/asterisk/extensions_callcenter.conf`` itself, parsed by
      :mod:`callcenter.sim.dialplan` and run application by application (``cc-inbound`` with the
      AsyncAGI fail-open guard, ``cc-queue`` with sticky routing, ``cc-voicemail``, ``cc-spy``,
      ``cc-inbound-static``/``cc-ivr-main``), so the simulator follows the file as it changes.
    * applications -- ``Answer``, ``Set`` (TIMEOUT(absolute), CALLERID(), CHANNEL()),
      ``Goto``/``GotoIf``/``ExecIf``, ``AGI(agi:async)``, ``Queue``, ``Dial``, ``VoiceMail``,
      ``BackGround``/``WaitExten``/``Playback``, ``ChanSpy``, ``MusicOnHold``, ``Wait``,
      ``Hangup``, ``NoOp`` (any other application acts as NoOp; a test pins that the shipped
      dialplan uses none).
    * app_queue -- strategies ringall / rrmemory (roundrobin) / leastrecent / fewestcalls /
      linear / random, member penalty with QUEUE_MIN/MAX_PENALTY, paused members (with reason),
      ring timeout and retry, callers ordered by QUEUE_PRIO, queue weight, autofill, the 1 s
      re-check of waiting callers, ringinuse=no, joinempty=yes, leavewhenempty=no.
    * endpoints -- SIP phones with a behaviour (answer after N s / reject 486 / never answer,
      hang up after a talk time); a caller script per call (digits per prompt, patience by stage).

AMI actions handled like Asterisk 22 (responses as in the traces): Login/Logoff/Events/Ping,
AGI (STREAM FILE, GET DATA, WAIT FOR DIGIT, SET/GET VARIABLE, ANSWER, HANGUP, NOOP, ASYNCAGI
BREAK ...), Setvar, Getvar, Redirect, Hangup, Originate (Async or not), QueuePause, QueueAdd,
QueueRemove, QueueStatus, QueueSummary, CoreShowChannels, Status, CoreStatus,
PJSIPShowEndpoints, Command; unknown actions get the error and a RequestBadFormat event.

Usage (an end-to-end test; ``clock=sim.clock`` keeps the client's timestamps on virtual time)::

    async with AsteriskSim(seed=1, speed=20, epoch=1_795_360_000) as sim:
        client = AmiClient("127.0.0.1", sim.port, "ctl", "ctlsecret", workers=0, clock=sim.clock)
        ...
        call = sim.call("+12025550143", did="5550110", digits=["1"], patience_s=60)
        await call.wait("controller")          # AsyncAGIStart was sent
        ...                                   # the controller drives the call
        await call.ended(timeout=10)
        assert call.outcome == "answered"
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import math
import random
import shlex
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from callcenter.pbx.asterisk.message import AmiMessage
from callcenter.pbx.asterisk.protocol import AmiParser
from callcenter.sim.ami_server import (
    _PRIVILEGE,
    AmiSession,
    FakeAmiServer,
    FakeChannel,
    FakeMember,
    FakeQueue,
    Fields,
    ami_uri_encode,
)
from callcenter.sim.dialplan import (
    Dialplan,
    Resolver,
    Step,
    _closing,
    _lookup,
    evaluate,
    parse_dialplan,
    split_app,
)
from callcenter.sim.kernel import Kernel, Proc, Signal, Timer

__all__ = [
    "DEFAULT_DIALPLAN",
    "AgentBehavior",
    "AsteriskSim",
    "CallScript",
    "Endpoint",
    "SimCall",
    "SimChannel",
    "SimMember",
    "SimQueue",
]

log = logging.getLogger(__name__)

DEFAULT_DIALPLAN = Path(__file__).resolve().parents[2] / "dialplans" / "asterisk" / "extensions_callcenter.conf"

# Q.850 cause texts as Asterisk prints them in Hangup events.
CAUSE_TEXT = {
    0: "Unknown",
    1: "Unallocated (unassigned) number",
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    21: "Call Rejected",
    26: "Answered elsewhere",
    34: "Circuit/channel congestion",
}
STATE_DESC = {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up"}
DEVICE_TEXT = {1: "NOT_INUSE", 2: "INUSE", 6: "RINGING", 5: "UNAVAILABLE"}
ENDPOINT_TEXT = {1: "Not in use", 2: "In use", 6: "Ringing", 5: "Unavailable"}

# Prompt lengths (s). hello-world: STREAM FILE took 1.42 s and reported endpos=11360 (8 kHz).
PROMPTS = {"hello-world": 1.42, "option-is-invalid": 1.6, "beep": 0.25, "vm-unavail": 4.0, "vm-goodbye": 1.0}
DEFAULT_PROMPT_S = 2.0
SAMPLE_RATE = 8000

# Registered application names (Newexten prints these whatever case the dialplan used).
APP_NAMES = {
    n.lower(): n
    for n in (
        "Answer",
        "NoOp",
        "Set",
        "Goto",
        "GotoIf",
        "ExecIf",
        "AGI",
        "Queue",
        "Hangup",
        "BackGround",
        "WaitExten",
        "Playback",
        "ChanSpy",
        "MusicOnHold",
        "Wait",
        "Dial",
        "VoiceMail",
        "UserEvent",
    )
}

StrategyName = Literal["ringall", "rrmemory", "roundrobin", "leastrecent", "fewestcalls", "linear", "random"]
Entry = Literal["controller", "static"]


# -- interrupts thrown into dialplan processes ---------------------------------------------------
class _Interrupt(Exception):
    pass


class HangupRequested(_Interrupt):
    """The channel is being hung up: the caller's BYE or an AMI/AGI/dialplan hangup."""

    def __init__(self, cause: int = 16) -> None:
        super().__init__(cause)
        self.cause = cause


class AsyncGoto(_Interrupt):
    """AMI Redirect: continue at another dialplan location."""

    def __init__(self, context: str, exten: str, priority: int) -> None:
        super().__init__(context, exten, priority)
        self.target = (context, exten, priority)


class AbsoluteTimeout(_Interrupt):
    """TIMEOUT(absolute) fired (no hangup request event; the PBX jumps to T if it exists)."""


class PeerHangup(_Interrupt):
    """The bridged (or ringing) agent leg was hung up via AMI."""

    def __init__(self, leg: SimChannel, cause: int) -> None:
        super().__init__(leg.name, cause)
        self.leg = leg
        self.cause = cause


class _Gone(Exception):
    """The channel is completely hung up already (its Hangup event is out)."""


class _QueueTimeout(Exception):
    """Queue()'s own timeout argument ran out."""


class _DialplanHangup(Exception):
    """The Hangup() application ran."""


class _QueueContinue(Exception):
    """Queue() option ``c``: the agent hung up and the caller goes on in the dialplan."""


# -- configuration ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AgentBehavior:
    """What a phone does when it is rung.

    ``action``: ``answer`` after ``ring_s``; ``reject`` (486 Busy Here at once: DialEnd NOANSWER,
    AgentRingNoAnswer RingTime 0, as in queue_abandon); ``noanswer`` (rings until the caller side
    gives up). ``talk_s``: the phone hangs up this long after answering (None: never first).
    """

    action: Literal["answer", "reject", "noanswer"] = "answer"
    ring_s: float = 2.0
    talk_s: float | None = None


BehaviorSpec = AgentBehavior | Callable[["SimCall | None"], AgentBehavior]


@dataclass(eq=False)
class Endpoint:
    """A PJSIP endpoint (agent or supervisor phone)."""

    ext: str
    name: str  # queue member name ("Alice")
    caller_name: str  # the phone's CallerID name ("Agent Alice")
    behavior: BehaviorSpec = field(default_factory=AgentBehavior)
    context: str = "from-agents"
    devstate: int = 1
    registered: bool = True
    active: int = 0  # live channels of this phone (a leg being dialled is not free any more)

    @property
    def interface(self) -> str:
        return f"PJSIP/{self.ext}"

    def behavior_for(self, call: SimCall | None) -> AgentBehavior:
        spec = self.behavior
        return spec(call) if callable(spec) else spec


@dataclass(eq=False)
class SimMember(FakeMember):
    calls_taken: int = 0
    last_call: int = 0
    last_pause: int = 0
    login_time: int = 0
    in_call: bool = False

    __eq__ = object.__eq__
    __hash__ = object.__hash__


@dataclass(eq=False)
class SimQueue(FakeQueue):
    timeout: float = 15.0
    retry: float = 5.0
    service_level: int = 30
    rrpos: int = 0
    holdtime: int = 0
    talktime: int = 0
    completed: int = 0
    abandoned: int = 0
    completed_in_sl: int = 0
    entries: list[_QueueEntry] = field(default_factory=list)
    signal: Signal | None = None

    def member(self, interface: str) -> SimMember | None:
        for m in self.members:
            if m.interface == interface:
                assert isinstance(m, SimMember)
                return m
        return None


@dataclass(frozen=True, slots=True)
class CallScript:
    """A caller: who, where, what they key and how long they wait.

    ``entry``: ``controller`` -> ``cc-inbound`` (AsyncAGI), ``static`` -> ``cc-inbound-static``.
    ``digits``: one item per prompt that waits for input (GET DATA / WAIT FOR DIGIT, or one pass
    through the static menu): ``None`` = no key, ``"12"`` = keys ``key_delay_s`` after the prompt
    starts (0.25 s apart), ``("1", 3.0)`` = with its own delay.
    Patience (virtual seconds; the earliest that applies wins; None = stays): ``patience_s``
    from arrival until an agent answers, ``ivr_patience_s`` from answer until the first queue,
    ``queue_patience_s`` from the first queue join, ``ring_patience_s`` into an agent's ringing.
    ``talk_s``: hangs up this long after an agent answered (None: waits for the agent).
    """

    number: str
    name: str | None = None
    did: str = "5550110"
    entry: Entry = "controller"
    digits: tuple[str | tuple[str, float] | None, ...] = ()
    key_delay_s: float = 1.0
    patience_s: float | None = None
    ivr_patience_s: float | None = None
    queue_patience_s: float | None = None
    ring_patience_s: float | None = None
    talk_s: float | None = 30.0
    message_s: float | None = 10.0  # in VoiceMail: speaks this long after the beep, then hangs up


@dataclass(eq=False)
class SimChannel(FakeChannel):
    kind: Literal["caller", "agent", "originated"] = "caller"
    endpoint: str = ""
    created: float = 0.0
    dnid: str = ""
    proc: Proc | None = None
    call: SimCall | None = None
    inherit: dict[str, int] = field(default_factory=dict)  # var -> 1 ("_") or 2 ("__")
    timeout_timer: Timer | None = None
    last_loc: tuple[str, str, int] | None = None
    agi: _Agi | None = None
    bridge: _Bridge | None = None
    peer: SimChannel | None = None
    gone: bool = False
    hanging_up: bool = False
    bye: bool = False
    explicit_cause: int | None = None
    menu_keys: tuple[str, float] | None = None
    menu_pending: bool = False
    spies: list[SimChannel] = field(default_factory=list)
    spying: SimChannel | None = None
    spy_signal: Signal | None = None
    entry: _QueueEntry | None = None  # queue stay (caller legs)
    leg: _Leg | None = None  # dial state (agent legs)

    # identity, not field equality: channels point at each other (bridge peers, spies)
    __eq__ = object.__eq__
    __hash__ = object.__hash__


@dataclass(eq=False)
class _Agi:
    signal: Signal
    queue: deque[tuple[str, str]] = field(default_factory=deque)


@dataclass(eq=False)
class _Bridge:
    uniqueid: str
    channels: list[SimChannel] = field(default_factory=list)


@dataclass(eq=False)
class _Leg:
    channel: SimChannel
    member: SimMember | None  # None: a leg of the caller's own Dial()
    endpoint: Endpoint
    behavior: AgentBehavior
    start: float
    signal: Signal  # wakes whoever waits for this dial (the queue entry or the Dial app)
    phase: str = "dialing"  # dialing -> ringing | rejected | answered | done
    next_at: float = 0.0
    killed: int | None = None  # AMI hangup cause while ringing

    @property
    def qmember(self) -> SimMember:
        assert self.member is not None, "a queue member's leg"
        return self.member


@dataclass(eq=False)
class _QueueEntry:
    channel: SimChannel
    queue: SimQueue
    prio: int
    start: float
    original_position: int
    min_penalty: int | None
    max_penalty: int | None
    deadline: float | None
    args: str
    signal: Signal  # dial-leg progress while ringing
    turn: Signal  # its recheck tick while waiting for its turn (see AsteriskSim._wait_turn)
    legs: list[_Leg] = field(default_factory=list)
    pending: bool = False
    waiting: bool = False  # in wait_our_turn
    base: float = 0.0  # when it started waiting: the origin of its 1 s recheck grid
    tick: Timer | None = None  # its next recheck, once something may have made it its turn


# -- calls ------------------------------------------------------------------------------------------
class SimCall:
    """One scripted call and what happened to it (``history``: (virtual time, kind, detail)).

    Kinds: arrived, answered, controller, released, ivr_node, dtmf, failopen, queue,
    ringing, connected, left_queue, voicemail, ended. ``outcome`` once ended: answered,
    voicemail, abandon_ivr, abandon_queue, abandon_ringing, or system (hung up by the
    PBX/controller)."""

    def __init__(self, sim: AsteriskSim, script: CallScript, index: int) -> None:
        self.sim = sim
        self.script = script
        self.index = index
        self.channel: str | None = None
        self.call_id: str | None = None
        self.history: list[tuple[float, str, dict[str, Any]]] = []
        self.stage: Literal["pending", "arriving", "ivr", "queue", "talk", "voicemail", "ended"] = "pending"
        self.arrived_at: float | None = None
        self.answered_at: float | None = None
        self.first_queue_at: float | None = None
        self.connected_at: float | None = None
        self.ringing_since: float | None = None
        self.recording_at: float | None = None
        self.ended_at: float | None = None
        self.hangup_by: str | None = None
        self.hung_up_by: str | None = None
        self.cause: int | None = None
        self.outcome: str | None = None
        self.menu = 0
        self.signal = Signal(sim.kernel, f"call-{index}")
        self._waiters: list[tuple[str, dict[str, Any], asyncio.Future[dict[str, Any]]]] = []

    def __repr__(self) -> str:
        return f"<SimCall {self.index} {self.script.number} {self.channel} {self.stage} {self.outcome}>"

    def log(self, kind: str, **detail: Any) -> None:
        self.history.append((self.sim.kernel.now(), kind, detail))
        self.signal.fire()
        still = []
        for k, match, fut in self._waiters:
            if fut.done():
                continue
            if k == kind and all(detail.get(mk) == mv for mk, mv in match.items()):
                fut.set_result(detail)
            else:
                still.append((k, match, fut))
        self._waiters = still

    def find(self, kind: str, **match: Any) -> dict[str, Any] | None:
        for _, k, detail in self.history:
            if k == kind and all(detail.get(mk) == mv for mk, mv in match.items()):
                return detail
        return None

    def kinds(self) -> list[str]:
        return [k for _, k, _ in self.history]

    async def wait(self, kind: str, *, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """Wait (``timeout`` real seconds) until ``kind`` happened with the given details, e.g.
        ``await call.wait("queue", queue="sales")`` or ``await call.wait("connected")``."""
        found = self.find(kind, **match)
        if found is not None:
            return found
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.append((kind, match, fut))
        async with asyncio.timeout(timeout):
            return await fut

    async def ended(self, timeout: float = 30.0) -> SimCall:
        await self.wait("ended", timeout=timeout)
        return self

    # -- caller keys ------------------------------------------------------------------------
    def next_keys(self) -> tuple[str, float] | None:
        digits = self.script.digits
        item = digits[self.menu] if self.menu < len(digits) else None
        self.menu += 1
        if item is None or item == "":
            return None
        if isinstance(item, tuple):
            return item[0], float(item[1])
        return item, self.script.key_delay_s

    # -- patience ---------------------------------------------------------------------------
    def patience_deadline(self) -> float | None:
        s = self.script
        cands: list[float] = []
        if self.stage == "talk":
            if s.talk_s is not None and self.connected_at is not None:
                cands.append(self.connected_at + s.talk_s)
        elif self.stage == "voicemail":
            if s.message_s is not None and self.recording_at is not None:
                cands.append(self.recording_at + s.message_s)
        elif self.stage in ("arriving", "ivr", "queue"):
            if s.patience_s is not None and self.arrived_at is not None:
                cands.append(self.arrived_at + s.patience_s)
            if self.stage == "ivr" and s.ivr_patience_s is not None and self.answered_at is not None:
                cands.append(self.answered_at + s.ivr_patience_s)
            if self.stage == "queue" and s.queue_patience_s is not None and self.first_queue_at is not None:
                cands.append(self.first_queue_at + s.queue_patience_s)
            if s.ring_patience_s is not None and self.ringing_since is not None:
                cands.append(self.ringing_since + s.ring_patience_s)
        return min(cands) if cands else None


# -- the simulator --------------------------------------------------------------------------------
class AsteriskSim(FakeAmiServer):
    """A simulated Asterisk 22 PBX on loopback AMI (see the module docstring)."""

    def __init__(
        self,
        *,
        seed: int = 0,
        speed: float = 1.0,
        epoch: float | None = None,
        username: str = "ctl",
        secret: str = "ctlsecret",
        host: str = "127.0.0.1",
        port: int = 0,
        lab: bool = True,
        noise: bool = True,
        dialplan: str | Path | None = None,
        record_events: bool = False,
        kernel: Kernel | None = None,
    ) -> None:
        super().__init__(username=username, secret=secret, host=host, port=port)
        self.rng = random.Random(seed)
        # An injected kernel (its own speed/epoch) lets several simulated PBXs share one clock.
        self.kernel = kernel if kernel is not None else Kernel(speed=speed, epoch=epoch)
        self.noise = noise
        source = DEFAULT_DIALPLAN if dialplan is None else dialplan
        if isinstance(source, Path) and not source.exists():
            raise FileNotFoundError(f"dialplan {source} not found: pass dialplan= (a path or the text)")
        self.dialplan: Dialplan = parse_dialplan(source)
        self.endpoints: dict[str, Endpoint] = {}
        self.channels: dict[str, SimChannel] = {}  # type: ignore[assignment]
        self.queues: dict[str, SimQueue] = {}  # type: ignore[assignment]
        self.calls: list[SimCall] = []
        self.queue_log: list[str] = []
        self.event_log: list[tuple[float, bytes]] | None = [] if record_events else None
        self.started_at = self.kernel.now()
        # timing knobs (virtual seconds, measured in the traces)
        self.answer_delay = 0.014  # Answer -> next priority
        self.agi_exec_delay = 0.02  # Action: AGI -> AGIExecStart (res_agi's async loop)
        self.reject_delay = 0.002  # INVITE -> 486
        self.alert_delay = 0.001  # INVITE -> 180 Ringing
        self.chanspy_delay = 0.1  # ChanSpy start -> ChanSpyStart
        self.originate_answer_gap = 0.0005  # OriginateResponse after the first dialplan steps
        self.recheck_s = 1.0  # app_queue's RECHECK: waiting callers look again every second
        self.voicemail_max_s = 300.0
        self.voicemail_min_s = 1.0
        self.mailboxes: dict[str, int] = {}
        self._version = 0  # bumped whenever member availability may have changed
        self._avail_cache: dict[tuple[str, int], int] = {}
        self.digit_gap_s = 0.25
        self._chan_seq = itertools.count(0)
        self._call_seq = itertools.count(1)
        self._channels_changed = Signal(self.kernel, "channels")
        self._trunk_active = 0
        self.kernel.throttle = self._throttle
        self._handlers.update(
            {
                "originate": self._act_originate,
                "getvar": self._act_getvar,
                "setvar": self._act_setvar,
                "agi": self._act_agi,
                "hangup": self._act_hangup,
                "redirect": self._act_redirect,
                "coreshowchannels": self._act_coreshowchannels,
                "queuestatus": self._act_queuestatus,
                "queuesummary": self._act_queuesummary,
                "queuepause": self._act_queuepause,
                "queueadd": self._act_queueadd,
                "queueremove": self._act_queueremove,
                "status": self._act_status,
                "corestatus": self._act_corestatus,
                "pjsipshowendpoints": self._act_pjsipshowendpoints,
                "ping": self._act_ping,
            }
        )
        self.cli["core show version"] = "Asterisk 22.10.1 built by sim @ sim on a x86_64 running Linux"
        if lab:
            self.configure_lab()

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self, *, listen: bool = True) -> AsteriskSim:  # type: ignore[override]
        """Start the clock (and listen for AMI clients unless ``listen=False``)."""
        if listen:
            await super().start()
        self.kernel.start()
        return self

    async def close(self) -> None:
        await self.kernel.stop()
        if self._server is not None:
            await super().close()

    async def __aenter__(self) -> AsteriskSim:
        return await self.start()

    # -- time -----------------------------------------------------------------------------------
    def now(self) -> float:
        return self.kernel.now()

    def clock(self) -> datetime:
        """Virtual time as a UTC datetime: pass as ``AmiClient(clock=sim.clock)``."""
        return datetime.fromtimestamp(self.kernel.now(), UTC)

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass (see ``Kernel.advance``)."""
        await self.kernel.advance(seconds)

    # -- configuration --------------------------------------------------------------------------
    def configure_lab(self) -> None:
        """The lab of the traces: phones 1001 Alice, 1002 Bob, 1003 Carol (not a member), 1009
        Supervisor; queues support + sales (rrmemory) and vip (ringall, weight 10), members
        Alice and Bob at penalty 0. Queue order support, vip, sales = the order Asterisk lists
        them in (QueueMemberStatus/QueueMemberPause come per queue in that order)."""
        self.add_endpoint("1001", "Alice", caller_name="Agent Alice")
        self.add_endpoint("1002", "Bob", caller_name="Agent Bob")
        self.add_endpoint("1003", "Carol", caller_name="Agent Carol")
        self.add_endpoint("1009", "Supervisor", caller_name="Supervisor", behavior=AgentBehavior(ring_s=1.0))
        for q in ("support", "vip", "sales"):
            self.add_queue(
                q,
                strategy="ringall" if q == "vip" else "rrmemory",
                weight=10 if q == "vip" else 0,
                members=[("PJSIP/1001", "Alice", 0), ("PJSIP/1002", "Bob", 0)],
            )

    def add_endpoint(
        self,
        ext: str,
        name: str,
        *,
        caller_name: str | None = None,
        behavior: BehaviorSpec | None = None,
        context: str = "from-agents",
    ) -> Endpoint:
        ep = Endpoint(ext, name, caller_name or name, behavior or AgentBehavior(), context)
        self.endpoints[ext] = ep
        return ep

    def set_behavior(self, ext: str, behavior: BehaviorSpec) -> None:
        self.endpoints[ext].behavior = behavior

    def add_queue(
        self,
        name: str,
        *,
        strategy: StrategyName = "rrmemory",
        timeout: float = 15.0,
        retry: float = 5.0,
        weight: int = 0,
        members: Iterable[tuple[str, str, int] | tuple[str, str]] = (),
    ) -> SimQueue:
        q = SimQueue(name, strategy=strategy, weight=weight, timeout=timeout, retry=retry)
        q.signal = Signal(self.kernel, f"queue-{name}")
        self.queues[name] = q
        for m in members:
            interface, member_name, *rest = m
            self.add_static_member(name, interface, member_name, int(rest[0]) if rest else 0)
        return q

    def add_static_member(self, queue: str, interface: str, name: str = "", penalty: int = 0) -> SimMember:
        """A ``member =>`` line of queues.conf (no event: configuration, not QueueAdd)."""
        q = self.queues[queue]
        m = q.member(interface)
        if m is None:
            m = SimMember(interface, name or interface, penalty, login_time=int(self.kernel.now()))
            q.members.append(m)
            self._queues_changed()
        return m

    # -- calls ----------------------------------------------------------------------------------
    def call(
        self,
        number: str,
        *,
        name: str | None = None,
        did: str = "5550110",
        entry: Entry = "controller",
        digits: Sequence[str | tuple[str, float] | None] = (),
        key_delay_s: float = 1.0,
        patience_s: float | None = None,
        ivr_patience_s: float | None = None,
        queue_patience_s: float | None = None,
        ring_patience_s: float | None = None,
        talk_s: float | None = 30.0,
        message_s: float | None = 10.0,
        at: float | None = None,
    ) -> SimCall:
        """Place a call now (or at virtual time ``at``); returns its record at once."""
        script = CallScript(
            number,
            name,
            did,
            entry,
            tuple(digits),
            key_delay_s,
            patience_s,
            ivr_patience_s,
            queue_patience_s,
            ring_patience_s,
            talk_s,
            message_s,
        )
        return self.place(script, at=at)

    def place(self, script: CallScript, *, at: float | None = None) -> SimCall:
        self.kernel.sync()
        call = SimCall(self, script, next(self._call_seq))
        self.calls.append(call)
        self.kernel.call_at(self.kernel.now() if at is None else at, self._arrive, call)
        return call

    def _arrive(self, call: SimCall) -> None:
        s = call.script
        context = "cc-inbound" if s.entry == "controller" else "cc-inbound-static"
        number = _clean(s.number)
        ch = self._new_channel(
            "caller",
            "pstn",
            caller_num=number,
            caller_name=_clean(s.name) if s.name is not None else f"PSTN {number.lstrip('+')}",
            context=context,
            exten=s.did,
            state=4,
        )
        ch.dnid = s.did
        ch.call = call
        call.channel = ch.name
        call.call_id = ch.uniqueid
        call.arrived_at = self.kernel.now()
        call.stage = "arriving"
        self._trunk(+1)
        self.emit("Newchannel", channel=ch)
        self._noise_var(ch, "SIPDOMAIN", "127.0.0.1")
        call.log("arrived", channel=ch.name, call_id=ch.uniqueid)
        ch.proc = self.kernel.spawn(self._pbx(ch), f"pbx-{ch.name}")
        self.kernel.spawn(self._patience(call), f"patience-{ch.name}")

    async def _patience(self, call: SimCall) -> None:
        """The caller's side: hang up (BYE) when the applicable patience or talk time is over."""
        k = self.kernel
        while call.stage != "ended":
            deadline = call.patience_deadline()
            fired = await k.wait(call.signal, timeout=None if deadline is None else deadline - k.now())
            if fired is None and call.stage != "ended":
                deadline = call.patience_deadline()
                if deadline is not None and deadline <= k.now() + 1e-9:
                    self.caller_hangup(call)
                    return

    def caller_hangup(self, call: SimCall) -> None:
        """The caller sends BYE now: HangupRequest (no cause), then the application unwinds."""
        ch = self.channels.get(call.channel or "")
        if ch is None or ch.gone or ch.hanging_up:
            return
        ch.hanging_up = True
        ch.bye = True
        call.hangup_by = "caller"
        self.emit("HangupRequest", channel=ch)
        self.kernel.interrupt(ch.proc, HangupRequested(16))

    # -- channels -------------------------------------------------------------------------------
    def _new_channel(
        self,
        kind: Literal["caller", "agent", "originated"],
        endpoint: str,
        *,
        caller_num: str,
        caller_name: str,
        context: str,
        exten: str,
        state: int = 0,
        linkedid: str | None = None,
    ) -> SimChannel:
        seq = next(self._chan_seq)
        now = self.kernel.now()
        uniqueid = f"{int(now)}.{seq}"
        ch = SimChannel(
            f"PJSIP/{endpoint}-{seq:08x}",
            uniqueid,
            linkedid=linkedid or uniqueid,
            state=state,
            state_desc=STATE_DESC.get(state, "Unknown"),
            caller_num=caller_num,
            caller_name=caller_name,
            context=context,
            exten=exten,
            priority=1,
        )
        ch.kind = kind
        ch.endpoint = endpoint
        ch.created = now
        ep = self.endpoints.get(endpoint)
        if ep is not None:
            ep.active += 1
            self._version += 1
        self.channels[ch.name] = ch
        self._channels_changed.fire()
        return ch

    def _state(self, ch: SimChannel, state: int) -> None:
        ch.state = state
        ch.state_desc = STATE_DESC.get(state, "Unknown")
        self.emit("Newstate", channel=ch)

    def _trunk(self, delta: int) -> None:
        before = self._trunk_active
        self._trunk_active += delta
        if before == 0 and self._trunk_active > 0:
            self._device("PJSIP/pstn", "INUSE")
        elif before > 0 and self._trunk_active == 0:
            self._device("PJSIP/pstn", "NOT_INUSE")

    def _device(self, device: str, state: str) -> None:
        if self.noise:
            self.emit("DeviceStateChange", [("Device", device), ("State", state)])

    def _hangup_event(self, ch: SimChannel, cause: int, tech_cause: str | None = None) -> None:
        """The channel's final Hangup event and everything that goes with it being gone."""
        if ch.gone:
            return
        for spy in list(ch.spies):
            self._spy_stop(spy)
        if ch.spying is not None:
            self._spy_stop(ch)
        if ch.timeout_timer is not None:
            ch.timeout_timer.cancel()
            ch.timeout_timer = None
        ch.gone = True
        ep = self.endpoints.get(ch.endpoint)
        if ep is not None:
            ep.active -= 1
            # the phone may be free now even if its device state did not change (a leg hung up
            # while still being dialled): app_queue's polling callers would see it at their
            # next re-check, so they are scheduled to look
            self._queues_changed()
        fields: list[tuple[str, str]] = [("Cause", str(cause)), ("Cause-txt", CAUSE_TEXT.get(cause, "Unknown"))]
        if tech_cause is not None:
            fields.append(("TechCause", tech_cause))
        self.emit("Hangup", fields, channel=ch)
        self.channels.pop(ch.name, None)
        self._channels_changed.fire()
        if ch.kind == "caller":
            self._trunk(-1)
            call = ch.call
            if call is not None:
                call.ended_at = self.kernel.now()
                call.cause = cause
                call.hung_up_by = call.hangup_by or "system"
                if call.connected_at is not None:
                    call.outcome = "answered"
                elif call.stage == "voicemail":
                    call.outcome = "voicemail"
                elif call.hung_up_by == "caller":
                    if call.stage == "queue":
                        call.outcome = "abandon_ringing" if call.ringing_since is not None else "abandon_queue"
                    else:
                        call.outcome = "abandon_ivr"
                else:
                    call.outcome = "system"
                call.stage = "ended"
                call.log("ended", by=call.hung_up_by, cause=cause, outcome=call.outcome)

    # -- variables ------------------------------------------------------------------------------
    def _resolve(self, ch: SimChannel, name: str, args: str | None) -> str:
        if args is None:
            builtin = {
                "EXTEN": ch.exten,
                "CONTEXT": ch.context,
                "PRIORITY": str(ch.priority),
                "CHANNEL": ch.name,
                "UNIQUEID": ch.uniqueid,
            }
            if name in builtin:
                return builtin[name]
            return ch.variables.get(name, self.globals.get(name, ""))
        fn = name.upper()
        arg = args.strip().lower()
        if fn == "CHANNEL":
            return {
                "linkedid": ch.linkedid,
                "uniqueid": ch.uniqueid,
                "name": ch.name,
                "language": ch.language,
                "state": ch.state_desc,
            }.get(arg, "")
        if fn == "CALLERID":
            if arg in ("num", "number"):
                return ch.caller_num
            if arg == "name":
                return ch.caller_name
            if arg == "all":
                return f'"{ch.caller_name}" <{ch.caller_num}>'
            return ""
        if fn == "TIMEOUT" and arg == "absolute":
            t = ch.timeout_timer
            return "0" if t is None or t.cancelled else f"{max(0.0, t.when - self.kernel.now()):.0f}"
        return ""

    def _subst(self, ch: SimChannel, text: str) -> str:
        if "$" not in text:
            return text
        return _expand(text, lambda n, a: self._resolve(ch, n, a))

    def getvar(self, ch: SimChannel, name: str) -> str:
        name = name.strip()
        if "(" in name and name.endswith(")"):
            fn, _, args = name.partition("(")
            return self._resolve(ch, fn, args[:-1])
        return self._resolve(ch, name.lstrip("_"), None)

    def setvar(self, ch: SimChannel, name: str, value: str) -> None:
        """``Set(name=value)`` / AGI SET VARIABLE / AMI Setvar on a channel."""
        name = name.strip()
        upper = name.upper()
        if upper.startswith("TIMEOUT("):
            if upper == "TIMEOUT(ABSOLUTE)":
                self._set_timeout(ch, _float(value))
            return  # a dialplan function: no VarSet (traces: Set(TIMEOUT(absolute)=10) alone)
        if upper.startswith("CALLERID("):
            part = upper[9:-1]
            if part in ("NAME", "NUM", "NUMBER", "ALL"):
                if part == "NAME":
                    ch.caller_name = value
                elif part in ("NUM", "NUMBER"):
                    ch.caller_num = value
                else:
                    nm, _, num = value.partition("<")
                    ch.caller_name, ch.caller_num = nm.strip().strip('"'), num.rstrip(">").strip()
                # asyncagi_ivr: SET VARIABLE CALLERID(name) -> NewCallerid, later events show it
                self.emit("NewCallerid", [("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")], channel=ch)
            return
        if upper.startswith("CHANNEL("):
            if upper == "CHANNEL(LANGUAGE)":
                ch.language = value
            return
        bare = name.lstrip("_")
        level = len(name) - len(bare)
        ch.variables[bare] = value
        if level:
            ch.inherit[bare] = min(level, 2)
        self.emit("VarSet", [("Variable", name), ("Value", value)], channel=ch)

    def _noise_var(self, ch: SimChannel, name: str, value: str) -> None:
        if self.noise:
            ch.variables[name] = value
            self.emit("VarSet", [("Variable", name), ("Value", value)], channel=ch)

    def _set_timeout(self, ch: SimChannel, seconds: float) -> None:
        if ch.timeout_timer is not None:
            ch.timeout_timer.cancel()
            ch.timeout_timer = None
        if seconds > 0:
            ch.timeout_timer = self.kernel.call_later(seconds, self._absolute_timeout, ch)

    def _absolute_timeout(self, ch: SimChannel) -> None:
        ch.timeout_timer = None
        if not ch.gone and not ch.hanging_up:
            self.kernel.interrupt(ch.proc, AbsoluteTimeout())

    # -- the PBX loop -----------------------------------------------------------------------------
    async def _pbx(self, ch: SimChannel) -> None:
        """Run the dialplan from the channel's location until it hangs up."""
        how = "fallthrough"
        try:
            while True:
                step = self.dialplan.step(ch.context, ch.exten, ch.priority)
                if step is None:
                    if (
                        not self.dialplan.has(ch.context, ch.exten)
                        and ch.exten != "i"
                        and self.dialplan.has(ch.context, "i")
                    ):
                        # pbx: "Channel sent to invalid extension", INVALID_EXTEN is set
                        self.setvar(ch, "INVALID_EXTEN", ch.exten)
                        ch.exten, ch.priority = "i", 1
                        continue
                    break
                try:
                    jump = await self._exec(ch, step)
                except AsyncGoto as g:
                    ch.context, ch.exten, ch.priority = g.target
                    continue
                except AbsoluteTimeout:
                    if self.dialplan.has(ch.context, "T"):
                        # asyncagi_no_controller C/E: no hangup, the PBX continues at T
                        ch.exten, ch.priority = "T", 1
                        continue
                    how = "timeout"
                    break
                if jump is not None:
                    ch.context, ch.exten, ch.priority = jump
                else:
                    ch.priority += 1
        except HangupRequested:
            how = "request"
        except _DialplanHangup:
            how = "app"
        except _Gone:
            return
        self._finish(ch, how)

    def _finish(self, ch: SimChannel, how: str) -> None:
        if ch.gone:
            return
        if ch.call is not None and ch.call.hangup_by is None:
            ch.call.hangup_by = "caller" if ch.bye else "system"
        if ch.bye:
            # A BYE while not bridged: SoftHangupRequest then Hangup Cause 0 (TRACES_README).
            self.emit("SoftHangupRequest", [("Cause", "16")], channel=ch)
            self._hangup_event(ch, 0)
        elif ch.explicit_cause is not None or how in ("request", "app"):
            self.emit("SoftHangupRequest", [("Cause", "16")], channel=ch)
            self._hangup_event(ch, ch.explicit_cause if ch.explicit_cause is not None else 16)
        elif how == "timeout":
            self._hangup_event(ch, 0)
        else:  # ran off the end of the dialplan
            self._hangup_event(ch, 16)

    async def _exec(self, ch: SimChannel, step: Step) -> tuple[str, str, int] | None:
        data = self._subst(ch, step.args)
        app = APP_NAMES.get(step.app.lower(), step.app)
        self._newexten(ch, app, data)
        return await self._run_app(ch, app, data)

    async def _run_app(self, ch: SimChannel, app: str, data: str) -> tuple[str, str, int] | None:
        handler = self._apps.get(app.lower())
        if handler is None:
            log.debug("sim: application %s not simulated, treated as NoOp", app)
            return None
        return await handler(ch, data)

    @functools.cached_property
    def _apps(self) -> dict[str, Callable[[SimChannel, str], Any]]:
        return {
            "noop": self._app_noop,
            "answer": self._app_answer,
            "set": self._app_set,
            "goto": self._app_goto,
            "gotoif": self._app_gotoif,
            "execif": self._app_execif,
            "agi": self._app_agi,
            "queue": self._app_queue,
            "hangup": self._app_hangup,
            "background": self._app_background,
            "waitexten": self._app_waitexten,
            "playback": self._app_playback,
            "chanspy": self._app_chanspy,
            "musiconhold": self._app_moh,
            "wait": self._app_wait,
            "dial": self._app_dial,
            "voicemail": self._app_voicemail,
            "userevent": self._app_userevent,
        }

    def _newexten(self, ch: SimChannel, app: str, data: str) -> None:
        # Newexten comes from a channel snapshot whose dialplan location changed: an app at the
        # same location as the last one published (after a Redirect out of Queue) shows none.
        loc = (ch.context, ch.exten, ch.priority)
        if loc == ch.last_loc:
            return
        ch.last_loc = loc
        ch.application, ch.application_data = app, data
        self.emit("Newexten", [("Extension", ch.exten), ("Application", app), ("AppData", data)], channel=ch)

    def _target(self, ch: SimChannel, text: str) -> tuple[str, str, int] | None:
        parts = [p.strip() for p in text.split(",")]
        if len(parts) == 1:
            ctx, exten, prio = ch.context, ch.exten, parts[0]
        elif len(parts) == 2:
            ctx, (exten, prio) = ch.context, parts
        else:
            ctx, exten, prio = parts[0], parts[1], parts[2]
        if prio.isdigit():
            return ctx, exten, int(prio)
        found = self.dialplan.label(ctx, exten, prio)
        return (ctx, exten, found) if found is not None else None

    # -- applications ---------------------------------------------------------------------------
    async def _app_noop(self, ch: SimChannel, data: str) -> None:
        return None

    async def _app_userevent(self, ch: SimChannel, data: str) -> None:
        # app_userevent: UserEvent(name[,Key: value,...]) -> Event: UserEvent with those headers
        # (the callback dialplan reports the customer leg's DIALSTATUS this way).
        name, *pairs = [p.strip() for p in data.split(",")]
        fields = [("UserEvent", name)]
        for pair in pairs:
            key, _, value = pair.partition(":")
            if key.strip():
                fields.append((key.strip(), value.strip()))
        self.emit("UserEvent", fields, channel=ch)

    async def _app_wait(self, ch: SimChannel, data: str) -> None:
        await self.kernel.sleep(_float(data))

    async def _app_answer(self, ch: SimChannel, data: str) -> None:
        if ch.state != 6:
            self._state(ch, 6)
            if ch.call is not None:
                ch.call.answered_at = self.kernel.now()
                ch.call.stage = "ivr"
                ch.call.log("answered")
            await self.kernel.sleep(self.answer_delay)

    async def _app_set(self, ch: SimChannel, data: str) -> None:
        name, _, value = data.partition("=")
        self.setvar(ch, name, value)
        if name.strip() == "CC_NODE" and ch.call is not None:
            ch.call.log("ivr_node", node=value)
        if name.strip() == "CC_FAILOPEN" and ch.call is not None:
            ch.call.log("failopen", reason=value)

    async def _app_goto(self, ch: SimChannel, data: str) -> tuple[str, str, int] | None:
        return self._target(ch, data)

    async def _app_gotoif(self, ch: SimChannel, data: str) -> tuple[str, str, int] | None:
        cond, _, rest = data.partition("?")
        yes, _, no = rest.partition(":")
        target = yes if _truthy(cond) else no
        return self._target(ch, target) if target.strip() else None

    async def _app_execif(self, ch: SimChannel, data: str) -> tuple[str, str, int] | None:
        cond, _, rest = data.partition("?")
        yes, _, no = rest.partition(":")
        chosen = yes if _truthy(cond) else no
        if not chosen.strip():
            return None
        app, args = split_app(chosen)
        result = await self._run_app(ch, APP_NAMES.get(app.lower(), app), args)
        return result

    async def _app_hangup(self, ch: SimChannel, data: str) -> None:
        if data.strip().isdigit():
            ch.explicit_cause = int(data)
        raise _DialplanHangup

    async def _app_playback(self, ch: SimChannel, data: str) -> None:
        await self.kernel.sleep(_prompt_len(data.split(",")[0]))
        self._noise_var(ch, "PLAYBACKSTATUS", "SUCCESS")

    async def _app_moh(self, ch: SimChannel, data: str) -> None:
        klass, _, duration = data.partition(",")
        self.emit("MusicOnHoldStart", [("Class", klass or "default")], channel=ch)
        try:
            await self.kernel.wait(timeout=_float(duration) if duration.strip() else None)
        finally:
            self.emit("MusicOnHoldStop", channel=ch)

    def _menu_keys(self, ch: SimChannel) -> tuple[str, float] | None:
        """The caller's input for this pass through a menu (BackGround + WaitExten share one)."""
        if ch.menu_pending:
            ch.menu_pending = False
            return ch.menu_keys
        return ch.call.next_keys() if ch.call is not None else None

    def _dtmf(self, ch: SimChannel, digit: str) -> None:
        # SIP INFO DTMF: only DTMFEnd, DurationMs 160, Direction Received (traces).
        self.emit("DTMFEnd", [("Digit", digit), ("DurationMs", "160"), ("Direction", "Received")], channel=ch)
        if ch.call is not None:
            ch.call.log("dtmf", digit=digit)

    def _digit_target(self, ch: SimChannel, digit: str) -> tuple[str, str, int] | None:
        if self.dialplan.has(ch.context, digit):
            return ch.context, digit, 1
        if self.dialplan.has(ch.context, "i"):
            self.setvar(ch, "INVALID_EXTEN", digit)
            return ch.context, "i", 1
        return None

    async def _app_background(self, ch: SimChannel, data: str) -> tuple[str, str, int] | None:
        keys = ch.call.next_keys() if ch.call is not None else None
        length = _prompt_len(data.split(",")[0])
        if keys is not None and keys[1] < length:
            await self.kernel.sleep(keys[1])
            self._dtmf(ch, keys[0][0])
            self._noise_var(ch, "BACKGROUNDSTATUS", "SUCCESS")
            return self._digit_target(ch, keys[0][0])
        await self.kernel.sleep(length)
        self._noise_var(ch, "BACKGROUNDSTATUS", "SUCCESS")
        # not keyed yet: the same menu entry is still pending for the WaitExten that follows
        ch.menu_pending = True
        ch.menu_keys = None if keys is None else (keys[0], keys[1] - length)
        return None

    async def _app_waitexten(self, ch: SimChannel, data: str) -> tuple[str, str, int] | None:
        wait = _float(data.split(",")[0]) or 10.0
        keys = self._menu_keys(ch)
        if keys is not None and keys[1] < wait:
            await self.kernel.sleep(keys[1])
            self._dtmf(ch, keys[0][0])
            return self._digit_target(ch, keys[0][0])
        await self.kernel.sleep(wait)
        if self.dialplan.has(ch.context, "t"):
            return ch.context, "t", 1
        raise HangupRequested(16)

    # -- AsyncAGI --------------------------------------------------------------------------------
    def _agi_env(self, ch: SimChannel) -> str:
        pairs = [
            ("agi_request", "async"),
            ("agi_channel", ch.name),
            ("agi_language", ch.language),
            ("agi_type", "PJSIP"),
            ("agi_uniqueid", ch.uniqueid),
            ("agi_version", "22.10.1"),
            ("agi_callerid", ch.caller_num),
            ("agi_calleridname", ch.caller_name),
            ("agi_callingpres", "0"),
            ("agi_callingani2", "0"),
            ("agi_callington", "0"),
            ("agi_callingtns", "0"),
            ("agi_dnid", ch.dnid or "unknown"),
            ("agi_rdnis", "unknown"),
            ("agi_context", ch.context),
            ("agi_extension", ch.exten),
            ("agi_priority", str(ch.priority)),
            ("agi_enhanced", "0.0"),
            ("agi_accountcode", ""),
            # a thread id in the trace; derived from the channel's sequence so runs repeat exactly
            ("agi_threadid", str(140094773249728 + 4096 * int(ch.uniqueid.rpartition(".")[2]))),
        ]
        return ami_uri_encode("".join(f"{k}: {v}\n" for k, v in pairs) + "\n")

    async def _app_agi(self, ch: SimChannel, data: str) -> None:
        if not data.startswith("agi:async"):
            self.setvar(ch, "AGISTATUS", "FAILURE")
            return None
        agi = ch.agi = _Agi(Signal(self.kernel, f"agi-{ch.name}"))
        self.emit("AsyncAGIStart", [("Env", self._agi_env(ch))], channel=ch)
        if ch.call is not None:
            ch.call.log("controller")
        running: tuple[str, str, str] | None = None
        hangup_after = False
        try:
            while True:
                while not agi.queue:
                    await self.kernel.wait(agi.signal)
                command, command_id = agi.queue.popleft()
                await self.kernel.sleep(self.agi_exec_delay)
                internal = str(self.rng.randint(10**8, 2**31 - 1))  # not the controller's CommandID
                running = (command, command_id, internal)
                self.emit("AGIExecStart", [("CommandId", internal), ("Command", command)], channel=ch)
                reply, brk, hangup_after = await self._agi_command(ch, command)
                running = None
                self._agi_exec(ch, command, command_id, internal, reply)
                if hangup_after:
                    ch.explicit_cause = 16
                    if ch.call is not None:
                        ch.call.hangup_by = "system"
                    raise HangupRequested(16)
                if brk:
                    break
        except (HangupRequested, AbsoluteTimeout, AsyncGoto):
            # Hangup, the fail-open timeout and a Redirect all cut a running command off with
            # result -1 (asyncagi traces: the same -1 for a caller hangup and the timeout).
            if running is not None:
                self._agi_exec(ch, *running, "200 result=-1\n")
            self._agi_end(ch, "HANGUP")
            raise
        self._agi_end(ch, "SUCCESS")
        return None

    def _agi_exec(self, ch: SimChannel, command: str, command_id: str, internal: str, reply: str) -> None:
        code = reply[:3]
        self.emit(
            "AGIExecEnd",
            [
                ("CommandId", internal),
                ("Command", command),
                ("ResultCode", code),
                ("Result", "Success" if code == "200" else "Invalid or unknown command"),
            ],
            channel=ch,
        )
        fields = [("Result", ami_uri_encode(reply))]
        if command_id:
            fields.append(("CommandId", command_id))
        self.emit("AsyncAGIExec", fields, channel=ch)

    def _agi_end(self, ch: SimChannel, status: str) -> None:
        ch.agi = None
        self.emit("AsyncAGIEnd", channel=ch)
        self.setvar(ch, "AGISTATUS", status)
        if ch.call is not None:
            ch.call.log("released", status=status)

    async def _agi_command(self, ch: SimChannel, command: str) -> tuple[str, bool, bool]:
        """Run one AGI command: (reply line, break the AGI?, hang up after reporting?)."""
        try:
            argv = shlex.split(command, posix=True)
        except ValueError:
            argv = command.split()
        words = [a.upper() for a in argv]
        k = self.kernel
        if words[:2] == ["ASYNCAGI", "BREAK"]:
            return "200 result=0\n", True, False
        if words[:1] == ["ANSWER"]:
            if ch.state != 6:
                self._state(ch, 6)
            return "200 result=0\n", False, False
        if words[:1] == ["NOOP"]:
            return "200 result=0\n", False, False
        if words[:1] == ["VERBOSE"]:
            return "200 result=1\n", False, False
        if words[:1] == ["HANGUP"]:
            return "200 result=1\n", False, True
        if words[:2] == ["SET", "VARIABLE"] and len(argv) >= 4:
            self.setvar(ch, argv[2], argv[3])
            if argv[2] == "CC_NODE" and ch.call is not None:
                ch.call.log("ivr_node", node=argv[3])
            return "200 result=1\n", False, False
        if words[:2] == ["GET", "VARIABLE"] and len(argv) >= 3:
            value = self.getvar(ch, argv[2])
            return (f"200 result=1 ({value})\n" if value else "200 result=0\n"), False, False
        if words[:3] == ["GET", "FULL", "VARIABLE"] and len(argv) >= 4:
            return f"200 result=1 ({self._subst(ch, argv[3])})\n", False, False
        if words[:2] == ["STREAM", "FILE"] and len(argv) >= 3:
            length = _prompt_len(argv[2])
            await k.sleep(length)
            self._noise_var(ch, "PLAYBACKSTATUS", "SUCCESS")
            return f"200 result=0 endpos={int(length * SAMPLE_RATE)}\n", False, False
        if words[:2] == ["SAY", "DIGITS"] and len(argv) >= 3:
            await k.sleep(0.5 * len(argv[2]))
            return "200 result=0\n", False, False
        if words[:3] == ["WAIT", "FOR", "DIGIT"]:
            wait = _float(argv[3]) / 1000 if len(argv) > 3 else 5.0
            keys = ch.call.next_keys() if ch.call is not None else None
            if keys is not None and (wait < 0 or keys[1] < wait):
                await k.sleep(keys[1])
                self._dtmf(ch, keys[0][0])
                return f"200 result={ord(keys[0][0])}\n", False, False
            await k.sleep(wait if wait >= 0 else 3600.0)
            return "200 result=0\n", False, False
        if words[:2] == ["GET", "DATA"] and len(argv) >= 3:
            timeout = _float(argv[3]) / 1000 if len(argv) > 3 else 0.0
            max_digits = int(_float(argv[4])) if len(argv) > 4 else 1024
            return await self._get_data(ch, argv[2], timeout or 5.0, max(1, max_digits)), False, False
        if words[:1] == ["EXEC"]:
            return "200 result=0\n", False, False
        return "510 Invalid or unknown command\n", False, False

    async def _get_data(self, ch: SimChannel, prompt: str, timeout: float, max_digits: int) -> str:
        """GET DATA: prompt, then digits until max, '#', or ``timeout`` without a key."""
        k = self.kernel
        start = k.now()
        length = _prompt_len(prompt)
        keys = ch.call.next_keys() if ch.call is not None else None
        collected = ""
        deadline = start + length + timeout
        if keys is not None:
            digits, delay = keys
            for i, digit in enumerate(digits):
                at = start + delay + i * self.digit_gap_s
                if at > deadline:
                    break
                await k.sleep(at - k.now())
                self._dtmf(ch, digit)
                if digit == "#":
                    return f"200 result={collected}\n"
                collected += digit
                if len(collected) >= max_digits:
                    # asyncagi_ivr: DTMFEnd immediately followed by AsyncAGIExec result=1
                    return f"200 result={collected}\n"
                deadline = max(at, start + length) + timeout
        await k.sleep(max(0.0, deadline - k.now()))
        return f"200 result={collected} (timeout)\n"

    # -- app_queue ---------------------------------------------------------------------------------
    def _queues_changed(self) -> None:
        """Member availability, a caller's position or a ringing state may have changed: the
        callers this can make \"their turn\" look again at their next 1 s recheck.

        app_queue's wait_our_turn polls is_our_turn every RECHECK (1 s). Only the time a caller
        notices its turn is observable, so instead of a timer per waiting caller per second, a
        change schedules the recheck tick (on the caller's own 1 s grid) of the callers it may
        have let in: is_our_turn is true only within the first <available members> callers not
        already ringing someone, so only that head of each queue is looked at (O(available +
        ringing), not O(waiting callers)). The tick checks again (the state may have moved on)."""
        self._version += 1
        for q in self.queues.values():
            if q.signal is not None:
                q.signal.fire()  # nobody in the simulator waits on it; kept for outside waiters
            if q.entries:
                self._schedule_turns(q)

    def _schedule_turns(self, q: SimQueue) -> None:
        avl = self._available(q)
        if avl <= 0:
            return
        k = self.kernel
        now = k.now()
        r = self.recheck_s
        idx = 0
        for e in q.entries:
            if e.pending:
                continue  # ringing: not counted by is_our_turn (autofill)
            if e.waiting and e.tick is None:
                # the next tick of its grid strictly after now (a change at a tick is seen next time)
                ticks = math.floor((now - e.base) / r + 1e-9) + 1
                e.tick = k.call_at(e.base + ticks * r, self._turn_tick, e)
            idx += 1
            if idx >= avl:
                return

    def _turn_tick(self, entry: _QueueEntry) -> None:
        entry.tick = None
        if entry.waiting:
            entry.turn.fire()

    def _available(self, q: SimQueue) -> int:
        # is_our_turn asks this for every waiting caller on every change: cache per state version
        key = (q.name, self._version)
        cached = self._avail_cache.get(key)
        if cached is None:
            if len(self._avail_cache) > 256:
                self._avail_cache.clear()
            cached = self._avail_cache[key] = sum(1 for m in q.members if self._member_available(m))
        return cached

    def _member_available(self, m: FakeMember) -> bool:
        ep = self.endpoints.get(m.interface.partition("/")[2])
        return not m.paused and ep is not None and ep.registered and ep.devstate == 1 and ep.active == 0

    def _is_our_turn(self, entry: _QueueEntry) -> bool:
        # app_queue is_our_turn with autofill: within the first <available members> callers,
        # not counting callers ahead that are already ringing someone (pending).
        q = entry.queue
        avl = self._available(q)
        idx = 0
        for e in q.entries:
            if e is entry:
                return idx < avl
            if not e.pending:
                idx += 1
                if idx >= avl:
                    return False  # (stop at the head: the rest cannot be within it)
        return False

    def _weight_ok(self, m: SimMember, q: SimQueue) -> bool:
        # app_queue compare_weight: skip a member whom a heavier queue with waiting callers wants.
        for other in self.queues.values():
            if other is not q and other.weight > q.weight and other.entries and other.member(m.interface):
                return False
        return True

    def _candidates(self, entry: _QueueEntry, tried: set[str]) -> list[SimMember]:
        q = entry.queue
        out = []
        for m in q.members:
            assert isinstance(m, SimMember)
            if m.interface in tried or not self._member_available(m):
                continue
            if entry.min_penalty is not None and m.penalty < entry.min_penalty:
                continue
            if entry.max_penalty is not None and m.penalty > entry.max_penalty:
                continue
            if not self._weight_ok(m, q):
                continue
            out.append(m)
        return out

    def _pick(self, q: SimQueue, cands: list[SimMember]) -> list[SimMember]:
        best = min(m.penalty for m in cands)
        tier = [m for m in cands if m.penalty == best]
        strategy = q.strategy
        if strategy == "ringall":
            return tier
        n = len(q.members)
        index = {m.interface: i for i, m in enumerate(q.members)}
        if strategy in ("rrmemory", "roundrobin"):
            pick = min(tier, key=lambda m: (index[m.interface] - q.rrpos) % n)
            q.rrpos = (index[pick.interface] + 1) % n
        elif strategy == "leastrecent":
            pick = min(tier, key=lambda m: (m.last_call, index[m.interface]))
        elif strategy == "fewestcalls":
            pick = min(tier, key=lambda m: (m.calls_taken, index[m.interface]))
        elif strategy == "random":
            pick = self.rng.choice(tier)
        else:  # linear
            pick = min(tier, key=lambda m: index[m.interface])
        return [pick]

    async def _qwait(self, entry: _QueueEntry, *signals: Signal, timeout: float | None) -> Signal | None:
        """A wait inside Queue(): bounded by Queue()'s own timeout argument."""
        k = self.kernel
        if entry.deadline is not None:
            left = entry.deadline - k.now()
            if left <= 1e-9:
                raise _QueueTimeout
            if timeout is None or timeout >= left:
                fired = await k.wait(*signals, timeout=left)
                if fired is None:
                    raise _QueueTimeout
                return fired
        return await k.wait(*signals, timeout=timeout)

    def _member_fields(self, q: SimQueue, m: SimMember, *, ringinuse: bool = True) -> list[tuple[str, str]]:
        ep = self.endpoints.get(m.interface.partition("/")[2])
        fields = [
            ("Queue", q.name),
            ("MemberName", m.name or m.interface),
            ("Interface", m.interface),
            ("StateInterface", m.interface),
            ("Membership", m.membership),
            ("Penalty", str(m.penalty)),
            ("CallsTaken", str(m.calls_taken)),
            ("LastCall", str(m.last_call)),
            ("LastPause", str(m.last_pause)),
            ("LoginTime", str(m.login_time)),
            ("InCall", "1" if m.in_call else "0"),
            ("Status", str(ep.devstate if ep else 5)),
            ("Paused", "1" if m.paused else "0"),
            ("PausedReason", m.paused_reason),
        ]
        if ringinuse:
            fields.append(("Ringinuse", "0"))
        fields.append(("Wrapuptime", "0"))
        return fields

    def _set_device(self, ep: Endpoint, state: int) -> None:
        """Device state change of a phone: DeviceStateChange + one QueueMemberStatus per queue it
        is a member of (traces: 3 queues -> 3 events); waiting callers look again."""
        if ep.devstate == state:
            return
        ep.devstate = state
        self._version += 1
        self._device(ep.interface, DEVICE_TEXT.get(state, "UNKNOWN"))
        for q in self.queues.values():
            m = q.member(ep.interface)
            if m is not None:
                self.emit("QueueMemberStatus", self._member_fields(q, m))
        self._queues_changed()

    def _qlog(self, uid: str, queue: str, agent: str, event: str, *data: Any) -> None:
        line = "|".join([str(int(self.kernel.now())), uid, queue, agent, event, *map(str, data)])
        if not data:
            line += "|"
        self.queue_log.append(line)

    def _dequeue(self, entry: _QueueEntry) -> int:
        q = entry.queue
        pos = q.entries.index(entry) + 1
        q.entries.remove(entry)
        entry.channel.entry = None
        if not q.entries:
            self._device(f"Queue:{q.name}", "NOT_INUSE")
        return pos

    def _hold(self, entry: _QueueEntry) -> int:
        # app_queue: time(NULL) - qe->start, whole seconds
        return int(self.kernel.now()) - int(entry.start)

    async def _app_queue(self, ch: SimChannel, data: str) -> None:
        args = data.split(",")
        q = self.queues.get(args[0].strip())
        if q is None:
            self.setvar(ch, "QUEUESTATUS", "UNKNOWN")
            return None
        k = self.kernel
        timeout = _float(args[4]) if len(args) > 4 and args[4].strip() else 0.0
        prio = int(_float(self.getvar(ch, "QUEUE_PRIO")))
        min_pen = self.getvar(ch, "QUEUE_MIN_PENALTY")
        max_pen = self.getvar(ch, "QUEUE_MAX_PENALTY")
        for name in ("ANSWEREDTIME", "ANSWEREDTIME_MS", "DIALEDTIME", "DIALEDTIME_MS", "QUEUEWAIT", "QUEUEWAIT_MS"):
            self._noise_var(ch, name, "")
        entry = _QueueEntry(
            ch,
            q,
            prio,
            k.now(),
            0,
            int(_float(min_pen)) if min_pen.strip() else None,
            int(_float(max_pen)) if max_pen.strip() and _float(max_pen) > 0 else None,
            k.now() + timeout if timeout > 0 else None,
            data,
            Signal(k, f"entry-{ch.name}"),
            Signal(k, f"turn-{ch.name}"),
        )
        pos = len(q.entries)
        if q.entries and prio > q.entries[-1].prio:  # (else: at the end, without a scan)
            for i, e in enumerate(q.entries):
                if prio > e.prio:  # higher QUEUE_PRIO goes ahead of lower ones, FIFO within a priority
                    pos = i
                    break
        q.entries.insert(pos, entry)
        entry.original_position = pos + 1
        ch.entry = entry
        if len(q.entries) == 1:
            self._device(f"Queue:{q.name}", "RINGING")
        self.emit(
            "QueueCallerJoin",
            [("Queue", q.name), ("Position", str(pos + 1)), ("Count", str(len(q.entries)))],
            channel=ch,
        )
        self.emit("MusicOnHoldStart", [("Class", "default")], channel=ch)
        self._qlog(ch.uniqueid, q.name, "NONE", "ENTERQUEUE", "", ch.caller_num, pos + 1)
        call = ch.call
        if call is not None:
            if call.first_queue_at is None:
                call.first_queue_at = k.now()
            call.stage = "queue"
            call.log("queue", queue=q.name, position=pos + 1)
        self._queues_changed()
        try:
            while True:
                await self._wait_turn(entry)
                await self._try_calling(entry)  # returns only when nobody answered this round
                await self._qwait(entry, timeout=q.retry)  # wait_a_bit
        except _QueueTimeout:
            self._queue_exit(entry, "timeout")
            return None
        except _QueueContinue:
            # app_queue: a handled call left with option c -> QUEUESTATUS=CONTINUE, next priority
            self.setvar(ch, "QUEUESTATUS", "CONTINUE")
            return None
        except (HangupRequested, AbsoluteTimeout):
            if entry in q.entries:
                self._queue_exit(entry, "abandon")
            raise
        except AsyncGoto as g:
            if entry in q.entries:  # else: redirected out of the bridge (handled there)
                self._queue_exit(entry, "redirect", g.target)
            raise

    async def _wait_turn(self, entry: _QueueEntry) -> None:
        # wait_our_turn polls every RECHECK (1 s) from when it starts: a freed member is seen on
        # the caller's next tick (status_queries: Carol added at +6.45, caller B who joined at
        # +4.44 rung at +7.45). The ticks that can matter are scheduled by _queues_changed.
        entry.base = self.kernel.now()
        try:
            while not self._is_our_turn(entry):
                entry.waiting = True
                await self._qwait(entry, entry.turn, timeout=None)
        finally:
            entry.waiting = False
            if entry.tick is not None:
                entry.tick.cancel()
                entry.tick = None

    async def _try_calling(self, entry: _QueueEntry) -> None:
        tried: set[str] = set()
        q = entry.queue
        while True:
            cands = self._candidates(entry, tried)
            if not cands:
                return
            picks = self._pick(q, cands)
            outcome = await self._ring(entry, picks)
            if outcome == "timeout":
                return
            tried.update(m.interface for m in picks)  # 486/rejected: the next member at once

    def _dial(self, entry: _QueueEntry, m: SimMember) -> _Leg:
        ch = entry.channel
        ep = self.endpoints[m.interface.partition("/")[2]]
        leg_ch = self._new_channel(
            "agent",
            ep.ext,
            caller_num=ep.ext,
            caller_name=ep.caller_name,
            context=ep.context,
            exten="s",
            linkedid=ch.linkedid,
        )
        self.emit("Newchannel", channel=leg_ch)
        self._inherit(ch, leg_ch)
        self._noise_var(leg_ch, "DIALEDPEERNUMBER", ep.ext)
        behavior = ep.behavior_for(ch.call)
        leg = _Leg(leg_ch, m, ep, behavior, self.kernel.now(), entry.signal)
        leg_ch.leg = leg
        # AgentCalled already shows the leg at the caller's extension with the caller as its
        # connected line; DialBegin (published from an older snapshot) still shows exten s.
        called = replace(leg_ch, exten=ch.exten, connected_num=ch.caller_num, connected_name=ch.caller_name)
        self.emit(
            "AgentCalled",
            [*called.snapshot("Dest"), ("Queue", entry.queue.name), ("Interface", m.interface), ("MemberName", m.name)],
            channel=ch,
        )
        self.emit("DialBegin", [*leg_ch.snapshot("Dest"), ("DialString", m.interface)], channel=ch)
        leg_ch.exten = ch.exten
        leg_ch.connected_num, leg_ch.connected_name = ch.caller_num, ch.caller_name
        ch.connected_num, ch.connected_name = ep.ext, ep.caller_name
        self.emit("NewConnectedLine", channel=ch)
        if behavior.action == "reject":
            leg.next_at = self.kernel.now() + self.reject_delay
        else:
            leg.next_at = self.kernel.now() + self.alert_delay
        return leg

    def _agent_fields(self, entry: _QueueEntry, leg: _Leg, *extra: tuple[str, str]) -> list[tuple[str, str]]:
        return [
            *leg.channel.snapshot("Dest"),
            ("Queue", entry.queue.name),
            ("Interface", leg.qmember.interface),
            ("MemberName", leg.qmember.name),
            *extra,
        ]

    def _dial_end(self, entry: _QueueEntry, leg: _Leg, status: str) -> None:
        self.emit("DialEnd", [*leg.channel.snapshot("Dest"), ("DialStatus", status)], channel=entry.channel)

    def _set_ringing(self, entry: _QueueEntry) -> None:
        call = entry.channel.call
        if call is None:
            return
        ringing = any(leg.phase == "ringing" for leg in entry.legs)
        if ringing and call.ringing_since is None:
            call.ringing_since = self.kernel.now()
            call.signal.fire()
        elif not ringing and call.ringing_since is not None:
            call.ringing_since = None
            call.signal.fire()

    def _leg_done(self, entry: _QueueEntry, leg: _Leg, cause: int, *, tech: str | None = None) -> None:
        was_ringing = leg.phase == "ringing"
        leg.phase = "done"
        if leg in entry.legs:
            entry.legs.remove(leg)
        self._hangup_event(leg.channel, cause, tech)
        if was_ringing:
            self._set_device(leg.endpoint, 1)

    async def _ring(self, entry: _QueueEntry, members: list[SimMember]) -> str:
        """Ring ``members`` (one, or a ringall tier): 'busy' if all rejected, 'timeout' if the
        ring timeout passed; an answer bridges the call and never returns (raises)."""
        k = self.kernel
        ch = entry.channel
        q = entry.queue
        legs = [self._dial(entry, m) for m in members]
        entry.legs.extend(legs)
        entry.pending = True
        self._queues_changed()  # callers behind may now be within the first <available> (pending)
        ring_deadline = k.now() + q.timeout
        try:
            while True:
                active = [leg for leg in legs if leg.phase in ("dialing", "ringing")]
                if not active:
                    return "busy"
                for leg in active:
                    if leg.killed is not None:
                        leg.next_at = k.now()
                due = min(leg.next_at for leg in active)
                if due > ring_deadline:
                    await self._qwait(entry, entry.signal, timeout=ring_deadline - k.now())
                    if k.now() < ring_deadline - 1e-9:
                        continue
                    for leg in [x for x in legs if x.phase in ("dialing", "ringing")]:
                        ms = round((k.now() - leg.start) * 1000)
                        # Ring timeout: AgentRingNoAnswer (RingTime in ms) then two DialEnd for the
                        # same member, NOANSWER and CANCEL (TRACES_README).
                        self.emit(
                            "AgentRingNoAnswer", self._agent_fields(entry, leg, ("RingTime", str(ms))), channel=ch
                        )
                        self._dial_end(entry, leg, "NOANSWER")
                        self._dial_end(entry, leg, "CANCEL")
                        self._qlog(ch.uniqueid, q.name, leg.qmember.name, "RINGNOANSWER", ms)
                        self._leg_done(entry, leg, 0)
                    self._set_ringing(entry)
                    return "timeout"
                if due > k.now() + 1e-9:
                    await self._qwait(entry, entry.signal, timeout=due - k.now())
                    continue
                leg = min(active, key=lambda x: x.next_at)
                if leg.killed is not None or (leg.phase == "dialing" and leg.behavior.action == "reject"):
                    self._reject(entry, leg, leg.killed)
                elif leg.phase == "dialing":
                    self._alert(entry, leg)
                else:
                    await self._connect(entry, leg)  # raises when the call is over
        finally:
            entry.pending = bool(entry.legs)
            if not entry.pending:
                self._queues_changed()

    def _reject(self, entry: _QueueEntry, leg: _Leg, killed: int | None) -> None:
        ch = entry.channel
        if killed is None:
            # 486 Busy Here: HangupRequest Cause 17/TechCause 486, DialEnd NOANSWER (not BUSY),
            # AgentRingNoAnswer RingTime 0, Hangup Cause 17 (queue_abandon trace).
            self.emit("HangupRequest", [("Cause", "17"), ("TechCause", "486")], channel=leg.channel)
        else:
            self.emit("SoftHangupRequest", [("Cause", "16")], channel=leg.channel)
        self._dial_end(entry, leg, "NOANSWER")
        ms = 0 if killed is None else round((self.kernel.now() - leg.start) * 1000)
        self.emit("AgentRingNoAnswer", self._agent_fields(entry, leg, ("RingTime", str(ms))), channel=ch)
        self._qlog(ch.uniqueid, entry.queue.name, leg.qmember.name, "RINGNOANSWER", ms)
        if killed is None:
            self._leg_done(entry, leg, 17, tech="486")
        else:
            self._leg_done(entry, leg, killed)
        self.emit("NewConnectedLine", channel=leg.channel)
        self._set_ringing(entry)

    def _alert(self, entry: _QueueEntry, leg: _Leg) -> None:
        ch = entry.channel
        lc = leg.channel
        self._state(lc, 5)
        self._newexten(lc, "AppQueue", "(Outgoing Line)")
        self.emit("NewConnectedLine", channel=lc)
        self.emit("DialState", [*lc.snapshot("Dest"), ("DialStatus", "RINGING")], channel=ch)
        leg.phase = "ringing"
        b = leg.behavior
        leg.next_at = leg.start + b.ring_s if b.action == "answer" else math.inf
        self._set_device(leg.endpoint, 6)
        self._set_ringing(entry)
        if ch.call is not None:
            ch.call.log("ringing", queue=entry.queue.name, agent=leg.qmember.interface, channel=lc.name)

    def _queue_exit(self, entry: _QueueEntry, why: str, target: tuple[str, str, int] | None = None) -> None:
        """Leave the queue without an agent: caller hangup (abandon), Redirect, Queue() timeout."""
        ch = entry.channel
        q = entry.queue
        now = self.kernel.now()
        legs = list(entry.legs)
        self.emit("MusicOnHoldStop", channel=ch)
        if target is not None:
            ch.context, ch.exten, ch.priority = target
        for leg in legs:
            # a member still ringing gets DialEnd CANCEL, no AgentRingNoAnswer (RINGCANCELED);
            # a Redirect shows it twice (overflow_redirect)
            self._dial_end(entry, leg, "CANCEL")
            if target is not None:
                self._dial_end(entry, leg, "CANCEL")
            self._qlog(ch.uniqueid, q.name, leg.qmember.name, "RINGCANCELED", round((now - leg.start) * 1000))
        if target is not None:
            # The first snapshot at the new location still names the old application.
            ch.last_loc = (ch.context, ch.exten, ch.priority)
            self.emit(
                "Newexten", [("Extension", ch.exten), ("Application", "Queue"), ("AppData", entry.args)], channel=ch
            )
        position = q.entries.index(entry) + 1 if entry in q.entries else 1
        hold = self._hold(entry)
        ringing_at_exit = any(leg.phase == "ringing" for leg in legs)
        if why == "timeout":
            pending_qms = [leg.endpoint for leg in legs if leg.phase == "ringing"]
            for leg in legs:
                leg.phase = "done"
                entry.legs.remove(leg)
                self._hangup_event(leg.channel, 0)
            pos = self._dequeue(entry)
            self.emit(
                "QueueCallerLeave",
                [("Queue", q.name), ("Position", str(pos)), ("Count", str(len(q.entries)))],
                channel=ch,
            )
            self.setvar(ch, "QUEUESTATUS", "TIMEOUT")
            self._qlog(ch.uniqueid, q.name, "NONE", "EXITWITHTIMEOUT", pos, entry.original_position, hold)
            reason = "timeout"
        else:
            self._noise_var(ch, "ABANDONED", "TRUE")
            self.emit(
                "QueueCallerAbandon",
                [
                    ("Queue", q.name),
                    ("Position", str(position)),
                    ("OriginalPosition", str(entry.original_position)),
                    ("HoldTime", str(hold)),
                ],
                channel=ch,
            )
            pending_qms = [leg.endpoint for leg in legs if leg.phase == "ringing"]
            for leg in legs:
                leg.phase = "done"
                entry.legs.remove(leg)
                self._hangup_event(leg.channel, 0)
            pos = self._dequeue(entry)
            self.emit(
                "QueueCallerLeave",
                [("Queue", q.name), ("Position", str(pos)), ("Count", str(len(q.entries)))],
                channel=ch,
            )
            self._qlog(ch.uniqueid, q.name, "NONE", "ABANDON", pos, entry.original_position, hold)
            q.abandoned += 1
            reason = "redirect" if target is not None else "abandon"
        for ep in pending_qms:  # device state settles after the leave (overflow_redirect)
            self._set_device(ep, 1)
        call = ch.call
        if call is not None:
            if reason != "abandon":  # an abandon keeps it: the outcome says "while ringing"
                call.ringing_since = None
            call.log("left_queue", queue=q.name, reason=reason, ringing=ringing_at_exit)
        self._queues_changed()

    async def _connect(self, entry: _QueueEntry, leg: _Leg) -> None:
        """An agent answered: connect, bridge, talk, and end the call (raises _Gone/AsyncGoto)."""
        k = self.kernel
        ch = entry.channel
        q = entry.queue
        lc = leg.channel
        self._state(lc, 6)
        self._dial_end(entry, leg, "ANSWER")
        leg.phase = "answered"
        for rival in [x for x in entry.legs if x is not leg]:
            self._dial_end(entry, rival, "CANCEL")
            self._qlog(ch.uniqueid, q.name, rival.qmember.name, "RINGCANCELED", round((k.now() - rival.start) * 1000))
            self._leg_done(entry, rival, 26)
        entry.legs.clear()
        self.emit("MusicOnHoldStop", channel=ch)
        hold = self._hold(entry)
        ring_s = int(k.now()) - int(leg.start)
        m = leg.qmember
        for name, value in (
            ("MEMBERINTERFACE", m.interface),
            ("MEMBERNAME", m.name),
            ("MEMBERCALLS", str(m.calls_taken)),
            ("MEMBERLASTCALL", str(m.last_call)),
            ("MEMBERPENALTY", str(m.penalty)),
        ):
            self._noise_var(ch, name, value)
            self._noise_var(lc, name, value)
        self._noise_var(ch, "QEHOLDTIME", str(hold))
        # QueueCallerLeave comes before AgentConnect (TRACES_README / translator).
        pos = self._dequeue(entry)
        self.emit(
            "QueueCallerLeave", [("Queue", q.name), ("Position", str(pos)), ("Count", str(len(q.entries)))], channel=ch
        )
        self.emit(
            "AgentConnect",
            self._agent_fields(entry, leg, ("HoldTime", str(hold)), ("RingTime", str(ring_s))),
            channel=ch,
        )
        self._qlog(ch.uniqueid, q.name, m.name, "CONNECT", hold, lc.uniqueid, ring_s)
        q.holdtime = hold if q.completed + q.abandoned == 0 else (q.holdtime * 3 + hold) >> 2
        bridge = _Bridge(str(uuid.UUID(int=self.rng.getrandbits(128), version=4)), [lc, ch])
        self.emit("BridgeCreate", self._bridge_fields(bridge, 0, "simple_bridge"))
        m.in_call = True
        self._set_device(leg.endpoint, 2)
        self.emit("BridgeEnter", [*self._bridge_fields(bridge, 1, "simple_bridge"), *lc.snapshot()])
        self.emit("BridgeEnter", [*self._bridge_fields(bridge, 2, "simple_bridge"), *ch.snapshot()])
        for one, other in ((ch, lc), (lc, ch)):
            self._noise_var(one, "BRIDGEPEER", other.name)
        ch.bridge = lc.bridge = bridge
        ch.peer, lc.peer = lc, ch
        self._channels_changed.fire()
        self._queues_changed()
        call = ch.call
        connected_at = k.now()
        if call is not None:
            call.ringing_since = None
            call.connected_at = connected_at
            call.stage = "talk"
            call.log("connected", queue=q.name, agent=m.interface, channel=lc.name, hold_s=hold)
        b = leg.behavior
        args = entry.args.split(",")
        stays = len(args) > 1 and "c" in args[1]  # Queue(name,c): continue when the callee hangs up
        try:
            await k.wait(timeout=b.talk_s)
            self._end_bridge(entry, leg, bridge, hold, connected_at, who="agent", agent_request="bye",
                             caller_stays=stays)
        except HangupRequested:
            self._end_bridge(entry, leg, bridge, hold, connected_at, who="caller")
        except AbsoluteTimeout:
            ch.explicit_cause = 0
            self._end_bridge(entry, leg, bridge, hold, connected_at, who="caller")
        except PeerHangup as p:
            self._end_bridge(
                entry, leg, bridge, hold, connected_at, who="agent", agent_request="soft", agent_cause=p.cause,
                caller_stays=stays,
            )
        except AsyncGoto:
            self._end_bridge(entry, leg, bridge, hold, connected_at, who="transfer")
            raise
        if stays and not ch.gone:
            raise _QueueContinue
        raise _Gone

    def _bridge_fields(self, bridge: _Bridge, n: int, tech: str) -> list[tuple[str, str]]:
        return [
            ("BridgeUniqueid", bridge.uniqueid),
            ("BridgeType", "basic"),
            ("BridgeTechnology", tech),
            ("BridgeCreator", "<unknown>"),
            ("BridgeName", "<unknown>"),
            ("BridgeNumChannels", str(n)),
            ("BridgeVideoSourceMode", "none"),
        ]

    def _end_bridge(
        self,
        entry: _QueueEntry,
        leg: _Leg,
        bridge: _Bridge,
        hold: int,
        connected_at: float,
        *,
        who: Literal["caller", "agent", "transfer"],
        agent_request: Literal["bye", "soft"] = "bye",
        agent_cause: int = 16,
        caller_stays: bool = False,
    ) -> None:
        """The end of a queue call: AgentComplete (+ queue statistics), then the bridge."""
        k = self.kernel
        ch = entry.channel
        lc = leg.channel
        q = entry.queue
        m = leg.qmember
        talk = int(k.now()) - int(connected_at)
        if who == "agent":
            self._agent_hangup_request(lc, agent_request)
        self.emit(
            "AgentComplete",
            self._agent_fields(entry, leg, ("HoldTime", str(hold)), ("TalkTime", str(talk)), ("Reason", who)),
            channel=ch,
        )
        log_event = {"caller": "COMPLETECALLER", "agent": "COMPLETEAGENT", "transfer": "TRANSFER"}[who]
        self._qlog(ch.uniqueid, q.name, m.name, log_event, hold, talk, entry.original_position)
        q.completed += 1
        if hold <= q.service_level:
            q.completed_in_sl += 1
        q.talktime = talk if q.completed == 1 else (q.talktime * 3 + talk) >> 2
        m.calls_taken += 1
        m.last_call = int(k.now())
        m.in_call = False
        self._teardown(ch, leg, bridge, who=who, agent_cause=agent_cause, caller_stays=caller_stays)

    def _agent_hangup_request(self, lc: SimChannel, how: Literal["bye", "soft"]) -> None:
        if how == "bye":
            self.emit("HangupRequest", channel=lc)
        else:
            self.emit("SoftHangupRequest", [("Cause", "16")], channel=lc)

    def _teardown(
        self,
        ch: SimChannel,
        leg: _Leg,
        bridge: _Bridge,
        *,
        who: Literal["caller", "agent", "transfer"],
        agent_cause: int,
        caller_stays: bool = False,
    ) -> None:
        """Both legs leave the bridge, in the order the traces show for who ended the call."""
        lc = leg.channel
        ch.bridge = lc.bridge = None
        ch.peer = lc.peer = None
        call = ch.call
        for a in (ch, lc):
            self._noise_var(a, "BRIDGEPEER", "")
        if who == "caller":
            # answered_caller_hangup: BridgeLeave(caller), SoftHangupRequest, Hangup(caller),
            # BridgeLeave(agent), BridgeDestroy, Hangup(agent), QueueMemberStatus
            self.emit("BridgeLeave", [*self._bridge_fields(bridge, 1, "native_rtp"), *ch.snapshot()])
            self.emit("SoftHangupRequest", [("Cause", "16")], channel=ch)
            if call is not None and call.hangup_by is None:
                call.hangup_by = "caller" if ch.bye else "system"
            self._hangup_event(ch, ch.explicit_cause if ch.explicit_cause is not None else 16)
            self.emit("BridgeLeave", [*self._bridge_fields(bridge, 0, "native_rtp"), *lc.snapshot()])
            self.emit("BridgeDestroy", self._bridge_fields(bridge, 0, "native_rtp"))
            self._hangup_event(lc, 16)
            self._set_device(leg.endpoint, 1)
            return
        # answered_agent_hangup: BridgeLeave(agent), BridgeLeave(caller), BridgeDestroy,
        # Hangup(agent), SoftHangupRequest(caller), QueueMemberStatus, Hangup(caller)
        self.emit("BridgeLeave", [*self._bridge_fields(bridge, 1, "native_rtp"), *lc.snapshot()])
        self.emit("BridgeLeave", [*self._bridge_fields(bridge, 0, "native_rtp"), *ch.snapshot()])
        self.emit("BridgeDestroy", self._bridge_fields(bridge, 0, "native_rtp"))
        self._hangup_event(lc, agent_cause if who == "agent" else 16)
        if who == "transfer" or caller_stays:
            # transfer, or Queue() option c after the agent hung up: the caller's leg goes on
            self._set_device(leg.endpoint, 1)
            if call is not None:
                call.stage = "ivr"
                if caller_stays:
                    call.signal.fire()  # the caller's patience is now the IVR one
            return
        self.emit("SoftHangupRequest", [("Cause", "16")], channel=ch)
        self._set_device(leg.endpoint, 1)
        if call is not None and call.hangup_by is None:
            call.hangup_by = "agent"
        self._hangup_event(ch, 16)

    # -- Dial (sticky routing: the caller's own agent before the queue) -------------------------
    async def _app_dial(self, ch: SimChannel, data: str) -> None:
        """``Dial(PJSIP/1001[&...],timeout)``: like a queue member dial on AMI, without app_queue's
        own events. DialString is the resource only (app_dial publishes ``tmp->number``, as
        dial.c does for Originate: ``DialString: 1009`` in whisper_barge)."""
        k = self.kernel
        args = data.split(",")
        timeout = _float(args[1]) if len(args) > 1 and args[1].strip() else 0.0
        signal = Signal(k, f"dial-{ch.name}")
        call = ch.call
        legs: list[_Leg] = []
        for target in (t.strip() for t in args[0].split("&") if t.strip()):
            tech, _, resource = target.partition("/")
            ep = self.endpoints.get(resource) if tech.upper() == "PJSIP" else None
            if ep is None or not ep.registered:
                continue  # ast_request fails: CHANUNAVAIL for this destination
            lc = self._new_channel(
                "agent", ep.ext, caller_num=ep.ext, caller_name=ep.caller_name, context=ep.context, exten="s",
                linkedid=ch.linkedid,
            )  # fmt: skip
            self.emit("Newchannel", channel=lc)
            self._noise_var(lc, "DIALEDPEERNUMBER", resource)
            self._inherit(ch, lc)
            behavior = ep.behavior_for(call)
            if ep.active > 1:  # the phone is on another call: 486 Busy Here
                behavior = AgentBehavior("reject")
            leg = _Leg(lc, None, ep, behavior, k.now(), signal)
            lc.leg = leg
            self.emit("DialBegin", [*lc.snapshot("Dest"), ("DialString", resource)], channel=ch)
            lc.exten = ch.exten  # app_dial: the callee inherits the caller's extension
            lc.connected_num, lc.connected_name = ch.caller_num, ch.caller_name
            leg.next_at = k.now() + (self.reject_delay if behavior.action == "reject" else self.alert_delay)
            legs.append(leg)
        if not legs:
            self.setvar(ch, "DIALSTATUS", "CHANUNAVAIL")
            return None
        if call is not None and call.stage == "ivr":
            call.stage = "queue"  # waiting for an agent (patience) like in a queue
            if call.first_queue_at is None:
                call.first_queue_at = k.now()
        deadline = k.now() + timeout if timeout > 0 else math.inf
        status = "NOANSWER"
        try:
            while True:
                active = [x for x in legs if x.phase in ("dialing", "ringing")]
                if not active:
                    status = "BUSY"
                    break
                for x in active:
                    if x.killed is not None:
                        x.next_at = k.now()
                due = min(x.next_at for x in active)
                if due > deadline:
                    await k.wait(signal, timeout=deadline - k.now())
                    if k.now() < deadline - 1e-9:
                        continue
                    for x in active:  # Dial's own timeout: DialEnd NOANSWER
                        self.emit("DialEnd", [*x.channel.snapshot("Dest"), ("DialStatus", "NOANSWER")], channel=ch)
                        self._dial_leg_done(x, 0)
                    break
                if due > k.now() + 1e-9:
                    await k.wait(signal, timeout=due - k.now())
                    continue
                leg = min(active, key=lambda x: x.next_at)
                if leg.killed is not None or (leg.phase == "dialing" and leg.behavior.action == "reject"):
                    if leg.killed is None:
                        self.emit("HangupRequest", [("Cause", "17"), ("TechCause", "486")], channel=leg.channel)
                    self.emit("DialEnd", [*leg.channel.snapshot("Dest"), ("DialStatus", "BUSY")], channel=ch)
                    self._dial_leg_done(
                        leg, 17 if leg.killed is None else leg.killed, "486" if leg.killed is None else None
                    )
                elif leg.phase == "dialing":
                    lc = leg.channel
                    self._state(lc, 5)
                    self._newexten(lc, "AppDial", "(Outgoing Line)")
                    self.emit("DialState", [*lc.snapshot("Dest"), ("DialStatus", "RINGING")], channel=ch)
                    leg.phase = "ringing"
                    b = leg.behavior
                    leg.next_at = leg.start + b.ring_s if b.action == "answer" else math.inf
                    self._set_device(leg.endpoint, 6)
                    if call is not None:
                        if call.ringing_since is None:
                            call.ringing_since = k.now()
                            call.signal.fire()
                        call.log("ringing", queue=None, agent=leg.endpoint.interface, channel=lc.name)
                else:
                    for rival in [x for x in active if x is not leg]:
                        self.emit("DialEnd", [*rival.channel.snapshot("Dest"), ("DialStatus", "CANCEL")], channel=ch)
                        self._dial_leg_done(rival, 26)
                    await self._dial_connected(ch, leg)  # raises when the call is over
        except (HangupRequested, AbsoluteTimeout, AsyncGoto):
            for x in [x for x in legs if x.phase in ("dialing", "ringing")]:
                self.emit("DialEnd", [*x.channel.snapshot("Dest"), ("DialStatus", "CANCEL")], channel=ch)
                self._dial_leg_done(x, 0)
            self.setvar(ch, "DIALSTATUS", "CANCEL")
            raise
        finally:
            if call is not None and call.stage == "queue" and call.ringing_since is not None:
                if not any(x.phase == "ringing" for x in legs):
                    call.ringing_since = None
        self.setvar(ch, "DIALSTATUS", status)
        return None

    def _inherit(self, ch: SimChannel, lc: SimChannel) -> None:
        # inherited variables (__X: again to the next hop), listed newest first in the traces
        for var in reversed(list(ch.inherit)):
            level = ch.inherit[var]
            lc.variables[var] = ch.variables.get(var, "")
            if level == 2:
                lc.inherit[var] = 2
            if self.noise:
                name = "__" + var if level == 2 else var
                self.emit("VarSet", [("Variable", name), ("Value", lc.variables[var])], channel=lc)

    def _dial_leg_done(self, leg: _Leg, cause: int, tech: str | None = None) -> None:
        was_ringing = leg.phase == "ringing"
        leg.phase = "done"
        self._hangup_event(leg.channel, cause, tech)
        if was_ringing:
            self._set_device(leg.endpoint, 1)

    async def _dial_connected(self, ch: SimChannel, leg: _Leg) -> None:
        k = self.kernel
        lc = leg.channel
        self._state(lc, 6)
        self.emit("DialEnd", [*lc.snapshot("Dest"), ("DialStatus", "ANSWER")], channel=ch)
        leg.phase = "answered"
        self.setvar(ch, "DIALSTATUS", "ANSWER")
        self._noise_var(ch, "DIALEDPEERNAME", lc.name)
        self._noise_var(ch, "DIALEDPEERNUMBER", leg.endpoint.ext)
        ch.connected_num, ch.connected_name = leg.endpoint.ext, leg.endpoint.caller_name
        self.emit("NewConnectedLine", channel=ch)
        bridge = _Bridge(str(uuid.UUID(int=self.rng.getrandbits(128), version=4)), [ch, lc])
        self.emit("BridgeCreate", self._bridge_fields(bridge, 0, "simple_bridge"))
        self._set_device(leg.endpoint, 2)
        self.emit("BridgeEnter", [*self._bridge_fields(bridge, 1, "simple_bridge"), *ch.snapshot()])
        self.emit("BridgeEnter", [*self._bridge_fields(bridge, 2, "simple_bridge"), *lc.snapshot()])
        ch.bridge = lc.bridge = bridge
        ch.peer, lc.peer = lc, ch
        self._channels_changed.fire()
        call = ch.call
        if call is not None:
            call.ringing_since = None
            call.connected_at = k.now()
            call.stage = "talk"
            call.log("connected", queue=None, agent=leg.endpoint.interface, channel=lc.name, hold_s=None)
        try:
            await k.wait(timeout=leg.behavior.talk_s)
            self._agent_hangup_request(lc, "bye")
            self._teardown(ch, leg, bridge, who="agent", agent_cause=16)
        except (HangupRequested, AbsoluteTimeout) as exc:
            if isinstance(exc, AbsoluteTimeout):
                ch.explicit_cause = 0
            self._teardown(ch, leg, bridge, who="caller", agent_cause=16)
        except PeerHangup as p:
            self._agent_hangup_request(lc, "soft")
            self._teardown(ch, leg, bridge, who="agent", agent_cause=p.cause)
        except AsyncGoto:
            self._teardown(ch, leg, bridge, who="transfer", agent_cause=16)
            raise
        raise _Gone

    # -- VoiceMail ------------------------------------------------------------------------------
    async def _app_voicemail(self, ch: SimChannel, data: str) -> None:
        """``VoiceMail(box,u)``: the unavailable greeting, a beep, then the caller speaks until
        they hang up (``CallScript.message_s``) or the maximum length; MessageWaiting after."""
        k = self.kernel
        box = data.split(",")[0].strip() or "default"
        mailbox = box if "@" in box else f"{box}@default"
        call = ch.call
        if call is not None:
            call.stage = "voicemail"
            call.log("voicemail", mailbox=mailbox)
        await k.sleep(_prompt_len("vm-unavail") + _prompt_len("beep"))
        started = k.now()
        if call is not None:
            call.recording_at = started
            call.signal.fire()
        try:
            await k.wait(timeout=self.voicemail_max_s)
        except HangupRequested:
            self._message_left(mailbox, k.now() - started)
            raise
        self._message_left(mailbox, k.now() - started)
        await k.sleep(_prompt_len("vm-goodbye"))
        self.setvar(ch, "VMSTATUS", "SUCCESS")
        return None

    def _message_left(self, mailbox: str, length: float) -> None:
        if length < self.voicemail_min_s:
            return  # too short: voicemail.conf minsecs, nothing is kept
        self.mailboxes[mailbox] = self.mailboxes.get(mailbox, 0) + 1
        self.emit(
            "MessageWaiting",
            [("Mailbox", mailbox), ("Waiting", "1"), ("New", str(self.mailboxes[mailbox])), ("Old", "0")],
        )

    # -- ChanSpy ---------------------------------------------------------------------------------
    def _find_spyee(self, prefix: str, me: SimChannel) -> SimChannel | None:
        for ch in self.channels.values():
            if ch is not me and not ch.gone and ch.name.startswith(prefix) and ch.bridge is not None:
                return ch
        return None

    async def _app_chanspy(self, ch: SimChannel, data: str) -> None:
        k = self.kernel
        target, _, _opts = data.partition(",")
        ch.spy_signal = Signal(k, f"spy-{ch.name}")
        try:
            while True:
                spyee = self._find_spyee(target, ch)
                if spyee is None:
                    await k.wait(self._channels_changed, timeout=1.0)
                    continue
                await k.sleep(self.chanspy_delay)
                if spyee.gone or spyee.bridge is None:
                    continue
                self.emit("ChanSpyStart", [*ch.snapshot("Spyer"), *spyee.snapshot("Spyee")])
                ch.spying = spyee
                spyee.spies.append(ch)
                await k.wait(ch.spy_signal)  # the spyee went away (ChanSpyStop already sent)
        finally:
            if ch.spying is not None:
                # ChanSpyStop precedes the spyer's SoftHangupRequest/Hangup (whisper_barge)
                self._spy_stop(ch)

    def _spy_stop(self, spyer: SimChannel) -> None:
        spyee = spyer.spying
        if spyee is None:
            return
        self.emit("ChanSpyStop", [*spyer.snapshot("Spyer"), *spyee.snapshot("Spyee")])
        spyer.spying = None
        if spyer in spyee.spies:
            spyee.spies.remove(spyer)
        if spyer.spy_signal is not None:
            spyer.spy_signal.fire()

    # -- Originate -------------------------------------------------------------------------------
    async def _originate(self, action: AmiMessage, done: asyncio.Future[bool] | None) -> None:
        k = self.kernel
        target = action.get("Channel") or ""
        tech, _, resource = target.partition("/")
        ep = self.endpoints.get(resource) if tech.upper() == "PJSIP" else None
        context = action.get("Context") or "default"
        exten = action.get("Exten") or "s"
        prio = int(_float(action.get("Priority") or "1")) or 1
        aid = action.get("ActionID")

        def respond(ok: bool, reason: int, ch: SimChannel | None) -> None:
            if done is not None:
                if not done.done():
                    done.set_result(ok)
                return
            fields = [
                *([("ActionID", aid)] if aid is not None else []),
                ("Response", "Success" if ok else "Failure"),
                ("Channel", ch.name if ch is not None and ok else target),
                ("Context", context),
                ("Exten", exten),
                ("Reason", str(reason)),
                ("Uniqueid", ch.uniqueid if ch is not None and ok else "<null>"),
                ("CallerIDNum", ch.caller_num if ch is not None else "<unknown>"),
                ("CallerIDName", ch.caller_name if ch is not None else "<unknown>"),
            ]
            self.emit("OriginateResponse", fields)

        if ep is None:
            respond(False, 0, None)
            return
        ch = self._new_channel(
            "originated", ep.ext, caller_num=ep.ext, caller_name=ep.name, context=ep.context, exten="s"
        )
        ch.proc = k.current()
        self.emit("Newchannel", channel=ch)
        self._newexten(ch, "AppDial2", "(Outgoing Line)")
        for var in reversed(action.get_all("Variable")):
            name, _, value = var.partition("=")
            self.setvar(ch, name, _unescape(value))
        callerid = action.get("CallerID")
        if callerid:
            name, _, num = callerid.partition("<")
            ch.caller_name = name.strip().strip('"') or ch.caller_name
            ch.caller_num = num.rstrip(">").strip() or ch.caller_num
            self.emit("NewCallerid", [("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")], channel=ch)
        ch.connected_num, ch.connected_name = ch.caller_num, ch.caller_name
        self.emit("NewConnectedLine", channel=ch)
        # Originate-created legs: Dial* events carry only Dest* fields (TRACES_README).
        self.emit("DialBegin", [*ch.snapshot("Dest"), ("DialString", ep.ext)])
        behavior = ep.behavior_for(None)
        ring_timeout = _float(action.get("Timeout") or "30000") / 1000 or 30.0
        try:
            if behavior.action == "reject":
                await k.sleep(self.reject_delay)
                self.emit("DialEnd", [*ch.snapshot("Dest"), ("DialStatus", "BUSY")])
                self._hangup_event(ch, 17, "486")
                respond(False, 5, None)
                return
            await k.sleep(self.alert_delay)
            self._state(ch, 5)
            self.emit("DialState", [*ch.snapshot("Dest"), ("DialStatus", "RINGING")])
            self._set_device(ep, 6)
            if behavior.action != "answer" or behavior.ring_s >= ring_timeout:
                await k.sleep(ring_timeout)
                self.emit("DialEnd", [*ch.snapshot("Dest"), ("DialStatus", "NOANSWER")])
                self._set_device(ep, 1)
                self._hangup_event(ch, 19)
                respond(False, 3, None)
                return
            await k.sleep(behavior.ring_s - self.alert_delay)
        except HangupRequested:
            self.emit("DialEnd", [*ch.snapshot("Dest"), ("DialStatus", "CANCEL")])
            self._set_device(ep, 1)
            self._hangup_event(ch, ch.explicit_cause or 16)
            respond(False, 1, None)
            return
        self._state(ch, 6)
        self.emit("DialEnd", [*ch.snapshot("Dest"), ("DialStatus", "ANSWER")])
        self._set_device(ep, 2)
        ch.context, ch.exten, ch.priority = context, exten, prio
        # OriginateResponse comes right after the first dialplan steps (whisper_barge:
        # Newexten Answer, Newexten ChanSpy, OriginateResponse).
        k.call_later(self.originate_answer_gap, respond, True, 4, ch)
        try:
            await self._pbx(ch)
        finally:
            self._set_device(ep, 1)

    # -- AMI: actions --------------------------------------------------------------------------------
    async def _handle(self, session: AmiSession, action: AmiMessage) -> None:
        self.kernel.sync()  # the action arrives now
        name = (action.get("Action") or "").strip()
        await super()._handle(session, action)
        if name and session.authenticated and name.lower() not in self._handlers:
            stamp = self._eventtv()
            peer = session.transport.get_extra_info("peername") if session.transport else None
            session.event(
                "RequestBadFormat",
                [
                    ("EventTV", stamp),
                    ("Severity", "Error"),
                    ("Service", "AMI"),
                    ("EventVersion", "1"),
                    ("SessionID", f"0x{id(session):x}"),
                    ("LocalAddress", f"IPV4/TCP/{self.host}/{self.port}"),
                    ("RemoteAddress", f"IPV4/TCP/127.0.0.1/{peer[1] if peer else 0}"),
                    ("RequestType", f"Action: {name}"),
                    ("SessionTV", stamp),
                    ("AccountID", self.username),
                ],
            )

    def _eventtv(self) -> str:
        t = self.kernel.now()
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}+0000"

    def _act_ping(self, session: AmiSession, action: AmiMessage) -> None:
        if self.answer_pings:
            session.respond(action, "Success", fields=[("Ping", "Pong"), ("Timestamp", f"{self.kernel.now():.6f}")])

    def _channel_or_error(self, session: AmiSession, action: AmiMessage) -> SimChannel | None:
        ch = self.channels.get(action.get("Channel") or "")
        if ch is None or ch.gone:
            session.respond(action, "Error", "No such channel")
            return None
        return ch

    def _act_getvar(self, session: AmiSession, action: AmiMessage) -> None:
        var = action.get("Variable") or ""
        if action.get("Channel"):
            ch = self._channel_or_error(session, action)
            if ch is None:
                return
            value = self.getvar(ch, var)
        else:
            value = self.globals.get(var, "")
        session.respond(action, "Success", fields=[("Variable", var), ("Value", value)])

    def _act_setvar(self, session: AmiSession, action: AmiMessage) -> None:
        var = action.get("Variable") or ""
        value = action.get("Value") or ""
        if not var:
            session.respond(action, "Error", "No variable specified")
            return
        if action.get("Channel"):
            ch = self._channel_or_error(session, action)
            if ch is None:
                return
            session.respond(action, "Success", "Variable Set")
            self.setvar(ch, var, value)  # VarSet after the response (redirect_flow)
        else:
            self.globals[var] = value
            session.respond(action, "Success", "Variable Set")

    def _act_agi(self, session: AmiSession, action: AmiMessage) -> None:
        chan = action.get("Channel") or ""
        ch = self.channels.get(chan)
        if ch is None or ch.gone:
            session.respond(action, "Error", f"Channel {chan} does not exist.")
            return
        if ch.agi is None:
            session.respond(action, "Error", f"Failed to add AGI command to channel {chan} queue")
            return
        session.respond(action, "Success", "Added AGI command to queue")
        self.agi(chan, action.get("Command") or "", action.get("CommandID") or "")

    def agi(self, channel: str | SimCall, command: str, command_id: str = "") -> bool:
        """Queue an AsyncAGI command as ``Action: AGI`` does (for controller-less scripts and
        tests); False if the channel is not in ``AGI(agi:async)``. The result is only visible as
        events (AGIExecStart/End, AsyncAGIExec)."""
        self.kernel.sync()
        name = channel.channel if isinstance(channel, SimCall) else channel
        ch = self.channels.get(name or "")
        if ch is None or ch.gone or ch.agi is None:
            return False
        ch.agi.queue.append((command, command_id))
        ch.agi.signal.fire()
        return True

    def _act_hangup(self, session: AmiSession, action: AmiMessage) -> None:
        ch = self._channel_or_error(session, action)
        if ch is None:
            return
        session.respond(action, "Success", "Channel Hungup")
        self.hangup(ch, int(_float(action.get("Cause") or "16")))

    def hangup(self, channel: str | SimChannel | SimCall, cause: int = 16) -> None:
        """Hang a channel up the way AMI ``Hangup`` does (no HangupRequest event, a soft hangup)."""
        self.kernel.sync()
        if isinstance(channel, SimCall):
            channel = channel.channel or ""
        ch = self.channels.get(channel) if isinstance(channel, str) else channel
        if ch is None or ch.gone or ch.hanging_up:
            return
        if ch.kind == "agent":
            # agent legs run no dialplan: the caller's Queue() sees the leg go
            if ch.peer is not None:
                self.kernel.interrupt(ch.peer.proc, PeerHangup(ch, cause))
            elif ch.leg is not None:
                ch.leg.killed = cause
                ch.leg.signal.fire()
            return
        ch.hanging_up = True
        ch.explicit_cause = cause
        if ch.call is not None and ch.call.hangup_by is None:
            ch.call.hangup_by = "system"
        self.kernel.interrupt(ch.proc, HangupRequested(cause))

    def _act_redirect(self, session: AmiSession, action: AmiMessage) -> None:
        ch = self._channel_or_error(session, action)
        if ch is None:
            return
        prio_text = action.get("Priority") or "1"
        if not prio_text.isdigit() or int(prio_text) < 1:
            session.respond(action, "Error", "Invalid priority")
            return
        if ch.proc is None or ch.kind == "agent":
            session.respond(action, "Error", "Redirect failed")
            return
        session.respond(action, "Success", "Redirect successful")
        self.redirect(ch, action.get("Context") or ch.context, action.get("Exten") or ch.exten, int(prio_text))

    def redirect(self, channel: str | SimChannel | SimCall, context: str, exten: str, priority: int = 1) -> bool:
        """AMI ``Redirect`` (an async goto): the channel's application unwinds as Asterisk's
        does (out of Queue: QueueCallerAbandon + QueueCallerLeave; out of AGI: AsyncAGIEnd) and
        the dialplan continues at ``context,exten,priority``. False if it runs no dialplan."""
        self.kernel.sync()
        if isinstance(channel, SimCall):
            channel = channel.channel or ""
        ch = self.channels.get(channel) if isinstance(channel, str) else channel
        if ch is None or ch.gone or ch.proc is None or ch.kind == "agent":
            return False
        self.kernel.interrupt(ch.proc, AsyncGoto(context, exten, priority))
        return True

    async def _act_originate(self, session: AmiSession, action: AmiMessage) -> None:
        if not action.get("Channel"):
            session.respond(action, "Error", "Channel not specified")
            return
        if (action.get("Async") or "").lower() in ("true", "yes", "1", "on"):
            session.respond(action, "Success", "Originate successfully queued")
            self.kernel.spawn(self._originate(action, None), f"originate-{action.get('ActionID')}")
            return
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.kernel.spawn(self._originate(action, done), f"originate-{action.get('ActionID')}")
        if await done:
            session.respond(action, "Success", "Originate successfully queued")
        else:
            session.respond(action, "Error", "Originate failed")

    # queue membership ---------------------------------------------------------------------------
    def pause_member(self, interface: str, paused: bool, reason: str = "", queue: str | None = None) -> bool:
        """``QueuePause``: pause/unpause in one queue or all; False if not a member anywhere."""
        queues = [q for q in self.queues.values() if (queue is None or q.name == queue) and q.member(interface)]
        if not queues:
            return False
        now = int(self.kernel.now())
        first = queues[0].member(interface)
        assert first is not None
        if queue is None:
            self._qlog(
                "NONE", "NONE", first.name, "PAUSEALL" if paused else "UNPAUSEALL", *((reason,) if paused else ())
            )
        for q in queues:
            m = q.member(interface)
            assert m is not None
            m.paused = paused
            m.paused_reason = reason if paused else ""
            if paused:
                m.last_pause = now
            # one QueueMemberPause per queue, after the action's response (queue_pause_reason)
            self.emit("QueueMemberPause", self._member_fields(q, m))
            self._qlog("NONE", q.name, m.name, "PAUSE" if paused else "UNPAUSE", *((reason,) if paused else ()))
        self._queues_changed()
        return True

    def add_member(
        self, queue: str, interface: str, *, name: str = "", penalty: int = 0, paused: bool = False, reason: str = ""
    ) -> str | None:
        """``QueueAdd`` (dynamic member); returns the Asterisk error text or None."""
        q = self.queues.get(queue)
        if q is None:
            return "Unable to add interface to queue: No such queue"
        if q.member(interface) is not None:
            return "Unable to add interface: Already there"
        m = SimMember(
            interface,
            name or interface,
            penalty,
            paused=paused,
            paused_reason=reason if paused else "",
            membership="dynamic",
            login_time=int(self.kernel.now()),
        )
        q.members.append(m)
        self.emit("QueueMemberAdded", self._member_fields(q, m))
        self._qlog("MANAGER", q.name, interface, "ADDMEMBER")
        self._queues_changed()
        return None

    def remove_member(self, queue: str, interface: str) -> str | None:
        """``QueueRemove``; returns the Asterisk error text or None."""
        q = self.queues.get(queue)
        if q is None:
            return "Unable to remove interface from queue: No such queue"
        m = q.member(interface)
        if m is None:
            return "Unable to remove interface: Not there"
        if m.membership != "dynamic":
            return "Member not dynamic"
        q.members.remove(m)
        self.emit("QueueMemberRemoved", self._member_fields(q, m))
        self._qlog("MANAGER", q.name, interface, "REMOVEMEMBER")
        self._queues_changed()
        return None

    def _act_queuepause(self, session: AmiSession, action: AmiMessage) -> None:
        interface = action.get("Interface") or ""
        paused = (action.get("Paused") or "").lower() in ("true", "yes", "1", "on")
        queue = action.get("Queue") or None
        reason = action.get("Reason") or ""
        queues = [q for q in self.queues.values() if (queue is None or q.name == queue) and q.member(interface)]
        if not interface or not queues:
            session.respond(action, "Error", "Interface not found")
            return
        session.respond(
            action, "Success", "Interface paused successfully" if paused else "Interface unpaused successfully"
        )
        self.pause_member(interface, paused, reason, queue)

    def _act_queueadd(self, session: AmiSession, action: AmiMessage) -> None:
        queue, interface = action.get("Queue") or "", action.get("Interface") or ""
        if not queue or not interface:
            session.respond(action, "Error", "'Queue' or 'Interface' not set.")
            return
        paused = (action.get("Paused") or "").lower() in ("true", "yes", "1", "on")
        error = self._precheck_add(queue, interface)
        if error is not None:
            session.respond(action, "Error", error)
            return
        session.respond(action, "Success", "Added interface to queue")
        self.add_member(
            queue,
            interface,
            name=action.get("MemberName") or "",
            penalty=int(_float(action.get("Penalty") or "0")),
            paused=paused,
            reason=action.get("Reason") or "",
        )

    def _precheck_add(self, queue: str, interface: str) -> str | None:
        q = self.queues.get(queue)
        if q is None:
            return "Unable to add interface to queue: No such queue"
        if q.member(interface) is not None:
            return "Unable to add interface: Already there"
        return None

    def _act_queueremove(self, session: AmiSession, action: AmiMessage) -> None:
        queue, interface = action.get("Queue") or "", action.get("Interface") or ""
        q = self.queues.get(queue)
        m = q.member(interface) if q is not None else None
        if q is None:
            session.respond(action, "Error", "Unable to remove interface from queue: No such queue")
        elif m is None:
            session.respond(action, "Error", "Unable to remove interface: Not there")
        elif m.membership != "dynamic":
            session.respond(action, "Error", "Member not dynamic")
        else:
            session.respond(action, "Success", "Removed interface from queue")
            self.remove_member(queue, interface)

    # status lists ---------------------------------------------------------------------------------
    def _duration(self, ch: SimChannel) -> int:
        return int(self.kernel.now() - ch.created)

    def _act_coreshowchannels(self, session: AmiSession, action: AmiMessage) -> None:
        items = []
        for ch in list(self.channels.values()):
            d = self._duration(ch)
            items.append(
                (
                    "CoreShowChannel",
                    [
                        *ch.snapshot(),
                        ("Application", ch.application),
                        ("ApplicationData", ch.application_data),
                        ("Duration", f"{d // 3600:02d}:{d // 60 % 60:02d}:{d % 60:02d}"),
                        ("BridgeId", ch.bridge.uniqueid if ch.bridge else ""),
                    ],
                )
            )
        session.send_list(
            action, items, "CoreShowChannelsComplete", message="Channels will follow", action_id_first=True
        )

    def _act_status(self, session: AmiSession, action: AmiMessage) -> None:
        want = action.get("Channel")
        if want:
            ch = self._channel_or_error(session, action)
            if ch is None:
                return
            chans = [ch]
        else:
            chans = list(self.channels.values())
        wanted_vars = [v.strip() for v in (action.get("Variables") or "").split(",") if v.strip()]
        items = []
        for ch in chans:
            body: list[tuple[str, str]] = [
                ("Privilege", "Call"),
                *ch.snapshot(),
                ("Type", "PJSIP"),
                ("DNID", ch.dnid),
                ("EffectiveConnectedLineNum", ch.connected_num),
                ("EffectiveConnectedLineName", ch.connected_name),
                ("TimeToHangup", "0"),
                ("BridgeID", ch.bridge.uniqueid if ch.bridge else ""),
                ("Application", ch.application),
                ("Data", ch.application_data),
                ("Nativeformats", "(ulaw)"),
                ("Readformat", "ulaw"),
                ("Readtrans", ""),
                ("Writeformat", "ulaw"),
                ("Writetrans", ""),
                ("Callgroup", "0"),
                ("Pickupgroup", "0"),
                ("Seconds", str(self._duration(ch))),
            ]
            body.extend(("Variable", f"{v}={self.getvar(ch, v)}") for v in wanted_vars)
            items.append(("Status", body))
        session.send_list(
            action,
            items,
            "StatusComplete",
            message="Channel status will follow",
            extra_complete=[("Items", str(len(items)))],
        )

    def _act_corestatus(self, session: AmiSession, action: AmiMessage) -> None:
        t = time.gmtime(self.started_at)
        calls = sum(1 for ch in self.channels.values() if ch.kind == "caller")
        session.respond(
            action,
            "Success",
            fields=[
                ("CoreStartupDate", time.strftime("%Y-%m-%d", t)),
                ("CoreStartupTime", time.strftime("%H:%M:%S", t)),
                ("CoreReloadDate", time.strftime("%Y-%m-%d", t)),
                ("CoreReloadTime", time.strftime("%H:%M:%S", t)),
                ("CoreCurrentCalls", str(calls)),
                ("CoreProcessedCalls", str(len(self.calls))),
            ],
        )

    def _act_pjsipshowendpoints(self, session: AmiSession, action: AmiMessage) -> None:
        items = []
        active = {ext: 0 for ext in (*self.endpoints, "pstn")}
        for ch in self.channels.values():
            active[ch.endpoint] = active.get(ch.endpoint, 0) + 1
        for ext in sorted(active):
            ep = self.endpoints.get(ext)
            state = ENDPOINT_TEXT.get(ep.devstate if ep else (2 if active[ext] else 1), "Unknown")
            items.append(
                (
                    "EndpointList",
                    [
                        ("ObjectType", "endpoint"),
                        ("ObjectName", ext),
                        ("Transport", "transport-udp"),
                        ("Aor", ext),
                        ("Auths", ""),
                        ("OutboundAuths", ""),
                        ("Contacts", f"{ext}/sip:{ext}@127.0.0.1:5060,"),
                        ("DeviceState", state),
                        ("ActiveChannels", str(active[ext])),
                    ],
                )
            )
        session.send_list(
            action,
            items,
            "EndpointListComplete",
            message="A listing of Endpoints follows, presented as EndpointList events",
            action_id_first=True,
        )

    def _act_queuestatus(self, session: AmiSession, action: AmiMessage) -> None:
        want_member = action.get("Member")
        now = self.kernel.now()
        items: list[tuple[str, Sequence[tuple[str, str]]]] = []
        for q in self._queues_for(action):
            assert isinstance(q, SimQueue)
            perf = f"{(q.completed_in_sl / q.completed * 100) if q.completed else 0:.1f}"
            items.append(
                (
                    "QueueParams",
                    [
                        ("Queue", q.name),
                        ("Max", "0"),
                        ("Strategy", q.strategy),
                        ("Calls", str(len(q.entries))),
                        ("Holdtime", str(q.holdtime)),
                        ("TalkTime", str(q.talktime)),
                        ("Completed", str(q.completed)),
                        ("Abandoned", str(q.abandoned)),
                        ("ServiceLevel", str(q.service_level)),
                        ("ServicelevelPerf", perf),
                        ("ServicelevelPerf2", perf),
                        ("Weight", str(q.weight)),
                    ],
                )
            )
            for m in q.members:
                assert isinstance(m, SimMember)
                if want_member and m.interface != want_member and m.name != want_member:
                    continue
                fields = self._member_fields(q, m, ringinuse=False)
                fields[0:2] = [("Queue", q.name), ("Name", m.name or m.interface), ("Location", m.interface)]
                del fields[3]  # Interface -> Location (QueueMember items, status_queries)
                items.append(("QueueMember", fields))
            for pos, e in enumerate(q.entries, 1):
                ch = e.channel
                items.append(
                    (
                        "QueueEntry",
                        [
                            ("Queue", q.name),
                            ("Position", str(pos)),
                            ("Channel", ch.name),
                            ("Uniqueid", ch.uniqueid),
                            ("CallerIDNum", ch.caller_num),
                            ("CallerIDName", ch.caller_name),
                            # QueueEntry says "unknown" where snapshots say "<unknown>" (traces)
                            ("ConnectedLineNum", "unknown" if ch.connected_num == "<unknown>" else ch.connected_num),
                            ("ConnectedLineName", "unknown" if ch.connected_name == "<unknown>" else ch.connected_name),
                            ("Wait", str(int(now - e.start))),
                            ("Priority", str(e.prio)),
                        ],
                    )
                )
        session.send_list(action, items, "QueueStatusComplete", message="Queue status will follow")

    def _act_queuesummary(self, session: AmiSession, action: AmiMessage) -> None:
        now = self.kernel.now()
        items = []
        for q in self._queues_for(action):
            assert isinstance(q, SimQueue)
            items.append(
                (
                    "QueueSummary",
                    [
                        ("Queue", q.name),
                        ("LoggedIn", str(len(q.members))),
                        ("Available", str(sum(1 for m in q.members if self._member_available(m)))),
                        ("Callers", str(len(q.entries))),
                        ("HoldTime", str(q.holdtime)),
                        ("TalkTime", str(q.talktime)),
                        ("LongestHoldTime", str(max((int(now - e.start) for e in q.entries), default=0))),
                    ],
                )
            )
        session.send_list(action, items, "QueueSummaryComplete", message="Queue summary will follow")

    # -- output ---------------------------------------------------------------------------------------
    def render_event(self, name: str, fields: Fields = (), *, channel: FakeChannel | None = None) -> bytes:
        """The base server's rendering without its per-header validation (a quarter of the run
        time under load): every value here comes from the dialplan file, AMI headers (already
        split at CR/LF) or sanitized scripts; a stray CR/LF is still blanked, never sent.

        Rendered in one piece (the channel snapshot as one string); a CR or LF inside a value
        shows as more CRs/LFs than header lines, and only then is the event rendered line by
        line with the value blanked."""
        items = fields.items() if isinstance(fields, Mapping) else fields
        body = "".join([f"{key}: {value}\r\n" for key, value in items])
        snap = channel.snapshot_text() if channel is not None else ""
        text = f"Event: {name}\r\nPrivilege: {_PRIVILEGE.get(name, 'call,all')}\r\n{snap}{body}\r\n"
        lines = 3 + len(items) + (14 if channel is not None else 0)  # (14: FakeChannel.snapshot)
        if text.count("\n") == lines and text.count("\r") == lines:
            return text.encode()
        return self._render_blanked(name, fields, channel)

    def _render_blanked(self, name: str, fields: Fields, channel: FakeChannel | None) -> bytes:
        parts = [f"Event: {name}\r\nPrivilege: {_PRIVILEGE.get(name, 'call,all')}\r\n"]
        items = list(channel.snapshot()) if channel is not None else []
        items.extend(fields.items() if isinstance(fields, Mapping) else fields)
        for key, value in items:
            text = str(value)
            if "\r" in text or "\n" in text:
                text = text.replace("\r", " ").replace("\n", " ")
            parts.append(f"{key}: {text}\r\n")
        parts.append("\r\n")
        return "".join(parts).encode()

    def emit(self, name: str, fields: Fields = (), *, channel: FakeChannel | None = None) -> None:
        listeners = [s for s in self.sessions if s.authenticated and s.events_on]
        if not listeners and self.event_log is None:
            return
        data = self.render_event(name, fields, channel=channel)
        if self.event_log is not None:
            self.event_log.append((self.kernel.now(), data))
        for s in listeners:
            s.write(data)

    def logged_messages(self) -> list[tuple[AmiMessage, datetime]]:
        """The events recorded with ``record_events=True``, parsed, with their virtual times."""
        parser = AmiParser(expect_banner=False)
        out: list[tuple[AmiMessage, datetime]] = []
        for t, data in self.event_log or ():
            stamp = datetime.fromtimestamp(t, UTC)
            out.extend((m, stamp) for m in parser.feed(data))
        return out

    async def _throttle(self) -> None:
        # stepped mode: let slow AMI readers catch up instead of buffering without limit
        # (a transport's buffer level has no event to wait for: poll)
        while any(s.transport is not None and s.transport.get_write_buffer_size() > 1 << 20 for s in self.sessions):  # noqa: ASYNC110
            await asyncio.sleep(0.001)


# -- helpers ------------------------------------------------------------------------------------
def _float(text: str | None) -> float:
    try:
        return float((text or "").strip() or 0)
    except ValueError:
        return 0.0


def _truthy(text: str) -> bool:
    text = text.strip()
    if not text:
        return False
    return float(text) != 0 if _is_num(text) else True


def _is_num(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


_EXPANSIONS: dict[str, tuple[tuple[bool, str], ...] | None] = {}


def _expansions(text: str) -> tuple[tuple[bool, str], ...] | None:
    """``text`` cut where ``substitute`` would expand: (True, literal run) and (False, one whole
    ``${...}``/``$[...]``), found exactly as ``substitute`` scans (an unclosed one is literal to
    the end); None when there is nothing to expand. Substituting the pieces one by one gives
    ``substitute(text)`` without its character-by-character walk over the literal runs (a
    third of the simulator's time per call). Cached: the texts are the dialplan's arguments."""
    if "$" not in text:
        return None
    cached = _EXPANSIONS.get(text, ())
    if cached != ():
        return cached  # type: ignore[return-value]
    parts: list[tuple[bool, str]] = []
    i = start = 0
    n = len(text)
    while True:
        i = text.find("$", i)
        if i < 0 or i + 1 >= n:
            break
        opener = text[i + 1]
        if opener not in "{[":
            i += 1
            continue
        j = _closing(text, i + 1, opener, "}" if opener == "{" else "]")
        if j < 0:
            break  # substitute: the rest is literal
        if i > start:
            parts.append((True, text[start:i]))
        parts.append((False, text[i : j + 1]))
        i = start = j + 1
    if start < n:
        parts.append((True, text[start:]))
    out = tuple(parts) if any(not literal for literal, _ in parts) else None
    if len(_EXPANSIONS) < 4096:
        _EXPANSIONS[text] = out
    return out


def _expand(text: str, resolve: Resolver) -> str:
    """``dialplan.substitute(text, resolve)``, piece by piece (see ``_expansions``)."""
    parts = _expansions(text)
    if parts is None:
        return text
    out = []
    for literal, part in parts:
        if literal:
            out.append(part)
        elif part[1] == "{":
            out.append(_lookup(_expand(part[2:-1], resolve), resolve))
        else:
            out.append(evaluate(_expand(part[2:-1], resolve)))
    return "".join(out)


def _prompt_len(prompt: str) -> float:
    return PROMPTS.get(prompt.strip().rsplit("/", 1)[-1], DEFAULT_PROMPT_S)


def _clean(text: str) -> str:
    return "".join(" " if c in "\r\n\0" else c for c in text)


def _unescape(value: str) -> str:
    out = []
    i = 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            out.append(value[i + 1])
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)
