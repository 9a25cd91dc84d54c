"""FreeswitchAdapter end to end over loopback: the real EslClient against the fake ESL server
(callcenter.sim.esl_server), a parked caller driven through digits, routing and hang-up, and a
resync after the link drops."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from callcenter.domain.commands import CollectDigits, HangUp, RouteToQueue, SetDisplayName
from callcenter.domain.events import Event
from callcenter.pbx.freeswitch.adapter import FreeswitchAdapter
from callcenter.sim.esl_server import FakeChannel, FakeEslServer

CALLER = "5b1c6d2e-0f3a-4b5c-8d9e-112233445566"


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # polling what the loopback server did
            await asyncio.sleep(0.01)


def park(server: FakeEslServer) -> FakeChannel:
    """An inbound caller on the shipped dialplan: answer + park (as in sendmsg_ivr)."""
    ch = server.add_channel(CALLER, caller_number="2125550123", caller_name="Caller", destination="5550199",
                            context="callcenter_inbound")
    server.emit("CHANNEL_CREATE", channel=ch)
    server.emit("CHANNEL_ANSWER", channel=ch)
    server.emit("CHANNEL_EXECUTE", [("Application", "park"), ("Application-UUID", "p-1")], channel=ch)
    ch.parked = True
    server.emit("CHANNEL_PARK", channel=ch)
    return ch


async def test_drive_a_parked_call_then_resync_after_a_drop() -> None:
    async with FakeEslServer() as server:
        # the fail-open lease (mod_commands sched_del / sched_transfer), as FreeSWITCH answers them
        server.on_api("sched_del", lambda session, arg: "+OK Deleted: 1\n")
        server.on_api("sched_transfer", lambda session, arg: "+OK\n")
        adapter = FreeswitchAdapter.connect(
            "fs-sim", "127.0.0.1", server.port, "ClueCon",
            client_options={"reconnect_min": 0.05, "reconnect_max": 0.1, "heartbeat_timeout": None},
        )
        seen: list[Event] = []
        adapter.subscribe(seen.append)
        await adapter.start()
        try:
            assert adapter.connected
            ch = park(server)
            await until(lambda: any(e.type == "controller_attached" for e in seen))

            # digits: the fake channel completes play_and_get_digits with these variables
            ch.variables.update(read_result="success", cc_digit="2")
            result = await adapter.execute(CollectDigits(call_id=CALLER, prompt="ivr/menu.wav", node="main"))
            assert result.ok, result.error
            assert result.detail["digits"] == "2"
            sendmsgs = [f for f in server.received if (f.command or "").startswith("sendmsg")]
            assert [f.headers.get("execute-app-name") for f in sendmsgs] == ["set", "play_and_get_digits"]
            assert all(f.headers.get("event-lock") == "true" and f.headers.get("Event-UUID") for f in sendmsgs)
            assert server.count("api sched_del") == 1 and server.count("api sched_transfer") == 1  # the lease

            assert (await adapter.execute(SetDisplayName(call_id=CALLER, name="VIP Ivanova"))).ok
            assert ch.variables["effective_caller_id_name"] == "VIP Ivanova"
            result = await adapter.execute(RouteToQueue(call_id=CALLER, queue="sales@default", priority=1))
            assert result.ok, result.error
            assert ch.variables["cc_base_score"] == "3600"
            assert server.count(f"api uuid_transfer {CALLER} cc_queue_sales XML callcenter") == 1
            await until(lambda: any(e.type == "controller_released" for e in seen))

            # the link drops while the call is up; it ends before we are back
            server.drop_all()
            await until(lambda: not adapter.connected)
            server.hangup_channel(ch)  # nobody listens: these events are lost
            await until(lambda: adapter.connected and any(e.type == "call_ended" for e in seen))
            end = next(e for e in seen if e.type == "call_ended")
            assert end.call_id == CALLER and end.to_dict()["hung_up_by"] == "unknown"  # closed by resync
            assert adapter.translator.live_calls() == []

            # a command for the dead call fails cleanly
            result = await adapter.execute(HangUp(channel=CALLER))
            assert not result.ok and "No such channel" in (result.error or "")
        finally:
            await adapter.close()


async def test_the_default_subscription_lets_through_only_what_the_translator_handles() -> None:
    async with FakeEslServer() as server:
        adapter = FreeswitchAdapter.connect(
            "fs-sim", "127.0.0.1", server.port, "ClueCon", client_options={"heartbeat_timeout": None}
        )
        received: list[tuple[str, str | None]] = []
        adapter._client.on_event(lambda ev, at: received.append((ev.name, ev.subclass)))  # type: ignore[attr-defined]
        seen: list[Event] = []
        adapter.subscribe(seen.append)
        await adapter.start()
        try:
            ch = server.add_channel(CALLER, caller_number="2125550123", destination="5550100", context="public")
            server.emit("CHANNEL_CREATE", channel=ch)
            server.emit("CHANNEL_STATE", channel=ch)  # ignored by the translator: filtered by FreeSWITCH
            server.emit("CUSTOM", [("Action", "maniacal")], subclass="conference::maniacal")
            server.emit(
                "CUSTOM",
                [("CC-Queue", "queue_1@default"), ("CC-Action", "member-queue-start"),
                 ("CC-Member-Session-UUID", CALLER), ("CC-Member-UUID", "m-1")],
                subclass="callcenter::info",
                channel=ch,
            )
            server.emit("CHANNEL_HANGUP", [("Hangup-Cause", "NORMAL_CLEARING")], channel=ch)
            await until(lambda: ("CHANNEL_HANGUP", None) in received)
            assert received == [("CHANNEL_CREATE", None), ("CUSTOM", "callcenter::info"), ("CHANNEL_HANGUP", None)]
            assert [e.type for e in seen][:2] == ["call_arrived", "queue_joined"]
        finally:
            await adapter.close()
