"""EslClient over loopback against the fake FreeSWITCH (real wire format, real sockets)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from callcenter.pbx.freeswitch.client import (
    CommandFailed,
    CommandTimeout,
    ConnectionLost,
    EslClient,
    LoginError,
)
from callcenter.pbx.freeswitch.message import EslEvent, EslFrame
from callcenter.pbx.freeswitch.protocol import EslParser, decode_event
from callcenter.pbx.freeswitch.trace import TraceWriter, read_trace
from callcenter.sim.esl_server import EslSession, FakeEslServer, render_event, trace_events, trace_frames

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "freeswitch"
TRACES = sorted(FIXTURES.glob("*.esl.txt")) + sorted((FIXTURES / "checks").glob("*.esl.txt"))
PASSWORD = "s3cr3t-Pa55 word"

pytestmark = pytest.mark.timeout(20)


@asynccontextmanager
async def fake_server(**kw: Any) -> AsyncIterator[FakeEslServer]:
    server = FakeEslServer(password=PASSWORD, **kw)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@asynccontextmanager
async def client_for(server: FakeEslServer, *, start: bool = True, **kw: Any) -> AsyncIterator[EslClient]:
    opts: dict[str, Any] = {
        "heartbeat_timeout": None,
        "reconnect_min": 0.02,
        "reconnect_max": 0.1,
        "command_timeout": 2.0,
        "connect_timeout": 2.0,
    }
    opts.update(kw)
    password = opts.pop("password", PASSWORD)
    client = EslClient("127.0.0.1", server.port, password, **opts)
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


def commands(server: FakeEslServer) -> list[str]:
    return [f.command or "" for f in server.received]


# -- the fake server is FreeSWITCH-shaped -----------------------------------------------------------
@pytest.mark.parametrize("path", TRACES, ids=lambda p: p.name.split(".esl")[0])
def test_fake_server_renders_captured_events_byte_for_byte(path: Path) -> None:
    # Decoding a captured event and rendering it again gives FreeSWITCH's exact bytes (URL
    # encoding, repeated headers, inner Content-Length, cJSON duplicates): what the fake sends
    # is what FreeSWITCH sends.
    for raw in trace_frames(path):
        (frame,) = EslParser().feed(raw)
        event = decode_event(frame, lazy=False)
        assert render_event(event.items(), event.body, frame.content_type.rsplit("-", 1)[1]) == raw


# -- login ------------------------------------------------------------------------------------------
async def test_auth_ok_subscribes_and_runs_on_connected(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with fake_server() as server:
        connected: list[bool] = []
        client = EslClient("127.0.0.1", server.port, PASSWORD, heartbeat_timeout=None)

        async def hook() -> None:
            connected.append(client.connected)

        client.on_connected(hook)
        try:
            await client.start()
            assert connected == [True]  # hooks ran (authenticated, subscribed) before start() returned
            assert client.connected and server.logins == 1
            assert commands(server) == [f"auth {PASSWORD}", "event json ALL"]
            assert PASSWORD not in repr(client)
            assert await client.api("hostname") == "sim"
        finally:
            await client.close()
        assert not client.connected
        await until(lambda: "exit" in commands(server))  # polite goodbye
    assert PASSWORD not in caplog.text


async def test_wrong_password_raises_login_error_with_freeswitch_text(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with fake_server() as server:
        client = EslClient("127.0.0.1", server.port, "wrong-password", heartbeat_timeout=None)
        with pytest.raises(LoginError, match="-ERR invalid") as info:
            await client.start()
        assert "wrong-password" not in str(info.value)
        assert not client.connected and server.logins == 0
        await client.close()
        await until(lambda: not server.sessions)  # FreeSWITCH hangs up after -ERR invalid
    assert "wrong-password" not in caplog.text


async def test_acl_rejection_is_a_login_error() -> None:
    async with fake_server() as server:
        server.reject = True
        client = EslClient("127.0.0.1", server.port, PASSWORD, heartbeat_timeout=None)
        with pytest.raises(LoginError, match="Access Denied"):
            await client.start()
        await client.close()


async def test_connection_refused_is_an_oserror() -> None:
    async with fake_server() as server:
        port = server.port
    client = EslClient("127.0.0.1", port, PASSWORD, connect_timeout=1)
    with pytest.raises(OSError):
        await client.start()
    await client.close()


async def test_a_silent_port_times_out() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = EslClient("127.0.0.1", port, PASSWORD, connect_timeout=0.3)
        with pytest.raises(TimeoutError, match="no ESL greeting"):
            await client.start()
        await client.close()
    finally:
        server.close()


async def test_refused_subscription_fails_start() -> None:
    async with fake_server() as server:
        server.on_command("event", lambda s, f: s.reply("-ERR permission denied"))
        client = EslClient("127.0.0.1", server.port, PASSWORD, heartbeat_timeout=None)
        with pytest.raises(CommandFailed, match="permission denied"):
            await client.start()
        await client.close()


async def test_subscriptions_and_filters_include_what_bgapi_and_the_watchdog_need() -> None:
    async with fake_server() as server:
        seen: list[str] = []
        async with client_for(
            server,
            heartbeat_timeout=5,
            event_format="plain",
            subscriptions=("CHANNEL_CREATE", "CUSTOM", "callcenter::info"),
            filters=[("Event-Name", "CHANNEL_CREATE"), ("Event-Subclass", "callcenter::info")],
        ) as client:
            client.on_event(lambda e, at: seen.append(e.name))
            assert commands(server)[1:] == [
                "event plain CHANNEL_CREATE BACKGROUND_JOB HEARTBEAT CUSTOM callcenter::info",
                "filter Event-Name CHANNEL_CREATE",
                "filter Event-Subclass callcenter::info",
                "filter Event-Name BACKGROUND_JOB",
                "filter Event-Name HEARTBEAT",
            ]
            ch = server.add_channel(caller_number="2125550123")
            server.emit("CHANNEL_ANSWER", channel=ch)  # not subscribed
            server.emit("CUSTOM", [("CC-Action", "members-count")], subclass="other::thing")  # other subclass
            server.emit("CHANNEL_CREATE", channel=ch)
            server.emit("CUSTOM", [("CC-Action", "member-queue-start")], subclass="callcenter::info")
            server.heartbeat()
            assert (await client.bgapi("create_uuid", timeout=2)).count("-") == 4
            await client.drain(timeout=2)
            assert seen == ["CHANNEL_CREATE", "CUSTOM", "HEARTBEAT", "BACKGROUND_JOB"]


# -- api / bgapi correlation ------------------------------------------------------------------------
async def test_pipelined_api_replies_match_in_order_with_interleaved_events() -> None:
    async with fake_server() as server:

        async def echo(session: EslSession, arg: str | None) -> str:
            # Events fired while the command runs are held back and follow the reply, as on a
            # real listener; slower commands do not let later ones overtake (one at a time).
            server.emit("CUSTOM", [("CC-Action", f"before-{arg}")], subclass="callcenter::info")
            await asyncio.sleep(random.random() * 0.02)
            return f"echo {arg}\n"

        server.on_api("echo", echo)
        seen: list[tuple[str, str | None]] = []
        async with client_for(server) as client:
            client.on_event(lambda e, at: seen.append((e.name, e.get("CC-Action") or e.get("API-Command-Argument"))))
            results = await asyncio.gather(*(client.api(f"echo {i}") for i in range(20)))
            assert results == [f"echo {i}\n" for i in range(20)]
            await client.drain(timeout=2)
        # Each command's events arrive after its reply, in command order.
        expected = []
        for i in range(20):
            expected += [("CUSTOM", f"before-{i}"), ("API", str(i))]
        assert seen == expected
        assert client.stats.late_replies == 0 and client.stats.unmatched_replies == 0


async def test_api_output_is_returned_not_raised() -> None:
    async with fake_server() as server, client_for(server) as client:
        assert await client.api("no_such_thing now") == "-ERR no_such_thing Command not found!\n"
        assert await client.api("uuid_kill 00000000-0000-0000-0000-000000000000") == "-ERR No such channel!\n"
        assert await client.api("show channels as json") == '{"row_count": 0}\n'
        assert len(await client.api("create_uuid")) == 36  # no final newline: counted, not line-read


async def test_api_refused_by_freeswitch_is_command_failed() -> None:
    async with fake_server() as server:
        server.on_command("api", lambda s, f: s.reply("-ERR permission denied"))
        async with client_for(server) as client:
            with pytest.raises(CommandFailed, match="permission denied") as info:
                await client.api("status")
            assert info.value.reply.reply_text == "-ERR permission denied"


async def test_bgapi_correlates_by_our_job_uuid_out_of_order() -> None:
    async with fake_server() as server:

        async def slow(session: EslSession, arg: str | None) -> str:
            await asyncio.sleep(float(arg or 0))
            return f"+OK slept {arg}\n"

        server.on_api("sleep", slow)
        jobs: list[tuple[str | None, str | None]] = []
        async with client_for(server) as client:
            client.on_event(lambda e, at: jobs.append((e.job_uuid, e.body)) if e.name == "BACKGROUND_JOB" else None)
            # The first job finishes last; each caller still gets its own result.
            results = await asyncio.gather(client.bgapi("sleep 0.2"), client.bgapi("sleep 0.01"), client.api("status"))
            assert results[0] == "+OK slept 0.2\n" and results[1] == "+OK slept 0.01\n"
            assert results[2].startswith("UP ")
            await client.drain(timeout=2)
        sent = [f.headers.get("Job-UUID") for f in server.received if (f.command or "").startswith("bgapi")]
        assert all(sent) and len(set(sent)) == 2
        # BACKGROUND_JOB events are handed to handlers too, in completion order.
        assert [j for j, _ in jobs] == [sent[1], sent[0]]
        assert [b for _, b in jobs] == ["+OK slept 0.01\n", "+OK slept 0.2\n"]


async def test_bgapi_follows_a_job_uuid_chosen_by_freeswitch() -> None:
    async with fake_server() as server:
        default = server._commands["bgapi"]

        def ignore_ours(session: EslSession, frame: EslFrame) -> None:
            # An ESL server that ignores the Job-UUID header and picks its own.
            frame.headers.pop("Job-UUID", None)
            default(session, frame)

        server.on_command("bgapi", ignore_ours)
        async with client_for(server) as client:
            assert (await client.bgapi("status", timeout=2)).startswith("UP ")


async def test_command_timeout_does_not_shift_later_replies() -> None:
    async with fake_server() as server:
        server.delays = {"api status": 0.3}
        async with client_for(server) as client:
            with pytest.raises(CommandTimeout, match="api status"):
                await client.api("status", timeout=0.05)
            # FreeSWITCH answers in order: the late status reply comes first and must be
            # dropped, not returned as the answer to hostname.
            assert await client.api("hostname") == "sim"
            assert client.stats.late_replies == 1 and client.stats.command_timeouts == 1
            assert client.connected


async def test_cancelled_command_keeps_its_place() -> None:
    async with fake_server() as server:
        server.delays = {"api status": 0.2}
        async with client_for(server) as client:
            task = asyncio.ensure_future(client.api("status"))
            await until(lambda: server.count("api status") == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await client.api("create_uuid") != ""
            assert len(await client.api("create_uuid")) == 36


async def test_bgapi_job_timeout() -> None:
    async with fake_server() as server:

        async def never(session: EslSession, arg: str | None) -> str:
            await asyncio.sleep(30)
            return "+OK\n"

        server.on_api("never", never)
        async with client_for(server) as client:
            with pytest.raises(CommandTimeout, match="no BACKGROUND_JOB"):
                await client.bgapi("never", timeout=0.1)
            assert await client.api("hostname") == "sim"


# -- sendmsg -----------------------------------------------------------------------------------------
async def test_sendmsg_execute_and_application_uuid() -> None:
    async with fake_server() as server:
        ch = server.add_channel(caller_number="2125550123", destination="5550199")
        seen: list[EslEvent] = []
        async with client_for(server) as client:
            client.on_event(lambda e, at: seen.append(e))
            reply = await client.sendmsg(ch.uuid, "set", "cc_after_ivr=yes", event_uuid="app-1")
            assert reply.reply_text == "+OK"
            await until(lambda: any(e.name == "CHANNEL_EXECUTE_COMPLETE" for e in seen))
            frame = next(f for f in server.received if (f.command or "").startswith("sendmsg"))
            assert frame.headers["event-lock"] == "true" and frame.headers["Event-UUID"] == "app-1"
            done = next(e for e in seen if e.name == "CHANNEL_EXECUTE_COMPLETE")
            assert done["Application-UUID"] == "app-1" and done["Unique-ID"] == ch.uuid
            assert ch.variables["cc_after_ivr"] == "yes"
            with pytest.raises(CommandFailed, match=r"-ERR invalid session id \[dead-uuid\]"):
                await client.sendmsg("dead-uuid", "playback", "tone_stream://%(200,0,800)")
            assert client.stats.command_errors == 1


# -- link loss, reconnect, watchdog, disconnect notice ------------------------------------------------
async def test_reconnect_mid_command_fails_it_and_never_resends() -> None:
    async with fake_server() as server:
        server.delays = {"api slow": 10}
        server.on_api("slow", lambda s, a: "+OK\n")

        async def never(session: EslSession, arg: str | None) -> str:
            await asyncio.sleep(30)
            return "+OK\n"

        server.on_api("never", never)
        connects = 0
        reasons: list[Exception | None] = []

        async def hook() -> None:
            nonlocal connects
            connects += 1

        async with client_for(server, start=False, filters=[("Event-Name", "CHANNEL_CREATE")]) as client:
            client.on_connected(hook)
            client.on_disconnected(reasons.append)
            await client.start()
            # A job FreeSWITCH has accepted (+OK Job-UUID) and still runs, a command it is still
            # running, and one queued behind it: all three fail when the link drops.
            job = asyncio.ensure_future(client.bgapi("never"))
            await until(lambda: client.stats.frames >= 4)  # auth/request, 2 replies, bgapi's +OK
            task = asyncio.ensure_future(client.api("slow"))
            queued = asyncio.ensure_future(client.bgapi("status"))
            await until(lambda: server.count("api slow") == 1)
            server.drop_all()
            for pending in (job, task, queued):
                with pytest.raises(ConnectionLost):
                    await pending
            await until(lambda: connects == 2 and client.connected)
            # Re-authenticated, re-subscribed and re-filtered; the command was not sent again.
            assert server.logins == 2
            assert server.count("event json ALL") == 2 and server.count("filter Event-Name CHANNEL_CREATE") == 2
            server.delays = {}
            assert await client.api("hostname") == "sim"
            assert server.count("api slow") == 1 and server.count("bgapi never") == 1
            assert server.count("bgapi status") == 1
            assert len(reasons) == 1 and isinstance(reasons[0], ConnectionLost)
            assert client.stats.reconnects == 1


async def test_no_command_while_disconnected() -> None:
    async with fake_server() as server, client_for(server, reconnect_min=5, reconnect_max=5) as client:
        server.drop_all()
        await until(lambda: not client.connected)
        with pytest.raises(ConnectionLost, match="not connected"):
            await client.api("status")


async def test_heartbeat_watchdog_drops_a_silent_link_and_reconnects() -> None:
    async with fake_server() as server:
        server.heartbeat_interval = 0.05
        connects = 0

        async def hook() -> None:
            nonlocal connects
            connects += 1

        async with client_for(server, start=False, heartbeat_timeout=0.4) as client:
            client.on_connected(hook)
            await client.start()
            await asyncio.sleep(0.6)  # heartbeats keep it alive
            assert client.stats.heartbeat_timeouts == 0 and client.stats.reconnects == 0
            server.sessions[0].muted = True  # half-open: the socket is up, nothing comes
            await until(lambda: client.stats.heartbeat_timeouts == 1)
            await until(lambda: connects == 2 and client.connected)
            assert client.stats.reconnects == 1


async def test_disconnect_notice_fails_commands_at_once_and_reconnects() -> None:
    async with fake_server() as server:
        server.delays = {"api slow": 10}
        reasons: list[Exception | None] = []
        async with client_for(server) as client:
            client.on_disconnected(reasons.append)
            task = asyncio.ensure_future(client.api("slow"))
            await until(lambda: server.count("api slow") == 1)
            # A shutdown: the notice, then FreeSWITCH closes (events of the command are held).
            for s in list(server.sessions):
                s.write(b"Content-Type: text/disconnect-notice\nContent-Length: 23\n\nDisconnected, goodbye.\n")
            with pytest.raises(ConnectionLost, match="Disconnected, goodbye"):
                await task
            await until(lambda: client.connected and client.stats.reconnects == 1)
            assert client.stats.disconnect_notices == 1
            assert "Disconnected, goodbye" in str(reasons[0])


async def test_linger_notice_is_not_a_disconnect() -> None:
    async with fake_server() as server, client_for(server) as client:
        for s in server.sessions:
            s.write(b"Content-Type: text/disconnect-notice\nContent-Disposition: linger\nContent-Length: 0\n\n")
        assert await client.api("hostname") == "sim"
        assert client.stats.disconnect_notices == 0 and client.stats.reconnects == 0


async def test_framing_loss_drops_the_link_and_recovers() -> None:
    async with fake_server() as server, client_for(server) as client:
        server.push_raw(b"Content-Length: twelve\nContent-Type: text/event-json\n\n{}")
        await until(lambda: client.stats.protocol_errors == 1)
        await until(lambda: client.connected and client.stats.reconnects == 1)


async def test_stray_and_mismatched_replies() -> None:
    async with fake_server() as server, client_for(server) as client:
        for s in server.sessions:
            s.reply("+OK nobody asked")
        await until(lambda: client.stats.unmatched_replies == 1)
        assert client.connected
        # An api/response can only answer an api: anything else means the streams are out of step.
        server.on_command("filter", lambda s, f: s.api_response("+OK\n"))
        with pytest.raises(ConnectionLost, match="out of step"):
            await client.command("filter Unique-ID abc")
        await until(lambda: client.connected and client.stats.reconnects == 1)


# -- dispatch ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["json", "plain"])
async def test_capture_events_arrive_in_order_and_intact(fmt: str) -> None:
    events = trace_events(FIXTURES / "answered_caller_hangup.esl.txt") + trace_events(
        FIXTURES / "sendmsg_ivr.esl.txt"
    )
    async with fake_server() as server:
        rng = random.Random(7)
        server.split = lambda data: [rng.randrange(len(data)) for _ in range(2)]  # reads cut anywhere
        server.split_delay = 0
        seen: list[EslEvent] = []
        stamps: list[datetime] = []
        async with client_for(server, event_format=fmt) as client:

            async def slow_sometimes(e: EslEvent, at: datetime) -> None:
                if len(seen) % 50 == 0:
                    await asyncio.sleep(0.001)  # async handlers are awaited in order

            def record(e: EslEvent, at: datetime) -> None:
                seen.append(e)
                stamps.append(at)

            client.on_event(record)
            client.on_event(slow_sometimes)
            for ev in events:
                server.push_event(ev)
            await until(lambda: len(seen) == len(events), timeout=10)
            await client.drain(timeout=2)
        assert {e.format for e in seen} == {fmt}
        assert [e.items() for e in seen] == [e.items() for e in events]
        assert [e.body for e in seen] == [e.body for e in events]
        assert stamps == sorted(stamps)
        assert client.stats.decode_errors == 0 and client.stats.malformed == 0


async def test_handler_error_is_isolated_and_logged_with_the_call(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    async with fake_server() as server:
        ch = server.add_channel(caller_number="2125550123")
        got: list[str] = []

        def bad(e: EslEvent, at: datetime) -> None:
            if e.name == "CHANNEL_ANSWER":
                raise RuntimeError("boom")

        async with client_for(server) as client:
            client.on_event(bad)
            client.on_event(lambda e, at: got.append(e.name))
            server.emit("CHANNEL_CREATE", channel=ch)
            server.emit("CHANNEL_ANSWER", channel=ch)
            server.emit("CHANNEL_HANGUP", channel=ch)
            await until(lambda: len(got) == 3)
            assert got == ["CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_HANGUP"]
            assert client.stats.handler_errors == 1
    assert ch.uuid in caplog.text and "CHANNEL_ANSWER" in caplog.text and "boom" in caplog.text


async def test_backpressure_pauses_reading_and_loses_nothing() -> None:
    async with fake_server() as server:
        ch = server.add_channel(caller_number="1")
        seen: list[str] = []

        async def slow(e: EslEvent, at: datetime) -> None:
            seen.append(e["Event-Sequence"])
            if len(seen) % 20 == 0:
                await asyncio.sleep(0.005)

        async with client_for(server, queue_size=40) as client:
            client.on_event(slow)
            sent = [server.emit("CHANNEL_STATE", channel=ch) for _ in range(600)]
            await until(lambda: len(seen) == 600, timeout=10)
            assert seen == [dict(h)["Event-Sequence"] for h in sent]
            assert client.stats.read_pauses >= 1 and client.connected


async def test_utf8_split_by_the_socket() -> None:
    async with fake_server() as server:
        server.on_api("name", lambda s, a: "Иванова Jürgen\n")
        server.split = 1  # one byte per write: every multi-byte character is cut
        server.split_delay = 0
        async with client_for(server) as client:
            assert await client.api("name") == "Иванова Jürgen\n"
            ch = server.add_channel(caller_number="1", caller_name="Иванова")
            got: list[str | None] = []
            client.on_event(
                lambda e, at: got.append(e.get("Caller-Caller-ID-Name")) if e.name == "CHANNEL_CREATE" else None
            )
            server.emit("CHANNEL_CREATE", channel=ch)
            await until(lambda: got == ["Иванова"])


# -- recording ---------------------------------------------------------------------------------------
async def test_record_writes_the_shared_trace_format_without_the_password(tmp_path: Path) -> None:
    path = tmp_path / "session.esl.txt"
    writer = TraceWriter(path)
    async with fake_server() as server:
        ch = server.add_channel(caller_number="2125550123", caller_name="Caller 2125550123")
        async with client_for(server, record=writer, event_format="plain") as client:
            server.emit("CHANNEL_CREATE", channel=ch)
            assert await client.api("hostname") == "sim"
            await client.drain(timeout=2)
    writer.close()
    frames = read_trace(path)
    assert PASSWORD.encode() not in path.read_bytes()
    sent = [f.data for f in frames if f.direction == "send"]
    assert sent[:3] == [b"auth ********\n\n", b"event plain ALL\n\n", b"api hostname\n\n"]
    assert sent[-1] == b"exit\n\n"
    recv = [f.data for f in frames if f.direction == "recv"]
    parsed = EslParser().feed(b"".join(recv))
    assert len(parsed) == len(recv)  # one complete message per RECV frame
    assert parsed[0].content_type == "auth/request"
    create = next(decode_event(f) for f in parsed if f.content_type == "text/event-plain")
    assert create["Caller-Caller-ID-Name"] == "Caller 2125550123"
    assert any(f.direction == "note" and "connected to" in f.note for f in frames)
