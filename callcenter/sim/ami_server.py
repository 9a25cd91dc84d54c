"""A loopback fake Asterisk Manager Interface (AMI) server, for tests and local demos.

It speaks the wire protocol the way Asterisk 22 does in the captures under
``tests/fixtures/asterisk`` (greeting line, ``Response:``/``ActionID:``/``Message:`` order,
``EventList`` lists with their ``*Complete`` event, AsyncAGI's ``Added AGI command to queue``
followed by ``AGIExecStart``/``AGIExecEnd``/``AsyncAGIExec``, failed logins answered late and
followed by a hang-up) so that the client is tested against the real shapes, not our idea of them.

Structure, so it can grow into a PBX simulator:

* :class:`FakeAmiServer` owns the listening socket, the sessions, the PBX state
  (``channels``, ``queues``, ``globals``, ``cli``) and the action table. Every action is handled
  by a coroutine/function ``handler(session, action)``; ``on_action(name, handler)`` replaces
  one (scriptable tests), the defaults are the ``_act_*`` methods.
* :class:`AmiSession` is one client connection: ``respond()``, ``event()``, ``send_list()``,
  ``write()``, ``drop()``. Actions of one session are handled one after another (like
  Asterisk's per-session thread); AGI commands run on a per-channel queue, concurrently.
* Events go to every logged-in session with ``Events: on``: ``emit(name, fields, channel=)``,
  raw bytes with ``push_raw()`` (e.g. ``trace_messages()`` of a fixture).

Fault knobs (attributes, change them any time): ``split`` (cut every write into pieces - an
int size or a function returning cut offsets - sent ``split_delay`` s apart so they arrive as
separate reads), ``reply_delay`` / ``action_delays`` (slow PBX), ``answer_pings`` (False:
Pings are swallowed), ``mute`` (nothing is written any more: a half-open link),
``login_failure_delay`` (Asterisk sleeps 1 s before refusing a login), ``drop_all()``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from callcenter.pbx.asterisk.message import AmiMessage
from callcenter.pbx.asterisk.protocol import AmiParser, encode_fields
from callcenter.pbx.asterisk.trace import read_trace

__all__ = ["AmiSession", "FakeAmiServer", "FakeChannel", "FakeMember", "FakeQueue", "trace_messages"]

log = logging.getLogger(__name__)

ActionHandler = Callable[["AmiSession", AmiMessage], Awaitable[None] | None]
Fields = Sequence[tuple[str, str]] | Mapping[str, str]

BANNER = "Asterisk Call Manager/11.0.0"

# Privilege header per event class, as Asterisk 22 prints it (traces).
_PRIVILEGE = {
    "FullyBooted": "system,all",
    "SuccessfulAuth": "security,all",
    "VarSet": "dialplan,all",
    "Newexten": "dialplan,all",
    "AsyncAGIStart": "agi,all",
    "AsyncAGIExec": "agi,all",
    "AsyncAGIEnd": "agi,all",
    "AGIExecStart": "agi,all",
    "AGIExecEnd": "agi,all",
    "DTMFEnd": "dtmf,all",
    "DeviceStateChange": "call,all",
    "QueueMemberStatus": "agent,all",
    "AgentCalled": "agent,all",
    "AgentConnect": "agent,all",
    "AgentComplete": "agent,all",
    "AgentRingNoAnswer": "agent,all",
    "QueueCallerJoin": "agent,all",
    "QueueCallerLeave": "agent,all",
    "QueueCallerAbandon": "agent,all",
    "QueueMemberPause": "agent,all",
    "QueueMemberAdded": "agent,all",
    "QueueMemberRemoved": "agent,all",
    "HangupHandlerPush": "dialplan,all",
    "HangupHandlerRun": "dialplan,all",
    "RTCPSent": "reporting,all",
    "RequestBadFormat": "security,all",
}

# AsyncAGI results (URL-encoded by Asterisk) by command verb, as in the asyncagi traces.
_AGI_DEFAULT_RESULTS = {
    "STREAM FILE": "200 result=0 endpos=11360\n",
    "GET DATA": "200 result=1\n",
    "SET VARIABLE": "200 result=1\n",
    "ASYNCAGI BREAK": "200 result=0\n",
}


def ami_uri_encode(text: str) -> str:
    """Asterisk's ``ast_uri_encode`` with the http flavour (alnum and ``-_.!~*'()`` kept)."""
    return quote(text, safe="-_.!~*'()")


@dataclass
class FakeChannel:
    """A channel as AMI channel snapshots show it (header order as in Asterisk 22)."""

    name: str
    uniqueid: str
    linkedid: str = ""
    state: int = 6
    state_desc: str = "Up"
    caller_num: str = ""
    caller_name: str = ""
    connected_num: str = "<unknown>"
    connected_name: str = "<unknown>"
    language: str = "en"
    account_code: str = ""
    context: str = "from-pstn"
    exten: str = "s"
    priority: int = 1
    application: str = ""
    application_data: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    in_agi: bool = False

    def __post_init__(self) -> None:
        if not self.linkedid:
            self.linkedid = self.uniqueid

    def snapshot_text(self) -> str:
        """``snapshot()`` as AMI header lines (``Key: value`` CRLF each), values unchecked."""
        return (
            f"Channel: {self.name}\r\nChannelState: {self.state}\r\nChannelStateDesc: {self.state_desc}\r\n"
            f"CallerIDNum: {self.caller_num}\r\nCallerIDName: {self.caller_name}\r\n"
            f"ConnectedLineNum: {self.connected_num}\r\nConnectedLineName: {self.connected_name}\r\n"
            f"Language: {self.language}\r\nAccountCode: {self.account_code}\r\nContext: {self.context}\r\n"
            f"Exten: {self.exten}\r\nPriority: {self.priority}\r\nUniqueid: {self.uniqueid}\r\n"
            f"Linkedid: {self.linkedid}\r\n"
        )

    def snapshot(self, prefix: str = "") -> list[tuple[str, str]]:
        p = prefix
        return [
            (f"{p}Channel", self.name),
            (f"{p}ChannelState", str(self.state)),
            (f"{p}ChannelStateDesc", self.state_desc),
            (f"{p}CallerIDNum", self.caller_num),
            (f"{p}CallerIDName", self.caller_name),
            (f"{p}ConnectedLineNum", self.connected_num),
            (f"{p}ConnectedLineName", self.connected_name),
            (f"{p}Language", self.language),
            (f"{p}AccountCode", self.account_code),
            (f"{p}Context", self.context),
            (f"{p}Exten", self.exten),
            (f"{p}Priority", str(self.priority)),
            (f"{p}Uniqueid", self.uniqueid),
            (f"{p}Linkedid", self.linkedid),
        ]


@dataclass
class FakeMember:
    interface: str
    name: str = ""
    penalty: int = 0
    paused: bool = False
    paused_reason: str = ""
    status: int = 1  # device state: 1 NOT_INUSE, 2 INUSE, 6 RINGING
    membership: str = "static"


@dataclass
class FakeQueue:
    name: str
    strategy: str = "rrmemory"
    members: list[FakeMember] = field(default_factory=list)
    weight: int = 0


class AmiSession(asyncio.Protocol):
    """One client connection to the fake server."""

    _ids = itertools.count(1)

    def __init__(self, server: FakeAmiServer) -> None:
        self.server = server
        self.id = next(self._ids)
        self.transport: asyncio.Transport | None = None
        self.parser = AmiParser(expect_banner=False)
        self.authenticated = False
        self.username: str | None = None
        self.events_on = True
        self.closed = False
        self.muted = False  # this session only: a half-open link (see FakeAmiServer.mute)
        self.actions: list[AmiMessage] = []
        self._inbox: asyncio.Queue[AmiMessage] = asyncio.Queue()
        self._outq: deque[bytes] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._worker: asyncio.Task[None] | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.sessions.append(self)
        self._worker = asyncio.get_running_loop().create_task(self._work(), name=f"fake-ami-session-{self.id}")
        self.write(f"{self.server.banner}\r\n".encode())

    def data_received(self, data: bytes) -> None:
        for msg in self.parser.feed(data):
            self.actions.append(msg)
            self.server.received.append(msg)
            self._inbox.put_nowait(msg)
        self.server._notify()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self in self.server.sessions:
            self.server.sessions.remove(self)
        self.server._notify()
        for task in (self._worker, self._writer):
            if task is not None and task is not asyncio.current_task():
                task.cancel()

    # -- handling ------------------------------------------------------------------------------
    async def _work(self) -> None:
        while True:
            action = await self._inbox.get()
            try:
                await self.server._handle(self, action)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("fake AMI: handler for %s failed", action.get("Action"))

    # -- output --------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Write bytes, honouring the server's ``mute``/``split`` knobs, in order."""
        if self.closed or self.transport is None or self.server.mute or self.muted:
            return
        self.server.bytes_sent += len(data)
        pieces = self.server._split(data)
        if len(pieces) == 1 and not self._outq and self._writer is None:
            self.transport.write(data)
            return
        self._outq.extend(pieces)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_pieces())

    async def _write_pieces(self) -> None:
        try:
            while self._outq:
                piece = self._outq.popleft()
                if self.closed or self.transport is None:
                    return
                self.transport.write(piece)
                if self._outq:
                    await asyncio.sleep(self.server.split_delay)
        finally:
            self._writer = None

    def send(self, fields: Fields) -> None:
        self.write(encode_fields(fields))

    def respond(
        self,
        action: AmiMessage,
        response: str = "Success",
        message: str | None = None,
        fields: Fields = (),
    ) -> None:
        """``Response:``, ``ActionID:`` (if the action had one), ``Message:``, extra fields."""
        out: list[tuple[str, str]] = [("Response", response)]
        aid = action.get("ActionID")
        if aid is not None:
            out.append(("ActionID", aid))
        if message is not None:
            out.append(("Message", message))
        out.extend(fields.items() if isinstance(fields, Mapping) else fields)
        self.send(out)

    def event(self, name: str, fields: Fields = (), *, channel: FakeChannel | None = None) -> None:
        if not (self.authenticated and self.events_on):
            return
        self.write(self.server.render_event(name, fields, channel=channel))

    def send_list(
        self,
        action: AmiMessage,
        items: Iterable[tuple[str, Sequence[tuple[str, str]]]],
        complete_event: str,
        *,
        message: str,
        action_id_first: bool = False,
        extra_complete: Sequence[tuple[str, str]] = (),
    ) -> None:
        """An EventList reply: response ``EventList: start``, items, ``*Complete`` event.

        ``action_id_first``: CoreShowChannel/EndpointList put ActionID first, QueueParams/
        QueueMember/QueueSummary last (status_queries trace).
        """
        aid = action.get("ActionID") or ""
        self.respond(action, "Success", fields=[("EventList", "start"), ("Message", message)])
        n = 0
        for name, body in items:
            fields: list[tuple[str, str]] = [("Event", name)]
            if action_id_first:
                fields.append(("ActionID", aid))
                fields.extend(body)
            else:
                fields.extend(body)
                fields.append(("ActionID", aid))
            self.send(fields)
            n += 1
        self.send(
            [
                ("Event", complete_event),
                ("ActionID", aid),
                ("EventList", "Complete"),
                ("ListItems", str(n)),
                *extra_complete,
            ]
        )

    def drop(self) -> None:
        """Abort the TCP connection (no FIN handshake with pending data)."""
        if self.transport is not None:
            self.transport.abort()


class FakeAmiServer:
    def __init__(
        self,
        *,
        username: str = "ctl",
        secret: str = "ctlsecret",
        host: str = "127.0.0.1",
        port: int = 0,
        banner: str = BANNER,
    ) -> None:
        self.username = username
        self.secret = secret
        self.host = host
        self._port = port
        self.banner = banner
        self.sessions: list[AmiSession] = []
        self.received: list[AmiMessage] = []
        self.logins = 0
        self.bytes_sent = 0
        # PBX state (grows into the simulator)
        self.channels: dict[str, FakeChannel] = {}
        self.queues: dict[str, FakeQueue] = {}
        self.globals: dict[str, str] = {}
        self.cli: dict[str, str] = {"core show version": "Asterisk 22.10.1 built by sim"}
        # knobs
        self.split: int | Callable[[bytes], Sequence[int]] | None = None
        self.split_delay = 0.005
        self.reply_delay = 0.0
        self.action_delays: dict[str, float] = {}
        self.answer_pings = True
        self.mute = False
        self.login_failure_delay = 1.0
        self.agi_delay = 0.01
        self.originate_delay = 0.05
        self.originate_reason = 4  # 4 = answered
        self.agi_results: Callable[[str], str] | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._agi_queues: dict[str, asyncio.Queue[tuple[str, str]]] = {}
        self._seq = itertools.count(1)
        self._changed = asyncio.Event()
        self._handlers: dict[str, ActionHandler] = {
            "login": self._act_login,
            "logoff": self._act_logoff,
            "ping": self._act_ping,
            "events": self._act_events,
            "originate": self._act_originate,
            "getvar": self._act_getvar,
            "setvar": self._act_setvar,
            "agi": self._act_agi,
            "command": self._act_command,
            "hangup": self._act_hangup,
            "redirect": self._act_redirect,
            "coreshowchannels": self._act_coreshowchannels,
            "queuestatus": self._act_queuestatus,
            "queuesummary": self._act_queuesummary,
        }

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> FakeAmiServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: AmiSession(self), self.host, self._port)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = set(self._tasks)
        for s in list(self.sessions):
            tasks.update(t for t in (s._worker, s._writer) if t is not None)
            s.drop()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FakeAmiServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.sockets[0].getsockname()[1])

    # -- scripting -----------------------------------------------------------------------------
    def on_action(self, name: str, handler: ActionHandler) -> None:
        """Replace the handler of one action (case-insensitive, like Asterisk)."""
        self._handlers[name.lower()] = handler

    def default_handler(self, name: str) -> ActionHandler | None:
        return self._handlers.get(name.lower())

    def count(self, action: str) -> int:
        """How many times an action was received (all sessions)."""
        name = action.lower()
        return sum(1 for m in self.received if (m.get("Action") or "").lower() == name)

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; re-checked on every action, login and disconnect.

        Wrap in ``asyncio.timeout()``.
        """
        while not predicate():
            self._changed.clear()
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()

    def add_channel(self, name: str, **kw: Any) -> FakeChannel:
        if "uniqueid" not in kw:
            kw["uniqueid"] = f"{int(time.time())}.{next(self._seq)}"
        ch = FakeChannel(name, **kw)
        self.channels[name] = ch
        return ch

    # -- output to clients ---------------------------------------------------------------------
    def render_event(self, name: str, fields: Fields = (), *, channel: FakeChannel | None = None) -> bytes:
        out: list[tuple[str, str]] = [("Event", name), ("Privilege", _PRIVILEGE.get(name, "call,all"))]
        if channel is not None:
            out.extend(channel.snapshot())
        out.extend(fields.items() if isinstance(fields, Mapping) else fields)
        return encode_fields(out)

    def emit(self, name: str, fields: Fields = (), *, channel: FakeChannel | None = None) -> None:
        """Send an event to every logged-in session with events on."""
        data = self.render_event(name, fields, channel=channel)
        for s in list(self.sessions):
            if s.authenticated and s.events_on:
                s.write(data)

    def push_raw(self, data: bytes) -> None:
        """Write raw bytes to every logged-in session (e.g. replayed trace frames)."""
        for s in list(self.sessions):
            if s.authenticated:
                s.write(data)

    def drop_all(self) -> None:
        for s in list(self.sessions):
            s.drop()

    def _split(self, data: bytes) -> list[bytes]:
        split = self.split
        if split is None or len(data) <= 1:
            return [data]
        if isinstance(split, int):
            return [data[i : i + split] for i in range(0, len(data), split)]
        cuts = sorted({c for c in split(data) if 0 < c < len(data)})
        return [data[a:b] for a, b in itertools.pairwise([0, *cuts, len(data)])]

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- dispatch ------------------------------------------------------------------------------
    async def _handle(self, session: AmiSession, action: AmiMessage) -> None:
        name = (action.get("Action") or "").strip()
        key = name.lower()
        delay = self.action_delays.get(key, self.reply_delay)
        if delay:
            await asyncio.sleep(delay)
        if not name:
            session.respond(action, "Error", "Missing action in request")
            return
        if not session.authenticated and key not in ("login", "logoff", "challenge"):
            session.respond(action, "Error", "Permission denied")
            return
        handler = self._handlers.get(key)
        if handler is None:
            session.respond(
                action,
                "Error",
                f"Invalid/unknown command: {name}. Use Action: ListCommands to show available commands.",
            )
            return
        result = handler(session, action)
        if result is not None:
            await result

    # -- default actions (Asterisk 22 behaviour) ----------------------------------------------
    async def _act_login(self, session: AmiSession, action: AmiMessage) -> None:
        if session.authenticated:
            session.respond(action, "Success", "Already authenticated")
            return
        if action.get("Username") != self.username or action.get("Secret") != self.secret:
            # manager.c: sleep(1) before the error, then the session ends.
            await asyncio.sleep(self.login_failure_delay)
            session.respond(action, "Error", "Authentication failed")
            if session.transport is not None:
                session.transport.close()
            return
        session.authenticated = True
        session.username = self.username
        session.events_on = (action.get("Events") or "on").lower() not in ("off", "no", "false", "0")
        self.logins += 1
        self._notify()
        session.respond(action, "Success", "Authentication accepted")
        session.event("FullyBooted", [("Uptime", "1"), ("LastReload", "1"), ("Status", "Fully Booted")])
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime())
        peer = session.transport.get_extra_info("peername") if session.transport else None
        port = peer[1] if peer else 0
        session.event(
            "SuccessfulAuth",
            [
                ("EventTV", now),
                ("Severity", "Informational"),
                ("Service", "AMI"),
                ("EventVersion", "1"),
                ("AccountID", self.username),
                ("SessionID", f"0x{id(session):x}"),
                ("LocalAddress", f"IPV4/TCP/{self.host}/{self.port}"),
                ("RemoteAddress", f"IPV4/TCP/127.0.0.1/{port}"),
                ("UsingPassword", "0"),
                ("SessionTV", now),
            ],
        )

    def _act_logoff(self, session: AmiSession, action: AmiMessage) -> None:
        session.respond(action, "Goodbye", "Thanks for all the fish.")
        if session.transport is not None:
            session.transport.close()

    def _act_ping(self, session: AmiSession, action: AmiMessage) -> None:
        if not self.answer_pings:
            return
        session.respond(action, "Success", fields=[("Ping", "Pong"), ("Timestamp", f"{time.time():.6f}")])

    def _act_events(self, session: AmiSession, action: AmiMessage) -> None:
        mask = (action.get("EventMask") or "on").lower()
        session.events_on = mask not in ("off", "no", "false", "0")
        session.respond(action, "Success", fields=[("Events", "On" if session.events_on else "Off")])

    async def _act_originate(self, session: AmiSession, action: AmiMessage) -> None:
        is_async = (action.get("Async") or "").lower() in ("true", "yes", "1")
        if is_async:
            session.respond(action, "Success", "Originate successfully queued")
            self._spawn(self._originate_done(action))
        else:
            await self._originate_done(action, session)

    async def _originate_done(self, action: AmiMessage, session: AmiSession | None = None) -> None:
        await asyncio.sleep(self.originate_delay)
        tech = action.get("Channel") or "Local/s"
        ch = self.add_channel(
            f"{tech}-{next(self._seq):08x}",
            context=action.get("Context") or "default",
            exten=action.get("Exten") or "s",
            caller_num=tech.rsplit("/", 1)[-1],
        )
        ok = self.originate_reason == 4
        if session is not None:
            if ok:
                session.respond(action, "Success", "Originate successfully queued")
            else:
                session.respond(action, "Error", "Originate failed")
            return
        fields = [
            ("ActionID", action.get("ActionID") or ""),
            ("Response", "Success" if ok else "Failure"),
            ("Channel", ch.name if ok else tech),
            ("Context", ch.context),
            ("Exten", ch.exten),
            ("Reason", str(self.originate_reason)),
            ("Uniqueid", ch.uniqueid if ok else "<null>"),
            ("CallerIDNum", ch.caller_num),
            ("CallerIDName", ch.caller_name),
        ]
        self.emit("OriginateResponse", fields)

    def _act_getvar(self, session: AmiSession, action: AmiMessage) -> None:
        var = action.get("Variable") or ""
        chan = action.get("Channel")
        if chan:
            ch = self.channels.get(chan)
            if ch is None:
                session.respond(action, "Error", "No such channel")
                return
            value = ch.variables.get(var, "")
        else:
            value = self.globals.get(var, "")
        session.respond(action, "Success", fields=[("Variable", var), ("Value", value)])

    def _act_setvar(self, session: AmiSession, action: AmiMessage) -> None:
        var = action.get("Variable") or ""
        value = action.get("Value") or ""
        chan = action.get("Channel")
        if chan:
            ch = self.channels.get(chan)
            if ch is None:
                session.respond(action, "Error", "No such channel")
                return
            ch.variables[var] = value
            session.respond(action, "Success", "Variable Set")
            self.emit("VarSet", [("Variable", var), ("Value", value)], channel=ch)
        else:
            self.globals[var] = value
            session.respond(action, "Success", "Variable Set")

    def _act_agi(self, session: AmiSession, action: AmiMessage) -> None:
        chan = action.get("Channel") or ""
        ch = self.channels.get(chan)
        if ch is None:
            session.respond(action, "Error", f"Channel {chan} does not exist.")
            return
        session.respond(action, "Success", "Added AGI command to queue")
        queue = self._agi_queues.get(chan)
        if queue is None:
            queue = self._agi_queues[chan] = asyncio.Queue()
            self._spawn(self._agi_runner(ch, queue))
        queue.put_nowait((action.get("Command") or "", action.get("CommandID") or ""))

    async def _agi_runner(self, ch: FakeChannel, queue: asyncio.Queue[tuple[str, str]]) -> None:
        """Commands of one channel run one after another, as res_agi's async loop does."""
        while True:
            command, command_id = await queue.get()
            internal = str(random.randint(10**8, 2**31 - 1))  # AGIExecStart/End's own CommandId
            self.emit("AGIExecStart", [("CommandId", internal), ("Command", command)], channel=ch)
            await asyncio.sleep(self.agi_delay)
            reply = self._agi_reply(command)
            self.emit(
                "AGIExecEnd",
                [("CommandId", internal), ("Command", command), ("ResultCode", "200"), ("Result", "Success")],
                channel=ch,
            )
            fields = [("Result", ami_uri_encode(reply))]
            if command_id:
                fields.append(("CommandId", command_id))
            self.emit("AsyncAGIExec", fields, channel=ch)
            if command.upper().startswith("ASYNCAGI BREAK"):
                ch.in_agi = False
                self.emit("AsyncAGIEnd", channel=ch)

    def _agi_reply(self, command: str) -> str:
        if self.agi_results is not None:
            return self.agi_results(command)
        upper = command.upper()
        for verb, reply in _AGI_DEFAULT_RESULTS.items():
            if upper.startswith(verb):
                return reply
        return "510 Invalid or unknown command\n"

    def start_agi(self, ch: FakeChannel) -> None:
        """The channel enters ``AGI(agi:async)``: AsyncAGIStart with the URL-encoded Env."""
        ch.in_agi = True
        env = "".join(
            f"{k}: {v}\n"
            for k, v in [
                ("agi_request", "async"),
                ("agi_channel", ch.name),
                ("agi_language", ch.language),
                ("agi_type", ch.name.split("/", 1)[0]),
                ("agi_uniqueid", ch.uniqueid),
                ("agi_version", "22.10.1"),
                ("agi_callerid", ch.caller_num),
                ("agi_calleridname", ch.caller_name),
                ("agi_context", ch.context),
                ("agi_extension", ch.exten),
                ("agi_priority", str(ch.priority)),
                ("agi_accountcode", ch.account_code),
            ]
        )
        self.emit("AsyncAGIStart", [("Env", ami_uri_encode(env + "\n"))], channel=ch)

    def hangup_channel(self, ch: FakeChannel, cause: int = 16, cause_txt: str = "Normal Clearing") -> None:
        if ch.in_agi:
            ch.in_agi = False
            self.emit("AsyncAGIEnd", channel=ch)
        self.channels.pop(ch.name, None)
        queue = self._agi_queues.pop(ch.name, None)
        if queue is not None:
            while not queue.empty():
                queue.get_nowait()
        self.emit("Hangup", [("Cause", str(cause)), ("Cause-txt", cause_txt)], channel=ch)

    def _act_command(self, session: AmiSession, action: AmiMessage) -> None:
        cmd = (action.get("Command") or "").strip()
        output = self.cli.get(cmd)
        if output is None:
            session.respond(
                action,
                "Error",
                "Command output follows",
                [("Output", f"No such command '{cmd}' (type 'core show help {cmd}' for other possible commands)")],
            )
            return
        session.respond(action, "Success", "Command output follows", [("Output", line) for line in output.splitlines()])

    def _act_hangup(self, session: AmiSession, action: AmiMessage) -> None:
        ch = self.channels.get(action.get("Channel") or "")
        if ch is None:
            session.respond(action, "Error", "No such channel")
            return
        session.respond(action, "Success", "Channel Hungup")
        self.hangup_channel(ch, int(action.get("Cause") or 16))

    def _act_redirect(self, session: AmiSession, action: AmiMessage) -> None:
        ch = self.channels.get(action.get("Channel") or "")
        if ch is None:
            session.respond(action, "Error", "No such channel")
            return
        ch.context = action.get("Context") or ch.context
        ch.exten = action.get("Exten") or ch.exten
        ch.priority = int(action.get("Priority") or 1)
        session.respond(action, "Success", "Redirect successful")
        self.emit("Newexten", [("Extension", ch.exten), ("Application", "NoOp"), ("AppData", "")], channel=ch)

    def _act_coreshowchannels(self, session: AmiSession, action: AmiMessage) -> None:
        items = [
            (
                "CoreShowChannel",
                [
                    *ch.snapshot(),
                    ("Application", ch.application),
                    ("ApplicationData", ch.application_data),
                    ("Duration", "00:00:01"),
                    ("BridgeId", ""),
                ],
            )
            for ch in self.channels.values()
        ]
        session.send_list(
            action, items, "CoreShowChannelsComplete", message="Channels will follow", action_id_first=True
        )

    def _queues_for(self, action: AmiMessage) -> list[FakeQueue]:
        want = action.get("Queue")
        return [q for q in self.queues.values() if not want or q.name == want]

    def _act_queuestatus(self, session: AmiSession, action: AmiMessage) -> None:
        items: list[tuple[str, Sequence[tuple[str, str]]]] = []
        for q in self._queues_for(action):
            items.append(
                (
                    "QueueParams",
                    [
                        ("Queue", q.name),
                        ("Max", "0"),
                        ("Strategy", q.strategy),
                        ("Calls", "0"),
                        ("Holdtime", "0"),
                        ("TalkTime", "0"),
                        ("Completed", "0"),
                        ("Abandoned", "0"),
                        ("ServiceLevel", "30"),
                        ("ServicelevelPerf", "0.0"),
                        ("ServicelevelPerf2", "0.0"),
                        ("Weight", str(q.weight)),
                    ],
                )
            )
            for m in q.members:
                items.append(
                    (
                        "QueueMember",
                        [
                            ("Queue", q.name),
                            ("Name", m.name or m.interface),
                            ("Location", m.interface),
                            ("StateInterface", m.interface),
                            ("Membership", m.membership),
                            ("Penalty", str(m.penalty)),
                            ("CallsTaken", "0"),
                            ("LastCall", "0"),
                            ("LastPause", "0"),
                            ("LoginTime", str(int(time.time()))),
                            ("InCall", "0"),
                            ("Status", str(m.status)),
                            ("Paused", "1" if m.paused else "0"),
                            ("PausedReason", m.paused_reason),
                            ("Wrapuptime", "0"),
                        ],
                    )
                )
        session.send_list(action, items, "QueueStatusComplete", message="Queue status will follow")

    def _act_queuesummary(self, session: AmiSession, action: AmiMessage) -> None:
        items = []
        for q in self._queues_for(action):
            free = sum(1 for m in q.members if not m.paused and m.status == 1)
            items.append(
                (
                    "QueueSummary",
                    [
                        ("Queue", q.name),
                        ("LoggedIn", str(len(q.members))),
                        ("Available", str(free)),
                        ("Callers", "0"),
                        ("HoldTime", "0"),
                        ("TalkTime", "0"),
                        ("LongestHoldTime", "0"),
                    ],
                )
            )
        session.send_list(action, items, "QueueSummaryComplete", message="Queue summary will follow")


def trace_messages(path: str | Path, *, events_only: bool = True) -> list[bytes]:
    """The received messages of a capture, ready for ``push_raw``.

    Skips the greeting; with ``events_only`` also every response (they answer the recording
    client's ActionIDs) and the login's FullyBooted/SuccessfulAuth.
    """
    out = []
    for frame in read_trace(path):
        if frame.direction != "recv" or not frame.data.endswith(b"\r\n\r\n"):
            continue
        if events_only:
            if not frame.data.startswith(b"Event: "):
                continue
            if frame.data.startswith((b"Event: FullyBooted\r\n", b"Event: SuccessfulAuth\r\n")):
                continue
        out.append(frame.data)
    return out
