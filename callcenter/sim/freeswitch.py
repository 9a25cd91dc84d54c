"""A simulated FreeSWITCH 1.10 that speaks real ESL on loopback and plays whole calls.

Built on :class:`~callcenter.sim.esl_server.FakeEslServer` (the wire: auth, api/bgapi, plain and
JSON events, filters, sendmsg) and the same discrete-event :class:`~callcenter.sim.kernel.Kernel`
and traffic model (:mod:`callcenter.sim.traffic`) as the Asterisk simulator. What it sends imitates
the FreeSWITCH 1.10.12 captures in ``tests/fixtures/freeswitch`` (TRACES_README.md there): the same
event names, the headers the controller reads, their order and the quirks, for the same situations.

Layers
    * virtual time -- ``speed=20`` runs 20x faster than real time; ``speed=math.inf`` is stepped
      (``advance()``). Channel UUIDs, member ids and every random choice come from the seed, and
      event dates from the virtual clock: one seed, one event stream.
    * the XML dialplan -- ``dialplans/freeswitch/dialplan/callcenter.xml`` itself by default
      (``X-PRE-PROCESS set``, ``$${var}``, contexts, extensions, conditions with regex captures,
      ``${var}`` / ``${api(args)}`` expanded when an application runs), so the simulator follows
      the shipped file; tests pass the lab's ``public`` dialplan of the traces instead.
    * applications -- ``answer``, ``set``/``export``/``unset``, ``sleep``, ``playback``,
      ``play_and_get_digits`` (the caller's keys from the call script, ``variable_<var>`` and
      ``read_result`` on the completion, failure extension), ``transfer``, ``park`` (CHANNEL_PARK;
      runs ``sendmsg`` executes in order while parked, CHANNEL_UNPARK when a transfer breaks it),
      ``sched_transfer``/``sched_cancel`` (the fail-open timer), ``hangup``, ``callcenter``,
      ``eavesdrop``/``three_way`` (MEDIA_BUG_START/STOP, ``Media-Bug-Function: eavesdrop`` on the
      spied channel); anything else completes at once.
    * mod_callcenter -- queues (``name@domain``), agents and tiers from ``callcenter.conf.xml``
      (the shipped sample by default) or ``callcenter_config``; members scored ``seconds waited +
      cc_base_score (+ seconds since answer with time-base-score=system)``, served highest first;
      strategies ``longest-idle-agent`` (level, last offered call, position: one agent at a
      time), ``ring-all`` (every free agent of the best level... at once; the first to answer wins,
      the others are hung up LOSE_RACE), ``round-robin``, ``top-down``/``sequentially-by-agent-order``,
      ``agent-with-least-talk-time``, ``agent-with-fewest-calls``, ``random``; agent status
      (Available / On Break / Logged Out) and state (Waiting / Receiving / In a queue call),
      ready time after wrap-up, reject, busy and no-answer delays, ``max-no-answer`` sending the
      agent to the queue's ``agent-no-answer-status``; the ring limited by the contact's
      ``leg_timeout`` (``call_timeout`` there is ignored, as measured; default
      agent-originate-timeout 60 s). Not modelled: max-wait-time*, tier rules, abandoned resume,
      exit keys, skills.
    * phones -- agent and supervisor endpoints with the traffic model's ``AgentBehavior`` (answer
      after N s / reject / never answer, hang up after a talk time), callers with a ``CallScript``
      (keys per prompt, patience in the IVR, in the queue, while an agent rings, talk time).

Events per situation, as captured: a call arrives with two CHANNEL_STATE before CHANNEL_CREATE;
every dialplan application is CHANNEL_EXECUTE / CHANNEL_EXECUTE_COMPLETE with an
``Application-UUID`` (a sendmsg's ``Event-UUID`` when it gave one); ``member-queue-start`` carries
the caller's channel, ``CC-Member-Session-UUID`` = the caller's Unique-ID and ``CC-Member-UUID`` =
mod_callcenter's own id, new for every queue joined; an agent ring is ``agent-state-change
Receiving`` + ``agent-offering`` then the agent leg's OUTGOING/CREATE/ORIGINATE/PROGRESS; an
abandon is the caller's CHANNEL_HANGUP, the ringing leg's ``ORIGINATOR_CANCEL``, ``member-queue-end``
``Cancel``/``BREAK_OUT``, later ``bridge-agent-fail``; a ``uuid_transfer`` out of a queue looks the
same (with ``Answer-State: answered``) followed by a new ``member-queue-start``; an answered call
has ``bridge-agent-start`` on the agent leg, the ``callcenter`` completion at bridge time,
``uuid_bridge`` on both legs, and at the end ``bridge-agent-end`` + ``member-queue-end Terminated``
after both legs' CHANNEL_HANGUP_COMPLETE, whoever hung up (``variable_sip_hangup_disposition``
``recv_bye`` on the leg that sent BYE); an IVR abandon produces no callcenter event at all. Plain
header values are URL-encoded on the wire, API replies and events interleave (an api's events
are written after its reply), HEARTBEAT every 20 s.

Usage (an end-to-end test; ``clock=sim.clock`` keeps the client's timestamps on virtual time)::

    async with FreeswitchSim(seed=1, speed=20) as sim:
        client = EslClient("127.0.0.1", sim.port, "ClueCon", clock=sim.clock)
        call = sim.call("2125550123", did="5550110", digits=[("1", 2.0)], talk_s=30)
        await call.ended(timeout=30)
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import random
import re
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast

from callcenter.pbx.freeswitch.message import EslFrame
from callcenter.sim.asterisk import AgentBehavior, CallScript, SimCall
from callcenter.sim.esl_server import EslSession, FakeChannel, FakeEslServer, Fields
from callcenter.sim.kernel import Kernel, Proc, Signal, Timer

__all__ = [
    "SHIPPED_CALLCENTER_CONF",
    "SHIPPED_DIALPLAN",
    "FreeswitchSim",
    "FsDialplan",
    "FsEndpoint",
    "FsLeg",
    "freeswitch_traffic",
]

log = logging.getLogger(__name__)

_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_DIALPLAN = _ROOT / "dialplans" / "freeswitch" / "dialplan" / "callcenter.xml"
SHIPPED_CALLCENTER_CONF = _ROOT / "dialplans" / "freeswitch" / "autoload_configs" / "callcenter.conf.xml"

# switch_channel_state_t numbers (Channel-State-Number)
_STATE_NUMBER = {
    "CS_NEW": 0, "CS_INIT": 1, "CS_ROUTING": 2, "CS_SOFT_EXECUTE": 3, "CS_EXECUTE": 4, "CS_EXCHANGE_MEDIA": 5,
    "CS_PARK": 6, "CS_CONSUME_MEDIA": 7, "CS_HIBERNATE": 8, "CS_RESET": 9, "CS_HANGUP": 10, "CS_REPORTING": 11,
    "CS_DESTROY": 12, "CS_NONE": 13,
}  # fmt: skip
_Q850 = {
    "NORMAL_CLEARING": 16, "USER_BUSY": 17, "NO_USER_RESPONSE": 18, "NO_ANSWER": 19, "CALL_REJECTED": 21,
    "ORIGINATOR_CANCEL": 487, "ALLOTTED_TIMEOUT": 602, "LOSE_RACE": 502, "NO_ROUTE_DESTINATION": 3,
    "USER_NOT_REGISTERED": 606, "NORMAL_UNSPECIFIED": 31,
}  # fmt: skip
_AGENT_STATUSES = ("Logged Out", "Available", "Available (On Demand)", "On Break")
_AGENT_STATES = ("Idle", "Waiting", "Receiving", "In a queue call")
_AVAILABLE = ("Available", "Available (On Demand)")
_AGENT_COLUMNS = (
    "name|instance_id|uuid|type|contact|status|state|max_no_answer|wrap_up_time|reject_delay_time|busy_delay_time|"
    "no_answer_delay_time|last_bridge_start|last_bridge_end|last_offered_call|last_status_change|no_answer_count|"
    "calls_answered|talk_time|ready_time|external_calls_count"
)
_QUEUE_COLUMNS = (
    "name|strategy|moh_sound|time_base_score|tier_rules_apply|tier_rule_wait_second|tier_rule_wait_multiply_level|"
    "tier_rule_no_agent_no_wait|discard_abandoned_after|abandoned_resume_allowed|max_wait_time|"
    "max_wait_time_with_no_agent|max_wait_time_with_no_agent_time_reached|record_template|calls_answered|"
    "calls_abandoned|ring_progressively_delay|skip_agents_with_external_calls|agent_no_answer_status"
)
_MEMBER_COLUMNS = (
    "queue|instance_id|uuid|session_uuid|cid_number|cid_name|system_epoch|joined_epoch|rejoined_epoch|bridge_epoch|"
    "abandoned_epoch|base_score|skill_score|serving_agent|serving_system|state|score"
)
_TIER_COLUMNS = "queue|agent|state|level|position"
_SYSTEM = "single_box"
_CC = "callcenter::info"
DEFAULT_PROMPT_S = 2.0


# -- control flow thrown into channel processes ---------------------------------------------------
class _Transfer(Exception):
    """The channel was transferred (uuid_transfer, transfer, sched_transfer): re-route it."""


class _Hangup(Exception):
    """The channel is hanging up (BYE, uuid_kill, the dialplan, the peer of a bridge)."""


# -- the XML dialplan -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Condition:
    field: str | None
    expression: str | None
    actions: tuple[tuple[str, str], ...]
    anti_actions: tuple[tuple[str, str], ...] = ()
    brk: str = "on-false"  # the condition's break attribute


@dataclass(frozen=True, slots=True)
class _Extension:
    name: str
    conditions: tuple[_Condition, ...]
    cont: bool


_PRE_SET = re.compile(r'<X-PRE-PROCESS\s+cmd="set"\s+data="([^"=]+)=([^"]*)"\s*/>')


def _preprocess(text: str, globals_: dict[str, str]) -> str:
    """FreeSWITCH's XML pre-processor: ``set`` lines, then ``$${var}`` substitution (textual)."""
    for m in _PRE_SET.finditer(text):
        globals_[m.group(1)] = m.group(2)
    return re.sub(r"\$\$\{([^}]+)\}", lambda m: globals_.get(m.group(1), ""), text)


def _source_text(source: str | Path) -> str:
    if isinstance(source, Path):
        return source.read_text(encoding="utf-8")
    return source if source.lstrip().startswith("<") else Path(source).read_text(encoding="utf-8")


class FsDialplan:
    """The XML dialplan (one or more documents): contexts of extensions, hunted like
    mod_dialplan_xml does (conditions in order, ``$1``... from the last matching regex, ``continue``)."""

    def __init__(self, sources: Iterable[str | Path], globals_: dict[str, str] | None = None) -> None:
        self.globals = globals_ if globals_ is not None else {}
        self.contexts: dict[str, list[_Extension]] = {}
        for source in sources:
            root = ET.fromstring(_preprocess(_source_text(source), self.globals))
            for ctx in root.iter("context"):
                exts = self.contexts.setdefault(ctx.get("name") or "", [])
                for ext in ctx.findall("extension"):
                    conds = tuple(
                        _Condition(
                            c.get("field"),
                            c.get("expression"),
                            tuple((a.get("application") or "", a.get("data") or "") for a in c.findall("action")),
                            tuple((a.get("application") or "", a.get("data") or "")
                                  for a in c.findall("anti-action")),
                            (c.get("break") or "on-false").lower(),
                        )
                        for c in ext.findall("condition")
                    )
                    exts.append(_Extension(ext.get("name") or "", conds, (ext.get("continue") or "") == "true"))

    def hunt(self, context: str, value_of: Callable[[str], str]) -> list[tuple[str, str]] | None:
        """The actions for a channel (``value_of(field)``), or None when nothing matched.

        As mod_dialplan_xml's ``parse_exten``: conditions in order; a match adds its actions and
        stops the extension on ``break="on-true"|"always"``; a mismatch adds its anti-actions and
        stops it on ``break="on-false"`` (the default) or ``"always"``, but goes on with the next
        condition on ``"never"``. The extension matched when its *last evaluated* condition did.
        Actions are added to the one extension being built as they are met, so those of an
        extension whose later condition fails stay in it (FreeSWITCH does the same)."""
        exts = self.contexts.get(context)
        if exts is None:
            return None
        out: list[tuple[str, str]] = []
        matched = False
        for ext in exts:
            proceed = False
            for cond in ext.conditions:
                groups: tuple[str, ...] = ()
                if cond.field is not None and cond.expression is not None:
                    m = re.search(cond.expression, value_of(cond.field))
                    if m is None:
                        proceed = False
                        out.extend(cond.anti_actions)
                        if cond.brk in ("on-false", "always"):
                            break
                        continue
                    groups = tuple(g or "" for g in m.groups())
                proceed = True
                out.extend((app, _captures(data, groups)) for app, data in cond.actions)
                if cond.brk in ("on-true", "always"):
                    break
            if proceed:
                matched = True
                if not ext.cont:
                    break
        return out if matched or out else None


def _true(value: str) -> bool:
    """switch_true: yes/on/true/enabled/active/allow or a non-zero number."""
    v = value.strip().lower()
    return v in ("yes", "on", "true", "t", "enabled", "active", "allow") or (v.isdigit() and int(v) != 0)


def _dial_vars(dial: str) -> tuple[dict[str, str], str]:
    """``{a=b,c='d e'}[leg=x]sofia/...`` -> the variables and the bare dial string: the
    ``{}`` block of an originate/bridge, then a ``[]`` block of leg variables (mod_callcenter
    contacts carry one); ``\\,`` is a comma inside a value."""
    variables: dict[str, str] = {}
    for opener, closer in ("{}", "[]"):
        if dial.startswith(opener):
            end = dial.find(closer)
            if end < 0:
                break
            for pair in re.split(r"(?<!\\),", dial[1:end]):
                key, _, value = pair.partition("=")
                if key.strip():
                    variables[key.strip()] = value.replace("\\,", ",").strip().strip("'")
            dial = dial[end + 1 :]
    return variables, dial


def _captures(data: str, groups: tuple[str, ...]) -> str:
    return re.sub(r"\$(\d)", lambda m: groups[int(m.group(1)) - 1] if 0 < int(m.group(1)) <= len(groups) else "", data)


def prompt_seconds(path: str) -> float:
    """How long a sound plays: tone_stream segments ``%(on,off,freq)`` x loops, silence_stream ms,
    anything else ``DEFAULT_PROMPT_S``; None-like (endless) for loops=-1."""
    if path.startswith("silence_stream://"):
        try:
            return int(path.split("://", 1)[1].split(",")[0]) / 1000
        except ValueError:
            return DEFAULT_PROMPT_S
    if path.startswith("tone_stream://"):
        segments = re.findall(r"%\((\d+),(\d+),", path)
        loops = re.search(r"loops=(-?\d+)", path)
        n = int(loops.group(1)) if loops else 1
        total = sum(int(a) + int(b) for a, b in segments) / 1000
        return math.inf if n < 0 else total * max(1, n)
    return DEFAULT_PROMPT_S


# -- channels and phones ----------------------------------------------------------------------------
@dataclass(eq=False)
class FsEndpoint:
    """A SIP phone (agent or supervisor) and what it does when it rings."""

    ext: str
    name: str
    caller_name: str
    behavior: AgentBehavior | Callable[[SimCall | None], AgentBehavior] = field(default_factory=AgentBehavior)
    port: int = 5180

    def behavior_for(self, call: SimCall | None) -> AgentBehavior:
        spec = self.behavior
        return spec(call) if callable(spec) else spec


@dataclass(eq=False)
class FsLeg(FakeChannel):
    """One FreeSWITCH session: the headers its events carry and what the simulator tracks."""

    kind: Literal["caller", "agent", "originated"] = "caller"
    ext: str = ""
    session_id: int = 0
    created: float = 0.0
    answered: float | None = None
    progress_media: float | None = None
    bridged_at: float | None = None
    hangup_time: float | None = None
    transfer_time: float | None = None
    hangup_cause: str | None = None
    profile_index: int = 1
    rdnis: str = ""
    transfer_source: str = ""
    source: str = "mod_sofia"
    callee: tuple[str, str] | None = None
    hanging_up: bool = False
    completed: bool = False
    destroyed: bool = False
    proc: Proc | None = None
    signal: Signal | None = None
    call: SimCall | None = None
    app: str = ""
    app_data: str = ""
    private: deque[EslFrame] = field(default_factory=deque)
    digits: deque[str] = field(default_factory=deque)
    member: _Member | None = None
    offer: _Offer | None = None
    peer: FsLeg | None = None
    spying: FsLeg | None = None
    spies: list[FsLeg] = field(default_factory=list)
    sched: list[Timer] = field(default_factory=list)
    initial: tuple[str, str, str, str] = ("", "", "", "")  # cid name, cid number, dest, context

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def headers(self) -> list[tuple[str, str]]:
        us = _usec
        out = [
            ("Channel-State", self.state),
            ("Channel-Call-State", self.call_state),
            ("Channel-State-Number", str(_STATE_NUMBER.get(self.state, 0))),
            ("Channel-Name", self.name),
            ("Unique-ID", self.uuid),
            ("Call-Direction", self.direction),
            ("Presence-Call-Direction", self.direction),
            ("Channel-HIT-Dialplan", "true" if self.kind == "caller" else "false"),
            ("Channel-Call-UUID", self.uuid),
            ("Answer-State", self.answer_state),
        ]
        if self.hangup_cause is not None:
            out.append(("Hangup-Cause", self.hangup_cause))
        if self.answered is not None or self.progress_media is not None:
            out += [
                ("Channel-Read-Codec-Name", "PCMU"),
                ("Channel-Read-Codec-Rate", "8000"),
                ("Channel-Read-Codec-Bit-Rate", "64000"),
                ("Channel-Write-Codec-Name", "PCMU"),
                ("Channel-Write-Codec-Rate", "8000"),
                ("Channel-Write-Codec-Bit-Rate", "64000"),
            ]
        out += [("Caller-Direction", self.direction), ("Caller-Logical-Direction", self.direction)]
        if self.direction == "inbound":
            out += [("Caller-Username", self.caller_number), ("Caller-Dialplan", "XML")]
        out += [
            ("Caller-Caller-ID-Name", self.caller_name),
            ("Caller-Caller-ID-Number", self.caller_number),
            ("Caller-Orig-Caller-ID-Name", self.caller_name),
            ("Caller-Orig-Caller-ID-Number", self.caller_number),
        ]
        if self.callee is not None:
            out += [("Caller-Callee-ID-Name", self.callee[0]), ("Caller-Callee-ID-Number", self.callee[1])]
        out += [
            ("Caller-Network-Addr", "127.0.0.1"),
            ("Caller-ANI", self.caller_number),
            ("Caller-Destination-Number", self.destination),
            ("Caller-Unique-ID", self.uuid),
            ("Caller-Source", self.source),
        ]
        if self.transfer_source:
            out.append(("Caller-Transfer-Source", self.transfer_source))
        out.append(("Caller-Context", self.context))
        if self.rdnis:
            out.append(("Caller-RDNIS", self.rdnis))
        out += [
            ("Caller-Channel-Name", self.name),
            ("Caller-Profile-Index", str(self.profile_index)),
            ("Caller-Profile-Created-Time", us(self.transfer_time or self.created)),
            ("Caller-Channel-Created-Time", us(self.created)),
            ("Caller-Channel-Answered-Time", us(self.answered)),
            ("Caller-Channel-Progress-Time", us(self.created if self.direction == "outbound" else None)),
            ("Caller-Channel-Progress-Media-Time", us(self.progress_media)),
            ("Caller-Channel-Hangup-Time", us(self.hangup_time)),
            ("Caller-Channel-Transfer-Time", us(self.transfer_time)),
            ("Caller-Channel-Resurrect-Time", "0"),
            ("Caller-Channel-Bridged-Time", us(self.bridged_at)),
            ("Caller-Channel-Last-Hold", "0"),
            ("Caller-Channel-Hold-Accum", "0"),
            ("Caller-Screen-Bit", "true"),
            ("Caller-Privacy-Hide-Name", "false"),
            ("Caller-Privacy-Hide-Number", "false"),
        ]
        out.extend((f"variable_{k}", v) for k, v in self.variables.items())
        return out


def _usec(t: float | None) -> str:
    return "0" if t is None else str(int(t * 1_000_000))


# -- mod_callcenter's tables --------------------------------------------------------------------------
@dataclass(eq=False)
class _Agent:
    name: str
    type: str = "callback"
    contact: str = ""
    status: str = "Logged Out"
    state: str = "Waiting"
    max_no_answer: int = 0
    wrap_up_time: int = 0
    reject_delay_time: int = 0
    busy_delay_time: int = 0
    no_answer_delay_time: int = 0
    last_bridge_start: int = 0
    last_bridge_end: int = 0
    last_offered_call: int = 0
    last_status_change: int = 0
    no_answer_count: int = 0
    calls_answered: int = 0
    talk_time: int = 0
    ready_time: float = 0.0
    offers: list[_Offer] = field(default_factory=list)
    leg: FsLeg | None = None  # the bridged agent leg

    def row(self) -> str:
        uuid = self.leg.uuid if self.leg is not None else ""
        return "|".join(
            str(v)
            for v in (
                self.name, _SYSTEM, uuid, self.type, self.contact, self.status, self.state, self.max_no_answer,
                self.wrap_up_time, self.reject_delay_time, self.busy_delay_time, self.no_answer_delay_time,
                self.last_bridge_start, self.last_bridge_end, self.last_offered_call, self.last_status_change,
                self.no_answer_count, self.calls_answered, self.talk_time, int(self.ready_time), 0,
            )
        )  # fmt: skip


@dataclass(eq=False)
class _Tier:
    queue: str
    agent: str
    level: int = 1
    position: int = 1
    state: str = "Ready"


@dataclass(eq=False)
class _Queue:
    name: str
    strategy: str = "longest-idle-agent"
    params: dict[str, str] = field(default_factory=dict)
    members: list[_Member] = field(default_factory=list)
    rr_last: int = 0
    calls_answered: int = 0
    calls_abandoned: int = 0

    def param(self, key: str, default: str = "") -> str:
        return self.params.get(key, default)


@dataclass(eq=False)
class _Member:
    uuid: str
    session: FsLeg
    queue: _Queue
    joined: float
    base_score: int
    seq: int
    state: str = "Waiting"  # Waiting -> Trying -> Answered
    offers: list[_Offer] = field(default_factory=list)
    agent: _Agent | None = None
    agent_leg: FsLeg | None = None
    answered_at: float | None = None
    gone: bool = False


@dataclass(eq=False)
class _Offer:
    member: _Member
    agent: _Agent
    leg: FsLeg
    behavior: AgentBehavior
    called: float
    timers: list[Timer] = field(default_factory=list)
    done: bool = False


# -- the simulator ------------------------------------------------------------------------------------
class FreeswitchSim(FakeEslServer):
    """A simulated FreeSWITCH 1.10 with mod_callcenter on loopback ESL (see the module docstring)."""

    def __init__(
        self,
        *,
        seed: int = 0,
        speed: float = 1.0,
        epoch: float | None = None,
        password: str = "ClueCon",
        host: str = "127.0.0.1",
        port: int = 0,
        dialplan: Sequence[str | Path] | None = None,
        callcenter_conf: str | Path | None = SHIPPED_CALLCENTER_CONF,
        inbound_context: str = "callcenter_inbound",
        globals_: dict[str, str] | None = None,
        record_events: bool = False,
        kernel: Kernel | None = None,
    ) -> None:
        self.rng = random.Random(f"{seed}:freeswitch")
        super().__init__(password=password, host=host, port=port, hostname="sim", core_uuid=self._uuid())
        self.kernel = kernel if kernel is not None else Kernel(speed=speed, epoch=epoch)
        self.unix_time = self.kernel.now
        self.started_at = self.kernel.now()
        self.globals.update({"domain": "default", "hold_music": "local_stream://moh"})
        self.globals.update(globals_ or {})
        self.dialplan = FsDialplan(dialplan if dialplan is not None else [SHIPPED_DIALPLAN], self.globals)
        self.inbound_context = inbound_context
        self.endpoints: dict[str, FsEndpoint] = {}
        self.queues: dict[str, _Queue] = {}
        self.agents: dict[str, _Agent] = {}
        self.tiers: list[_Tier] = []
        self.calls: list[SimCall] = []
        self.event_log: list[tuple[float, list[tuple[str, str]], str | None]] | None = [] if record_events else None
        self.heartbeat_s: float | None = 20.0
        # timing knobs (virtual seconds, measured in the traces)
        self.invite_delay = 0.021  # CS_NEW -> CS_INIT / CHANNEL_CREATE
        self.route_delay = 0.018  # transfer -> first application of the new extension
        self.private_delay = 0.02  # sendmsg / uuid_broadcast -> CHANNEL_EXECUTE on the parked channel
        self.unpark_delay = 0.021  # uuid_transfer -> CHANNEL_UNPARK
        self.dispatch_delay = 0.05  # mod_callcenter's dispatch thread polls every 100 ms
        self.bridge_delay = 0.02  # callcenter completion -> uuid_bridge
        self.cc_poll_s = 0.1  # mod_callcenter's agent thread checks both legs every 100 ms
        self.reject_delay = 0.002  # INVITE -> 486
        self.destroy_delay = 0.005  # CHANNEL_HANGUP_COMPLETE -> CHANNEL_DESTROY
        self.originate_timeout_s = 60.0  # mod_callcenter's agent-originate-timeout
        self.digit_gap_s = 0.25
        # outside numbers a channel's `bridge` dials (sofia/gateway/<gw>/<number>): callbacks
        self.remote_behaviors: dict[str, AgentBehavior] = {}
        self.remote_default = AgentBehavior("answer", ring_s=3.0, talk_s=30.0)
        self._session_ids = itertools.count(1)
        self._member_seq = itertools.count(1)
        self._call_seq = itertools.count(1)
        self._sched_ids = itertools.count(1)
        self._dispatch_signal = Signal(self.kernel, "cc-dispatch")
        self._dispatch_pending = False
        self._apps: dict[str, Callable[[FsLeg, str], Any]] = {
            "answer": self._app_answer,
            "pre_answer": self._app_noop,
            "ring_ready": self._app_noop,
            "set": self._app_set,
            "export": self._app_set,
            "unset": self._app_unset,
            "sleep": self._app_sleep,
            "playback": self._app_playback,
            "play_and_get_digits": self._app_play_and_get_digits,
            "transfer": self._app_transfer,
            "park": self._app_park,
            "sched_transfer": self._app_sched_transfer,
            "sched_cancel": self._app_sched_cancel,
            "hangup": self._app_hangup,
            "callcenter": self._app_callcenter,
            "eavesdrop": self._app_eavesdrop,
            "three_way": self._app_eavesdrop,
            "bridge": self._app_bridge,
        }
        self._apis.update(
            {
                "uuid_kill": self._api_uuid_kill,
                "uuid_transfer": self._api_uuid_transfer,
                "uuid_broadcast": self._api_uuid_broadcast,
                "uuid_recv_dtmf": self._api_uuid_recv_dtmf,
                "uuid_exists": self._api_uuid_exists,
                "uuid_setvar": self._api_setvar_synced,
                "sched_transfer": self._api_sched_transfer,
                "sched_del": self._api_sched_del,
                "show": self._api_show,
                "originate": self._api_originate_async,
                "callcenter_config": self._api_callcenter_config,
                "create_uuid": lambda s, a: self._uuid(),
            }
        )
        self._commands["sendmsg"] = self._cmd_sendmsg
        if callcenter_conf is not None:
            self.load_callcenter_conf(callcenter_conf)

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self, *, listen: bool = True) -> FreeswitchSim:  # type: ignore[override]
        """Start the clock (and the Event Socket unless ``listen=False``)."""
        if listen:
            await super().start()
        self.kernel.start()
        self.kernel.spawn(self._dispatcher(), "cc-dispatcher")
        if self.heartbeat_s:
            self.kernel.spawn(self._heartbeater(), "heartbeat")
        return self

    async def close(self) -> None:
        await self.kernel.stop()
        if self._server is not None:
            await super().close()

    async def __aenter__(self) -> FreeswitchSim:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def now(self) -> float:
        return self.kernel.now()

    def clock(self) -> datetime:
        """Virtual time as a UTC datetime: pass as ``EslClient(clock=sim.clock)``."""
        return datetime.fromtimestamp(self.kernel.now(), UTC)

    async def advance(self, seconds: float) -> None:
        await self.kernel.advance(seconds)

    def _uuid(self) -> str:
        return str(uuidlib.UUID(int=self.rng.getrandbits(128), version=4))

    async def _heartbeater(self) -> None:
        while self.heartbeat_s:
            await self.kernel.sleep(self.heartbeat_s)
            self.heartbeat()

    # -- events ---------------------------------------------------------------------------------
    def emit(
        self,
        name: str,
        fields: Fields = (),
        body: str | None = None,
        *,
        subclass: str | None = None,
        channel: FakeChannel | None = None,
    ) -> list[tuple[str, str]]:
        headers = super().emit(name, fields, body, subclass=subclass, channel=channel)
        if self.event_log is not None:
            self.event_log.append((self.kernel.now(), headers, body))
        return headers

    def _cc(self, action: str, fields: list[tuple[str, str]], channel: FsLeg | None = None) -> None:
        self.emit("CUSTOM", fields, subclass=_CC, channel=channel)
        del action

    def _state(self, ch: FsLeg, state: str) -> None:
        ch.state = state
        self.emit("CHANNEL_STATE", channel=ch)

    def _callstate(self, ch: FsLeg, call_state: str) -> None:
        old, ch.call_state = ch.call_state, call_state
        self.emit("CHANNEL_CALLSTATE", [("Original-Channel-Call-State", old)], channel=ch)

    # -- configuration --------------------------------------------------------------------------
    def add_endpoint(
        self, ext: str, name: str, *, caller_name: str | None = None, behavior: Any = None, port: int | None = None
    ) -> FsEndpoint:
        ep = FsEndpoint(ext, name, caller_name or name, behavior or AgentBehavior(), port or 5180 + len(self.endpoints))
        self.endpoints[ext] = ep
        return ep

    def set_behavior(self, ext: str, behavior: Any) -> None:
        self.endpoints[ext].behavior = behavior

    def queue_name(self, name: str) -> str:
        return name if "@" in name else f"{name}@{self.globals.get('domain', 'default')}"

    def add_queue(self, name: str, *, strategy: str = "longest-idle-agent", **params: str) -> _Queue:
        full = self.queue_name(name)
        q = self.queues.get(full)
        if q is None:
            q = self.queues[full] = _Queue(full, strategy, {k.replace("_", "-"): v for k, v in params.items()})
        return q

    def add_agent(
        self,
        name: str,
        *,
        contact: str | None = None,
        status: str = "Available",
        max_no_answer: int = 3,
        wrap_up_time: int = 10,
        reject_delay_time: int = 10,
        busy_delay_time: int = 60,
        no_answer_delay_time: int = 10,
    ) -> _Agent:
        a = self.agents.get(name)
        if a is None:
            a = self.agents[name] = _Agent(
                name, contact=contact or f"[leg_timeout=15]user/{name}@{self.globals.get('domain', 'default')}",
                status=status, max_no_answer=max_no_answer, wrap_up_time=wrap_up_time,
                reject_delay_time=reject_delay_time, busy_delay_time=busy_delay_time,
                no_answer_delay_time=no_answer_delay_time, last_status_change=int(self.now()),
            )  # fmt: skip
        return a

    def add_tier(self, queue: str, agent: str, level: int = 1, position: int | None = None) -> _Tier:
        full = self.queue_name(queue)
        for t in self.tiers:
            if t.queue == full and t.agent == agent:
                return t
        if position is None:
            position = 1 + sum(1 for t in self.tiers if t.queue == full)
        tier = _Tier(full, agent, level, position)
        self.tiers.append(tier)
        self._kick()
        return tier

    def add_static_member(self, queue: str, interface: str, name: str = "", penalty: int = 0) -> _Tier:
        """The traffic model's queue membership: an agent (named like its phone) and a tier
        (level = penalty), as callcenter.conf.xml would list them."""
        agent = interface.rsplit("/", 1)[-1]
        self.add_queue(queue)
        self.add_agent(agent)
        return self.add_tier(queue, agent, level=penalty)

    def load_callcenter_conf(self, source: str | Path) -> None:
        """Queues, agents and tiers of a ``callcenter.conf.xml`` (truncate-*-on-load: replaces)."""
        root = ET.fromstring(_preprocess(_source_text(source), self.globals))
        self.queues.clear()
        self.agents.clear()
        self.tiers.clear()
        for q in root.iter("queue"):
            params = {p.get("name") or "": p.get("value") or "" for p in q.findall("param")}
            self.add_queue(q.get("name") or "", strategy=params.pop("strategy", "longest-idle-agent")).params.update(
                params
            )
        for a in root.iter("agent"):
            name = a.get("name") or ""
            self.agents[name] = _Agent(
                name, type=a.get("type") or "callback", contact=a.get("contact") or "",
                status=a.get("status") or "Logged Out", max_no_answer=int(a.get("max-no-answer") or 0),
                wrap_up_time=int(a.get("wrap-up-time") or 0), reject_delay_time=int(a.get("reject-delay-time") or 0),
                busy_delay_time=int(a.get("busy-delay-time") or 0),
                no_answer_delay_time=int(a.get("no-answer-delay-time") or 0), last_status_change=int(self.now()),
            )  # fmt: skip
        for t in root.iter("tier"):
            self.tiers.append(
                _Tier(t.get("queue") or "", t.get("agent") or "", int(t.get("level") or 1),
                      int(t.get("position") or 1))
            )  # fmt: skip

    def pause_member(self, interface: str, paused: bool, reason: str = "", queue: str | None = None) -> bool:
        """The traffic model's agent breaks: mod_callcenter's status (per agent, no reason)."""
        agent = self.agents.get(interface.rsplit("/", 1)[-1])
        if agent is None:
            return False
        status = "On Break" if paused else "Available"
        if agent.status == status:
            return False
        self._set_status(agent, status)
        return True

    # -- calls ----------------------------------------------------------------------------------
    def call(
        self,
        number: str,
        *,
        name: str | None = None,
        did: str = "5550110",
        digits: Sequence[str | tuple[str, float] | None] = (),
        key_delay_s: float = 1.0,
        patience_s: float | None = None,
        ivr_patience_s: float | None = None,
        queue_patience_s: float | None = None,
        ring_patience_s: float | None = None,
        talk_s: float | None = 30.0,
        at: float | None = None,
    ) -> SimCall:
        """Place a call now (or at virtual time ``at``); returns its record at once."""
        script = CallScript(
            number, name, did, "controller", tuple(digits), key_delay_s, patience_s, ivr_patience_s,
            queue_patience_s, ring_patience_s, talk_s,
        )  # fmt: skip
        return self.place(script, at=at)

    def place(self, script: CallScript, *, at: float | None = None) -> SimCall:
        self.kernel.sync()
        call = SimCall(cast(Any, self), script, next(self._call_seq))
        self.calls.append(call)
        self.kernel.call_at(self.kernel.now() if at is None else at, self._arrive, call)
        return call

    def _new_leg(self, kind: Literal["caller", "agent", "originated"], name: str, **kw: Any) -> FsLeg:
        uuid = kw.pop("uuid", None) or self._uuid()
        sid = next(self._session_ids)
        ch = FsLeg(uuid, name, kind=kind, session_id=sid, created=self.now(), **kw)
        ch.variables.update(
            {"direction": ch.direction, "uuid": uuid, "session_id": str(sid), "channel_name": name,
             "sofia_profile_name": "internal"}
        )  # fmt: skip
        ch.signal = Signal(self.kernel, f"leg-{uuid[:8]}")
        self.channels[uuid] = ch
        return ch

    def _arrive(self, call: SimCall) -> None:
        s = call.script
        number = re.sub(r"[^0-9+*#]", "", s.number) or "anonymous"
        ch = self._new_leg(
            "caller", f"sofia/internal/{number}@127.0.0.1:5190", caller_number=number,
            caller_name=s.name if s.name is not None else f"Caller {number.lstrip('+')}", destination=s.did,
            context=self.inbound_context, direction="inbound", state="CS_NEW", call_state="DOWN",
            answer_state="ringing",
        )  # fmt: skip
        ch.initial = (ch.caller_name, ch.caller_number, s.did, ch.context)
        ch.variables.update({"sip_from_user": number, "sip_to_user": s.did, "sip_call_id": f"{ch.session_id}@sim"})
        ch.call = call
        call.channel = ch.uuid
        call.call_id = ch.uuid
        call.arrived_at = self.now()
        call.stage = "arriving"
        self.emit("CHANNEL_STATE", channel=ch)  # CS_NEW, before CREATE (captures)
        call.log("arrived", channel=ch.uuid, call_id=ch.uuid)
        ch.proc = self.kernel.spawn(self._session(ch), f"session-{ch.uuid[:8]}")
        self.kernel.spawn(self._patience(call), f"patience-{ch.uuid[:8]}")

    async def _patience(self, call: SimCall) -> None:
        k = self.kernel
        while call.stage != "ended":
            deadline = call.patience_deadline()
            fired = await k.wait(call.signal, timeout=None if deadline is None else max(0.0, deadline - k.now()))
            if fired is None and call.stage != "ended":
                deadline = call.patience_deadline()
                if deadline is not None and deadline <= k.now() + 1e-9:
                    self.caller_hangup(call)
                    return

    def caller_hangup(self, call: SimCall) -> None:
        """The caller sends BYE now."""
        ch = self.channels.get(call.channel or "")
        if not isinstance(ch, FsLeg) or ch.hanging_up:
            return
        call.hangup_by = "caller"
        self._hangup(ch, "NORMAL_CLEARING", "recv_bye")

    # -- the channel's session (dialplan thread) ----------------------------------------------------
    async def _session(self, ch: FsLeg, first: list[tuple[str, str]] | None = None, *, created: bool = False) -> None:
        """The channel's thread: route, run the applications, follow transfers, hang up at the
        end of the dialplan. ``first``: run these applications instead of routing (an
        originate's ``&app(arg)``); ``created``: CHANNEL_CREATE was sent already."""
        k = self.kernel
        try:
            if not created:
                await k.sleep(self.invite_delay)
                self._state(ch, "CS_INIT")
                self.emit("CHANNEL_CREATE", channel=ch)
            actions = first
            while True:
                if actions is None:
                    ch.state = "CS_ROUTING"
                    self._callstate(ch, "RINGING")
                    self.emit("CHANNEL_STATE", channel=ch)
                    if ch.answered is not None:  # a transfer: back to ACTIVE once routed
                        await k.sleep(self.route_delay)
                        ch.state = "CS_EXECUTE"
                        self._callstate(ch, "ACTIVE")
                    actions = self.dialplan.hunt(ch.context, lambda f: self._field(ch, f))
                    self._state(ch, "CS_EXECUTE")
                    if not actions:
                        log.info("sim freeswitch: no route for %s in %s", ch.destination, ch.context)
                        self._hangup(ch, "NO_ROUTE_DESTINATION", "send_refuse", interrupt=False)
                        break
                try:
                    for app, data in actions:
                        await self._exec(ch, app, data)
                        if ch.peer is not None:  # mod_callcenter bridged it: the dialplan is over
                            await self._bridged(ch)
                            break
                except _Transfer:
                    actions = None
                    continue
                if not ch.hanging_up:  # the dialplan ran out: FreeSWITCH hangs up
                    self._hangup(ch, "NORMAL_CLEARING", "send_bye", interrupt=False)
                break
        except _Hangup:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("sim freeswitch: session %s failed", ch.uuid)
            self._hangup(ch, "NORMAL_TEMPORARY_FAILURE", "send_bye", interrupt=False)
        self._finish(ch)

    def _field(self, ch: FsLeg, name: str) -> str:
        if name.startswith("${"):
            return self._expand(ch, name)
        builtin = {
            "destination_number": ch.destination,
            "caller_id_number": ch.caller_number,
            "caller_id_name": ch.caller_name,
            "context": ch.context,
            "network_addr": "127.0.0.1",
            "uuid": ch.uuid,
        }
        # channel variables first, then the global ones (switch_channel_get_variable does the same)
        return builtin.get(name, ch.variables.get(name, self.globals.get(name, "")))

    def _expand(self, ch: FsLeg, text: str) -> str:
        def one(m: re.Match[str]) -> str:
            name, args = m.group(1), m.group(2)
            if args is not None:  # ${callcenter_config(agent get uuid 1001)} (cc_spy_agent)
                return self._api_callcenter_config(None, args).strip() if name == "callcenter_config" else ""
            return self._field(ch, name)

        return re.sub(r"\$\{([A-Za-z0-9_.-]+)(?:\(([^)]*)\))?\}", one, text)

    async def _exec(self, ch: FsLeg, app: str, data: str, app_uuid: str | None = None) -> None:
        data = self._expand(ch, data)
        fields = [("Application", app)] + ([("Application-Data", data)] if data else [])
        fields.append(("Application-UUID", app_uuid or self._uuid()))
        outer = (ch.app, ch.app_data)
        ch.app, ch.app_data = app, data
        ch.variables["current_application"] = app
        if data:
            ch.variables["current_application_data"] = data
        self.emit("CHANNEL_EXECUTE", fields, channel=ch)
        response = "_none_"
        try:
            result = await self._apps.get(app, self._app_noop)(ch, data)
            if isinstance(result, str):
                response = result
        finally:
            self.emit("CHANNEL_EXECUTE_COMPLETE", [*fields, ("Application-Response", response)], channel=ch)
            ch.app, ch.app_data = outer

    async def _wait(self, ch: FsLeg, timeout: float | None = None) -> Signal | None:
        assert ch.signal is not None
        return await self.kernel.wait(ch.signal, timeout=timeout)

    def _poke(self, ch: FsLeg) -> None:
        if ch.signal is not None:
            ch.signal.fire()

    # -- hang-up ------------------------------------------------------------------------------------
    def _hangup(self, ch: FsLeg, cause: str, disposition: str | None, *, interrupt: bool = True) -> None:
        """CHANNEL_HANGUP now; the session unwinds (its application completes) and then ends."""
        if ch.hanging_up:
            return
        ch.hanging_up = True
        ch.hangup_cause = cause
        ch.hangup_time = self.now()
        ch.answer_state = "hangup"
        for t in ch.sched:
            t.cancel()
        self.emit("CHANNEL_HANGUP", channel=ch)
        if disposition:
            ch.variables["sip_hangup_disposition"] = disposition
        ch.variables["hangup_cause"] = cause
        ch.variables["hangup_cause_q850"] = str(_Q850.get(cause, 16))
        if ch.call is not None and ch.call.hangup_by is None:
            ch.call.hangup_by = "caller" if (disposition or "").startswith("recv_") else "system"
        if interrupt and ch.proc is not None and ch.proc is not self._current():
            self.kernel.interrupt(ch.proc, _Hangup())

    def _current(self) -> Proc | None:
        try:
            return self.kernel.current()
        except RuntimeError:
            return None

    def _complete(self, ch: FsLeg) -> None:
        """CS_HANGUP .. CHANNEL_HANGUP_COMPLETE (once)."""
        if ch.completed:
            return
        ch.completed = True
        self._state(ch, "CS_HANGUP")
        self._callstate(ch, "HANGUP")
        self._state(ch, "CS_REPORTING")
        self.emit("CHANNEL_HANGUP_COMPLETE", channel=ch)
        for spy in list(ch.spies):  # eavesdrop ends with its target (whisper_barge)
            self.emit("MEDIA_BUG_STOP", [("Media-Bug-Function", "eavesdrop"), ("Media-Bug-Target", ch.uuid)],
                      channel=ch)
            spy.spying = None
            self._poke(spy)
        ch.spies.clear()

    def _finish(self, ch: FsLeg) -> None:
        if not ch.hanging_up:
            self._hangup(ch, "NORMAL_CLEARING", "send_bye", interrupt=False)
        self._complete(ch)
        self.kernel.call_later(self.destroy_delay, self._destroy, ch)

    def _destroy(self, ch: FsLeg) -> None:
        if ch.destroyed:
            return
        ch.destroyed = True
        self.emit("CHANNEL_DESTROY", channel=ch)
        self._state(ch, "CS_DESTROY")
        self.channels.pop(ch.uuid, None)
        call = ch.call
        if call is None or ch.kind != "caller":
            return
        call.ended_at = self.now()
        call.cause = _Q850.get(ch.hangup_cause or "", 16)
        call.hung_up_by = call.hangup_by or "system"
        if call.connected_at is not None:
            call.outcome = "answered"
        elif call.hung_up_by == "caller":
            if call.stage == "queue":
                call.outcome = "abandon_ringing" if call.ringing_since is not None else "abandon_queue"
            else:
                call.outcome = "abandon_ivr"
        else:
            call.outcome = "system"
        call.stage = "ended"
        call.log("ended", by=call.hung_up_by, cause=call.cause, outcome=call.outcome)

    # -- transfers ------------------------------------------------------------------------------------
    def _transfer(self, ch: FsLeg, dest: str, context: str | None, *, raise_here: bool = False) -> None:
        """A new caller profile (what events show from now on), then the session re-routes."""
        now = self.now()
        ch.rdnis = ch.destination
        ch.destination = dest
        if context:
            ch.context = context
        ch.profile_index += 1
        ch.transfer_time = now
        ch.transfer_source = f"{int(now)}:{self._uuid()}:bl_xfer:{dest}/{ch.context}/XML"
        ch.variables["transfer_source"] = ch.transfer_source
        if raise_here:
            raise _Transfer()
        if ch.proc is not None:
            self.kernel.interrupt(ch.proc, _Transfer())

    @staticmethod
    def _split_target(data: str) -> tuple[str, str | None]:
        parts = data.split()
        dest = parts[0] if parts else ""
        context = parts[2] if len(parts) > 2 else None
        return dest, context

    # -- applications ---------------------------------------------------------------------------------
    async def _app_noop(self, ch: FsLeg, data: str) -> None:
        return None

    def _answer(self, ch: FsLeg) -> None:
        if ch.answered is not None:
            return
        self.emit("CODEC", channel=ch)
        self.emit("CODEC", channel=ch)
        ch.progress_media = self.now()
        ch.answer_state = "early"
        self.emit("CHANNEL_PROGRESS_MEDIA", channel=ch)
        self._callstate(ch, "EARLY")
        ch.answered = self.now()
        ch.answer_state = "answered"
        self.emit("CHANNEL_ANSWER", channel=ch)
        self._callstate(ch, "ACTIVE")
        call = ch.call
        if call is not None and ch.kind == "caller" and call.answered_at is None:
            call.answered_at = self.now()
            call.stage = "ivr"
            call.log("answered")

    async def _app_answer(self, ch: FsLeg, data: str) -> None:
        self._answer(ch)

    async def _app_set(self, ch: FsLeg, data: str) -> None:
        name, _, value = data.partition("=")
        name = name.strip().lstrip("_")
        if name:
            ch.variables[name] = value
        if ch.call is not None:
            if name == "CC_FAILOPEN":
                ch.call.log("failopen", reason=value)
            elif name == "CC_NODE":
                ch.call.log("ivr_node", node=value)

    async def _app_unset(self, ch: FsLeg, data: str) -> None:
        ch.variables.pop(data.strip(), None)

    async def _app_sleep(self, ch: FsLeg, data: str) -> None:
        try:
            ms = int(data or "0")
        except ValueError:
            ms = 0
        end = self.now() + ms / 1000
        while self.now() < end - 1e-9:
            await self._wait(ch, end - self.now())

    async def _play(self, ch: FsLeg, path: str, *, stop_on_digit: bool) -> None:
        """PLAYBACK_START .. PLAYBACK_STOP; a key stops it when ``stop_on_digit``."""
        fields = [("Playback-File-Type", "tone_stream" if path.startswith("tone_stream") else "file"),
                  ("Playback-File-Path", path)]  # fmt: skip
        self.emit("PLAYBACK_START", fields, channel=ch)
        end = self.now() + prompt_seconds(path)
        try:
            while self.now() < end - 1e-9 and not (stop_on_digit and ch.digits):
                await self._wait(ch, None if math.isinf(end) else end - self.now())
        finally:
            self.emit("PLAYBACK_STOP", [*fields, ("Playback-Status", "done")], channel=ch)

    async def _app_playback(self, ch: FsLeg, data: str) -> str:
        terminators = ch.variables.get("playback_terminators", "*")
        await self._play(ch, data, stop_on_digit=terminators != "none" and bool(terminators))
        return "FILE PLAYED"

    def _press(self, ch: FsLeg, digit: str, source: str = "ENDPOINT") -> None:
        if ch.hanging_up:
            return
        if source == "ENDPOINT":  # SIP INFO dtmf-relay, accepted as is (captures)
            self.emit("RECV_INFO", [("SIP-Content-Type", "application/dtmf-relay")], "Signal=1\r\nDuration=160\r\n",
                      channel=ch)  # fmt: skip
        self.emit("DTMF", [("DTMF-Digit", digit), ("DTMF-Duration", "1280"), ("DTMF-Source", source)], channel=ch)
        ch.digits.append(digit)
        if ch.call is not None:
            ch.call.log("dtmf", digit=digit)
        self._poke(ch)

    def _script_keys(self, ch: FsLeg) -> None:
        """The caller's keys for the prompt that starts now (one script item per prompt)."""
        call = ch.call
        keys = call.next_keys() if call is not None else None
        if keys is None:
            return
        text, delay = keys
        for i, digit in enumerate(text):
            self.kernel.call_later(delay + i * self.digit_gap_s, self._press, ch, digit)

    async def _app_play_and_get_digits(self, ch: FsLeg, data: str) -> None:
        # min max tries timeout terminators file invalid_file var_name regexp digit_timeout [failure_ext [dp ctx]]
        a = data.split(" ")
        if len(a) < 6:
            return
        max_digits, tries = int(a[1]), max(1, int(a[2]))
        timeout, terminators, prompt = int(a[3]) / 1000, a[4], a[5]
        invalid = a[6] if len(a) > 6 else ""
        var = a[7] if len(a) > 7 else "pagd_input"
        regexp = a[8] if len(a) > 8 else ""
        digit_timeout = int(a[9]) / 1000 if len(a) > 9 else timeout
        failure = a[10:]
        try:
            for attempt in range(tries):
                ch.digits.clear()
                self._script_keys(ch)
                got = await self._collect(ch, prompt, timeout, digit_timeout, max_digits, terminators)
                if got and (not regexp or re.search(regexp, got)):
                    ch.variables[var] = got
                    ch.variables["read_result"] = "success"
                    return
                if attempt + 1 < tries and invalid:
                    await self._play(ch, invalid, stop_on_digit=False)
        except _Hangup:
            ch.variables["read_result"] = "failure"
            raise
        ch.variables["read_result"] = "failure"
        if failure and not ch.hanging_up:
            self._transfer(ch, failure[0], failure[2] if len(failure) > 2 else None, raise_here=True)

    async def _collect(
        self, ch: FsLeg, prompt: str, timeout: float, digit_timeout: float, max_digits: int, terminators: str
    ) -> str:
        await self._play(ch, prompt, stop_on_digit=True)
        got = ""
        deadline = self.now() + timeout
        while len(got) < max_digits:
            if ch.digits:
                digit = ch.digits.popleft()
                if digit in terminators:
                    break
                got += digit
                deadline = self.now() + digit_timeout
                continue
            if self.now() >= deadline - 1e-9:
                break
            await self._wait(ch, deadline - self.now())
        return got

    async def _app_transfer(self, ch: FsLeg, data: str) -> None:
        dest, context = self._split_target(data)
        self._transfer(ch, dest, context, raise_here=True)

    async def _app_hangup(self, ch: FsLeg, data: str) -> None:
        self._hangup(ch, data.strip() or "NORMAL_CLEARING", "send_bye", interrupt=False)
        raise _Hangup()

    def _sched(self, ch: FsLeg, spec: str, rest: str) -> int:
        """``+N`` (or an epoch) then ``ext [dp] [ctx]``: a timer in the channel's group."""
        when = self.now() + float(spec[1:]) if spec.startswith("+") else float(spec)
        dest, context = self._split_target(rest)

        def fire() -> None:
            if ch.uuid in self.channels and not ch.hanging_up:
                self._transfer(ch, dest, context)

        ch.sched.append(self.kernel.call_at(when, fire))
        return next(self._sched_ids)

    async def _app_sched_transfer(self, ch: FsLeg, data: str) -> None:
        spec, _, rest = data.partition(" ")
        self._sched(ch, spec, rest)

    async def _app_sched_cancel(self, ch: FsLeg, data: str) -> None:
        for t in ch.sched:  # no argument: the channel's own group (its UUID)
            t.cancel()
        ch.sched.clear()

    async def _app_park(self, ch: FsLeg, data: str) -> None:
        ch.parked = True
        self.emit("CHANNEL_PARK", channel=ch)
        if ch.call is not None:
            ch.call.log("controller")
        try:
            while True:
                while ch.private:
                    await self._private(ch, ch.private.popleft())
                await self._wait(ch)
        except (_Transfer, _Hangup):
            if ch.parked:
                ch.parked = False
                if not ch.hanging_up:
                    await self.kernel.sleep(self.unpark_delay)
                self.emit("CHANNEL_UNPARK", channel=ch)
                if ch.call is not None:
                    ch.call.log("released", status="transfer" if not ch.hanging_up else "hangup")
            raise

    async def _private(self, ch: FsLeg, frame: EslFrame) -> None:
        """A sendmsg taken from the channel's private event queue (sendmsg_ivr)."""
        h = {k.lower(): v for k, v in frame.headers.items()}
        command = h.get("call-command", "")
        if command == "execute":
            await self._exec(ch, h.get("execute-app-name", ""), h.get("execute-app-arg", ""), h.get("event-uuid"))
        elif command == "hangup":
            self._hangup(ch, h.get("hangup-cause") or "NORMAL_CLEARING", "send_bye", interrupt=False)
        self.emit("PRIVATE_COMMAND", [("Command", f"sendmsg {ch.uuid}"), *frame.headers.items()], channel=ch)
        if ch.hanging_up:
            raise _Hangup()

    # -- mod_callcenter -------------------------------------------------------------------------------
    def _member_fields(self, m: _Member) -> list[tuple[str, str]]:
        s = m.session
        return [
            ("CC-Member-UUID", m.uuid),
            ("CC-Member-Session-UUID", s.uuid),
            ("CC-Member-CID-Name", s.caller_name),
            ("CC-Member-CID-Number", s.caller_number),
        ]

    def _members_count(self, q: _Queue) -> None:
        n = sum(1 for m in q.members if m.state in ("Waiting", "Trying"))
        self._cc("members-count", [("CC-Queue", q.name), ("CC-Action", "members-count"), ("CC-Count", str(n)),
                                   ("CC-Selection", "Single-Queue")])  # fmt: skip

    async def _app_callcenter(self, ch: FsLeg, data: str) -> None:
        q = self.queues.get(data.split(" ")[0] if data else "")
        if q is None:
            log.warning("sim freeswitch: queue %r not found", data)  # FreeSWITCH logs and goes on
            return
        self._answer(ch)
        now = self.now()
        base = int(ch.variables.get("cc_base_score", "0") or 0) if re.fullmatch(
            r"-?\d+", ch.variables.get("cc_base_score", "0") or "0") else 0  # fmt: skip
        if q.param("time-base-score", "system") == "system" and ch.answered is not None:
            base += int(now) - int(ch.answered)
        member = _Member(self._uuid(), ch, q, now, base, next(self._member_seq))
        ch.member = member
        ch.variables.update({"cc_side": "member", "cc_member_uuid": member.uuid})
        self._cc("member-queue-start", [("CC-Queue", q.name), ("CC-Action", "member-queue-start"),
                                        *self._member_fields(member)], channel=ch)  # fmt: skip
        ch.variables.update({"cc_queue_joined_epoch": str(int(now)), "cc_queue": q.name})
        q.members.append(member)
        self._members_count(q)
        moh = [("Playback-File-Type", "local_stream"), ("Playback-File-Path", q.param("moh-sound", "moh"))]
        self.emit("PLAYBACK_START", moh, channel=ch)
        call = ch.call
        if call is not None:
            if call.first_queue_at is None:
                call.first_queue_at = now
            call.stage = "queue"
            call.log("queue", queue=q.name)
        self._kick()
        try:
            while member.state != "Answered":
                await self._wait(ch)
        except _Transfer:
            self.emit("PLAYBACK_STOP", moh, channel=ch)
            self._member_cancel(member)
            raise
        except _Hangup:
            if member.state == "Answered" and member.agent_leg is not None:
                ch.peer = member.agent_leg
                self._bridge_over(ch)
            else:
                self.emit("PLAYBACK_STOP", moh, channel=ch)
                self._member_cancel(member)
            raise
        self.emit("PLAYBACK_STOP", moh, channel=ch)
        self._members_count(q)
        ch.peer = member.agent_leg

    def _member_cancel(self, m: _Member) -> None:
        """The member leaves without an agent (hang-up or transfer): Cancel / BREAK_OUT."""
        m.gone = True
        ch = m.session
        for offer in list(m.offers):
            self._ring_end(offer, "ORIGINATOR_CANCEL", finalize_after=0.003)
        now = self.now()
        ch.variables.update({"cc_cause": "cancel", "cc_cancel_reason": "BREAK_OUT",
                             "cc_queue_canceled_epoch": str(int(now))})  # fmt: skip
        q = m.queue
        self._cc("member-queue-end", [
            ("CC-Queue", q.name), ("CC-Action", "member-queue-end"), ("CC-Member-Leaving-Time", str(int(now))),
            ("CC-Member-Joined-Time", str(int(m.joined))), ("CC-Cause", "Cancel"), ("CC-Cancel-Reason", "BREAK_OUT"),
            *self._member_fields(m),
        ], channel=ch)  # fmt: skip
        if m in q.members:
            q.members.remove(m)
        q.calls_abandoned += 1
        self._members_count(q)
        call = ch.call
        if call is not None:
            call.log("left_queue", queue=q.name, reason="cancel", ringing=call.ringing_since is not None)
            if ch.hanging_up is False:
                call.ringing_since = None

    # dispatch
    def _kick(self) -> None:
        if self._dispatch_pending:
            return
        self._dispatch_pending = True

        def fire() -> None:
            self._dispatch_pending = False
            self._dispatch_signal.fire()

        self.kernel.call_later(self.dispatch_delay, fire)

    async def _dispatcher(self) -> None:
        k = self.kernel
        while True:
            self._dispatch()
            nxt = self._next_ready()
            await k.wait(self._dispatch_signal, timeout=None if nxt is None else max(0.0, nxt - k.now()) + 0.001)

    def _next_ready(self) -> float | None:
        if not any(m.state in ("Waiting", "Trying") for q in self.queues.values() for m in q.members):
            return None
        now = self.now()
        later = [a.ready_time for a in self.agents.values() if a.ready_time > now and a.status in _AVAILABLE]
        return min(later) if later else None

    def _dispatch(self) -> None:
        now = self.now()
        members = [
            m for q in self.queues.values() for m in q.members
            if not m.gone and (m.state == "Waiting" or (m.state == "Trying" and q.strategy == "ring-all"))
        ]  # fmt: skip
        members.sort(key=lambda m: (-((now - m.joined) + m.base_score), m.seq))
        for m in members:
            cands = self._candidates(m, now)
            if not cands:
                continue
            if m.queue.strategy == "ring-all":
                for agent in cands:
                    self._offer(m, agent)
            else:
                self._offer(m, cands[0])

    def _candidates(self, m: _Member, now: float) -> list[_Agent]:
        q = m.queue
        rows: list[tuple[_Tier, _Agent]] = []
        for t in self.tiers:
            a = self.agents.get(t.agent)
            if t.queue != q.name or a is None or t.state != "Ready" or a.status not in _AVAILABLE:
                continue
            if a.state != "Waiting" or a.ready_time > now or a.offers or a.leg is not None:
                continue
            if any(o.agent is a for o in m.offers):
                continue
            rows.append((t, a))
        s = q.strategy
        if s == "longest-idle-agent":
            rows.sort(key=lambda r: (r[0].level, r[1].last_offered_call, r[0].position))
        elif s == "agent-with-least-talk-time":
            rows.sort(key=lambda r: (r[0].level, r[1].talk_time, r[0].position))
        elif s == "agent-with-fewest-calls":
            rows.sort(key=lambda r: (r[0].level, r[1].calls_answered, r[0].position))
        elif s == "random":
            keyed = [(r[0].level, self.rng.random(), i) for i, r in enumerate(rows)]
            rows = [rows[i] for _, _, i in sorted(keyed)]
        elif s == "round-robin":
            rows.sort(key=lambda r: (r[0].level, r[0].position <= q.rr_last, r[0].position))
        else:  # ring-all, top-down, sequentially-by-agent-order, ring-progressively
            rows.sort(key=lambda r: (r[0].level, r[0].position, r[1].last_offered_call))
            if s == "ring-all" and rows:  # the best level only... as the tier order gives it
                best = rows[0][0].level
                rows = [r for r in rows if r[0].level == best] if q.param("tier-rules-apply") == "true" else rows
        if s == "round-robin" and rows:
            q.rr_last = rows[0][0].position
        return [a for _, a in rows]

    def _contact(self, agent: _Agent) -> tuple[str, float, str]:
        """(extension, ring limit, channel name) of an agent's contact string."""
        contact = agent.contact
        leg_timeout = re.search(r"leg_timeout=(\d+)", contact)  # call_timeout is ignored (measured)
        limit = float(leg_timeout.group(1)) if leg_timeout else self.originate_timeout_s
        dial = re.sub(r"^(\{[^}]*\}|\[[^\]]*\])+", "", contact)
        m = re.match(r"^(?:user|sofia/[^/]+|loopback)/([^@/]+)", dial)
        ext = m.group(1) if m else agent.name
        ep = self.endpoints.get(ext)
        port = ep.port if ep is not None else 5180
        name = dial if dial.startswith("sofia/") else f"sofia/internal/{ext}@127.0.0.1:{port}"
        return ext, limit, name

    def _offer(self, m: _Member, agent: _Agent) -> None:
        now = self.now()
        q = m.queue
        caller = m.session
        m.state = "Trying"
        agent.state = "Receiving"
        agent.last_offered_call = int(now)
        self._cc("agent-state-change", [("CC-Agent", agent.name), ("CC-Action", "agent-state-change"),
                                        ("CC-Agent-State", "Receiving")])  # fmt: skip
        self._cc("agent-offering", [
            ("CC-Queue", q.name), ("CC-Action", "agent-offering"), ("CC-Agent", agent.name),
            ("CC-Agent-Type", agent.type), ("CC-Agent-System", _SYSTEM), *self._member_fields(m),
            ("CC-Member-DNIS", caller.initial[2]),
        ])  # fmt: skip
        ext, limit, name = self._contact(agent)
        shown = caller.variables.get("effective_caller_id_name") or caller.caller_name
        leg = self._new_leg(
            "agent", name, ext=ext, caller_number=caller.caller_number, caller_name=shown, destination=ext,
            context="default", direction="outbound", state="CS_NONE", call_state="DOWN", answer_state="ringing",
            source="src/switch_ivr_originate.c",
        )  # fmt: skip
        leg.callee = ("Outbound Call", ext)
        leg.variables.update({
            "is_outbound": "true", "call_uuid": leg.uuid, "leg_timeout": str(int(limit)),
            "cc_queue": q.name, "cc_queue_joined_epoch": str(int(m.joined)), "cc_member_uuid": m.uuid,
            "cc_member_session_uuid": caller.uuid, "cc_agent": agent.name, "cc_agent_type": agent.type,
            "cc_side": "agent", "origination_caller_id_name": shown,
            "origination_caller_id_number": caller.caller_number,
        })  # fmt: skip
        ep = self.endpoints.get(ext)
        behavior = ep.behavior_for(caller.call) if ep is not None else AgentBehavior("reject")
        offer = _Offer(m, agent, leg, behavior, now)
        leg.offer = offer
        m.offers.append(offer)
        agent.offers.append(offer)
        self.emit("CHANNEL_OUTGOING", channel=leg)
        self._state(leg, "CS_INIT")
        self.emit("CHANNEL_CREATE", channel=leg)
        self.emit("CHANNEL_ORIGINATE", channel=leg)
        self._state(leg, "CS_ROUTING")
        self._state(leg, "CS_CONSUME_MEDIA")
        if ep is None:  # user/<ext> with no registration
            offer.timers.append(self.kernel.call_later(0.0, self._ring_end, offer, "USER_NOT_REGISTERED"))
            return
        self.emit("CHANNEL_PROGRESS", channel=leg)
        self._callstate(leg, "RINGING")
        call = caller.call
        if call is not None:
            if call.ringing_since is None:
                call.ringing_since = now
            call.log("ringing", queue=q.name, agent=agent.name, channel=leg.uuid)
        k = self.kernel
        if behavior.action == "reject":
            offer.timers.append(k.call_later(self.reject_delay, self._ring_end, offer, "USER_BUSY"))
        else:
            offer.timers.append(k.call_later(limit, self._ring_end, offer, "ALLOTTED_TIMEOUT"))
            if behavior.action == "answer":
                offer.timers.append(k.call_later(max(0.0, behavior.ring_s), self._agent_answer, offer))

    def _ring_end(self, offer: _Offer, cause: str, *, finalize_after: float | None = None) -> None:
        """The agent leg of an offer ends before a bridge: CHANNEL_HANGUP now, then (later if
        asked) the rest and ``bridge-agent-fail``; the member waits for the next agent."""
        if offer.done:
            return
        offer.done = True
        for t in offer.timers:
            t.cancel()
        leg = offer.leg
        dispositions = {"ORIGINATOR_CANCEL": "send_cancel", "LOSE_RACE": "send_cancel",
                        "ALLOTTED_TIMEOUT": "send_cancel", "USER_BUSY": "recv_refuse"}  # fmt: skip
        self._hangup(leg, cause, dispositions.get(cause), interrupt=False)
        if finalize_after is None:
            self._ring_finalize(offer, cause)
        else:
            self.kernel.call_later(finalize_after, self._ring_finalize, offer, cause)

    def _ring_finalize(self, offer: _Offer, cause: str) -> None:
        leg, agent, m = offer.leg, offer.agent, offer.member
        self._complete(leg)
        self._destroy(leg)
        now = self.now()
        self._cc("bridge-agent-fail", [
            ("CC-Queue", m.queue.name), ("CC-Action", "bridge-agent-fail"), ("CC-Hangup-Cause", cause),
            ("CC-Agent", agent.name), ("CC-Agent-System", _SYSTEM), ("CC-Agent-Called-Time", str(int(offer.called))),
            ("CC-Agent-Aborted-Time", str(int(now))), *self._member_fields(m),
            ("CC-Member-Joined-Time", str(int(m.joined))),
        ])  # fmt: skip
        if offer in agent.offers:
            agent.offers.remove(offer)
        if offer in m.offers:
            m.offers.remove(offer)
        if not agent.offers and agent.leg is None:
            agent.state = "Waiting"
            self._cc("agent-state-change", [("CC-Agent", agent.name), ("CC-Action", "agent-state-change"),
                                            ("CC-Agent-State", "Waiting")])  # fmt: skip
        if cause in ("ALLOTTED_TIMEOUT", "NO_ANSWER", "NO_USER_RESPONSE"):
            agent.no_answer_count += 1
            agent.ready_time = now + agent.no_answer_delay_time
            if agent.max_no_answer > 0 and agent.no_answer_count >= agent.max_no_answer:
                self._cc("agent-max-no-answer", [("CC-Agent", agent.name), ("CC-Action", "agent-max-no-answer")])
                self._set_status(agent, m.queue.param("agent-no-answer-status", "On Break") or "On Break")
        elif cause in ("USER_BUSY", "CALL_REJECTED"):
            agent.ready_time = now + (agent.busy_delay_time if cause == "USER_BUSY" else agent.reject_delay_time)
        elif cause == "USER_NOT_REGISTERED":
            agent.ready_time = now + agent.busy_delay_time
        if not m.gone and m.state == "Trying" and not m.offers:
            m.state = "Waiting"
            call = m.session.call
            if call is not None:
                call.ringing_since = None
        self._kick()

    def _agent_answer(self, offer: _Offer) -> None:
        m, agent, leg = offer.member, offer.agent, offer.leg
        if offer.done:
            return
        if m.gone or m.state == "Answered":
            self._ring_end(offer, "LOSE_RACE")
            return
        offer.done = True
        for t in offer.timers:
            t.cancel()
        now = self.now()
        self.emit("CODEC", channel=leg)
        self.emit("CODEC", channel=leg)
        leg.answered = now
        leg.answer_state = "answered"
        self.emit("CHANNEL_ANSWER", channel=leg)
        self._callstate(leg, "ACTIVE")
        m.state = "Answered"
        m.agent, m.agent_leg, m.answered_at = agent, leg, now
        agent.offers.remove(offer)
        m.offers.remove(offer)
        agent.leg = leg
        agent.last_bridge_start = int(now)
        self._cc("bridge-agent-start", [
            ("CC-Queue", m.queue.name), ("CC-Action", "bridge-agent-start"), ("CC-Agent", agent.name),
            ("CC-Agent-System", _SYSTEM), ("CC-Agent-UUID", leg.uuid), ("CC-Agent-Called-Time", str(int(offer.called))),
            ("CC-Agent-Answered-Time", str(int(now))), ("CC-Member-Joined-Time", str(int(m.joined))),
            *self._member_fields(m), ("CC-Member-DNIS", m.session.initial[2]),
        ], channel=leg)  # fmt: skip
        self._state(leg, "CS_HIBERNATE")
        self._state(leg, "CS_RESET")
        for other in list(m.offers):  # ring-all: the others lost the race
            self._ring_end(other, "LOSE_RACE", finalize_after=0.002)
        m.queue.calls_answered += 1
        self._poke(m.session)

    async def _bridged(self, ch: FsLeg) -> None:
        """The caller after mod_callcenter's uuid_bridge, until either side hangs up."""
        leg = ch.peer
        m = ch.member
        assert leg is not None and m is not None and m.agent is not None
        k = self.kernel
        try:
            await k.sleep(self.bridge_delay)
            now = self.now()
            self._state(ch, "CS_SOFT_EXECUTE")
            self._state(leg, "CS_SOFT_EXECUTE")
            self.emit("CHANNEL_EXECUTE", [("Application", "uuid_bridge"), ("Application-Data", leg.uuid),
                                          ("Application-UUID", self._uuid())], channel=ch)  # fmt: skip
            self.emit("CHANNEL_EXECUTE", [("Application", "uuid_bridge"), ("Application-Data", ch.uuid),
                                          ("Application-UUID", self._uuid())], channel=leg)  # fmt: skip
            self._state(leg, "CS_CONSUME_MEDIA")
            ch.bridged_at = leg.bridged_at = now
            leg.peer = ch
            ch.variables.update({
                "cc_agent_uuid": leg.uuid, "cc_cause": "answered", "bridge_uuid": leg.uuid,
                "cc_agent_bridged": "true", "cc_agent": m.agent.name, "cc_queue_answered_epoch": str(int(now)),
            })  # fmt: skip
            leg.variables.update({"bridge_uuid": ch.uuid, "cc_agent_bridged": "true"})
            self.emit("CHANNEL_BRIDGE", [("Bridge-A-Unique-ID", ch.uuid), ("Bridge-B-Unique-ID", leg.uuid),
                                         ("Other-Leg-Unique-ID", leg.uuid)], channel=ch)  # fmt: skip
            self._state(leg, "CS_EXCHANGE_MEDIA")
            m.agent.state = "In a queue call"
            self._cc("agent-state-change", [("CC-Agent", m.agent.name), ("CC-Action", "agent-state-change"),
                                            ("CC-Agent-State", "In a queue call")])  # fmt: skip
            self.emit("CALL_UPDATE", [("Direction", "SEND"), ("Bridged-To", leg.uuid)], channel=ch)
            self.emit("CALL_UPDATE", [("Direction", "RECV"), ("Bridged-To", ch.uuid)], channel=leg)
            call = ch.call
            offer_behavior = leg.offer.behavior if leg.offer is not None else AgentBehavior()
            if call is not None:
                call.ringing_since = None
                call.connected_at = now
                call.stage = "talk"
                call.log("connected", queue=m.queue.name, agent=m.agent.name, channel=leg.uuid,
                         hold_s=int(now) - int(m.joined))  # fmt: skip
            if offer_behavior.talk_s is not None:
                k.call_later(offer_behavior.talk_s, self._agent_bye, leg)
            while True:
                await self._wait(ch)
        except _Hangup:
            self._bridge_over(ch)

    def _agent_bye(self, leg: FsLeg) -> None:
        """The agent's phone sends BYE on a bridged call."""
        caller = leg.peer
        if leg.hanging_up or caller is None or caller.hanging_up:
            return
        self._hangup(leg, "NORMAL_CLEARING", "recv_bye", interrupt=False)
        self._complete(leg)
        self.emit("CHANNEL_UNBRIDGE", [("Bridge-A-Unique-ID", caller.uuid), ("Bridge-B-Unique-ID", leg.uuid)],
                  channel=caller)  # fmt: skip
        after = caller.variables.get("transfer_after_bridge", "")
        if after and caller.member is not None:
            # switch_ivr_multi_threaded_bridge: the agent (peer) answered and the caller is still
            # up -> transfer_after_bridge ("ext:XML:context") wins over hangup_after_bridge.
            # mod_callcenter's agent thread notices the agent is gone at its next 100 ms poll and
            # only then fires bridge-agent-end / member-queue-end (Terminated).
            m = caller.member
            caller.peer = caller.member = None
            parts = after.split(":")
            if caller.call is not None:
                caller.call.log("after_bridge", target=after)
            self.kernel.call_later(self.cc_poll_s, self._bridge_end, caller, leg, m)
            self._transfer(caller, parts[0], parts[2] if len(parts) > 2 else None)
            return
        if caller.call is not None:
            caller.call.hangup_by = "agent"
        self._hangup(caller, "NORMAL_CLEARING", "send_bye")

    def _bridge_over(self, ch: FsLeg) -> None:
        """End of an answered call: both legs complete, then bridge-agent-end and
        member-queue-end Terminated (after both HANGUP_COMPLETE, whoever hung up)."""
        leg, m = ch.peer, ch.member
        if leg is None or m is None or m.agent is None:
            return
        if not leg.hanging_up:
            self._hangup(leg, "NORMAL_CLEARING", "send_bye", interrupt=False)
            self._complete(leg)
            self.emit("CHANNEL_UNBRIDGE", [("Bridge-A-Unique-ID", ch.uuid), ("Bridge-B-Unique-ID", leg.uuid)],
                      channel=ch)  # fmt: skip
        self._complete(ch)
        self._bridge_end(ch, leg, m)

    def _bridge_end(self, ch: FsLeg, leg: FsLeg, m: _Member) -> None:
        """mod_callcenter's end of an answered member: bridge-agent-end, member-queue-end
        Terminated, the agent back to Waiting."""
        agent = m.agent
        assert agent is not None
        now = self.now()
        answered = str(int(m.answered_at or now))
        offer_called = str(int(leg.created))
        self._cc("bridge-agent-end", [
            ("CC-Queue", m.queue.name), ("CC-Action", "bridge-agent-end"), ("CC-Hangup-Cause", "SUCCESS"),
            ("CC-Agent", agent.name), ("CC-Agent-System", _SYSTEM), ("CC-Agent-UUID", leg.uuid),
            ("CC-Agent-Bridged", "true"), ("CC-Agent-Called-Time", offer_called), ("CC-Agent-Answered-Time", answered),
            ("CC-Member-Joined-Time", str(int(m.joined))), ("CC-Bridge-Terminated-Time", str(int(now))),
            *self._member_fields(m),
        ], channel=leg)  # fmt: skip
        self._cc("member-queue-end", [
            ("CC-Queue", m.queue.name), ("CC-Action", "member-queue-end"), ("CC-Hangup-Cause", "SUCCESS"),
            ("CC-Cause", "Terminated"), ("CC-Agent", agent.name), ("CC-Agent-System", _SYSTEM),
            ("CC-Agent-UUID", leg.uuid), ("CC-Agent-Called-Time", offer_called), ("CC-Agent-Answered-Time", answered),
            ("CC-Member-Leaving-Time", str(int(now))), ("CC-Member-Joined-Time", str(int(m.joined))),
            *self._member_fields(m),
        ], channel=ch)  # fmt: skip
        if m in m.queue.members:
            m.queue.members.remove(m)
        m.gone = True
        agent.leg = None
        agent.state = "Waiting"
        agent.calls_answered += 1
        agent.no_answer_count = 0
        agent.talk_time += int(now) - int(m.answered_at or now)
        agent.last_bridge_end = int(now)
        agent.ready_time = now + agent.wrap_up_time
        self._cc("agent-state-change", [("CC-Agent", agent.name), ("CC-Action", "agent-state-change"),
                                        ("CC-Agent-State", "Waiting")])  # fmt: skip
        self._destroy(leg)
        self._kick()

    def _set_status(self, agent: _Agent, status: str) -> None:
        agent.status = status
        agent.last_status_change = int(self.now())
        self._cc("agent-status-change", [("CC-Agent", agent.name), ("CC-Action", "agent-status-change"),
                                         ("CC-Agent-Status", status)])  # fmt: skip
        self._kick()

    # -- supervisors ----------------------------------------------------------------------------------
    async def _app_eavesdrop(self, ch: FsLeg, data: str) -> None:
        target = self.channels.get(data.strip())
        if not isinstance(target, FsLeg) or target.hanging_up:
            return
        bug = [("Media-Bug-Function", "eavesdrop"), ("Media-Bug-Target", target.uuid)]
        ch.spying = target
        target.spies.append(ch)
        self.emit("MEDIA_BUG_START", bug, channel=target)
        try:
            while ch.spying is not None:
                await self._wait(ch)
        except (_Transfer, _Hangup):
            if ch.spying is not None and ch in target.spies:
                target.spies.remove(ch)
                self.emit("MEDIA_BUG_STOP", bug, channel=target)
            ch.spying = None
            raise

    # -- ESL commands and api ---------------------------------------------------------------------------
    def _leg(self, uuid: str) -> FsLeg | None:
        ch = self.channels.get(uuid)
        return ch if isinstance(ch, FsLeg) and not ch.hanging_up else None

    def _cmd_sendmsg(self, session: EslSession, frame: EslFrame) -> None:
        self.kernel.sync()
        target = (frame.command or "")[7:].strip() or frame.headers.get("session-id") or ""
        ch = self.channels.get(target)
        if not isinstance(ch, FsLeg):
            session.reply(f"-ERR invalid session id [{target}]")
            return
        session.reply("+OK")
        ch.private.append(frame)
        self.kernel.call_later(self.private_delay, self._poke, ch)

    def _api_setvar_synced(self, session: EslSession, arg: str | None) -> str:
        self.kernel.sync()
        return self._api_uuid_setvar(session, arg)

    def _api_uuid_kill(self, session: EslSession, arg: str | None) -> str:
        self.kernel.sync()
        parts = (arg or "").split()
        ch = self._leg(parts[0]) if parts else None
        if ch is None:
            return "-ERR No such channel!\n"
        cause = parts[1] if len(parts) > 1 else "NORMAL_CLEARING"
        if ch.offer is not None and not ch.offer.done:
            self._ring_end(ch.offer, cause)
        elif ch.kind == "agent":
            self._agent_bye(ch)
        else:
            self._hangup(ch, cause, "send_bye")
        return "+OK\n"

    def _api_uuid_transfer(self, session: EslSession, arg: str | None) -> str:
        self.kernel.sync()
        parts = (arg or "").split()
        if parts[1:2] and parts[1] in ("-bleg", "-both"):
            del parts[1]
        ch = self._leg(parts[0]) if parts else None
        if ch is None:
            return "-ERR No such channel!\n"
        if len(parts) < 2:
            return "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n"
        self._transfer(ch, parts[1], parts[3] if len(parts) > 3 else None)
        return "+OK\n"

    def _api_uuid_broadcast(self, session: EslSession, arg: str | None) -> str:
        self.kernel.sync()
        parts = (arg or "").split()
        ch = self._leg(parts[0]) if parts else None
        if ch is None or len(parts) < 2:
            return "-ERR Operation Failed\n"
        frame = EslFrame(headers={"call-command": "execute", "execute-app-name": "playback",
                                  "execute-app-arg": parts[1]})  # fmt: skip
        ch.private.append(frame)
        self.kernel.call_later(self.private_delay, self._poke, ch)
        return "+OK Message sent\n"

    def _api_uuid_recv_dtmf(self, session: EslSession, arg: str | None) -> str:
        self.kernel.sync()
        parts = (arg or "").split()
        ch = self._leg(parts[0]) if parts else None
        if ch is None or len(parts) < 2:
            return "-ERR no such session\n"
        for i, digit in enumerate(parts[1]):
            self.kernel.call_later(0.02 + i * self.digit_gap_s, self._press, ch, digit, "APP")
        return f"+OK {ch.uuid} received DTMF {parts[1]}.\n"

    def _api_uuid_exists(self, session: EslSession, arg: str | None) -> str:
        return "true" if self._leg((arg or "").strip()) is not None else "false"

    def _api_sched_transfer(self, session: EslSession, arg: str | None) -> str:
        self.kernel.sync()
        parts = (arg or "").split(" ", 2)
        ch = self._leg(parts[1]) if len(parts) > 2 else None
        if ch is None:
            return "-ERR Invalid syntax\n" if len(parts) < 3 else "-ERR No such channel!\n"
        task = self._sched(ch, parts[0], parts[2])
        return f"+OK Added: {task}, Group: {ch.uuid}\n"

    def _api_sched_del(self, session: EslSession, arg: str | None) -> str:
        self.kernel.sync()
        ch = self.channels.get((arg or "").strip())
        n = 0
        if isinstance(ch, FsLeg):
            n = sum(1 for t in ch.sched if not t.cancelled)
            for t in ch.sched:
                t.cancel()
            ch.sched.clear()
        return f"+OK Deleted: {n}\n"

    def _api_show(self, session: EslSession, arg: str | None) -> str:
        words = (arg or "").split()
        if words[:1] != ["channels"] or words[-2:] != ["as", "json"]:
            return "-USAGE: show channels as json\n"
        rows = []
        for ch in self.channels.values():
            if not isinstance(ch, FsLeg) or ch.hanging_up:
                continue
            created = datetime.fromtimestamp(ch.created, UTC).strftime("%Y-%m-%d %H:%M:%S")
            peer = ch.peer or next((c for c in self.channels.values() if isinstance(c, FsLeg) and c.peer is ch), None)
            rows.append({
                "uuid": ch.uuid, "direction": ch.direction, "created": created, "created_epoch": str(int(ch.created)),
                "name": ch.name, "state": ch.state, "cid_name": ch.caller_name, "cid_num": ch.caller_number,
                "ip_addr": "127.0.0.1" if ch.direction == "inbound" else "", "dest": ch.destination,
                "application": ch.app, "application_data": ch.app_data, "dialplan": "XML", "context": ch.context,
                "read_codec": "PCMU", "read_rate": "8000", "read_bit_rate": "64000", "write_codec": "PCMU",
                "write_rate": "8000", "write_bit_rate": "64000", "secure": "", "hostname": self.hostname,
                "presence_id": "", "presence_data": "", "accountcode": "", "callstate": ch.call_state,
                "callee_name": "", "callee_num": "", "callee_direction": "",
                "call_uuid": (ch.uuid if peer is not None else ""), "sent_callee_name": "", "sent_callee_num": "",
                "initial_cid_name": ch.initial[0] or ch.caller_name,
                "initial_cid_num": ch.initial[1] or ch.caller_number,
                "initial_ip_addr": "127.0.0.1" if ch.direction == "inbound" else "",
                "initial_dest": ch.initial[2] or ch.destination, "initial_dialplan": "XML",
                "initial_context": ch.initial[3] or ch.context,
            })  # fmt: skip
        if not rows:
            return '{"row_count": 0}\n'  # with a space and no rows (api_replies)
        return json.dumps({"row_count": len(rows), "rows": rows}, separators=(",", ":"))

    async def _api_originate_async(self, session: EslSession, arg: str | None) -> str:
        """``originate {vars}<endpoint> &app(arg)`` or ``... <exten> [XML] [context]``; the reply
        (and bgapi's BACKGROUND_JOB) comes when the leg answered or failed."""
        self.kernel.sync()
        text = (arg or "").strip()
        m = re.match(r"^(\{(?:[^{}\\]|\\.)*\})?(\S+)\s+(.*)$", text)
        if m is None:
            return "-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] [<context>]\n"
        variables, endpoint = _dial_vars((m.group(1) or "") + m.group(2))
        target = m.group(3).strip()
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.kernel.spawn(self._originate(variables, endpoint, target, fut), "originate")
        return await fut

    async def _originate(self, variables: dict[str, str], endpoint: str, target: str, fut: asyncio.Future[str]) -> None:
        k = self.kernel
        if "leg_timeout" in variables:  # a mod_callcenter contact's [leg_timeout=..] limits the ring
            variables.setdefault("originate_timeout", variables["leg_timeout"])
        em = re.match(r"^(?:user|sofia/[^/]+|loopback)/([^@/]+)", endpoint)
        ext = em.group(1) if em else endpoint
        ep = self.endpoints.get(ext)
        port = ep.port if ep is not None else 5180
        name = endpoint if endpoint.startswith("sofia/") else f"sofia/internal/{ext}@127.0.0.1:{port}"
        leg = self._outbound_leg(
            name, uuid=variables.get("origination_uuid"), ext=ext,
            caller_number=variables.get("origination_caller_id_number", "0000000000"),
            caller_name=variables.get("origination_caller_id_name", "FreeSWITCH"), destination=ext, context="default",
        )  # fmt: skip
        leg.variables.update({"is_outbound": "true", **variables})
        self._state(leg, "CS_ROUTING")

        def fail(cause: str) -> None:
            self._end_outbound(leg, cause, "send_cancel")
            if not fut.done():
                fut.set_result(f"-ERR {cause}\n")

        if ep is None:
            fail("USER_NOT_REGISTERED")
            return
        self.emit("CHANNEL_PROGRESS", channel=leg)
        self._callstate(leg, "RINGING")
        behavior = ep.behavior_for(None)
        limit = float(variables.get("originate_timeout", "60") or 60)
        if behavior.action == "reject":
            await k.sleep(self.reject_delay)
            fail("USER_BUSY")
            return
        if behavior.action != "answer" or behavior.ring_s >= limit:
            await k.sleep(limit)
            fail("NO_ANSWER")
            return
        await k.sleep(behavior.ring_s)
        self._answer(leg)
        if not fut.done():
            fut.set_result(f"+OK {leg.uuid}\n")
        leg.proc = k.current()
        app = re.match(r"^&([A-Za-z_]+)\((.*)\)$", target)
        first: list[tuple[str, str]] | None = None
        if app is not None:
            first = [(app.group(1), app.group(2))]
        else:
            parts = target.split()
            leg.destination = parts[0] if parts else ext
            leg.context = parts[2] if len(parts) > 2 else "default"
        self._state(leg, "CS_EXECUTE")
        if behavior.talk_s is not None:
            k.call_later(behavior.talk_s, self._hangup, leg, "NORMAL_CLEARING", "recv_bye")
        await self._session(leg, first, created=True)

    def _outbound_leg(self, name: str, **kw: Any) -> FsLeg:
        """A leg FreeSWITCH dials out (originate, bridge): CHANNEL_OUTGOING .. CHANNEL_ORIGINATE."""
        leg = self._new_leg("originated", name, direction="outbound", state="CS_NONE", call_state="DOWN",
                            answer_state="ringing", source="src/switch_ivr_originate.c", **kw)
        self.emit("CHANNEL_OUTGOING", channel=leg)
        self._state(leg, "CS_INIT")
        self.emit("CHANNEL_CREATE", channel=leg)
        self.emit("CHANNEL_ORIGINATE", channel=leg)
        return leg

    def _end_outbound(self, leg: FsLeg, cause: str, disposition: str) -> None:
        self._hangup(leg, cause, disposition, interrupt=False)
        self._complete(leg)
        self._destroy(leg)

    async def _app_bridge(self, ch: FsLeg, data: str) -> None:
        """``bridge {vars}sofia/gateway/<gw>/<number>`` to an outside number (callbacks): the
        remote side behaves as ``remote_behaviors[number]``. Leaves ``originate_disposition``
        (SUCCESS or the failure cause) and ``DIALSTATUS`` on the channel as bridge does; after
        a failure the dialplan goes on only with ``continue_on_fail``; after a bridged call
        with ``hangup_after_bridge=true`` the channel hangs up."""
        variables, endpoint = _dial_vars(data.strip())
        if not endpoint:
            return
        number = endpoint.rsplit("/", 1)[-1]
        behavior = self.remote_behaviors.get(number, self.remote_default)
        limit = float(variables.get("originate_timeout", "60") or 60)
        leg = self._outbound_leg(endpoint, ext=number, caller_number=ch.caller_number, caller_name=ch.caller_name,
                                 destination=number, context=ch.context)
        self.emit("CHANNEL_PROGRESS", channel=leg)
        self._callstate(leg, "RINGING")
        if ch.call is not None:
            ch.call.log("bridge", number=number)

        def result(disposition: str) -> None:
            ch.variables["originate_disposition"] = disposition
            ch.variables["DIALSTATUS"] = {"SUCCESS": "SUCCESS", "NO_ANSWER": "NOANSWER", "USER_BUSY": "BUSY",
                                          "ORIGINATOR_CANCEL": "CANCEL"}.get(disposition, "CHANUNAVAIL")
            if ch.call is not None:
                ch.call.log("bridge_result", disposition=disposition)

        answer_at = self.now() + behavior.ring_s if behavior.action == "answer" else None
        deadline = self.now() + (self.reject_delay if behavior.action == "reject" else limit)
        try:
            while answer_at is None or self.now() < answer_at - 1e-9:
                if self.now() >= deadline - 1e-9:
                    break
                await self._wait(ch, min(deadline, answer_at or deadline) - self.now())
        except _Hangup:
            result("ORIGINATOR_CANCEL")
            self._end_outbound(leg, "ORIGINATOR_CANCEL", "send_cancel")
            raise
        if answer_at is None or answer_at > deadline:
            cause = "USER_BUSY" if behavior.action == "reject" else "NO_ANSWER"
            result(cause)
            self._end_outbound(leg, cause, "send_cancel")
            if not _true(ch.variables.get("continue_on_fail", "")):
                self._hangup(ch, cause, "send_bye", interrupt=False)
                raise _Hangup()
            return
        self._answer(leg)
        result("SUCCESS")
        ch.peer, leg.peer = leg, ch
        ch.bridged_at = leg.bridged_at = self.now()
        self.emit("CHANNEL_BRIDGE", [("Bridge-A-Unique-ID", ch.uuid), ("Bridge-B-Unique-ID", leg.uuid),
                                     ("Other-Leg-Unique-ID", leg.uuid)], channel=ch)  # fmt: skip
        remote_bye = self.now() + behavior.talk_s if behavior.talk_s is not None else None
        try:
            while remote_bye is None or self.now() < remote_bye - 1e-9:
                await self._wait(ch, None if remote_bye is None else remote_bye - self.now())
        except _Hangup:
            ch.peer = leg.peer = None
            self.emit("CHANNEL_UNBRIDGE", [("Bridge-A-Unique-ID", ch.uuid), ("Bridge-B-Unique-ID", leg.uuid)],
                      channel=ch)  # fmt: skip
            self._end_outbound(leg, "NORMAL_CLEARING", "send_bye")
            raise
        ch.peer = leg.peer = None
        self._end_outbound(leg, "NORMAL_CLEARING", "recv_bye")
        self.emit("CHANNEL_UNBRIDGE", [("Bridge-A-Unique-ID", ch.uuid), ("Bridge-B-Unique-ID", leg.uuid)],
                  channel=ch)  # fmt: skip
        if _true(ch.variables.get("hangup_after_bridge", "")):
            self._hangup(ch, "NORMAL_CLEARING", "send_bye", interrupt=False)
            raise _Hangup()

    # callcenter_config
    def _api_callcenter_config(self, session: EslSession | None, arg: str | None) -> str:
        if session is not None:
            self.kernel.sync()
        words = [w.strip("'") for w in re.findall(r"'[^']*'|\S+", arg or "")]
        if words[:2] == ["agent", "set"] and len(words) >= 5:
            # the argument is split on spaces: unquoted On Break is "On" (api_replies)
            return self._agent_set(words[2], words[3], words[4])
        if words[:2] == ["agent", "get"] and len(words) >= 4:
            a = self.agents.get(words[3])
            if a is None:
                return "-ERR Invalid Agent!\n"
            value = {"status": a.status, "state": a.state, "uuid": a.leg.uuid if a.leg else ""}.get(words[2])
            if value is None:
                return "-ERR Unknown Command!\n"
            self._cc(f"agent-{words[2]}-get", [("CC-Agent", a.name), ("CC-Action", f"agent-{words[2]}-get"),
                                                (f"CC-Agent-{words[2].capitalize()}", value)])  # fmt: skip
            return value  # no final newline (api_replies)
        if words[:2] == ["agent", "add"] and len(words) >= 3:
            if words[2] in self.agents:
                return "-ERR Agent already exist!\n"
            self.agents[words[2]] = _Agent(words[2], type=words[3] if len(words) > 3 else "callback",
                                           last_status_change=int(self.now()))  # fmt: skip
            self._cc("agent-add", [("CC-Agent", words[2]), ("CC-Action", "agent-add")])
            return "+OK\n"
        if words[:2] == ["agent", "del"] and len(words) >= 3:
            if self.agents.pop(words[2], None) is None:
                return "-ERR Invalid Agent!\n"
            self.tiers = [t for t in self.tiers if t.agent != words[2]]
            self._cc("agent-del", [("CC-Agent", words[2]), ("CC-Action", "agent-del")])
            return "+OK\n"
        if words[:2] == ["agent", "list"]:
            rows = [a.row() for a in self.agents.values() if len(words) < 3 or a.name == words[2]]
            return "\n".join([_AGENT_COLUMNS, *rows, "+OK"]) + "\n"
        if words[:2] == ["tier", "add"] and len(words) >= 4:
            if words[2] not in self.queues:
                return "-ERR Invalid Queue!\n"
            if words[3] not in self.agents:
                return "-ERR Invalid Agent!\n"
            level = int(words[4]) if len(words) > 4 else 1
            position = int(words[5]) if len(words) > 5 else 1
            self.add_tier(words[2], words[3], level, position)
            return "+OK\n"
        if words[:2] == ["tier", "del"] and len(words) >= 4:
            before = len(self.tiers)
            self.tiers = [t for t in self.tiers if not (t.queue == words[2] and t.agent == words[3])]
            return "+OK\n" if len(self.tiers) < before else "-ERR Invalid Tier!\n"
        if words[:2] == ["tier", "set"] and len(words) >= 6:
            for t in self.tiers:
                if t.queue == words[3] and t.agent == words[4]:
                    if words[2] == "level":
                        t.level = int(words[5])
                    elif words[2] == "position":
                        t.position = int(words[5])
                    elif words[2] == "state":
                        t.state = words[5]
                    self._kick()
                    return "+OK\n"
            return "-ERR Invalid Tier!\n"
        if words[:2] == ["tier", "list"]:
            rows = [f"{t.queue}|{t.agent}|{t.state}|{t.level}|{t.position}" for t in self.tiers]
            return "\n".join([_TIER_COLUMNS, *rows, "+OK"]) + "\n"
        if words[:1] == ["queue"]:
            return self._queue_command(words[1:])
        return "-ERR Unknown Command!\n"

    def _agent_set(self, what: str, name: str, value: str) -> str:
        a = self.agents.get(name)
        if a is None:
            return "-ERR Invalid Agent!\n"
        if what == "status":
            if value not in _AGENT_STATUSES:
                return "-ERR Invalid Agent Status!\n"
            self._set_status(a, value)
        elif what == "state":
            if value not in _AGENT_STATES:
                return "-ERR Invalid Agent State!\n"
            a.state = value
            self._cc("agent-state-change", [("CC-Agent", a.name), ("CC-Action", "agent-state-change"),
                                            ("CC-Agent-State", value)])  # fmt: skip
            self._kick()
        elif what == "contact":
            a.contact = value
            self._cc("agent-contact-change", [("CC-Agent", a.name), ("CC-Action", "agent-contact-change"),
                                              ("CC-Agent-Contact", value)])  # fmt: skip
        elif what in ("max_no_answer", "wrap_up_time", "reject_delay_time", "busy_delay_time",
                      "no_answer_delay_time"):  # fmt: skip
            setattr(a, what, int(value))
        elif what == "ready_time":
            a.ready_time = float(value)
            self._kick()
        else:
            return "-ERR Unknown Command!\n"
        return "+OK\n"

    def _queue_command(self, words: list[str]) -> str:
        if words[:1] == ["list"] and len(words) == 1:
            rows = []
            for q in self.queues.values():
                p = q.param
                rows.append("|".join([
                    q.name, q.strategy, p("moh-sound"), p("time-base-score", "system"), p("tier-rules-apply", "false"),
                    p("tier-rule-wait-second", "0"), p("tier-rule-wait-multiply-level", "true"),
                    p("tier-rule-no-agent-no-wait", "false"), p("discard-abandoned-after", "60"),
                    p("abandoned-resume-allowed", "false"), p("max-wait-time", "0"),
                    p("max-wait-time-with-no-agent", "0"),
                    p("max-wait-time-with-no-agent-time-reached", "5"), p("record-template"), str(q.calls_answered),
                    str(q.calls_abandoned), p("ring-progressively-delay", "10"),
                    p("skip-agents-with-external-calls", "true"), p("agent-no-answer-status", "On Break"),
                ]))  # fmt: skip
            return "\n".join([_QUEUE_COLUMNS, *rows, "+OK"]) + "\n"
        if len(words) >= 3 and words[0] in ("list", "count"):
            found = self.queues.get(words[2])
            if found is None:
                return "+OK\n" if words[0] == "list" else "0\n"  # queue list members sales: just +OK
            q = found
            now = self.now()
            if words[1] == "members":
                if words[0] == "count":
                    return f"{sum(1 for m in q.members if m.state in ('Waiting', 'Trying'))}\n"
                rows = [
                    "|".join([
                        q.name, _SYSTEM, m.uuid, m.session.uuid, m.session.caller_number, m.session.caller_name,
                        str(int(m.session.answered or m.joined)), str(int(m.joined)), "0",
                        str(int(m.answered_at or 0)), "0", str(m.base_score), "0",
                        m.agent.name if m.agent else "", _SYSTEM if m.agent else "", m.state,
                        str(int(now - m.joined) + m.base_score),
                    ])
                    for m in q.members
                ]  # fmt: skip
                return "\n".join([_MEMBER_COLUMNS, *rows, "+OK"]) + "\n"
            if words[1] == "agents":
                names = [t.agent for t in self.tiers if t.queue == q.name]
                rows = [self.agents[n].row() for n in names if n in self.agents]
                return "\n".join([_AGENT_COLUMNS, *rows, "+OK"]) + "\n"
            if words[1] == "tiers":
                rows = [f"{t.queue}|{t.agent}|{t.state}|{t.level}|{t.position}" for t in self.tiers
                        if t.queue == q.name]  # fmt: skip
                return "\n".join([_TIER_COLUMNS, *rows, "+OK"]) + "\n"
        if words[:1] in (["load"], ["unload"], ["reload"]):
            return "+OK\n"
        return "-ERR Unknown Command!\n"


def freeswitch_traffic(sim: FreeswitchSim, model: Any, seed: int = 0) -> Any:
    """The traffic model (callcenter.sim.traffic.Traffic) driving this simulator: it only uses
    the phone / queue / call API the Asterisk simulator has, which this one offers too."""
    from callcenter.sim.traffic import Traffic

    return Traffic(cast(Any, sim), model, seed=seed)
