"""The Asterisk simulator against the real Asterisk 22.10.1 captures.

Each trace scenario is played in the simulator (the shipped dialplan, the lab's phones and
queues) with an AMI client on loopback; what the client reads is fed through the same
``AsteriskTranslator`` as the trace, and compared:

* the call-scoped domain events in order (type + key fields: queue, agent, reason,
  hung_up_by, digits, ...) and, per agent, the sequence of status/pause/membership events
  (their interleaving with call events is a race inside Asterisk: answered_caller_hangup and
  answered_agent_hangup show the same device-state change on either side of QueueCallerLeave);
* per channel, the order of the AMI events the translator reads (VarSet and Newexten excluded:
  the lab dialplan of the traces is not the shipped one);
* the header layout of every event the simulator sends, against the layouts seen in the traces.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from callcenter.domain.commands import CollectDigits, MoveToQueue, RouteToQueue, StartSpy
from callcenter.domain.events import Event, SpyMode
from callcenter.pbx.asterisk.actions import AmiAction, plan
from callcenter.pbx.asterisk.adapter import AsteriskAdapter
from callcenter.pbx.asterisk.client import AmiClient
from callcenter.pbx.asterisk.message import AmiMessage
from callcenter.pbx.asterisk.protocol import AmiParser
from callcenter.pbx.asterisk.trace import read_trace
from callcenter.pbx.asterisk.translate import HANDLED_EVENTS, AsteriskTranslator
from callcenter.pbx.replay import replay_events
from callcenter.sim.asterisk import APP_NAMES, AgentBehavior, AsteriskSim
from callcenter.sim.dialplan import parse_dialplan

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "asterisk"
DIALPLAN = Path(__file__).resolve().parents[2] / "dialplans" / "asterisk" / "extensions_callcenter.conf"
EPOCH = 1_795_360_000.0
SPEED = 50.0

pytestmark = pytest.mark.timeout(30)


# -- capture and views ----------------------------------------------------------------------------
class Capture:
    """An AMI client on the simulator that records every event with its (virtual) read time."""

    def __init__(self, sim: AsteriskSim) -> None:
        self.sim = sim
        self.client = AmiClient(
            "127.0.0.1", sim.port, "ctl", "ctlsecret", workers=0, clock=sim.clock, ping_interval=None
        )
        self.events: list[tuple[AmiMessage, datetime]] = []
        self.client.on_event(lambda msg, at: self.events.append((msg, at)))

    async def start(self) -> Capture:
        await self.client.start()
        return self

    async def settle(self) -> None:
        """Let trailing events (device states after a hangup) arrive."""
        await self.sim.advance(0.5)
        await self.client.drain(2)

    async def event(self, name: str, timeout: float = 5.0, **match: str) -> AmiMessage:
        async with asyncio.timeout(timeout):
            while True:
                for msg, _ in self.events:
                    if msg.event == name and all(msg.get(k) == v for k, v in match.items()):
                        return msg
                await asyncio.sleep(0.002)

    def domain(self) -> list[Event]:
        tr = AsteriskTranslator("sim")
        return [e for msg, at in self.events for e in tr.feed(msg, at)]

    def messages(self) -> list[AmiMessage]:
        return [msg for msg, _ in self.events]


@asynccontextmanager
async def lab(seed: int = 7) -> AsyncIterator[tuple[AsteriskSim, Capture]]:
    sim = AsteriskSim(seed=seed, speed=SPEED, epoch=EPOCH)
    await sim.start()
    cap = Capture(sim)
    try:
        await cap.start()
        yield sim, cap
    finally:
        await cap.client.close()
        await sim.close()
    assert sim.kernel.errors == []


def soon(sim: AsteriskSim) -> float:
    """Just after the next whole virtual second: app_queue's HoldTime/TalkTime are differences
    of whole time() seconds, so a scripted 6 s talk is TalkTime 6 only if it does not straddle."""
    return math.floor(sim.now()) + 1.2


def trace_messages(name: str) -> list[AmiMessage]:
    parser = AmiParser(expect_banner=True)
    out = []
    for frame in read_trace(FIXTURES / f"{name}.ami.txt"):
        if frame.direction == "recv":
            out.extend(m for m in parser.feed(frame.data) if m.event is not None)
    return out


CALL_KEYS: dict[str, tuple[str, ...]] = {
    "call_arrived": ("caller_number",),
    "call_answered": (),
    "ivr_node_entered": (),  # node names differ: the lab dialplan vs cc-ivr-main's CC_NODE
    "dtmf_received": ("digit",),
    "controller_attached": ("caller_number",),
    "controller_released": (),
    "prompt_finished": ("command_id", "result", "hangup"),
    "digits_collected": ("command_id", "digits", "hangup"),
    "variable_set": ("name", "value"),
    "queue_joined": ("queue", "position"),
    "agent_offered": ("queue", "agent"),
    "agent_ring_no_answer": ("queue", "agent", "ring_ms"),
    "agent_ring_canceled": ("queue", "agent"),
    "agent_connected": ("queue", "agent"),
    "agent_completed": ("queue", "agent", "ended_by"),
    "queue_left": ("queue", "reason"),
    "call_ended": ("cause", "hung_up_by"),
    "spy_started": ("mode",),
    "spy_stopped": ("mode",),
    "originate_result": ("request_id", "success", "reason"),
}
AGENT_KEYS: dict[str, tuple[str, ...]] = {
    "agent_status_changed": ("status",),
    "agent_pause_changed": ("queue", "paused", "reason"),
    "queue_member_changed": ("queue", "added", "penalty"),
}


def call_view(events: list[Event]) -> list[tuple[Any, ...]]:
    ids: dict[str, str] = {}
    out = []
    for e in events:
        d = e.to_dict()
        if d["type"] not in CALL_KEYS:
            continue
        call = ids.setdefault(d["call_id"], f"C{len(ids)}") if d["call_id"] else None
        out.append((d["type"], call, *(d[k] for k in CALL_KEYS[d["type"]])))
    return out


def agent_view(events: list[Event]) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for e in events:
        d = e.to_dict()
        if d["type"] in AGENT_KEYS:
            out[d["agent"]].append((d["type"], *(d[k] for k in AGENT_KEYS[d["type"]])))
    return dict(out)


def timing_view(events: list[Event]) -> list[tuple[Any, ...]]:
    fields = {"queue_left": "hold_s", "agent_connected": "hold_s", "agent_completed": "talk_s"}
    return [(e.type, getattr(e, fields[e.type])) for e in events if e.type in fields]


_SUFFIX = re.compile(r"-[0-9a-f]{8}$")
READ = HANDLED_EVENTS - {"VarSet", "Newexten"}


def channel_view(messages: list[AmiMessage]) -> dict[str, list[str]]:
    """Per channel (named by endpoint and order of appearance), the names of the AMI events
    the translator reads, in order."""
    names: dict[str, str] = {}
    per_endpoint: dict[str, int] = defaultdict(int)
    out: dict[str, list[str]] = defaultdict(list)
    for m in messages:
        if m.event not in READ:
            continue
        key = m.get("Channel") or m.get("SpyerChannel") or m.get("DestChannel") or m.get("Interface") or ""
        if _SUFFIX.search(key):
            if key not in names:
                base = _SUFFIX.sub("", key)
                names[key] = f"{base}#{per_endpoint[base]}"
                per_endpoint[base] += 1
            key = names[key]
        out[key].append(m.event or "")
    return dict(out)


def assert_like_trace(name: str, cap: Capture, *, timings: bool = True) -> None:
    real, _ = replay_events(FIXTURES / f"{name}.ami.txt")
    sim = cap.domain()
    assert call_view(sim) == call_view(real)
    assert agent_view(sim) == agent_view(real)
    if timings:
        assert timing_view(sim) == timing_view(real)
    assert channel_view(cap.messages()) == channel_view(trace_messages(name))


# -- the trace scenarios -------------------------------------------------------------------------------
async def test_ivr_abandon() -> None:
    async with lab() as (sim, cap):
        # caller presses nothing and hangs up 3 s after the answer (during BackGround/WaitExten)
        call = sim.call("2025550143", did="5550100", entry="static", ivr_patience_s=3.0, at=soon(sim))
        await call.ended(timeout=5)
        await cap.settle()
        assert call.outcome == "abandon_ivr" and call.hung_up_by == "caller" and call.cause == 0
        assert call.find("ivr_node", node="ivr-main") is not None
        assert_like_trace("ivr_abandon", cap)


async def test_queue_abandon_with_busy_agents() -> None:
    async with lab() as (sim, cap):
        for ext in ("1001", "1002"):
            sim.set_behavior(ext, AgentBehavior("reject"))
        # presses 2 (support) 1 s into the prompt, hangs up 8 s after joining the queue: both
        # members tried at once, again after retry=5 s (queue_log: 4x RINGNOANSWER|0, ABANDON|1|1|8)
        call = sim.call("2025550143", did="5550100", entry="static", digits=["2"], queue_patience_s=8.0, at=soon(sim))
        await call.ended(timeout=5)
        await cap.settle()
        assert call.outcome == "abandon_queue"
        assert [line.split("|", 4)[4] for line in sim.queue_log] == [
            "ENTERQUEUE||2025550143|1",
            "RINGNOANSWER|0",
            "RINGNOANSWER|0",
            "RINGNOANSWER|0",
            "RINGNOANSWER|0",
            "ABANDON|1|1|8",
        ]
        assert_like_trace("queue_abandon", cap)


async def test_answered_caller_hangup() -> None:
    async with lab() as (sim, cap):
        call = sim.call("2025550143", did="5550100", entry="static", digits=["1"], talk_s=6.0, at=soon(sim))
        await call.ended(timeout=5)
        await cap.settle()
        assert call.outcome == "answered" and call.hung_up_by == "caller"
        assert sim.queue_log[-1].endswith("|sales|Alice|COMPLETECALLER|2|6|1")
        assert_like_trace("answered_caller_hangup", cap)


async def test_answered_agent_hangup() -> None:
    async with lab() as (sim, cap):
        sim.set_behavior("1001", AgentBehavior(ring_s=2.0, talk_s=5.0))
        call = sim.call("2025550143", did="5550100", entry="static", digits=["1"], talk_s=None, at=soon(sim))
        await call.ended(timeout=5)
        await cap.settle()
        assert call.hung_up_by == "agent"
        assert sim.queue_log[-1].endswith("|sales|Alice|COMPLETEAGENT|2|5|1")
        assert_like_trace("answered_agent_hangup", cap)


async def test_overflow_redirect_setvar_and_redirect() -> None:
    async with lab() as (sim, cap):
        sim.set_behavior("1001", AgentBehavior("noanswer"))
        sim.set_behavior("1002", AgentBehavior("noanswer"))
        sim.set_behavior("1003", AgentBehavior(ring_s=1.0))
        client = cap.client
        await client.action(
            "QueueAdd",
            [
                ("Queue", "support"),
                ("Interface", "PJSIP/1003"),
                ("Penalty", "1"),
                ("Paused", "false"),
                ("MemberName", "Carol"),
                ("StateInterface", "PJSIP/1003"),
            ],
        )
        call = sim.call("2025550194", did="5550100", entry="static", digits=["1"], talk_s=3.0, at=soon(sim))
        await call.wait("queue", queue="sales")
        await sim.advance(10.0)
        # MoveToQueue as the controller plans it: Setvar QUEUE_PRIO, QUEUE_MIN_PENALTY, Redirect
        for step in plan(MoveToQueue(call_id=call.call_id, queue="support", min_penalty=1), channel=call.channel):
            assert isinstance(step, AmiAction)
            await client.action(step.name, list(step.headers))
        await call.ended(timeout=5)
        await cap.settle()
        assert call.find("left_queue", queue="sales", reason="redirect") is not None
        assert call.find("connected", agent="PJSIP/1003") is not None  # only Carol: min penalty 1
        kinds = [line.split("|")[4] for line in sim.queue_log]
        assert kinds == [
            "ADDMEMBER",
            "ENTERQUEUE",
            "RINGCANCELED",
            "ABANDON",
            "ENTERQUEUE",
            "CONNECT",
            "COMPLETECALLER",
        ]
        assert sim.queue_log[3].endswith("|sales|NONE|ABANDON|1|1|10")
        # the trace's Setvar had no QUEUE_PRIO: the plan's extra Setvar adds nothing the translator sees
        assert_like_trace("overflow_redirect", cap)
        # The redirect out of Queue() itself, Newexten included: MOH stops, the ringing member
        # gets DialEnd CANCEL twice, the first Newexten at the new place still names Queue(sales),
        # the abandon is for sales, the member leg goes (Cause 0), then the caller leaves sales.
        assert redirect_window(cap.messages()) == redirect_window(trace_messages("overflow_redirect"))


def redirect_window(messages: list[AmiMessage]) -> list[tuple[str | None, ...]]:
    skip = {"VarSet", "DeviceStateChange", "QueueMemberStatus", "RTCPSent"}
    msgs = [m for m in messages if m.event not in skip]
    start = next(i for i, m in enumerate(msgs) if m.event == "MusicOnHoldStop")
    end = next(i for i, m in enumerate(msgs) if i > start and m.event == "QueueCallerLeave")
    return [
        (
            m.event,
            _SUFFIX.sub("", m.get("Channel") or ""),
            m.get("Exten"),
            m.get("Priority") if m.event == "Newexten" else None,  # Queue()'s own priority differs
            m.get("Application") or m.get("DialStatus") or m.get("Queue") or m.get("Cause"),
        )
        for m in msgs[start : end + 1]
    ]


async def agi(client: AmiClient, channel: str, command: str, command_id: str) -> AmiMessage:
    return await client.agi(channel, command, command_id=command_id, timeout=5)


async def test_asyncagi_ivr_driven_by_agi_commands() -> None:
    async with lab() as (sim, cap):
        sim.set_behavior("1001", AgentBehavior(ring_s=1.0))
        call = sim.call("2025550188", did="5550110", digits=[("1", 3.0)], talk_s=4.0)  # trace: ~4.4 s -> TalkTime 4
        await call.wait("controller")
        ch = call.channel or ""
        assert (await agi(cap.client, ch, 'STREAM FILE hello-world ""', "c1-stream")).get("Result") == (
            "200%20result%3D0%20endpos%3D11360%0A"
        )
        assert (await agi(cap.client, ch, "GET DATA hello-world 5000 1", "c2-getdata")).get("Result") == (
            "200%20result%3D1%0A"
        )
        await agi(cap.client, ch, "SET VARIABLE CC_QUEUE sales", "c3-queue")
        await agi(cap.client, ch, "SET VARIABLE CC_PRIO 10", "c4-prio")
        await agi(cap.client, ch, 'SET VARIABLE CALLERID(name) "VIP Ivanova"', "c5-cidname")
        await agi(cap.client, ch, "ASYNCAGI BREAK", "c6-break")
        await call.ended(timeout=5)
        await cap.settle()
        # the new caller name shows in later events (NewCallerid; AgentCalled's Dest connected line)
        called = await cap.event("AgentCalled")
        assert (called.get("CallerIDName"), called.get("DestConnectedLineName")) == ("VIP Ivanova", "VIP Ivanova")
        prio = [m for m in cap.messages() if m.event == "VarSet" and m.get("Variable") == "QUEUE_PRIO"]
        assert [m.get("Value") for m in prio] == ["10"]  # cc-queue: CC_PRIO becomes QUEUE_PRIO
        assert_like_trace("asyncagi_ivr", cap)


async def test_asyncagi_no_controller_phases() -> None:
    async with lab() as (sim, cap):
        for ext in ("1001", "1002"):
            sim.set_behavior(ext, AgentBehavior(ring_s=1.0))
        client = cap.client
        # B: a logged-in but silent controller (no fail-open within 60 s), a late BREAK after 20 s
        sim.globals["CC_CONTROLLER_TIMEOUT"] = "60"
        b = sim.call("2025550191", did="5550110", talk_s=6.0)
        await b.wait("controller")
        await sim.advance(20.0)
        await agi(client, b.channel or "", "ASYNCAGI BREAK", "b1-break")
        await b.ended(timeout=5)
        sim.globals["CC_CONTROLLER_TIMEOUT"] = ""
        # C: silent controller -> TIMEOUT(absolute) after 10 s -> T -> support (Bob: rrmemory)
        c = sim.call("2025550192", did="5550110", talk_s=6.0)
        await c.ended(timeout=5)
        assert c.find("failopen", reason="controller-timeout") is not None
        # D: the controller answers at once; the cleared timeout does not fire later (17 s talk)
        d = sim.call("2025550193", did="5550110", talk_s=17.0)
        await d.wait("controller")
        await agi(client, d.channel or "", "SET VARIABLE CC_QUEUE sales", "d1-queue")
        await agi(client, d.channel or "", "ASYNCAGI BREAK", "d2-break")
        await d.ended(timeout=5)
        assert d.find("failopen") is None
        # E: GET DATA 15000 is cut off by the 10 s timeout: -1 like a hangup, then T -> support
        e = sim.call("2025550196", did="5550110", talk_s=6.0)
        await e.wait("controller")
        cut = await agi(client, e.channel or "", "GET DATA hello-world 15000 1", "e1-getdata")
        assert cut.get("Result") == "200%20result%3D-1%0A"
        await e.ended(timeout=5)
        await cap.settle()
        assert [x.outcome for x in (b, c, d, e)] == ["answered"] * 4
        assert [x.find("connected")["agent"] for x in (b, c, d, e)] == [  # type: ignore[index]
            "PJSIP/1001",
            "PJSIP/1002",
            "PJSIP/1001",
            "PJSIP/1001",
        ]
        assert_like_trace("asyncagi_no_controller", cap)


async def test_queue_pause_reason() -> None:
    async with lab() as (sim, cap):
        sim.set_behavior("1002", AgentBehavior(ring_s=1.0))
        client = cap.client
        await client.action("QueuePause", [("Interface", "PJSIP/1001"), ("Paused", "true"), ("Reason", "lunch")])
        await client.action(
            "QueueAdd",
            [
                ("Queue", "sales"),
                ("Interface", "PJSIP/1003"),
                ("Penalty", "2"),
                ("Paused", "false"),
                ("MemberName", "Carol"),
            ],
        )
        _, items = await client.action_list("QueueStatus", [("Queue", "sales")])
        members = {
            m.get("Name"): (m.get("Paused"), m.get("PausedReason"), m.get("Penalty"))
            for m in items
            if m.event == "QueueMember"
        }
        assert members == {"Alice": ("1", "lunch", "0"), "Bob": ("0", "", "0"), "Carol": ("0", "", "2")}
        call = sim.call("2025550195", did="5550100", entry="static", digits=["1"], talk_s=6.0, at=soon(sim))
        await call.wait("connected")
        await sim.advance(1.0)
        await client.action("QueueRemove", [("Queue", "sales"), ("Interface", "PJSIP/1003")])
        await client.action("QueuePause", [("Interface", "PJSIP/1001"), ("Paused", "false")])
        await call.ended(timeout=5)
        await cap.settle()
        assert call.find("connected")["agent"] == "PJSIP/1002"  # type: ignore[index]
        kinds = [line.split("|")[4] for line in sim.queue_log]
        assert kinds == [
            "PAUSEALL", "PAUSE", "PAUSE", "PAUSE", "ADDMEMBER", "ENTERQUEUE", "CONNECT", "REMOVEMEMBER",
            "UNPAUSEALL", "UNPAUSE", "UNPAUSE", "UNPAUSE", "COMPLETECALLER",
        ]  # fmt: skip
        assert_like_trace("queue_pause_reason", cap)


async def test_whisper_then_barge_via_originate() -> None:
    async with lab() as (sim, cap):
        client = cap.client
        call = sim.call("2025550143", did="5550100", entry="static", digits=["1"], talk_s=26.0, at=soon(sim))
        await call.wait("connected")
        for mode in ("whisper", "barge"):
            await sim.advance(2.0)
            # the controller's StartSpy plan (cc-spy, CC_SPY_TARGET=PJSIP/1001-), with our ActionID
            (step,) = plan(StartSpy(supervisor_endpoint="PJSIP/1009", target="PJSIP/1001", mode=SpyMode(mode)))
            assert isinstance(step, AmiAction)
            await client.action("Originate", [("ActionID", f"orig-{mode}"), *step.headers])
            resp = await cap.event("OriginateResponse", ActionID=f"orig-{mode}")
            spyer = resp.get("Channel") or ""
            await cap.event("ChanSpyStart", SpyerChannel=spyer)
            await sim.advance(5.0)
            await client.action("Hangup", [("Channel", spyer), ("Cause", "16")])
            await cap.event("Hangup", Channel=spyer)
        await call.ended(timeout=5)
        await cap.settle()
        spy_apps = [
            m.get("AppData") for m in cap.messages() if m.event == "Newexten" and m.get("Application") == "ChanSpy"
        ]
        assert spy_apps == ["PJSIP/1001-,qw", "PJSIP/1001-,qB"]
        assert_like_trace("whisper_barge", cap)


# -- shapes --------------------------------------------------------------------------------------------
def _layouts() -> dict[str, set[tuple[str, ...]]]:
    out: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for path in FIXTURES.glob("*.ami.txt"):
        for m in trace_messages(path.name.removesuffix(".ami.txt")):
            out[m.event or ""].add(tuple(_keys(m)))
    return out


def _keys(m: AmiMessage) -> list[str]:
    """Header names in order (the Privilege header with its value: it differs per event class)."""
    keys = []
    for line in m.text.split("\r\n"):
        k, _, v = line.partition(": ")
        if k == "Variable" and m.event == "Status":
            continue
        keys.append(f"Privilege={v}" if k == "Privilege" else k)
    return keys


async def test_event_layouts_and_list_replies_match_the_traces() -> None:
    async with lab() as (sim, cap):
        client = cap.client
        sim.set_behavior("1002", AgentBehavior(ring_s=1.0, talk_s=20.0))
        await client.action("QueuePause", [("Interface", "PJSIP/1001"), ("Paused", "true"), ("Reason", "lunch")])
        a = sim.call("2025550101", did="5550100", entry="static", digits=["1"], talk_s=20.0)
        await a.wait("connected")
        b = sim.call("2025550102", did="5550100", entry="static", digits=["2"], talk_s=20.0)
        await b.wait("queue")
        await sim.advance(2.0)
        replies: dict[str, tuple[AmiMessage, list[AmiMessage]]] = {}
        for name, headers in (
            ("CoreShowChannels", []),
            ("Status", []),
            ("QueueSummary", []),
            ("QueueStatus", []),
            ("PJSIPShowEndpoints", []),
        ):
            replies[name] = await client.action_list(name, headers)
        status = await client.action_list("Status", [("Channel", a.channel or ""), ("Variables", "CC_QUEUE,CC_DID")])
        assert [m.get("Variable") for m in status[1] if m.event == "Status"] == ["CC_QUEUE=sales"]
        assert status[1][0].get_all("Variable") == ("CC_QUEUE=sales", "CC_DID=5550100")
        entry = next(m for m in replies["QueueStatus"][1] if m.event == "QueueEntry")
        assert (entry.get("Queue"), entry.get("Channel"), entry.get("ConnectedLineNum")) == (
            "support",
            b.channel,
            "unknown",
        )
        summary = {
            m.get("Queue"): (m.get("Available"), m.get("Callers")) for m in replies["QueueSummary"][1] if m.get("Queue")
        }
        assert summary == {"support": ("0", "1"), "vip": ("0", "0"), "sales": ("0", "0")}
        # errors as Asterisk 22 words them
        got = await client.action("Getvar", [("Channel", a.channel or ""), ("Variable", "CALLERID(num)")])
        assert (got.get("Variable"), got.get("Value")) == ("CALLERID(num)", "2025550101")
        got = await client.action("Getvar", [("Channel", a.channel or ""), ("Variable", "CC_DID")])
        assert got.get("Value") == "5550100"
        assert (await client.action("Ping")).get("Ping") == "Pong"
        with pytest.raises(Exception, match="Not there"):
            await client.action("QueueRemove", [("Queue", "support"), ("Interface", "PJSIP/1003")])
        with pytest.raises(Exception, match="No such channel"):
            await client.action("Getvar", [("Channel", "PJSIP/nonexistent-00000000"), ("Variable", "X")])
        with pytest.raises(Exception, match="Invalid/unknown command"):
            await client.action("NoSuchAction")
        await cap.event("RequestBadFormat")
        await client.action("Hangup", [("Channel", a.channel or "")])  # AMI hangup: system, cause 16
        await a.ended(timeout=5)
        assert (a.hung_up_by, a.cause) == ("system", 16)
        sim.hangup(b)
        await b.ended(timeout=5)
        await cap.settle()
        layouts = _layouts()
        seen = set()
        for m in cap.messages():
            if m.event in layouts:
                assert tuple(_keys(m)) in layouts[m.event or ""], (m.event, _keys(m))
                seen.add(m.event)
        for name, (_, items) in replies.items():
            for m in items:
                assert tuple(_keys(m)) in layouts[m.event or ""], (name, m.event, _keys(m))
        assert {"QueueMemberPause", "AgentConnect", "BridgeEnter", "DTMFEnd", "CoreShowChannel"} <= seen | {
            m.event for _, items in replies.values() for m in items
        }


# -- behaviour beyond the traces (stepped virtual time, no AMI client) ----------------------------------
@asynccontextmanager
async def stepped(seed: int = 11, **kw: Any) -> AsyncIterator[AsteriskSim]:
    sim = AsteriskSim(seed=seed, speed=math.inf, epoch=EPOCH, record_events=True, **kw)
    await sim.start(listen=False)
    try:
        yield sim
    finally:
        await sim.close()
    assert sim.kernel.errors == []


def logged_domain(sim: AsteriskSim) -> list[Event]:
    tr = AsteriskTranslator("sim")
    return [e for msg, at in sim.logged_messages() for e in tr.feed(msg, at)]


def names(sim: AsteriskSim, channel: str | None) -> list[str]:
    return [m.event or "" for m, _ in sim.logged_messages() if m.get("Channel") == channel]


async def route(sim: AsteriskSim, call: Any, queue: str, prio: int | None = None) -> None:
    """What a controller does on AsyncAGIStart: SET VARIABLE CC_QUEUE (+ CC_PRIO), BREAK."""
    await sim.advance(0.1)
    assert sim.agi(call, f"SET VARIABLE CC_QUEUE {queue}")
    if prio is not None:
        sim.agi(call, f"SET VARIABLE CC_PRIO {prio}")
    sim.agi(call, "ASYNCAGI BREAK")
    await sim.advance(0.2)


async def test_fail_open_with_a_silent_and_without_any_controller() -> None:
    async with lab() as (sim, cap):
        silent = sim.call("2025550300", did="5550110", talk_s=1.0)
        await silent.ended(timeout=5)
        await cap.settle()
        assert silent.kinds()[:4] == ["arrived", "answered", "controller", "released"]
        assert silent.find("released") == {"status": "HANGUP"}
        t_start = next(t for t, k, _ in silent.history if k == "controller")
        t_end = next(t for t, k, _ in silent.history if k == "released")
        assert t_end - t_start == pytest.approx(10.0, abs=0.01)  # CC_CONTROLLER_TIMEOUT default
        assert silent.find("connected", queue="support") is not None
        assert [e.type for e in cap.domain() if e.call_id == silent.call_id][:6] == [
            "call_arrived",
            "call_answered",
            "controller_attached",
            "controller_released",
            "variable_set",  # CC_FAILOPEN=controller-timeout
            "queue_joined",
        ]
    # no AMI session at all: the same fail-open, here into CC_DEFAULT_QUEUE
    async with stepped() as sim:
        sim.globals["CC_DEFAULT_QUEUE"] = "sales"
        sim.globals["CC_CONTROLLER_TIMEOUT"] = "4"
        lonely = sim.call("2025550301", did="5550110", talk_s=1.0)
        await sim.advance(30)
        assert lonely.outcome == "answered" and lonely.find("connected", queue="sales") is not None
        assert lonely.find("failopen", reason="controller-timeout") is not None
        t = {k: t for t, k, _ in lonely.history}
        assert t["released"] - t["controller"] == pytest.approx(4.0)
        # a controller that renews the guard (SET VARIABLE TIMEOUT(absolute), the adapter's lease)
        # keeps the call; when it stops talking, the call falls through 20 s after the renewal
        kept = sim.call("2025550302", did="5550110", talk_s=1.0)
        await sim.advance(3)
        assert sim.agi(kept, "SET VARIABLE TIMEOUT(absolute) 20")
        await sim.advance(10)
        assert kept.find("failopen") is None and kept.find("queue") is None
        await sim.advance(15)
        t = {k: t for t, k, _ in kept.history}
        # renewed 3 s after placing, the AGI started 0.014 s after placing (Answer), the command
        # ran 0.02 s after it was queued (res_agi's loop)
        assert t["failopen"] - t["controller"] == pytest.approx(3.0 - 0.014 + 0.02 + 20.0, abs=0.001)


async def test_controller_end_to_end_through_the_adapter() -> None:
    """The documented usage: an AsteriskAdapter drives a controller call with scripted digits."""
    sim = AsteriskSim(seed=3, speed=SPEED, epoch=EPOCH)
    await sim.start()
    client = AmiClient("127.0.0.1", sim.port, "ctl", "ctlsecret", workers=0, clock=sim.clock, ping_interval=None)
    adapter = AsteriskAdapter("sim", client, clock=sim.clock)
    seen: list[Event] = []
    adapter.subscribe(seen.append)
    await adapter.start()
    try:
        sim.set_behavior("1002", AgentBehavior(ring_s=1.5))
        call = sim.call("+12025550143", did="5550110", digits=["7"], patience_s=60, talk_s=3.0)
        async with asyncio.timeout(5):
            while not any(e.type == "controller_attached" and e.call_id == call.call_id for e in seen):
                await asyncio.sleep(0.005)
        got = await adapter.execute(
            CollectDigits(call_id=call.call_id, prompt="hello-world", timeout_ms=4000, node="menu", command_id="g1")
        )
        assert got.ok and got.detail["digits"] == "7", got
        await sim.advance(12.0)  # longer than CC_CONTROLLER_TIMEOUT: the adapter's lease holds it off
        routed = await adapter.execute(RouteToQueue(call_id=call.call_id, queue="vip", priority=5, command_id="r1"))
        assert routed.ok, routed
        await call.ended(timeout=5)
        await client.drain(2)
        assert call.outcome == "answered" and call.find("failopen") is None
        offered = {e.agent for e in seen if e.type == "agent_offered"}  # type: ignore[attr-defined]
        assert offered == {"PJSIP/1001", "PJSIP/1002"}  # vip rings all
        types = [e.type for e in seen if e.call_id == call.call_id]
        assert types[:3] == ["call_arrived", "call_answered", "controller_attached"]
        assert {"ivr_node_entered", "digits_collected", "agent_connected"} <= set(types) and types[-1] == "call_ended"
    finally:
        await adapter.close()
        await sim.close()


async def test_priority_and_weight_order_waiting_callers() -> None:
    async with stepped() as sim:
        sim.pause_member("PJSIP/1002", True, "lunch")
        sim.set_behavior("1001", AgentBehavior(ring_s=1.0, talk_s=10.0))
        busy = sim.call("100", did="5550110", talk_s=None)
        await route(sim, busy, "sales")
        await sim.advance(2)  # Alice answered busy's call
        low = sim.call("101", did="5550110", talk_s=2.0)
        await route(sim, low, "sales")
        high = sim.call("102", did="5550110", talk_s=2.0)
        await route(sim, high, "sales", prio=9)
        heavy = sim.call("103", did="5550110", talk_s=2.0)
        await route(sim, heavy, "vip")  # weight 10: Alice serves vip callers first
        assert (low.find("queue")["position"], high.find("queue")["position"]) == (1, 1)  # type: ignore[index]
        await sim.advance(40)
        order = sorted((c.connected_at or 0, c.script.number) for c in (low, high, heavy))
        assert [n for _, n in order] == ["103", "102", "101"]
        assert all(c.find("connected", agent="PJSIP/1001") for c in (busy, low, high, heavy))


async def test_ringall_ring_timeout_retry_and_queue_timeout() -> None:
    async with stepped() as sim:
        sim.set_behavior("1001", AgentBehavior(ring_s=3.0, talk_s=1.0))
        sim.set_behavior("1002", AgentBehavior(ring_s=1.0, talk_s=1.0))
        vip = sim.call("200", did="5550110", talk_s=None)
        await route(sim, vip, "vip")
        await sim.advance(5)
        assert vip.outcome == "answered" and vip.find("connected")["agent"] == "PJSIP/1002"  # type: ignore[index]
        for ext in ("1001", "1002"):
            sim.set_behavior(ext, AgentBehavior("noanswer"))
        # rrmemory: Alice rings 15 s (RINGNOANSWER|15000), retry 5 s, then Bob; caller gives up
        patient = sim.call("201", did="5550110", queue_patience_s=25.0)
        await route(sim, patient, "sales")
        await sim.advance(30)
        assert patient.outcome == "abandon_ringing"
        mine = [x.split("|", 3)[3] for x in sim.queue_log if f"|{patient.call_id}|" in x]
        assert mine == [
            "NONE|ENTERQUEUE||201|1",
            "Alice|RINGNOANSWER|15000",
            "Bob|RINGCANCELED|5000",
            "NONE|ABANDON|1|1|25",
        ]
        # nobody available at all: Queue(sales,,,,300) gives up after 300 s, then NoOp + Hangup()
        for ext in ("PJSIP/1001", "PJSIP/1002"):
            sim.pause_member(ext, True, "training")
        stuck = sim.call("202", did="5550110")
        await route(sim, stuck, "sales")
        await sim.advance(305)
        assert stuck.outcome == "system" and stuck.find("left_queue", reason="timeout")
        assert any(x.endswith("|EXITWITHTIMEOUT|1|1|300") for x in sim.queue_log)
        events = [e for e in logged_domain(sim) if e.call_id in (patient.call_id, stuck.call_id)]
        assert [
            (e.type, getattr(e, "agent", None), getattr(e, "ring_ms", None)) for e in events if "ring" in e.type
        ] == [
            ("agent_ring_no_answer", "PJSIP/1001", 15000),
            ("agent_ring_canceled", "PJSIP/1002", None),
        ]
        left = [(e.queue, e.reason) for e in events if e.type == "queue_left"]  # type: ignore[attr-defined]
        assert left == [("sales", "abandon"), ("sales", "timeout")]
        ended = [e.hung_up_by for e in events if e.type == "call_ended"]  # type: ignore[attr-defined]
        assert ended == ["caller", "system"]


async def test_leastrecent_and_rrmemory_rotate_members() -> None:
    async with stepped() as sim:
        sim.add_queue("lr", strategy="leastrecent", members=[("PJSIP/1001", "Alice", 0), ("PJSIP/1002", "Bob", 0)])
        for ext in ("1001", "1002"):
            sim.set_behavior(ext, AgentBehavior(ring_s=1.0))
        got = []
        for i, queue in enumerate(["lr", "lr", "lr", "support", "support", "support"]):
            c = sim.call(f"30{i}", did="5550110", talk_s=2.0)
            await route(sim, c, queue)
            await sim.advance(5)
            got.append(c.find("connected")["agent"][-4:])  # type: ignore[index]
        assert got == ["1001", "1002", "1001", "1001", "1002", "1001"]


async def test_static_menu_timeouts_and_invalid_keys() -> None:
    async with stepped() as sim:
        # no key twice: t -> again, then CC_NODE=ivr-main-timeout and support
        quiet = sim.call("400", did="5550100", entry="static", digits=[None, None], talk_s=1.0)
        # an invalid key: i -> Playback(option-is-invalid) -> the menu again -> 1 (sales)
        wrong = sim.call("401", did="5550100", entry="static", digits=["9", "1"], talk_s=1.0)
        await sim.advance(40)
        nodes = [d["node"] for _, k, d in quiet.history if k == "ivr_node"]
        assert nodes == ["ivr-main", "ivr-main", "ivr-main-timeout"] and quiet.find("queue", queue="support")
        nodes = [d["node"] for _, k, d in wrong.history if k == "ivr_node"]
        assert nodes == ["ivr-main", "ivr-main-invalid", "ivr-main"] and wrong.find("queue", queue="sales")
        ivr = [e.node for e in logged_domain(sim) if e.type == "ivr_node_entered" and e.call_id == wrong.call_id]  # type: ignore[attr-defined]
        assert ivr == ["ivr-main", "ivr-main-invalid", "ivr-main"]


async def test_agi_hangup_during_get_data_and_redirect_out_of_agi() -> None:
    async with stepped() as sim:
        # asyncagi_hangup_in_ivr: caller BYE 4 s after answer during GET DATA 10000
        gone = sim.call("500", did="5550110", patience_s=4.0)
        await sim.advance(0.1)
        sim.agi(gone, "GET DATA hello-world 10000 1", "g1")
        await sim.advance(10)
        seq = names(sim, gone.channel)
        tail = [n for n in seq if n not in ("VarSet", "DeviceStateChange")][-7:]
        assert tail == [
            "AGIExecStart",
            "HangupRequest",
            "AGIExecEnd",
            "AsyncAGIExec",
            "AsyncAGIEnd",
            "SoftHangupRequest",
            "Hangup",
        ]
        got = [e for e in logged_domain(sim) if e.call_id == gone.call_id and e.type == "digits_collected"]
        assert [(e.digits, e.hangup) for e in got] == [("", True)]  # type: ignore[attr-defined]
        assert gone.cause == 0 and gone.outcome == "abandon_ivr"
        # GET DATA with several digits and '#', then an AMI-style Redirect straight into a queue
        keyed = sim.call("501", did="5550110", digits=[("42#", 0.5)], talk_s=1.0)
        await sim.advance(0.1)
        sim.agi(keyed, "GET DATA hello-world 3000 5", "g2")
        await sim.advance(3)
        exec_results = [
            m.get("Result")
            for m, _ in sim.logged_messages()
            if m.event == "AsyncAGIExec" and m.get("CommandId") == "g2"
        ]
        assert exec_results == ["200%20result%3D42%0A"]
        assert sim.redirect(keyed, "cc-queue", "support", 1)
        await sim.advance(5)
        assert keyed.find("released", status="HANGUP") and keyed.find("connected", queue="support")
        # cc-queue clears the fail-open timer (dialplans README): the call outlives the 10 s
        assert keyed.outcome == "answered" and keyed.find("failopen") is None


def test_the_simulator_runs_the_shipped_dialplan() -> None:
    # The simulator reads the file itself: every application it uses must be one it simulates
    # (an unknown one would silently act as NoOp).
    steps = parse_dialplan(DIALPLAN).flat()
    assert {app.lower() for _, _, _, app in steps} <= set(APP_NAMES)
    apps = {(c, e, p): a for c, e, p, a in steps}
    assert apps[("cc-inbound", "controller", 5)] == "AGI"
    assert "Queue" in {a for (c, e, _), a in apps.items() if (c, e) == ("cc-queue", "_[a-z].")}
    assert {a for (c, _, _), a in apps.items() if c == "cc-spy"} == {"Answer", "GotoIf", "ChanSpy", "Hangup", "NoOp"}
    assert ("cc-inbound", "T", 3) in apps and ("cc-ivr-main", "t", 1) in apps


async def test_sticky_dial_before_the_queue() -> None:
    async with stepped() as sim:
        sim.set_behavior("1002", AgentBehavior(ring_s=2.0, talk_s=5.0))
        sim.set_behavior("1001", AgentBehavior(ring_s=1.0))
        own = sim.call("600", did="5550110", talk_s=None)
        await sim.advance(0.1)
        for cmd in ("SET VARIABLE CC_STICKY_AGENT PJSIP/1002", "SET VARIABLE CC_QUEUE sales", "ASYNCAGI BREAK"):
            assert sim.agi(own, cmd)
        await sim.advance(15)
        # the customer's own agent answers: no queue at all, the agent ends the call
        assert own.find("connected", queue=None, agent="PJSIP/1002") and own.find("queue") is None
        assert own.hung_up_by == "agent" and own.outcome == "answered"
        sim.set_behavior("1002", AgentBehavior("noanswer"))
        missed = sim.call("601", did="5550110", talk_s=2.0)
        await sim.advance(0.1)
        for cmd in (
            "SET VARIABLE CC_STICKY_AGENT PJSIP/1002",
            "SET VARIABLE CC_STICKY_S 4",
            "SET VARIABLE CC_QUEUE sales",
            "ASYNCAGI BREAK",
        ):
            sim.agi(missed, cmd)
        await sim.advance(15)
        # Dial(PJSIP/1002,4) times out (DIALSTATUS=NOANSWER), then Queue(sales): Alice
        assert missed.find("ringing", queue=None, agent="PJSIP/1002")
        assert missed.find("connected", queue="sales", agent="PJSIP/1001")
        msgs = [m for m, _ in sim.logged_messages() if m.get("Channel") == missed.channel]
        dial = [
            (m.event, m.get("DialString") or m.get("DialStatus")) for m in msgs if m.event in ("DialBegin", "DialEnd")
        ]
        # app_dial publishes the resource as DialString (dial.c's Originate: "1009" in whisper_barge)
        assert dial[:2] == [("DialBegin", "1002"), ("DialEnd", "NOANSWER")]
        status = [m.get("Value") for m in msgs if m.event == "VarSet" and m.get("Variable") == "DIALSTATUS"]
        assert status == ["NOANSWER"]
        events = [e for e in logged_domain(sim) if e.call_id == missed.call_id]
        kinds = [(e.type, getattr(e, "queue", "-")) for e in events if e.type.startswith(("agent_", "queue_"))]
        assert kinds[:4] == [("agent_offered", None), ("agent_ring_no_answer", None), ("queue_joined", "sales"),
                             ("agent_offered", "sales")]  # fmt: skip


async def test_voicemail_chosen_by_the_controller() -> None:
    async with stepped() as sim:
        vm = sim.call("700", did="5550110", message_s=8.0)
        await sim.advance(0.1)
        sim.agi(vm, "SET VARIABLE CC_VOICEMAIL 1001@default")
        sim.agi(vm, "ASYNCAGI BREAK")
        await sim.advance(20)
        assert vm.outcome == "voicemail" and vm.hung_up_by == "caller" and vm.find("queue") is None
        waiting = [m for m, _ in sim.logged_messages() if m.event == "MessageWaiting"]
        assert [(m.get("Mailbox"), m.get("New")) for m in waiting] == [("1001@default", "1")]
        apps = [
            m.get("Application")
            for m, _ in sim.logged_messages()
            if m.event == "Newexten" and m.get("Channel") == vm.channel
        ]
        assert "VoiceMail" in apps


# -- app_queue's waiting callers: event-driven re-checks --------------------------------------------
def called_at(sim: AsteriskSim, call: Any) -> list[tuple[float, str]]:
    """(virtual time, member interface) of each AgentCalled for the call's channel."""
    return [
        (at.timestamp(), m.get("Interface") or "")
        for m, at in sim.logged_messages()
        if m.event == "AgentCalled" and m.get("Channel") == call.channel
    ]


def next_tick(sim: AsteriskSim, since: float, at: float) -> float:
    """The first point of a 1 s recheck grid started at ``since`` strictly after ``at``."""
    return since + (math.floor((at - since) / sim.recheck_s + 1e-9) + 1) * sim.recheck_s


async def test_a_freed_agent_is_noticed_at_the_callers_next_recheck() -> None:
    """wait_our_turn re-checks every RECHECK (1 s) from when the caller started waiting: an agent
    unpaused between two re-checks is rung at the waiting caller's next one (within 1 s, on its
    own grid); the caller behind it is not rung while no second agent is free."""
    async with stepped() as sim:
        for ext in ("PJSIP/1001", "PJSIP/1002"):
            sim.pause_member(ext, True, "lunch")
        a = sim.call("400", did="5550110", talk_s=None)
        await route(sim, a, "sales")
        await sim.advance(0.45)
        b = sim.call("401", did="5550110", talk_s=None)
        await route(sim, b, "sales")
        joined_a = next(t for t, k, _ in a.history if k == "queue")
        joined_b = next(t for t, k, _ in b.history if k == "queue")
        assert 0.1 < (joined_b - joined_a) % 1.0 < 0.9  # two different grids
        await sim.advance(2.0)
        assert called_at(sim, a) == [] and called_at(sim, b) == []
        freed = sim.now()
        sim.pause_member("PJSIP/1001", False)
        await sim.advance(3.0)
        [(t_a, agent_a)] = called_at(sim, a)
        assert agent_a == "PJSIP/1001"
        assert freed < t_a <= freed + sim.recheck_s
        assert t_a == pytest.approx(next_tick(sim, joined_a, freed), abs=1e-6)
        assert called_at(sim, b) == []  # Alice is a's now; b is not within the first 0 available
        assert a.find("connected", agent="PJSIP/1001") is not None
        freed = sim.now() + 0.3
        await sim.advance(0.3)
        sim.pause_member("PJSIP/1002", False)
        await sim.advance(3.0)
        [(t_b, agent_b)] = called_at(sim, b)
        assert agent_b == "PJSIP/1002"
        assert freed < t_b <= freed + sim.recheck_s
        assert t_b == pytest.approx(next_tick(sim, joined_b, freed), abs=1e-6)


async def waiting_work(n: int) -> tuple[float, int]:
    """``n`` callers (fail-open after 1 s, no controller) arrive over 10 s and wait behind the
    queue's one agent, who rings the first of them for an hour. Returns the kernel's work
    (timers run + processes woken) per caller until all wait, and the work of 20 pause toggles
    of that agent (ringing, so never available: nobody's turn can change) while they wait."""
    sim = AsteriskSim(seed=5, speed=math.inf, epoch=EPOCH, lab=False, noise=False)
    sim.add_endpoint("1001", "Nobody", behavior=AgentBehavior("noanswer"))
    sim.add_queue("support", members=[("PJSIP/1001", "Nobody", 0)], timeout=3600)
    sim.globals["CC_CONTROLLER_TIMEOUT"] = "1"
    await sim.start(listen=False)
    try:
        k = sim.kernel
        calls = [sim.call(f"+1202{i:07d}", talk_s=None, at=sim.now() + i * 10.0 / n) for i in range(n)]
        await sim.advance(12.0)
        assert sum(c.stage == "queue" for c in calls) == n
        assert calls[0].ringing_since is not None
        per_call = (k.steps + k.wakeups) / n
        before = k.steps + k.wakeups
        for i in range(20):
            sim.pause_member("PJSIP/1001", i % 2 == 0, "break")
            await sim.advance(1.0)
        toggles = k.steps + k.wakeups - before
        assert k.errors == []
        return per_call, toggles
    finally:
        await sim.close()


@pytest.mark.timeout(60)
async def test_waiting_callers_cost_work_per_change_not_per_caller() -> None:
    """2,000 waiting callers: getting each into the queue costs what it costs one caller alone
    (no re-check work per caller while others wait), and a change that cannot make anybody's
    turn costs nothing per waiting caller (app_queue's 1 s polling modelled by events)."""
    alone, _ = await waiting_work(1)
    per_call, toggles = await waiting_work(2000)
    assert per_call <= alone + 1.0, (per_call, alone)
    assert toggles <= 20, toggles


def test_piecewise_expansion_and_one_piece_rendering_match_the_plain_ones() -> None:
    """The simulator's fast paths: ``${...}``/``$[...]`` expanded piece by piece equals
    ``substitute`` (the shipped dialplan's arguments and random texts of the syntax's
    characters); an event rendered in one piece equals the line-by-line rendering, CR/LF in a
    value blanked."""
    import random

    from callcenter.sim.asterisk import SimChannel, _expand
    from callcenter.sim.dialplan import substitute

    def resolve(name: str, args: str | None) -> str:
        return f"<{name}|{args}>" if name != "EMPTY" else ""

    def outcome(fn: Any, text: str) -> Any:
        try:
            return fn(text, resolve)
        except Exception as exc:  # a malformed $[...]: both must fail alike
            return ("error", type(exc).__name__, str(exc))

    rng = random.Random(7)
    texts = [step.args for ctx in parse_dialplan(DIALPLAN).contexts.values() for steps in ctx.extensions.values()
             for step in steps.values()]  # fmt: skip
    texts += ["".join(rng.choice('${}[]a $"=?:()EMPTY') for _ in range(rng.randint(0, 24))) for _ in range(5000)]
    for text in texts:
        assert outcome(_expand, text) == outcome(substitute, text), text

    sim = AsteriskSim(lab=False)
    values = ["plain", "", "7", "cr\rhere", "lf\nhere", "both\r\n", "é"]
    for i in range(500):
        ch = SimChannel(f"PJSIP/x-{i:08x}", f"1.{i}", caller_name=rng.choice(values), priority=rng.randint(1, 9))
        fields: Any = [(f"Key{j}", rng.choice(values)) for j in range(rng.randint(0, 4))]
        if i % 3 == 0:
            fields = dict(fields)
        channel = ch if i % 4 else None
        one = sim.render_event("Newstate", fields, channel=channel)
        assert one == sim._render_blanked("Newstate", fields, channel)
        assert one.count(b"\r\n\r\n") == 1 and one.endswith(b"\r\n\r\n")
