"""FreeswitchAdapter over a scripted ESL client (no socket): event publication, the sendmsg /
CHANNEL_EXECUTE_COMPLETE correlation, per-call ordering, failures, spies, resync.

The events pushed are the real ones of tests/fixtures/freeswitch (sendmsg_ivr, whisper_barge,
api_replies) up to the point under test; completions are built the way FreeSWITCH sent them
(Application-UUID = our Event-UUID, variable_cc_digit, variable_read_result).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from callcenter.domain.commands import (
    CollectDigits,
    HangUp,
    PlayPrompt,
    RouteToQueue,
    SetDisplayName,
    StartSpy,
)
from callcenter.domain.events import Event, SpyMode
from callcenter.pbx.freeswitch.adapter import FreeswitchAdapter
from callcenter.pbx.freeswitch.message import EslEvent, EslFrame
from callcenter.pbx.freeswitch.translate import FreeswitchTranslator
from callcenter.pbx.port import PbxPort
from tests.replay._esl import events as trace_events
from tests.replay._esl import replies as trace_replies

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "freeswitch"
CALLER = "2fcc1294-e632-4ebe-9bee-e3a33ed7346e"  # sendmsg_ivr


class FakeClient:
    """The agreed EslClient API, scripted: records what was sent, replies from ``api_replies``."""

    def __init__(self) -> None:
        self.connected = True
        self.sent: list[tuple[str, Any]] = []
        self.api_replies: dict[str, str] = {}
        self.sendmsg_error: Exception | None = None
        self.on_sendmsg: Callable[[str, str, str | None, str | None], None] | None = None
        self._event: Callable[[EslEvent, datetime], Awaitable[None] | None] | None = None
        self._connected: Callable[[], Awaitable[None]] | None = None
        self._disconnected: Callable[[Exception | None], Awaitable[None] | None] | None = None

    def on_event(self, handler: Any) -> None:
        self._event = handler

    def on_connected(self, handler: Any) -> None:
        self._connected = handler

    def on_disconnected(self, handler: Any) -> None:
        self._disconnected = handler

    async def start(self) -> None:
        assert self._connected is not None
        await self._connected()

    async def close(self) -> None:
        self.connected = False

    async def api(self, command: str, timeout: float | None = None) -> str:
        self.sent.append(("api", command))
        for prefix, reply in self.api_replies.items():
            if command.startswith(prefix):
                return reply
        return "+OK\n"

    async def sendmsg(
        self, uuid: str, app: str, arg: str | None = None, *, event_lock: bool = True,
        event_uuid: str | None = None, timeout: float | None = None,
    ) -> EslFrame:
        self.sent.append(("sendmsg", (uuid, app, arg, event_lock, event_uuid)))
        if self.sendmsg_error is not None:
            raise self.sendmsg_error
        if self.on_sendmsg is not None:
            self.on_sendmsg(uuid, app, arg, event_uuid)
        return EslFrame({"Content-Type": "command/reply", "Reply-Text": "+OK"})

    async def command(
        self, text: str, *, headers: Mapping[str, str] | Sequence[tuple[str, str]] = (), timeout: float | None = None
    ) -> EslFrame:
        self.sent.append(("command", (text, tuple(headers.items() if isinstance(headers, Mapping) else headers))))
        job = dict(headers.items() if isinstance(headers, Mapping) else headers).get("Job-UUID", "")
        return EslFrame({"Content-Type": "command/reply", "Reply-Text": f"+OK Job-UUID: {job}", "Job-UUID": job})

    async def push(self, ev: EslEvent, at: datetime | None = None) -> None:
        assert self._event is not None
        result = self._event(ev, at or datetime.now(UTC))
        if result is not None:
            await result

    async def drop(self) -> None:
        assert self._disconnected is not None
        result = self._disconnected(ConnectionError("gone"))
        if result is not None:
            await result


def make(**kw: Any) -> tuple[FreeswitchAdapter, FakeClient, list[Event]]:
    client = FakeClient()
    adapter = FreeswitchAdapter("fs-1", client, **kw)
    seen: list[Event] = []
    adapter.subscribe(seen.append)
    return adapter, client, seen


async def replay_until(client: FakeClient, scenario: str, stop: Callable[[EslEvent], bool]) -> list[EslEvent]:
    """Push a trace's events up to (and including) the first one ``stop`` accepts; the rest."""
    evs = list(trace_events(FIXTURES / f"{scenario}.esl.txt"))
    for i, (ev, at) in enumerate(evs):
        await client.push(ev, at)
        if stop(ev):
            return [e for e, _ in evs[i + 1 :]]
    raise AssertionError("stop event not found")


def completion(uuid: str, app: str, app_uuid: str, arg: str | None = None, **variables: str) -> EslEvent:
    """CHANNEL_EXECUTE_COMPLETE as FreeSWITCH sends it: a `set` is visible on its completion."""
    if app == "set" and arg and "=" in arg:
        name, _, value = arg.partition("=")
        variables[name] = value
    headers = {
        "Event-Name": "CHANNEL_EXECUTE_COMPLETE",
        "Unique-ID": uuid,
        "Call-Direction": "inbound",
        "Answer-State": "answered",
        "Application": app,
        "Application-Response": "_none_",
        "Application-UUID": app_uuid,
    }
    headers.update({f"variable_{k}": v for k, v in variables.items()})
    return EslEvent(headers)


def test_the_adapter_is_a_pbx_port() -> None:
    adapter, _, _ = make()
    assert isinstance(adapter, PbxPort)
    assert adapter.name == "fs-1" and adapter.connected


async def test_events_are_translated_and_published() -> None:
    adapter, client, seen = make()
    for ev, at in trace_events(FIXTURES / "answered_agent_hangup.esl.txt"):
        await client.push(ev, at)
    types = [e.type for e in seen]
    assert types[0] == "call_arrived" and types[-1] == "call_ended"
    assert {e.pbx for e in seen} == {"fs-1"}
    assert adapter.translator.live_calls() == []


async def test_synchronous_subscribers_get_events_inside_the_clients_callback_in_order() -> None:
    """As on Asterisk: no coroutine per ESL event for synchronous subscribers (the controller);
    an async subscriber's work is awaited before anything after it, and a failing one harms
    nothing else."""
    _adapter, client, seen = make()
    trace = list(trace_events(FIXTURES / "answered_agent_hangup.esl.txt"))
    assert client._event is not None
    for ev, at in trace:  # the synchronous subscriber alone: every event delivered before return
        assert client._event(ev, at) is None
    expected = [e.type for e in seen]
    order: list[str] = []

    async def slow(event: Event) -> None:
        await asyncio.sleep(0)
        order.append("slow:" + event.type)

    def boom(event: Event) -> None:
        raise RuntimeError("subscriber bug")

    adapter2, client2, _ = make()
    adapter2.subscribe(boom)
    adapter2.subscribe(slow)
    adapter2.subscribe(lambda e: order.append("sync:" + e.type))
    for ev, at in trace:
        await client2.push(ev, at)
    assert order == [f"{who}:{t}" for t in expected for who in ("slow", "sync")]


async def test_collect_digits_waits_for_its_execute_complete() -> None:
    adapter, client, seen = make()
    await replay_until(client, "sendmsg_ivr", lambda ev: ev.name == "CHANNEL_PARK")
    assert seen[-1].type == "controller_attached"

    def complete(uuid: str, app: str, arg: str | None, event_uuid: str | None) -> None:
        assert event_uuid
        done = completion(uuid, app, event_uuid, arg, cc_digit="1", read_result="success")
        asyncio.get_running_loop().call_later(0.01, lambda: asyncio.ensure_future(client.push(done)))

    client.on_sendmsg = complete
    cmd = CollectDigits(call_id=CALLER, prompt="ivr/menu.wav", timeout_ms=5000, node="main")
    result = await adapter.execute(cmd)
    assert result.ok, result.error
    assert result.detail["digits"] == "1"
    kinds = [(k, v if k == "api" else v[1]) for k, v in client.sent]
    # the fail-open lease first (the call is parked), then the node, then the collection
    assert kinds == [
        ("api", f"sched_del {CALLER}"),
        ("api", f"sched_transfer +35 {CALLER} cc_failopen XML callcenter"),
        ("sendmsg", "set"),
        ("sendmsg", "play_and_get_digits"),
    ]
    assert all(v[3] is True for k, v in client.sent if k == "sendmsg")  # event-lock
    digits = [e for e in seen if e.type == "digits_collected"]
    assert [e.to_dict()["command_id"] for e in digits] == [cmd.command_id]  # rewritten to ours
    assert any(e.type == "ivr_node_entered" and e.to_dict()["node"] == "main" for e in seen)


async def test_commands_of_one_call_run_one_after_another() -> None:
    adapter, client, _ = make(controller_lease_s=None)
    await replay_until(client, "sendmsg_ivr", lambda ev: ev.name == "CHANNEL_PARK")
    pending: list[tuple[str, str, str, str | None]] = []
    client.on_sendmsg = lambda uuid, app, arg, eu: pending.append((uuid, app, eu or "", arg))

    async def complete(i: int) -> None:
        uuid, app, eu, arg = pending[i]
        await client.push(completion(uuid, app, eu, arg))
        await asyncio.sleep(0.02)

    first = asyncio.create_task(adapter.execute(PlayPrompt(call_id=CALLER, prompt="ivr/one.wav")))
    second = asyncio.create_task(adapter.execute(SetDisplayName(call_id=CALLER, name="VIP Ivanova")))
    await asyncio.sleep(0.05)
    # each application waits for the previous one's completion, across commands too
    assert [p[1] for p in pending] == ["set"]
    await complete(0)
    assert [p[1] for p in pending] == ["set", "playback"]
    await complete(1)
    assert (await first).ok
    assert [p[1] for p in pending] == ["set", "playback", "set"]
    assert pending[2][3] == "effective_caller_id_name=VIP Ivanova"
    await complete(2)
    assert (await second).ok


async def test_a_destroyed_channel_fails_the_waiting_command() -> None:
    adapter, client, _ = make(controller_lease_s=None)
    await replay_until(client, "sendmsg_ivr", lambda ev: ev.name == "CHANNEL_PARK")
    task = asyncio.create_task(adapter.execute(CollectDigits(call_id=CALLER, prompt="ivr/menu.wav")))
    await asyncio.sleep(0.02)
    await client.push(EslEvent({"Event-Name": "CHANNEL_DESTROY", "Unique-ID": CALLER}))
    result = await task
    assert not result.ok and "gone" in (result.error or "")


async def test_a_missing_completion_times_out_and_a_refused_sendmsg_fails() -> None:
    adapter, client, _ = make(controller_lease_s=None, execute_timeout=0.05)
    await replay_until(client, "sendmsg_ivr", lambda ev: ev.name == "CHANNEL_PARK")
    result = await adapter.execute(PlayPrompt(call_id=CALLER, prompt="ivr/menu.wav"))
    assert not result.ok and "no CHANNEL_EXECUTE_COMPLETE" in (result.error or "")
    client.sendmsg_error = RuntimeError(f"-ERR invalid session id [{CALLER}]")
    result = await adapter.execute(SetDisplayName(call_id=CALLER, name="x"))
    assert not result.ok and "invalid session id" in (result.error or "")


async def test_a_link_loss_fails_running_applications_at_once() -> None:
    adapter, client, _ = make(controller_lease_s=None)
    await replay_until(client, "sendmsg_ivr", lambda ev: ev.name == "CHANNEL_PARK")
    task = asyncio.create_task(adapter.execute(PlayPrompt(call_id=CALLER, prompt="ivr/menu.wav")))
    await asyncio.sleep(0.02)
    await client.drop()
    result = await asyncio.wait_for(task, 1)
    assert not result.ok and "link lost" in (result.error or "")


async def test_applications_need_a_parked_call_but_transfers_and_hangups_do_not() -> None:
    adapter, client, _ = make()
    # sendmsg_ivr up to the UNPARK (bgapi uuid_transfer): the call is in the queue now
    await replay_until(client, "sendmsg_ivr", lambda ev: ev.name == "CHANNEL_UNPARK")
    result = await adapter.execute(PlayPrompt(call_id=CALLER, prompt="ivr/menu.wav"))
    assert not result.ok and "not parked" in (result.error or "")
    assert (await adapter.execute(HangUp(call_id=CALLER))).ok
    assert client.sent[-1] == ("api", f"uuid_kill {CALLER} NORMAL_CLEARING")


async def test_route_to_queue_after_the_digits() -> None:
    adapter, client, _ = make()
    await replay_until(client, "sendmsg_ivr", lambda ev: ev.name == "CHANNEL_PARK")
    def complete_soon(uuid: str, app: str, arg: str | None, eu: str | None) -> None:
        done = completion(uuid, app, eu or "", arg)
        asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(client.push(done)))

    client.on_sendmsg = complete_soon
    result = await adapter.execute(RouteToQueue(call_id=CALLER, queue="sales@default", priority=1))
    assert result.ok, result.error
    assert client.sent == [
        ("sendmsg", (CALLER, "set", "cc_base_score=3600", True, client.sent[0][1][4])),
        ("api", f"uuid_transfer {CALLER} cc_queue_sales XML callcenter"),
    ]


async def test_api_errors_are_failures() -> None:
    adapter, client, _ = make()
    client.api_replies["uuid_kill"] = "-ERR No such channel!\n"  # park_hangup_in_ivr
    result = await adapter.execute(HangUp(channel=CALLER))
    assert not result.ok and "No such channel" in (result.error or "")


async def test_spy_on_an_agent_eavesdrops_on_the_callers_channel() -> None:
    adapter, client, seen = make()
    caller, agent_leg = "a433cd3b-7dca-4fd1-b1bd-4b721de2ef71", "9258ce1e-35cf-4511-b30d-93eabfdfe76b"
    rest = await replay_until(
        client, "whisper_barge", lambda ev: ev.get("CC-Action") == "bridge-agent-start"
    )
    cmd = StartSpy(supervisor_endpoint="sofia/internal/1009@127.0.0.1:5189", target="1001", mode=SpyMode.WHISPER)
    result = await adapter.execute(cmd)
    assert result.ok, result.error
    kind, (text, headers) = client.sent[-1]
    assert kind == "command" and text.startswith("bgapi originate {")
    assert text.endswith(f"sofia/internal/1009@127.0.0.1:5189 &eavesdrop({caller})")
    assert "eavesdrop_whisper_aleg=true" in text and f"origination_uuid={result.detail['channel']}" in text
    job = dict(headers)["Job-UUID"]
    assert result.detail["job_uuid"] == job and result.detail["request_id"] == cmd.command_id
    # the same by the agent leg's uuid
    again = await adapter.execute(StartSpy(supervisor_endpoint="user/1009", target=agent_leg, mode=SpyMode.LISTEN))
    assert again.ok and client.sent[-1][1][0].endswith(f"&eavesdrop({caller})")
    # the BACKGROUND_JOB of our job comes back as OriginateResult of our command
    await client.push(EslEvent(
        {"Event-Name": "BACKGROUND_JOB", "Job-UUID": job, "Job-Command": "originate",
         "Job-Command-Arg": text.removeprefix("bgapi originate ")},
        f"+OK {result.detail['channel']}\n",
    ))
    results = [e for e in seen if e.type == "originate_result"]
    assert [e.to_dict()["request_id"] for e in results] == [cmd.command_id]
    assert rest  # the trace went on (spy events etc.): not needed here


async def test_resync_on_connect_adopts_and_closes() -> None:
    adapter, client, seen = make()
    # A call the adapter followed ... which is gone when the link comes back.
    await replay_until(client, "queue_abandon", lambda ev: ev.get("CC-Action") == "member-queue-start")
    gone = "182c1473-b64a-4db1-aacc-244c98df0fef"
    # The replies FreeSWITCH gave in api_replies while a member waited in sales@default.
    replies = dict(trace_replies(FIXTURES / "api_replies.esl.txt"))
    waiting_channels = next(
        frame.text for cmd, frame in trace_replies(FIXTURES / "api_replies.esl.txt")
        if cmd == "api show channels as json" and '"row_count":1' in frame.text
    )
    members = next(
        frame.text for cmd, frame in trace_replies(FIXTURES / "api_replies.esl.txt")
        if cmd == "api callcenter_config queue list members sales@default" and "Waiting" in frame.text
    )
    client.api_replies = {
        "show channels as json": waiting_channels,
        "callcenter_config queue list members": members,
        "callcenter_config queue list": replies["api callcenter_config queue list"].text,
        "callcenter_config agent list": replies["api callcenter_config agent list"].text,
    }
    seen.clear()
    await client.start()
    got = [(e.type, e.call_id) for e in seen if e.call_id]
    adopted = "87c63186-e739-468a-b53a-e734ecb9522a"
    assert ("call_ended", gone) in got
    assert ("call_arrived", adopted) in got and ("call_answered", adopted) in got
    assert ("queue_joined", adopted) in got  # the member list says it waits in sales@default
    assert adapter.translator.live_calls() == [adopted]
    # both agents Available/Waiting in that agent list
    assert {(e.to_dict()["agent"], e.type) for e in seen if e.call_id is None} >= {
        ("1001", "agent_status_changed"), ("1002", "agent_pause_changed")
    }


async def test_commands_fail_cleanly_when_the_link_is_down_or_the_command_is_invalid() -> None:
    adapter, client, _ = make()
    client.connected = False
    result = await adapter.execute(HangUp(channel=CALLER))
    assert not result.ok and result.error == "ESL link is down"
    client.connected = True
    result = await adapter.execute(RouteToQueue(channel=CALLER, queue="sales; uuid_kill all"))
    assert not result.ok and "invalid queue" in (result.error or "") and not client.sent


@pytest.mark.parametrize("scenario", ["sendmsg_ivr", "whisper_barge", "overflow_transfer"])
async def test_adapter_publishes_exactly_what_the_translator_emits(scenario: str) -> None:
    _, client, seen = make()
    reference = FreeswitchTranslator("fs-1")
    expected: list[Event] = []
    for ev, at in trace_events(FIXTURES / f"{scenario}.esl.txt"):
        expected.extend(reference.feed(ev, at))
        await client.push(ev, at)
    assert [e.to_dict() for e in seen] == [e.to_dict() for e in expected]


def _subscription(adapter: FreeswitchAdapter) -> tuple[list[str], list[str]]:
    """The ``event json ...`` line the adapter's client sends: (event names, CUSTOM subclasses)."""
    client: Any = adapter._client
    line = client._setup[0][0].decode().strip()
    words = line.split()
    assert words[:2] == ["event", "json"], line
    names = words[2:]
    cut = names.index("CUSTOM") + 1 if "CUSTOM" in names else len(names)
    return names[:cut], names[cut:]


def test_the_adapter_subscribes_to_every_event_the_translator_handles() -> None:
    from callcenter.pbx.freeswitch.translate import _HANDLERS, HANDLED_EVENTS, SUBSCRIPTIONS

    adapter = FreeswitchAdapter.connect("fs", "127.0.0.1", 8021, "ClueCon")  # nothing connects yet
    names, subclasses = _subscription(adapter)
    assert "ALL" not in names
    # a new handler can never silently miss its events: everything the translator acts on...
    assert set(_HANDLERS) | {"CUSTOM"} == HANDLED_EVENTS
    assert HANDLED_EVENTS <= set(names), sorted(HANDLED_EVENTS - set(names))
    assert subclasses == ["callcenter::info"]  # ...the one CUSTOM subclass it reads...
    # ...and what the client needs itself (bgapi results, the heartbeat watchdog), nothing else
    assert set(names) == HANDLED_EVENTS | {"HEARTBEAT"}
    assert tuple(SUBSCRIPTIONS) == (*sorted(_HANDLERS), "CUSTOM", "callcenter::info")
    # the translator turns every CUSTOM callcenter::info action into something or ignores it by
    # name: no handled event name is in its ignore list
    from callcenter.pbx.freeswitch.translate import IGNORED_EVENTS

    assert not (HANDLED_EVENTS & IGNORED_EVENTS)


def test_the_subscription_can_be_overridden_for_trace_capture() -> None:
    adapter = FreeswitchAdapter.connect("fs", "127.0.0.1", 8021, "ClueCon", client_options={"subscriptions": ("ALL",)})
    names, subclasses = _subscription(adapter)
    assert names == ["ALL"] and subclasses == []
