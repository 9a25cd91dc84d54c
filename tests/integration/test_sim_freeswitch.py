"""The FreeSWITCH simulator against the real FreeSWITCH 1.10.12 captures.

Each lab scenario of tests/fixtures/freeswitch (TRACES_README.md there) is played in the
simulator with the lab's own configuration (its ``public`` dialplan and callcenter.conf.xml,
copied below from the traces' conf/), the lab's phones behaving as the sipp agents did, and
the controller's real pieces on loopback: ``EslClient`` + ``FreeswitchAdapter`` (+ its
``FreeswitchTranslator``) reading the simulator, the adapter's own commands where the trace's
driver acted as a controller (sendmsg play_and_get_digits, the transfer into a queue, the
overflow transfer). The ``calls`` summary the journey code builds from what the controller read
must equal the one it builds from the real trace (the fields tests/replay/test_parity.py
compares), with the durations the scenario scripted. Plus: the shipped dialplan's fail-open, the
strategies, ``callcenter_config`` and ``show channels`` replies against the captured shapes,
eavesdrop, and determinism for a seed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from callcenter.analytics.attribution import summarize_events
from callcenter.domain.commands import CollectDigits, MoveToQueue, RouteToQueue, SetDisplayName, StartSpy
from callcenter.domain.events import Event, SpyMode
from callcenter.pbx.freeswitch.actions import DialplanNames
from callcenter.pbx.freeswitch.adapter import FreeswitchAdapter
from callcenter.pbx.freeswitch.translate import parse_table
from callcenter.sim.asterisk import AgentBehavior, SimCall
from callcenter.sim.freeswitch import FreeswitchSim, freeswitch_traffic
from callcenter.sim.traffic import AgentProfile, Dist, TrafficModel
from tests.replay._esl import replies
from tests.replay.test_freeswitch_summaries import FIXTURES
from tests.replay.test_freeswitch_summaries import replay as trace_rows
from tests.replay.test_parity import FIELDS

pytestmark = pytest.mark.timeout(60)

EPOCH = 1_795_360_000.0
SPEED = 25.0
CALLER = "2125550123"

# The lab's dialplan/public.xml (the captures' conf/), the parts the scenarios use.
LAB_DIALPLAN = r"""<include>
  <context name="public">
    <extension name="unloop">
      <condition field="${unroll_loops}" expression="^true$"/>
      <condition field="${sip_looped_call}" expression="^true$">
        <action application="deflect" data="${destination_number}"/>
      </condition>
    </extension>
    <extension name="did_5550100_ivr">
      <condition field="destination_number" expression="^5550100$">
        <action application="set" data="cc_entry=ivr"/>
        <action application="set" data="hangup_after_bridge=true"/>
        <action application="answer"/>
        <action application="sleep" data="300"/>
        <action application="play_and_get_digits" data="PAGD_ARGS"/>
        <action application="transfer" data="queue_${ivr_choice} XML public"/>
      </condition>
    </extension>
    <extension name="did_5550199_park">
      <condition field="destination_number" expression="^5550199$">
        <action application="set" data="cc_entry=controller"/>
        <action application="answer"/>
        <action application="park"/>
      </condition>
    </extension>
    <extension name="queue_sales">
      <condition field="destination_number" expression="^queue_(1|sales)$">
        <action application="set" data="hangup_after_bridge=true"/>
        <action application="callcenter" data="sales@default"/>
        <action application="hangup" data="NORMAL_CLEARING"/>
      </condition>
    </extension>
    <extension name="queue_support">
      <condition field="destination_number" expression="^queue_(2|support)$">
        <action application="set" data="hangup_after_bridge=true"/>
        <action application="callcenter" data="support@default"/>
        <action application="hangup" data="NORMAL_CLEARING"/>
      </condition>
    </extension>
  </context>
</include>
"""

LAB_DIALPLAN = LAB_DIALPLAN.replace("PAGD_ARGS", " ".join([
    "1 1 1 5000 # tone_stream://%(400,100,523);%(400,100,659);%(400,100,784) tone_stream://%(300,0,300)",
    "ivr_choice ^[12]$ 3000 queue_support XML public",
]))

# The lab's autoload_configs/callcenter.conf.xml.
LAB_CALLCENTER = """<configuration name="callcenter.conf" description="CallCenter">
  <queues>
    <queue name="sales@default">
      <param name="strategy" value="longest-idle-agent"/>
      <param name="time-base-score" value="system"/>
      <param name="tier-rules-apply" value="false"/>
    </queue>
    <queue name="support@default">
      <param name="strategy" value="longest-idle-agent"/>
      <param name="time-base-score" value="system"/>
      <param name="tier-rules-apply" value="false"/>
    </queue>
  </queues>
  <agents>
    <agent name="1001" type="callback" contact="[call_timeout=15,leg_timeout=15]sofia/internal/1001@127.0.0.1:5181"
           status="Available" max-no-answer="3" wrap-up-time="3" reject-delay-time="3" busy-delay-time="3"
           no-answer-delay-time="3"/>
    <agent name="1002" type="callback" contact="[call_timeout=15,leg_timeout=15]sofia/internal/1002@127.0.0.1:5182"
           status="Available" max-no-answer="3" wrap-up-time="3" reject-delay-time="3" busy-delay-time="3"
           no-answer-delay-time="3"/>
  </agents>
  <tiers>
    <tier agent="1001" queue="sales@default" level="1" position="1"/>
    <tier agent="1002" queue="sales@default" level="1" position="2"/>
    <tier agent="1001" queue="support@default" level="1" position="1"/>
    <tier agent="1002" queue="support@default" level="1" position="2"/>
  </tiers>
</configuration>
"""

LAB_NAMES = DialplanNames(context="public", queue_prefix="queue_")
NO_ANSWER = AgentBehavior("noanswer")


def answers(ring_s: float = 1.0, talk_s: float | None = None) -> AgentBehavior:
    return AgentBehavior("answer", ring_s=ring_s, talk_s=talk_s)


class Controller:
    """The controller's FreeSWITCH side on the simulator: adapter, client, translator."""

    def __init__(self, sim: FreeswitchSim, names: DialplanNames = LAB_NAMES) -> None:
        self.sim = sim
        self.adapter = FreeswitchAdapter.connect(
            "fs-sim", "127.0.0.1", sim.port, "ClueCon", names=names, controller_lease_s=None, clock=sim.clock,
            client_options={"heartbeat_timeout": None},
        )
        self.events: list[Event] = []
        self.adapter.subscribe(self.events.append)
        self.tasks: list[asyncio.Task[Any]] = []

    def on(self, event_type: str, action: Callable[[Event], Any]) -> None:
        """Run ``action(event)`` in a task of its own when an event of that type arrives (never
        inline in the subscriber: completions are read by the same event worker)."""

        def handler(event: Event) -> None:
            if event.type == event_type:
                self.tasks.append(asyncio.get_running_loop().create_task(action(event)))

        self.adapter.subscribe(handler)

    async def wait(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():  # polling what the controller read
                await asyncio.sleep(0.01)

    def rows(self, call: SimCall) -> list[dict[str, Any]]:
        return [r for r in summarize_events(self.events) if r["call_id"] == call.call_id]


@asynccontextmanager
async def lab(seed: int = 7, **behaviors: AgentBehavior) -> AsyncIterator[tuple[FreeswitchSim, Controller]]:
    sim = FreeswitchSim(seed=seed, speed=SPEED, epoch=EPOCH, dialplan=[LAB_DIALPLAN], callcenter_conf=LAB_CALLCENTER,
                        inbound_context="public")
    for ext, port in (("1001", 5181), ("1002", 5182), ("1003", 5183), ("1009", 5189)):
        sim.add_endpoint(ext, f"Agent {ext}", behavior=behaviors.get(f"a{ext}", answers()), port=port)
    await sim.start()
    ctl = Controller(sim)
    try:
        await ctl.adapter.start()
        yield sim, ctl
        assert ctl.adapter.translator.unknown == {}, "the controller met events it has no rule for"
        for t in ctl.tasks:
            await t
    finally:
        await ctl.adapter.close()
        await sim.close()
    assert sim.kernel.errors == []


def neutral(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: row[k] for k in FIELDS if k != "stints"}
    out["stints"] = [{k: s[k] for k in ("queue", "outcome", "agent", "moved_to")} for s in row["stints"]]
    return out


def assert_same_journey(sim_rows: list[dict[str, Any]], trace: str, *durations: str) -> dict[str, Any]:
    """The simulated call's summary equals the real trace's on the parity fields; the durations
    named agree within half a second (the scripts follow the scenario's timings)."""
    real = trace_rows(trace)
    assert len(sim_rows) == 1 and len(real) == 1
    got, want = sim_rows[0], real[0]
    assert neutral(got) == neutral(want)
    for key in durations:
        assert want[key] is not None and got[key] == pytest.approx(want[key], abs=0.6), key
    return got


# -- the captured scenarios ---------------------------------------------------------------------
async def test_ivr_abandon_like_the_trace() -> None:
    async with lab() as (sim, ctl):
        call = sim.call(CALLER, did="5550100", ivr_patience_s=4.0)
        await call.ended(timeout=20)
        await ctl.wait(lambda: bool(ctl.rows(call)))
    assert call.outcome == "abandon_ivr"
    assert_same_journey(ctl.rows(call), "ivr_abandon")
    # no callcenter event at all for an IVR abandon
    assert not [e for e in ctl.events if e.call_id == call.call_id and e.type.startswith(("queue_", "agent_"))]


async def test_queue_abandon_while_the_agent_rings() -> None:
    async with lab(a1001=NO_ANSWER, a1002=NO_ANSWER) as (sim, ctl):
        call = sim.call(CALLER, did="5550100", digits=[("2", 1.7)], queue_patience_s=8.0)
        await call.ended(timeout=20)
        await ctl.wait(lambda: bool(ctl.rows(call)))
    assert call.outcome == "abandon_ringing"
    assert_same_journey(ctl.rows(call), "queue_abandon", "queue_wait_s", "ring_s")


async def test_answered_caller_hangs_up() -> None:
    async with lab(a1001=answers(1.0)) as (sim, ctl):
        call = sim.call(CALLER, did="5550100", digits=[("1", 1.7)], talk_s=5.5)
        await call.ended(timeout=20)
        await ctl.wait(lambda: bool(ctl.rows(call)))
    assert call.outcome == "answered" and call.hung_up_by == "caller"
    assert_same_journey(ctl.rows(call), "answered_caller_hangup", "ring_s", "queue_wait_s", "talk_s")


async def test_answered_agent_hangs_up() -> None:
    async with lab(a1001=answers(1.0, talk_s=5.0)) as (sim, ctl):
        call = sim.call(CALLER, did="5550100", digits=[("1", 1.7)], talk_s=None)
        await call.ended(timeout=20)
        await ctl.wait(lambda: bool(ctl.rows(call)))
    assert call.hung_up_by == "agent"
    assert_same_journey(ctl.rows(call), "answered_agent_hangup", "ring_s", "talk_s")


async def test_controller_driven_ivr_then_queue() -> None:
    """sendmsg_ivr: park, the controller's play_and_get_digits (sendmsg, event-lock), the display
    name and score, the transfer into sales; 1001 answers after 1 s; the caller leaves 4.5 s later."""
    async with lab(a1001=answers(1.0)) as (sim, ctl):
        digits: list[str] = []

        async def drive(event: Event) -> None:
            result = await ctl.adapter.execute(CollectDigits(
                call_id=event.call_id, prompt="tone_stream://%(200,0,800)", max_digits=1, timeout_ms=5000))
            assert result.ok, result.error
            digits.append(result.detail["digits"])
            for cmd in (SetDisplayName(call_id=event.call_id, name="VIP_Ivanova"),
                        RouteToQueue(call_id=event.call_id, queue="sales@default", priority=1)):
                result = await ctl.adapter.execute(cmd)
                assert result.ok, result.error

        ctl.on("controller_attached", drive)
        call = sim.call(CALLER, did="5550199", digits=[("1", 3.0)], talk_s=4.5)
        await call.ended(timeout=30)
        await ctl.wait(lambda: bool(ctl.rows(call)))
    assert digits == ["1"]
    assert_same_journey(ctl.rows(call), "sendmsg_ivr", "ring_s", "talk_s")
    # the digit came back in variable_cc_digit of the completion, matched by Application-UUID
    collected = [e for e in ctl.events if e.type == "digits_collected" and e.call_id == call.call_id]
    assert [getattr(e, "digits", None) for e in collected] == ["1"]


async def test_overflow_transfer_between_queues() -> None:
    """overflow_transfer: 1003 added at runtime (level 0 in support), the caller presses 1 ->
    sales, 1001 rings; after 10 s the controller moves the caller to support; 1003 answers."""
    async with lab(a1001=NO_ANSWER, a1002=NO_ANSWER, a1003=answers(1.0)) as (sim, ctl):
        client = ctl.adapter._client
        for command in (
            "callcenter_config agent add 1003 callback",
            "callcenter_config agent set contact 1003 "
            "[call_timeout=15,leg_timeout=15]sofia/internal/1003@127.0.0.1:5183",
            "callcenter_config agent set max_no_answer 1003 3",
            "callcenter_config agent set status 1003 Available",
            "callcenter_config tier add support@default 1003 0 1",
        ):
            assert (await client.api(command)).strip() == "+OK"

        async def overflow(event: Event) -> None:
            if getattr(event, "queue", None) != "sales@default":
                return
            await sim.kernel.advance(10.0)
            result = await ctl.adapter.execute(MoveToQueue(call_id=event.call_id, queue="support@default"))
            assert result.ok, result.error

        ctl.on("queue_joined", overflow)
        call = sim.call(CALLER, did="5550100", digits=[("1", 1.7)], talk_s=3.5)
        await call.ended(timeout=30)
        await ctl.wait(lambda: bool(ctl.rows(call)))
    row = assert_same_journey(ctl.rows(call), "overflow_transfer", "talk_s")
    assert row["overflows"] == 1 and row["agent"] == "1003"


# -- beyond the captures -------------------------------------------------------------------------
async def test_shipped_dialplan_fails_open_to_the_default_queue() -> None:
    """No controller acts on the parked call: after cc_controller_timeout (10 s) sched_transfer
    breaks park, CC_FAILOPEN is set and the caller lands in support@default."""
    sim = FreeswitchSim(seed=3, speed=SPEED, epoch=EPOCH)
    sim.add_endpoint("1001", "Alice", behavior=answers(2.0))
    sim.add_endpoint("1002", "Bob", behavior=NO_ANSWER)
    await sim.start()
    ctl = Controller(sim, names=DialplanNames())
    try:
        await ctl.adapter.start()
        call = sim.call(CALLER, did="5550110", talk_s=6.0)
        await call.ended(timeout=30)
        await ctl.wait(lambda: bool(ctl.rows(call)))
        assert ctl.adapter.translator.unknown == {}
    finally:
        await ctl.adapter.close()
        await sim.close()
    kinds = call.kinds()
    assert kinds.index("controller") < kinds.index("failopen") < kinds.index("queue")
    assert call.find("failopen", reason="controller-timeout") is not None
    assert call.find("queue", queue="support@default") is not None
    waited = call.history[kinds.index("failopen")][0] - call.history[kinds.index("controller")][0]
    assert waited == pytest.approx(10.0, abs=0.05)
    (row,) = ctl.rows(call)
    assert row["outcome"] == "answered" and row["queue"] == "support@default" and row["agent"] == "1001"
    assert [e.type for e in ctl.events if e.call_id == call.call_id and e.type == "variable_set"] == ["variable_set"]


def _stepped_lab(seed: int) -> FreeswitchSim:
    return FreeswitchSim(seed=seed, speed=math.inf, epoch=EPOCH, dialplan=[LAB_DIALPLAN],
                         callcenter_conf=LAB_CALLCENTER, inbound_context="public", record_events=True)


def _cc_events(sim: FreeswitchSim, action: str) -> list[dict[str, str]]:
    return [dict(h) for _, h, _ in sim.event_log or [] if dict(h).get("CC-Action") == action]


async def test_cc_base_score_serves_the_vip_first() -> None:
    """Two callers wait for the one free agent; the one the controller gave a score (uuid_setvar
    cc_base_score, then the transfer) is offered first although it came last."""
    sim = _stepped_lab(5)
    sim.add_endpoint("1001", "A", behavior=answers(1.0, talk_s=20.0), port=5181)
    sim.add_endpoint("1002", "B", behavior=answers(1.0, talk_s=20.0), port=5182)
    await sim.start(listen=False)
    try:
        sim.agents["1002"].status = "On Break"
        first = sim.call("2125550001", did="5550100", digits=[("1", 1.7)], talk_s=None)
        await sim.advance(3.0)
        second = sim.call("2125550002", did="5550100", digits=[("1", 1.7)], talk_s=None)
        vip = sim.call("2125550003", did="5550199", talk_s=None)
        await sim.advance(3.0)
        uuid = vip.call_id or ""
        assert sim._api_uuid_setvar(None, f"{uuid} cc_base_score 3600") == "+OK\n"  # type: ignore[arg-type]
        assert sim._api_uuid_transfer(None, f"{uuid} queue_sales XML public") == "+OK\n"  # type: ignore[arg-type]
        await sim.advance(1.0)
        assert first.find("connected", agent="1001") is not None
        assert second.find("queue") is not None and vip.find("queue") is not None
        await sim.advance(25.0)  # 1001 free again (20 s talk + 3 s wrap-up)
    finally:
        await sim.close()
    assert vip.find("connected", agent="1001") is not None and second.find("connected") is None
    offered = [o["CC-Member-Session-UUID"] for o in _cc_events(sim, "agent-offering")]
    assert offered == [first.call_id, uuid]


@pytest.mark.parametrize("strategy", ["longest-idle-agent", "ring-all"])
async def test_strategies(strategy: str) -> None:
    """longest-idle-agent offers one agent at a time (the one offered longest ago; 1002 rings only
    after 1001's leg_timeout); ring-all rings every free agent, the first to answer wins and the
    others are hung up (LOSE_RACE)."""
    sim = _stepped_lab(9)
    sim.add_endpoint("1001", "A", behavior=NO_ANSWER, port=5181)
    sim.add_endpoint("1002", "B", behavior=answers(2.0, talk_s=5.0), port=5182)
    sim.queues["sales@default"].strategy = strategy
    await sim.start(listen=False)
    try:
        call = sim.call(CALLER, did="5550100", digits=[("1", 1.7)], talk_s=None)
        await sim.advance(40.0)
    finally:
        await sim.close()
    offers = _cc_events(sim, "agent-offering")
    fails = [(f["CC-Agent"], f["CC-Hangup-Cause"]) for f in _cc_events(sim, "bridge-agent-fail")]
    assert call.outcome == "answered" and call.find("connected", agent="1002") is not None
    if strategy == "ring-all":
        assert [o["CC-Agent"] for o in offers] == ["1001", "1002"]
        assert fails == [("1001", "LOSE_RACE")]
        assert call.connected_at is not None and call.first_queue_at is not None
        assert call.connected_at - call.first_queue_at == pytest.approx(2.05, abs=0.1)
    else:
        assert [o["CC-Agent"] for o in offers] == ["1001", "1002"]
        assert fails == [("1001", "ALLOTTED_TIMEOUT")]  # leg_timeout=15 (call_timeout ignored)
        assert call.connected_at is not None and call.first_queue_at is not None
        assert call.connected_at - call.first_queue_at == pytest.approx(15 + 0.05 + 0.05 + 2.0, abs=0.1)


async def test_api_replies_have_the_captured_shapes() -> None:
    """callcenter_config and show channels answer with the columns FreeSWITCH printed."""
    captured = {cmd: msg.body for cmd, msg in replies(FIXTURES / "api_replies.esl.txt")}

    def header(command: str) -> str:
        body = captured[command]
        return (body.decode() if isinstance(body, bytes) else body).split("\n", 1)[0]

    async with lab(a1001=NO_ANSWER, a1002=NO_ANSWER) as (sim, ctl):
        api = ctl.adapter._client.api
        assert (await api("show channels as json")) == '{"row_count": 0}\n'
        for listing in ("queue list", "agent list", "tier list"):
            command = f"callcenter_config {listing}"
            assert (await api(command)).split("\n", 1)[0] == header(f"api {command}")
        assert (await api("callcenter_config queue list members sales")) == "+OK\n"  # the domain is needed
        assert (await api("callcenter_config agent set status 1002 On Break")) == "-ERR Invalid Agent Status!\n"
        assert (await api("callcenter_config agent set status 1002 'On Break'")) == "+OK\n"
        assert (await api("callcenter_config agent get status 1002")) == "On Break"
        call = sim.call(CALLER, did="5550100", digits=[("1", 1.7)], queue_patience_s=6.0)
        await call.wait("ringing", timeout=10)
        members = parse_table(await api("callcenter_config queue list members sales@default"))
        want = header("api callcenter_config queue list members sales@default")
        assert (await api("callcenter_config queue list members sales@default")).split("\n", 1)[0] == want
        assert [(m["session_uuid"], m["state"]) for m in members] == [(call.call_id, "Trying")]
        assert members[0]["uuid"] != call.call_id  # CC-Member-UUID is mod_callcenter's own id
        rows = json.loads(await api("show channels as json"))["rows"]
        caller = next(r for r in rows if r["uuid"] == call.call_id)
        assert (caller["application"], caller["initial_dest"], caller["callstate"]) == ("callcenter", "5550100",
                                                                                       "ACTIVE")
        assert {r["direction"] for r in rows} == {"inbound", "outbound"}
        await call.ended(timeout=20)


async def test_eavesdrop_whisper_is_seen_as_a_spy() -> None:
    async with lab(a1001=answers(1.0), a1009=answers(0.5)) as (sim, ctl):
        call = sim.call(CALLER, did="5550100", digits=[("1", 1.7)], talk_s=8.0)
        await call.wait("connected", timeout=15)
        result = await ctl.adapter.execute(StartSpy(
            call_id=call.call_id, target=call.call_id or "", supervisor_endpoint="sofia/internal/1009@127.0.0.1:5189",
            mode=SpyMode.WHISPER))
        assert result.ok, result.error
        await call.ended(timeout=20)
        await ctl.wait(lambda: any(e.type == "spy_stopped" for e in ctl.events))
    started = [e for e in ctl.events if e.type == "spy_started"]
    assert [(e.call_id, getattr(e, "mode", None)) for e in started] == [(call.call_id, SpyMode.WHISPER)]
    originated = [e for e in ctl.events if e.type == "originate_result"]
    assert [getattr(e, "success", None) for e in originated] == [True]


# -- determinism -----------------------------------------------------------------------------------
def _traffic_model() -> TrafficModel:
    return TrafficModel(
        rate_per_hour=120.0, controller_share=1.0, ivr_patience=Dist.exp(15.0), queue_patience=Dist.exp(60.0),
        ring_patience=Dist.exp(30.0), talk=Dist.lognormal(90.0, 0.5),
        agents=(AgentProfile("1001", "Alice", pauses_per_hour=1.0),
                AgentProfile("1002", "Bob", ring_no_answer_p=0.2),
                AgentProfile("1003", "Carol", queues=("support",), reject_p=0.1)),
    )


async def _run(seed: int) -> tuple[str, dict[str, object]]:
    sim = FreeswitchSim(seed=seed, speed=math.inf, epoch=EPOCH, record_events=True)
    await sim.start(listen=False)
    traffic = freeswitch_traffic(sim, _traffic_model(), seed=seed)
    try:
        traffic.start(duration_s=2 * 3600)
        await sim.advance(2 * 3600 + 1800)
    finally:
        traffic.stop()
        await sim.close()
    assert sim.kernel.errors == []
    digest = hashlib.sha256()
    for at, headers, body in sim.event_log or []:
        digest.update(repr((round(at, 6), headers, body)).encode())
    return digest.hexdigest(), traffic.stats()


async def test_same_seed_same_events_and_the_traffic_model_drives_it() -> None:
    (a, stats), (b, _), (c, _) = await _run(11), await _run(11), await _run(12)
    assert a == b
    assert a != c
    outcomes: Any = stats["outcomes"]
    assert int(str(stats["calls"])) >= 150 and "running" not in outcomes
    # no controller: every call waits parked, fails open after 10 s (or leaves before)
    assert outcomes.get("answered", 0) > 0 and outcomes.get("abandon_ivr", 0) > 0
    assert outcomes.get("abandon_queue", 0) + outcomes.get("abandon_ringing", 0) > 0
    assert stats["failopen"] == stats["calls"] - outcomes.get("abandon_ivr", 0)


async def test_shipped_dialplan_survey_fails_open_to_a_hang_up() -> None:
    """CC_SURVEY=1 (a global here: no controller sets it) and no controller: the call fails open
    into the default queue, the agent hangs up, transfer_after_bridge parks the caller in
    cc_survey, and cc_controller_timeout later cc_failopen_survey hangs the caller up instead of
    queueing a caller who has been served."""
    sim = FreeswitchSim(seed=5, speed=SPEED, epoch=EPOCH, globals_={"CC_SURVEY": "1"})
    sim.add_endpoint("1001", "Alice", behavior=answers(1.0, talk_s=3.0))
    sim.add_endpoint("1002", "Bob", behavior=NO_ANSWER)
    await sim.start()
    try:
        call = sim.call(CALLER, did="5550110", talk_s=None)
        await call.ended(timeout=40)
    finally:
        await sim.close()
    kinds = call.kinds()
    assert kinds.count("queue") == 1 and kinds.count("controller") == 2
    assert kinds.index("connected") < kinds.index("after_bridge") < len(kinds) - 1 - kinds[::-1].index("controller")
    assert call.find("after_bridge", target="cc_survey:XML:callcenter") is not None
    parked = call.history[len(kinds) - 1 - kinds[::-1].index("controller")][0]
    assert call.ended_at - parked == pytest.approx(10.0, abs=0.1)
    assert (call.outcome, call.hung_up_by) == ("answered", "system")
