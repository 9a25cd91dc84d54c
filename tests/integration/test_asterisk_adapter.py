"""AsteriskAdapter over a real AmiClient and the loopback fake AMI server: resync on connect,
controller-driven commands through AsyncAGI, AMI actions, observe mode, reconnect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from callcenter.domain.commands import (
    CollectDigits,
    HangUp,
    MoveToQueue,
    PauseAgent,
    PlayPrompt,
    RouteToQueue,
    SetDisplayName,
    StartSpy,
)
from callcenter.domain.events import Event, SpyMode
from callcenter.pbx.asterisk.adapter import AsteriskAdapter
from callcenter.pbx.asterisk.client import AmiClient
from callcenter.pbx.port import PbxPort
from callcenter.pbx.replay import replay_events
from callcenter.sim.ami_server import FakeAmiServer, FakeMember, FakeQueue, trace_messages

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "asterisk"
SECRET = "adapter-test-secret"
CALL = "1795362000.1"
CALLER = "PJSIP/pstn-00000001"

pytestmark = pytest.mark.timeout(20)


@asynccontextmanager
async def pbx(
    *, with_waiting_call: bool = True
) -> AsyncIterator[tuple[FakeAmiServer, AmiClient, AsteriskAdapter, list[Event]]]:
    server = FakeAmiServer(secret=SECRET)
    server.agi_delay = 0.001
    server.originate_delay = 0.01
    if with_waiting_call:
        server.add_channel(
            CALLER,
            uniqueid=CALL,
            context="cc-inbound",
            exten="controller",
            priority=5,
            caller_num="2025550100",
            caller_name="PSTN 2025550100",
            application="AGI",
            application_data="agi:async",
            in_agi=True,
        )
    server.queues["support"] = FakeQueue(
        "support", members=[FakeMember("PJSIP/1001", "Alice", paused=True, paused_reason="lunch")]
    )
    await server.start()
    client = AmiClient(
        "127.0.0.1", server.port, "ctl", SECRET, ping_interval=None, reconnect_min=0.02, reconnect_max=0.1
    )
    adapter = AsteriskAdapter("lab", client)
    events: list[Event] = []
    adapter.subscribe(events.append)
    try:
        await adapter.start()
        yield server, client, adapter, events
    finally:
        await adapter.close()
        await server.close()


async def until(predicate: Any, timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def of(events: list[Event], *types: str) -> list[Event]:
    return [e for e in events if e.type in types]


async def test_connect_resyncs_and_drives_a_waiting_call() -> None:
    async with pbx() as (server, client, adapter, events):
        assert isinstance(adapter, PbxPort) and adapter.connected and adapter.name == "lab"
        # AsyncAGIStart was sent before we connected: the snapshot announces the call.
        assert [(e.type, e.call_id) for e in events[:3]] == [
            ("call_arrived", CALL),
            ("call_answered", CALL),
            ("controller_attached", CALL),
        ]
        pause = of(events, "agent_pause_changed")[0]
        assert (pause.agent, pause.paused, pause.reason, pause.queue) == ("PJSIP/1001", True, "lunch", "support")  # type: ignore[attr-defined]

        played = await adapter.execute(PlayPrompt(call_id=CALL, prompt="hello-world", command_id="p1"))
        assert played.ok and played.detail["result"] == "200 result=0 endpos=11360", played
        agi = [m.get("Command") for m in server.received if m.get("Action") == "AGI"]
        assert agi == ["SET VARIABLE TIMEOUT(absolute) 30", 'STREAM FILE hello-world ""']  # lease first

        digits = await adapter.execute(CollectDigits(call_id=CALL, prompt="menu", timeout_ms=3000, command_id="g1"))
        assert (digits.ok, digits.detail["digits"]) == (True, "1")
        named = await adapter.execute(SetDisplayName(call_id=CALL, name='VIP "Ivanova"\nx', command_id="n1"))
        assert named.ok
        assert server.received[-1].get("Command") == 'SET VARIABLE CALLERID(name) "VIP \\"Ivanova\\" x"'

        routed = await adapter.execute(RouteToQueue(call_id=CALL, queue="sales", priority=10, command_id="r1"))
        assert routed.ok, routed
        await client.drain(2)
        # the prompt's result is a journey step; the lease, display name, queue and BREAK only
        # acknowledge control commands: no events for them
        assert [(e.type, getattr(e, "command_id", None)) for e in events[-3:]] == [
            ("prompt_finished", "p1"),
            ("digits_collected", "g1"),
            ("controller_released", None),
        ]
        assert of(events, "digits_collected")[0].digits == "1"  # type: ignore[attr-defined]

        # Out of AsyncAGI now: AGI commands are refused locally, AMI ones still work.
        late = await adapter.execute(PlayPrompt(call_id=CALL, prompt="hello-world"))
        assert not late.ok and "not under controller" in (late.error or "")
        moved = await adapter.execute(MoveToQueue(call_id=CALL, queue="vip", priority=5, min_penalty=1))
        assert moved.ok
        assert [(m.get("Action"), m.get("Variable") or m.get("Exten")) for m in server.received[-3:]] == [
            ("Setvar", "QUEUE_PRIO"),
            ("Setvar", "QUEUE_MIN_PENALTY"),
            ("Redirect", "vip"),
        ]

        hung = await adapter.execute(HangUp(call_id=CALL))
        assert hung.ok
        await until(lambda: bool(of(events, "call_ended")))
        assert of(events, "call_ended")[0].call_id == CALL
        assert adapter.translator.live_calls() == []


async def test_action_errors_and_originate_correlation() -> None:
    async with pbx(with_waiting_call=False) as (server, _client, adapter, events):
        # The fake PBX has no QueuePause: Asterisk's "Invalid/unknown command" comes back.
        refused = await adapter.execute(PauseAgent(agent="PJSIP/1001", paused=True, reason="lunch"))
        assert not refused.ok and "Invalid/unknown command" in (refused.error or "")
        bad = await adapter.execute(PauseAgent(agent="PJSIP/1001\r\nAction: Hangup", paused=True))
        assert not bad.ok and "invalid" in (bad.error or "")
        nochan = await adapter.execute(PlayPrompt(call_id="no-such-call", prompt="x"))
        assert not nochan.ok and "no channel" in (nochan.error or "")

        spy = await adapter.execute(
            StartSpy(supervisor_endpoint="PJSIP/1009", target="PJSIP/1001", mode=SpyMode.BARGE, command_id="spy-1")
        )
        assert spy.ok and spy.detail["request_id"] == "spy-1"
        await until(lambda: bool(of(events, "originate_result")))
        (result,) = of(events, "originate_result")
        assert (result.request_id, result.success, result.reason) == ("spy-1", True, "answered")  # type: ignore[attr-defined]
        originate = next(m for m in server.received if m.get("Action") == "Originate")
        assert originate.get_all("Variable") == ("CC_SPY_MODE=barge", "CC_SUPERVISOR=1009", "CC_SPY_TARGET=PJSIP/1001-")


async def test_commands_for_one_call_run_in_order() -> None:
    async with pbx() as (server, _client, adapter, _events):
        server.agi_delay = 0.02
        results = await asyncio.gather(
            *(adapter.execute(PlayPrompt(call_id=CALL, prompt=f"p{i}", command_id=f"c{i}")) for i in range(4))
        )
        assert all(r.ok for r in results)
        # Each command's steps (lease, then the prompt) complete before the next command starts.
        sent = [m.get("Command") for m in server.received if m.get("Action") == "AGI"]
        assert sent == [c for i in range(4) for c in ("SET VARIABLE TIMEOUT(absolute) 30", f'STREAM FILE p{i} ""')]


async def test_send_many_puts_a_decision_on_the_wire_before_returning_and_holds_the_call() -> None:
    async with pbx() as (server, _client, adapter, _events):
        server.agi_delay = 0.05
        before = server.count("AGI")
        tasks = len(asyncio.all_tasks())
        sent = adapter.send_many([SetDisplayName(call_id=CALL, name="VIP Ivanova A.", command_id="n1"),
                                  RouteToQueue(call_id=CALL, queue="vip", priority=10, command_id="r1")])
        assert sent is not None
        assert len(asyncio.all_tasks()) == tasks  # its results are gathered by callbacks, not tasks
        # busy: a second batch for the call is not sent now, a plain command waits its turn
        assert adapter.send_many([PlayPrompt(call_id=CALL, prompt="x", command_id="p")]) is None
        hangup = asyncio.ensure_future(adapter.execute(HangUp(call_id=CALL, command_id="h1")))
        await until(lambda: server.count("AGI") > before)
        await asyncio.sleep(0.02)
        assert server.count("Hangup") == 0 and not sent.done()  # ~0.05 s per AGI command
        results = await asyncio.wait_for(sent, 3)
        assert [(r.command_id, r.ok) for r in results] == [("n1", True), ("r1", True)], results
        agi = [m.get("Command") for m in server.received if m.get("Action") == "AGI"][before:]
        assert agi[1] == 'SET VARIABLE CALLERID(name) "VIP Ivanova A."' and agi[-1] == "ASYNCAGI BREAK"
        assert (await asyncio.wait_for(hangup, 3)).ok
        # the hang-up ran after the batch's results: its action is the last one received
        assert server.received[-1].get("Action") == "Hangup"
        # not pipelined (a plain AMI action): nothing sent, the caller uses execute_many
        assert adapter.send_many([HangUp(call_id=CALL, command_id="h2")]) is None


async def test_send_many_given_up_forgets_its_commands_and_frees_the_call() -> None:
    async with pbx() as (server, client, adapter, _events):
        server.agi_delay = 0.5
        sent = adapter.send_many([RouteToQueue(call_id=CALL, queue="vip", priority=10, command_id="r1")])
        assert sent is not None and client._conn is not None and client._conn.agi
        sent.cancel()  # e.g. the call's driver stopped at shutdown
        # at once, not when the PBX gets round to them (~0.5 s a command here)
        await until(lambda: not client._conn.agi and not client._conn.pending, 0.3)  # type: ignore[union-attr]
        again = adapter.send_many([SetDisplayName(call_id=CALL, name="Ivanova A.", command_id="n2")])
        assert again is not None  # the call's turn was released
        # The PBX still runs what it was sent, the first batch's BREAK included: the session is over.
        [result] = await asyncio.wait_for(again, 3)
        assert result.command_id == "n2" and not result.ok and "AGI session ended" in (result.error or ""), result


async def test_agi_command_fails_fast_when_the_session_ends() -> None:
    async with pbx() as (server, _client, adapter, _events):
        server.agi_delay = 0.3
        pending = asyncio.ensure_future(adapter.execute(CollectDigits(call_id=CALL, prompt="menu", timeout_ms=10000)))
        await until(lambda: server.count("AGI") >= 1)
        server.hangup_channel(server.channels[CALLER], cause=16)
        result = await asyncio.wait_for(pending, 2)
        assert not result.ok and "ended before it ran" in (result.error or "")


async def test_reconnect_closes_calls_that_ended_while_down() -> None:
    async with pbx() as (server, _client, adapter, events):
        # The caller hangs up while the link is down: no Hangup event ever reaches us.
        server.channels.pop(CALLER)
        server.drop_all()
        await until(lambda: bool(of(events, "call_ended")) and adapter.connected)
        (ended,) = of(events, "call_ended")
        assert (ended.call_id, ended.cause, ended.hung_up_by) == (CALL, None, "unknown")  # type: ignore[attr-defined]
        assert server.count("CoreShowChannels") == 2


@pytest.mark.parametrize("scenario", ["answered_caller_hangup", "whisper_barge", "overflow_redirect"])
async def test_observe_mode_matches_the_replay(scenario: str) -> None:
    """Calls that never reach the controller are still translated: the live adapter yields
    the same events as the replay of the trace (per call in order; the client only orders
    events per call)."""
    expected, _ = replay_events(FIXTURES / f"{scenario}.ami.txt", pbx_name="lab")
    async with pbx(with_waiting_call=False) as (server, client, _adapter, events):
        events.clear()
        for data in trace_messages(FIXTURES / f"{scenario}.ami.txt"):
            server.push_raw(data)
        await until(lambda: len(events) >= len(expected))
        await client.drain(2)

    def key(e: Event) -> dict[str, Any]:
        d = e.to_dict()
        d.pop("at")
        return d

    def per_call(evs: list[Event]) -> dict[str | None, list[dict[str, Any]]]:
        out: dict[str | None, list[dict[str, Any]]] = {}
        for e in evs:
            if not e.type.startswith(("spy_", "originate_")):  # dispatched in the spyer's order
                out.setdefault(e.call_id, []).append(key(e))
        return out

    assert per_call(events) == per_call(expected)
    assert sorted(map(repr, map(key, events))) == sorted(map(repr, map(key, expected)))


async def test_subscribers_get_every_event_in_order_even_when_one_of_them_awaits() -> None:
    """Events are handed over synchronously when subscribers are synchronous; a subscriber that
    returns an awaitable has it awaited before the next subscriber or event sees anything, and a
    failing subscriber does not keep the event from the others."""
    async with pbx(with_waiting_call=False) as (server, _client, adapter, _events):
        seen: list[tuple[str, str]] = []

        async def slow(event: Event) -> None:
            if not seen:
                await asyncio.sleep(0.05)  # the first event: nothing after it may overtake
            seen.append(("slow", event.type))

        def failing(event: Event) -> None:
            raise RuntimeError("a subscriber's bug")

        adapter.subscribe(slow)
        adapter.subscribe(failing)
        adapter.subscribe(lambda event: seen.append(("sync", event.type)))
        ch = server.add_channel("PJSIP/pstn-00000009", uniqueid="1795362000.9", caller_num="2025550100",
                                caller_name="PSTN", context="cc-inbound", exten="5550100", state=4,
                                state_desc="Ring")
        server.emit("Newchannel", channel=ch)
        server.hangup_channel(ch)
        await until(lambda: ("sync", "call_ended") in seen)
        assert [who for who, _ in seen] == ["slow", "sync"] * (len(seen) // 2)
        assert [t for _, t in seen[0::2]] == [t for _, t in seen[1::2]]
        assert seen[0][1] == "call_arrived" and seen[-1][1] == "call_ended"
