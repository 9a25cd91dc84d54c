"""AmiClient over loopback against the fake AMI server (real wire format, real sockets)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from callcenter.pbx.asterisk.client import (
    ActionFailed,
    ActionTimeout,
    AgiEnded,
    AmiClient,
    ConnectionLost,
    LoginError,
)
from callcenter.pbx.asterisk.message import AmiMessage
from callcenter.pbx.asterisk.protocol import AmiParser, agi_result
from callcenter.pbx.asterisk.trace import TraceWriter, read_trace
from callcenter.sim.ami_server import AmiSession, FakeAmiServer, FakeMember, FakeQueue, trace_messages

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "asterisk"
SECRET = "s3cr3t-Pa55"

pytestmark = pytest.mark.timeout(20)


@asynccontextmanager
async def fake_server(**kw: Any) -> AsyncIterator[FakeAmiServer]:
    server = FakeAmiServer(secret=SECRET, **kw)
    server.login_failure_delay = 0.05
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@asynccontextmanager
async def client_for(server: FakeAmiServer, *, start: bool = True, **kw: Any) -> AsyncIterator[AmiClient]:
    opts: dict[str, Any] = {
        "ping_interval": None,
        "reconnect_min": 0.02,
        "reconnect_max": 0.1,
        "action_timeout": 2.0,
        "connect_timeout": 2.0,
    }
    opts.update(kw)
    secret = opts.pop("secret", SECRET)
    client = AmiClient("127.0.0.1", server.port, "ctl", secret, **opts)
    try:
        if start:
            await client.start()
        yield client
    finally:
        await client.close()


# Polling on purpose: the predicates span client and server state that share no event object.
async def until(predicate: Any, timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


# -- login ---------------------------------------------------------------------------------------
async def test_login_ok_runs_on_connected_and_delivers_fullybooted() -> None:
    async with fake_server() as server:
        seen: list[str] = []
        connected: list[bool] = []
        client = AmiClient("127.0.0.1", server.port, "ctl", SECRET, ping_interval=None)
        client.on_event(lambda m, at: seen.append(m.event or ""))

        async def hook() -> None:
            connected.append(client.connected)

        client.on_connected(hook)
        try:
            await client.start()
            assert connected == [True]  # hooks ran (logged in) before start() returned
            assert client.connected
            assert client.banner == "Asterisk Call Manager/11.0.0"
            await client.drain(timeout=2)
            assert seen[:2] == ["FullyBooted", "SuccessfulAuth"]
            login = next(m for m in server.received if m.get("Action") == "Login")
            assert login["Username"] == "ctl" and login["Events"] == "on"
            assert login.action_id
            assert server.logins == 1
        finally:
            await client.close()
        assert not client.connected


async def test_bad_login_raises_login_error_with_asterisk_reason(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with fake_server() as server:
        client = AmiClient("127.0.0.1", server.port, "ctl", "wrong-secret", ping_interval=None)
        with pytest.raises(LoginError, match="Authentication failed") as info:
            await client.start()
        assert "wrong-secret" not in str(info.value)
        assert not client.connected
        await client.close()
        assert server.logins == 0
    assert "wrong-secret" not in caplog.text


async def test_connection_refused_is_an_oserror() -> None:
    async with fake_server() as server:
        port = server.port
    client = AmiClient("127.0.0.1", port, "ctl", SECRET, ping_interval=None, connect_timeout=1)
    with pytest.raises(OSError):
        await client.start()
    await client.close()


# -- actions -------------------------------------------------------------------------------------
async def test_responses_are_correlated_by_action_id_across_interleaved_events() -> None:
    async with fake_server() as server, client_for(server) as client:
        held: list[tuple[AmiSession, AmiMessage]] = []

        def getvar(session: AmiSession, action: AmiMessage) -> None:
            held.append((session, action))
            if len(held) == 2:
                # Answer in reverse order, with events in between and around.
                for s, a in reversed(held):
                    server.emit("VarSet", [("Variable", "X"), ("Value", a["Variable"]), ("Uniqueid", "1.1")])
                    s.respond(a, "Success", fields=[("Variable", a["Variable"]), ("Value", f"v-{a['Variable']}")])
                server.emit("Newexten", [("Uniqueid", "1.1")])

        server.on_action("Getvar", getvar)
        events: list[AmiMessage] = []
        client.on_event(lambda m, at: events.append(m))
        first, second = await asyncio.gather(
            client.action("Getvar", {"Variable": "A"}), client.action("Getvar", {"Variable": "B"})
        )
        assert first["Value"] == "v-A" and second["Value"] == "v-B"
        assert first.action_id != second.action_id
        await client.drain(timeout=2)
        assert [m.event for m in events[-3:]] == ["VarSet", "VarSet", "Newexten"]


async def test_action_error_raises_action_failed_with_the_response() -> None:
    async with fake_server() as server, client_for(server) as client:
        with pytest.raises(ActionFailed) as info:
            await client.action("Getvar", {"Channel": "PJSIP/nonexistent-00000000", "Variable": "X"})
        assert info.value.response["Message"] == "No such channel"
        with pytest.raises(ActionFailed, match="Invalid/unknown command"):
            await client.action("NoSuchAction")
        assert (await client.action("Ping"))["Ping"] == "Pong"  # the link is fine


async def test_action_timeout_and_late_response_is_ignored() -> None:
    async with fake_server() as server, client_for(server) as client:
        late: list[tuple[AmiSession, AmiMessage]] = []
        server.on_action("Slow", lambda s, a: late.append((s, a)))
        t0 = asyncio.get_running_loop().time()
        with pytest.raises(ActionTimeout, match="Slow"):
            await client.action("Slow", timeout=0.2)
        assert 0.15 < asyncio.get_running_loop().time() - t0 < 1.5
        session, action = late[0]
        session.respond(action, "Success", "too late")
        pong = await client.action("Ping")
        assert pong["Ping"] == "Pong"
        assert client.stats.action_timeouts == 1
        assert client.stats.unmatched_responses == 1


async def test_user_action_id_is_kept_and_header_injection_refused() -> None:
    async with fake_server() as server, client_for(server) as client:
        resp = await client.action("Ping", [("ActionID", "my-id-1")])
        assert resp.action_id == "my-id-1"
        with pytest.raises(ValueError):
            await client.action("Getvar", {"Variable": "X\r\nAction: Hangup"})
        assert server.count("Hangup") == 0


async def test_event_list_collects_items_until_complete() -> None:
    async with fake_server() as server, client_for(server) as client:
        server.queues["sales"] = FakeQueue(
            "sales", members=[FakeMember("PJSIP/1001", "Alice"), FakeMember("PJSIP/1002", "Bob", paused=True)]
        )
        server.queues["support"] = FakeQueue("support")
        for i in range(3):
            server.add_channel(f"PJSIP/pstn-0000000{i}", uniqueid=f"100.{i}")
        handled: list[str] = []
        client.on_event(lambda m, at: handled.append(m.event or ""))

        resp, items = await client.action_list("QueueStatus", {"Queue": "sales"})
        assert resp["EventList"] == "start" and resp["Message"] == "Queue status will follow"
        assert [m.event for m in items] == ["QueueParams", "QueueMember", "QueueMember", "QueueStatusComplete"]
        assert items[-1]["ListItems"] == "3"
        assert items[2]["Paused"] == "1"

        resp, items = await client.action_list("CoreShowChannels")
        assert [m.event for m in items].count("CoreShowChannel") == 3
        assert items[-1].event == "CoreShowChannelsComplete" and items[-1]["ListItems"] == "3"
        assert {m.get("Uniqueid") for m in items[:-1]} == {"100.0", "100.1", "100.2"}
        await client.drain(timeout=2)
        assert "CoreShowChannel" not in handled and "QueueMember" not in handled

        # Not a list after all: plain response, no items.
        resp, items = await client.action_list("Ping")
        assert resp["Ping"] == "Pong" and items == []


async def test_event_list_timeout_swallows_late_items() -> None:
    async with fake_server() as server, client_for(server) as client:
        pending: list[tuple[AmiSession, AmiMessage]] = []
        server.on_action("CoreShowChannels", lambda s, a: pending.append((s, a)))
        handled: list[str] = []
        client.on_event(lambda m, at: handled.append(m.event or ""))
        with pytest.raises(ActionTimeout):
            await client.action_list("CoreShowChannels", timeout=0.1)
        server.add_channel("PJSIP/late-00000001")
        session, action = pending[0]
        default = server.default_handler("CoreShowChannels")
        assert default is not None
        default(session, action)
        server.emit("Newchannel", [("Uniqueid", "5.5"), ("Linkedid", "5.5")])
        await until(lambda: "Newchannel" in handled)
        assert "CoreShowChannel" not in handled and "CoreShowChannelsComplete" not in handled


# -- AsyncAGI ------------------------------------------------------------------------------------
async def test_agi_returns_the_matching_asyncagiexec() -> None:
    async with fake_server() as server, client_for(server) as client:
        a = server.add_channel("PJSIP/pstn-00000000", uniqueid="200.0")
        b = server.add_channel("PJSIP/pstn-00000001", uniqueid="200.1")
        server.start_agi(a)
        server.start_agi(b)
        res_a, res_b = await asyncio.gather(
            client.agi(a.name, 'STREAM FILE hello-world ""', command_id="c1-stream"),
            client.agi(b.name, "GET DATA hello-world 5000 1"),
        )
        assert res_a.event == res_b.event == "AsyncAGIExec"
        assert res_a["CommandId"] == "c1-stream" and res_a["Uniqueid"] == "200.0"
        assert agi_result(res_a).data == "endpos=11360"
        assert res_b["Uniqueid"] == "200.1" and agi_result(res_b).value == 1
        # AGIExecStart/End carry Asterisk's internal CommandId, not ours
        starts = [m for m in server.received if m.get("Action") == "AGI"]
        assert {m["CommandID"] for m in starts} == {"c1-stream", res_b["CommandId"]}


async def test_agi_results_out_of_order_are_matched_by_command_id() -> None:
    async with fake_server() as server, client_for(server) as client:
        ch = server.add_channel("PJSIP/pstn-00000002", uniqueid="300.0")
        queued: list[AmiMessage] = []

        def agi(session: AmiSession, action: AmiMessage) -> None:
            session.respond(action, "Success", "Added AGI command to queue")
            queued.append(action)
            if len(queued) == 2:
                for act in reversed(queued):
                    server.emit("AGIExecStart", [("CommandId", "530694933"), ("Command", act["Command"])], channel=ch)
                    server.emit(
                        "AsyncAGIExec",
                        [("Result", f"200%20result%3D{act['Command'][-1]}%0A"), ("CommandId", act["CommandID"])],
                        channel=ch,
                    )

        server.on_action("AGI", agi)
        one, two = await asyncio.gather(
            client.agi(ch.name, "SET VARIABLE X 1", command_id="first"),
            client.agi(ch.name, "SET VARIABLE Y 2", command_id="second"),
        )
        assert (one["CommandId"], agi_result(one).result) == ("first", "1")
        assert (two["CommandId"], agi_result(two).result) == ("second", "2")


async def test_agi_on_gone_channel_and_session_end() -> None:
    async with fake_server() as server, client_for(server) as client:
        with pytest.raises(ActionFailed, match="does not exist"):
            await client.agi("PJSIP/pstn-0000dead", "ASYNCAGI BREAK")
        ch = server.add_channel("PJSIP/pstn-00000003", uniqueid="400.0")
        server.start_agi(ch)
        server.agi_delay = 0.3
        task = asyncio.ensure_future(client.agi(ch.name, "GET DATA hello-world 10000 1", command_id="g"))
        second = asyncio.ensure_future(client.agi(ch.name, "SET VARIABLE Z 1", command_id="z"))
        await until(lambda: server.count("AGI") == 3)
        await asyncio.sleep(0.05)
        server.hangup_channel(ch)  # AsyncAGIEnd + Hangup before any AsyncAGIExec for "z"
        with pytest.raises(AgiEnded):
            await second
        with pytest.raises(AgiEnded):
            await task
        with pytest.raises(ActionTimeout):
            other = server.add_channel("PJSIP/pstn-00000004")
            server.on_action("AGI", lambda s, a: s.respond(a, "Success", "Added AGI command to queue"))
            await client.agi(other.name, "ANSWER", timeout=0.15)


def count_writes(client: AmiClient) -> list[bytes]:
    """Every socket write of the client's current connection, from now on."""
    transport = client._conn.transport  # type: ignore[union-attr]
    assert transport is not None
    writes: list[bytes] = []
    write = transport.write

    def spy(data: bytes) -> None:  # type: ignore[override]
        writes.append(bytes(data))
        write(data)

    transport.write = spy  # type: ignore[method-assign]
    return writes


async def test_agi_many_puts_the_commands_on_the_socket_at_once_in_order() -> None:
    async with fake_server() as server, client_for(server) as client:
        ch = server.add_channel("PJSIP/pstn-00000005", uniqueid="500.0")
        server.start_agi(ch)
        writes = count_writes(client)
        tasks = client.agi_many([
            (ch.name, "SET VARIABLE CALLERID(name) VIP", "n1", None),
            (ch.name, "SET VARIABLE CC_QUEUE vip", "q1", None),
            (ch.name, "ASYNCAGI BREAK", "b1", 5.0),
        ])
        # written before agi_many returned, in one write, in order: no task has run yet
        assert len(writes) == 1 and client.stats.actions_sent >= 3
        assert [line for line in writes[0].split(b"\r\n") if line.startswith(b"CommandID")] == [
            b"CommandID: n1", b"CommandID: q1", b"CommandID: b1"]
        results = await asyncio.gather(*tasks)
        assert [r["CommandId"] for r in results] == ["n1", "q1", "b1"]
        assert [m["Command"] for m in server.received if m.get("Action") == "AGI"] == [
            "SET VARIABLE CALLERID(name) VIP", "SET VARIABLE CC_QUEUE vip", "ASYNCAGI BREAK"]
        conn = client._conn
        assert conn is not None and not conn.agi and not conn.agi_by_channel and not conn.pending


async def test_agi_many_failures_are_per_command_and_nothing_is_left_behind() -> None:
    async with fake_server() as server, client_for(server) as client:
        ch = server.add_channel("PJSIP/pstn-00000006", uniqueid="600.0")
        server.start_agi(ch)
        ok, gone = client.agi_many([(ch.name, "SET VARIABLE A 1", None, None),
                                    ("PJSIP/pstn-0000dead", "SET VARIABLE A 1", None, None)])
        assert agi_result(await ok).ok
        with pytest.raises(ActionFailed, match="does not exist"):
            await gone
        # cancelled before they ever ran: their waiters are removed all the same
        for task in client.agi_many([(ch.name, "GET DATA x 5000 1", "c1", None), (ch.name, "ANSWER", "c2", None)]):
            task.cancel()
        conn = client._conn
        assert conn is not None
        await until(lambda: not conn.agi and not conn.agi_by_channel and not conn.pending)
        with pytest.raises(ValueError, match="already in flight"):
            client.agi_many([(ch.name, "ANSWER", "dup", None), (ch.name, "ANSWER", "dup", None)])
        assert not conn.agi and not conn.pending  # the first one's waiters went with the refusal
        server.drop_all()
        await until(lambda: not client.connected)
        with pytest.raises(ConnectionLost):
            client.agi_many([(ch.name, "ANSWER", None, None)])


async def test_agi_many_runs_no_task_and_times_each_command_out_on_its_own() -> None:
    async with fake_server() as server, client_for(server, action_timeout=0.2) as client:
        ch = server.add_channel("PJSIP/pstn-00000007", uniqueid="700.0")
        server.start_agi(ch)

        def agi(session: AmiSession, action: AmiMessage) -> None:
            cid = action["CommandID"]
            if cid == "mute":
                return  # no response at all
            session.respond(action, "Success", "Added AGI command to queue")
            if cid == "late":
                asyncio.get_running_loop().call_later(0.4, lambda: server.emit(
                    "AsyncAGIExec", [("Result", "200%20result%3D1%0A"), ("CommandId", cid)], channel=ch))

        server.on_action("AGI", agi)
        tasks = len(asyncio.all_tasks())
        lost, mute, late = client.agi_many([
            (ch.name, "SET VARIABLE A 1", "lost", 0.1),  # answered, never executed
            (ch.name, "SET VARIABLE B 1", "mute", 5.0),
            (ch.name, "SET VARIABLE C 1", "late", 5.0),
        ])
        assert len(asyncio.all_tasks()) == tasks  # waiters, not tasks
        with pytest.raises(ActionTimeout, match=r"'SET' \(CommandID lost\) on .*no AsyncAGIExec within 0.1 s"):
            await lost
        with pytest.raises(ActionTimeout, match=r"AGI \(ActionID .*\): no response within 0.2 s"):
            await mute
        assert not late.done()  # the batch's timer went off twice; the third command still waits
        assert agi_result(await late).result == "1"
        assert client.stats.action_timeouts == 2
        conn = client._conn
        assert conn is not None
        await until(lambda: not conn.agi and not conn.agi_by_channel and not conn.pending)


# -- link loss -----------------------------------------------------------------------------------
async def test_disconnect_mid_action_fails_it_and_never_resends() -> None:
    async with fake_server() as server:
        server.on_action("Originate", lambda s, a: s.drop())
        reasons: list[Exception | None] = []
        connects = 0

        async def on_connected() -> None:
            nonlocal connects
            connects += 1

        async with client_for(server, start=False) as client:
            client.on_connected(on_connected)
            client.on_disconnected(reasons.append)
            await client.start()
            with pytest.raises(ConnectionLost):
                await client.action("Originate", {"Channel": "PJSIP/1009", "Exten": "s", "Async": "true"})
            with pytest.raises(ConnectionLost):  # while down: fails at once, is not queued
                await client.action("Redirect", {"Channel": "PJSIP/x", "Exten": "s"})
            await until(lambda: connects == 2)
            assert client.connected and server.logins == 2
            assert isinstance(reasons[0], ConnectionLost)
            assert (await client.action("Ping"))["Ping"] == "Pong"
            await asyncio.sleep(0.1)
            assert server.count("Originate") == 1  # seen once, never re-sent
            assert server.count("Redirect") == 0
            assert client.stats.reconnects == 1
        assert len(reasons) == 2 and reasons[-1] is None  # close() reports a clean disconnect


async def test_dead_link_is_detected_by_ping_timeout() -> None:
    async with fake_server() as server:
        async with client_for(server, ping_interval=0.1, ping_timeout=0.15) as client:
            lost: list[Exception | None] = []
            client.on_disconnected(lost.append)
            assert (await client.action("Ping"))["Ping"] == "Pong"
            server.sessions[0].muted = True  # half-open: the peer writes nothing any more
            await until(lambda: server.logins == 2, timeout=3)
            assert lost and "Ping" in str(lost[0])
            assert client.stats.ping_timeouts >= 1
            await until(lambda: client.connected)
            assert (await client.action("Ping"))["Ping"] == "Pong"


async def test_close_fails_in_flight_actions_and_owns_its_tasks() -> None:
    async with fake_server() as server:
        server.on_action("Slow", lambda s, a: None)
        client = AmiClient("127.0.0.1", server.port, "ctl", SECRET, ping_interval=0.05)
        before = asyncio.all_tasks()
        await client.start()
        pending = asyncio.ensure_future(client.action("Slow", timeout=5))
        await asyncio.sleep(0.05)
        await client.close()
        with pytest.raises(ConnectionLost):
            await pending
        leftover = {t for t in asyncio.all_tasks() - before if not t.done() and t is not pending}
        assert not [t for t in leftover if (t.get_name() or "").startswith("ami-")]
        with pytest.raises(ConnectionLost):
            await client.action("Ping")


# -- dispatch ------------------------------------------------------------------------------------
async def test_utf8_character_split_across_reads() -> None:
    async with fake_server() as server, client_for(server) as client:
        names: list[str | None] = []
        client.on_event(lambda m, at: names.append(m.get("CallerIDName")))
        data = server.render_event("Newchannel", [("CallerIDName", "Jürgen"), ("Uniqueid", "7.1")])
        cut = data.index("ü".encode()) + 1
        server.split = lambda d: [cut] if d == data else []
        server.split_delay = 0.05
        server.emit("Newchannel", [("CallerIDName", "Jürgen"), ("Uniqueid", "7.1")])
        await until(lambda: bool(names))
        assert names == ["Jürgen"]
        assert client.stats.decode_errors == 0


async def test_a_failing_handler_does_not_stop_later_events(caplog: pytest.LogCaptureFixture) -> None:
    async with fake_server() as server, client_for(server) as client:
        good: list[str] = []

        def bad(msg: AmiMessage, at: datetime) -> None:
            if msg.event == "Newchannel":
                raise RuntimeError("boom")

        async def also_bad(msg: AmiMessage, at: datetime) -> None:
            if msg.event == "Newstate":
                raise ValueError("async boom")

        client.on_event(bad)
        client.on_event(also_bad)
        client.on_event(lambda m, at: good.append(m.event or ""))
        await client.drain(timeout=2)
        good.clear()
        for name in ("Newchannel", "Newstate", "Hangup"):
            server.emit(name, [("Uniqueid", "8.1"), ("Linkedid", "8.0")])
        await until(lambda: "Hangup" in good)
        assert good == ["Newchannel", "Newstate", "Hangup"]
        assert client.stats.handler_errors == 2
        assert "call 8.0" in caplog.text and "boom" in caplog.text
        assert client.connected


async def test_per_call_order_is_kept_with_async_handlers() -> None:
    async with fake_server() as server, client_for(server, workers=4) as client:
        got: dict[str, list[int]] = {}
        stamps: list[datetime] = []

        async def handler(msg: AmiMessage, at: datetime) -> None:
            call = msg.get("Linkedid")
            if call is None:
                return
            await asyncio.sleep(random.random() / 500)
            got.setdefault(call, []).append(int(msg["Seq"]))
            stamps.append(at)

        client.on_event(handler)
        calls = [f"900.{i}" for i in range(6)]
        sent = 0
        for seq in range(40):
            for call in calls:
                server.emit("VarSet", [("Uniqueid", call), ("Linkedid", call), ("Seq", str(seq))])
                sent += 1
        await until(lambda: sum(map(len, got.values())) == sent)
        for call in calls:
            assert got[call] == list(range(40)), call
        assert all(s.tzinfo is UTC for s in stamps)


async def test_slow_handler_stalls_neither_the_reader_nor_other_calls() -> None:
    async with fake_server() as server, client_for(server, workers=4) as client:
        release = asyncio.Event()
        fast: list[str] = []

        async def handler(msg: AmiMessage, at: datetime) -> None:
            if msg.get("Linkedid") == "slow.1":
                await release.wait()
            elif msg.event == "VarSet":
                fast.append(msg["Linkedid"])

        client.on_event(handler)
        server.emit("Newchannel", [("Uniqueid", "slow.1"), ("Linkedid", "slow.1")])
        # another call certainly on another shard than the blocked one
        shard_of = {i: hash(f"fast.{i}") % 4 for i in range(20)}
        other = next(i for i, s in shard_of.items() if s != hash("slow.1") % 4)
        for _ in range(200):
            server.emit("VarSet", [("Uniqueid", "slow.1"), ("Linkedid", "slow.1")])
            server.emit("VarSet", [("Uniqueid", f"fast.{other}"), ("Linkedid", f"fast.{other}")])
        await until(lambda: len(fast) == 200)
        for _ in range(3):
            assert (await client.action("Ping", timeout=0.5))["Ping"] == "Pong"
        assert client.stats.queue_depth >= 200  # the blocked call's backlog
        release.set()
        await client.drain(timeout=3)
        assert client.stats.queue_depth == 0


async def test_queue_bound_pauses_reading_and_loses_nothing() -> None:
    async with fake_server() as server, client_for(server, queue_size=100, workers=2) as client:
        release = asyncio.Event()
        seen: list[int] = []

        async def handler(msg: AmiMessage, at: datetime) -> None:
            if msg.event != "VarSet":
                return
            await release.wait()
            seen.append(int(msg["Seq"]))

        client.on_event(handler)
        await client.drain(timeout=2)
        for seq in range(1000):
            server.emit("VarSet", [("Uniqueid", "q.1"), ("Linkedid", "q.1"), ("Seq", str(seq))])
        await until(lambda: client.stats.read_pauses >= 1)
        await asyncio.sleep(0.05)
        depth_while_paused = client.stats.queue_depth
        assert depth_while_paused < 1000  # the socket was not drained into memory
        release.set()
        await until(lambda: len(seen) == 1000, timeout=5)
        assert seen == list(range(1000))
        assert client.connected


async def test_replayed_trace_reaches_handlers_intact_through_tiny_reads() -> None:
    frames = trace_messages(FIXTURES / "asyncagi_ivr.ami.txt")
    expected = AmiParser(expect_banner=False).feed(b"".join(frames))
    async with fake_server() as server, client_for(server) as client:
        got: list[AmiMessage] = []
        client.on_event(lambda m, at: got.append(m))
        await client.drain(timeout=2)
        got.clear()
        server.split = 97
        server.split_delay = 0
        server.push_raw(b"".join(frames))
        await until(lambda: len(got) == len(expected), timeout=5)
        by_call: dict[str, list[AmiMessage]] = {}
        for m in expected:
            by_call.setdefault(m.get("Linkedid") or m.get("Uniqueid") or "", []).append(m)
        got_by_call: dict[str, list[AmiMessage]] = {}
        for m in got:
            got_by_call.setdefault(m.get("Linkedid") or m.get("Uniqueid") or "", []).append(m)
        assert got_by_call == by_call


# -- recording -----------------------------------------------------------------------------------
async def test_recording_masks_the_secret_and_keeps_one_frame_per_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "rec.ami.txt"
    writer = TraceWriter(path)
    async with fake_server() as server, client_for(server, record=writer) as client:
        server.emit("Newchannel", [("CallerIDName", "Jürgen"), ("Uniqueid", "1.2")])
        await client.action("Ping")
        await client.drain(timeout=2)
    writer.close()
    raw = path.read_bytes()
    assert SECRET.encode() not in raw
    assert SECRET not in caplog.text
    frames = read_trace(path)
    sent = [f.data for f in frames if f.direction == "send"]
    assert sent[0].startswith(b"Action: Login\r\n") and b"Secret: ********\r\n" in sent[0]
    recv = [f.data for f in frames if f.direction == "recv"]
    assert recv[0] == b"Asterisk Call Manager/11.0.0\r\n"
    msgs = AmiParser().feed(b"".join(recv))
    assert len(msgs) == len(recv)
    assert any(m.get("CallerIDName") == "Jürgen" for m in msgs)
    assert any(f.direction == "note" for f in frames)


async def test_workers_zero_keeps_the_exact_pbx_order_across_calls() -> None:
    async with fake_server() as server, client_for(server, workers=0) as client:
        order: list[str] = []

        async def handler(msg: AmiMessage, at: datetime) -> None:
            if msg.get("Seq") is not None:
                await asyncio.sleep(0)
                order.append(msg["Seq"])

        client.on_event(handler)
        expected = []
        for seq in range(120):
            if seq % 3 == 0:
                server.emit("QueueMemberStatus", [("Interface", "PJSIP/1001"), ("Seq", str(seq))])
            else:
                call = f"77.{seq % 5}"
                server.emit("VarSet", [("Uniqueid", call), ("Linkedid", call), ("Seq", str(seq))])
            expected.append(str(seq))
        await until(lambda: len(order) == len(expected))
        assert order == expected
