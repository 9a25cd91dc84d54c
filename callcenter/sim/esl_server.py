"""A loopback fake FreeSWITCH Event Socket (inbound ESL), for tests and local demos.

It speaks the wire protocol the way FreeSWITCH 1.10.12 does in the captures under
``tests/fixtures/freeswitch`` and in mod_event_socket: ``Content-Type: auth/request`` greeting,
``auth`` answered ``+OK accepted`` or ``-ERR invalid`` followed by the disconnect notice and a
hang-up, ``command/reply`` with ``Reply-Text``, ``api/response`` with the output as body
(``-ERR <cmd> Command not found!``), ``bgapi`` answered ``+OK Job-UUID: <id>`` plus a
``Job-UUID`` header and later a BACKGROUND_JOB event, plain (URL-encoded like
``switch_url_encode``) or JSON (cJSON compact) events, ``filter`` as an allow list, HEARTBEAT,
``exit`` with ``+OK bye`` and the "Disconnected, goodbye." notice - so the client is tested against
the real shapes, not our idea of them.

Structure, so it can grow into a FreeSWITCH simulator:

* :class:`FakeEslServer` owns the listening socket, the sessions, the switch state (``channels``,
  ``agent_status``) and two tables: commands by verb (``on_command(verb, handler)``) and api
  commands by name (``on_api(name, handler)``, ``handler(session, arg) -> str`` sync or async;
  used by both ``api`` and ``bgapi``). Defaults are the ``_cmd_*`` / ``_api_*`` methods.
* :class:`EslSession` is one client connection. Its commands are handled one after another, and
  while one is being handled no event is written to that socket - FreeSWITCH runs a command in
  the listener thread that also writes the events (sendmsg_ivr: the API event of ``create_uuid``
  arrives after its ``api/response``). ``bgapi`` jobs run in their own task, as in FreeSWITCH.
* Events: ``emit(name, headers, body=, subclass=, channel=)`` builds a FreeSWITCH-shaped event
  (Core-UUID, Event-Date-*, Event-Sequence, the channel's headers) and delivers it to every
  session whose subscription and filters let it through, rendered in that session's format;
  ``push_event(EslEvent)`` delivers a decoded event as is (``trace_events()`` of a capture);
  ``push_raw(bytes)`` writes raw frames (``trace_frames()``).

Fault knobs (attributes, change them any time): ``split`` (cut every write into pieces - an int
size or a function returning cut offsets - sent ``split_delay`` s apart so they arrive as separate
reads), ``reply_delay`` / ``delays`` (slow commands by command-line prefix, e.g.
``{"api status": 2}``; events are held meanwhile, as above), ``mute`` (nothing is written any more:
a half-open link), ``heartbeat_interval`` (HEARTBEAT every N s; FreeSWITCH's default is 20),
``reject`` (the inbound ACL refuses every connection: ``text/rude-rejection``), ``drop_all()``,
``disconnect_all()`` (a disconnect notice, then close, as on shutdown).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import time
import uuid as uuidlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from callcenter.pbx.freeswitch.message import EslEvent, EslFrame
from callcenter.pbx.freeswitch.protocol import EslParser, EslProtocolError, decode_event, split_api
from callcenter.pbx.freeswitch.trace import read_trace

__all__ = [
    "GOODBYE",
    "EslSession",
    "FakeChannel",
    "FakeEslServer",
    "render_event",
    "trace_events",
    "trace_frames",
    "url_encode",
]

log = logging.getLogger(__name__)

ApiHandler = Callable[["EslSession", str | None], Awaitable[str] | str]
CommandHandler = Callable[["EslSession", EslFrame], Awaitable[None] | None]
Fields = Sequence[tuple[str, str]] | Mapping[str, str]

# mod_event_socket's goodbye (exit, failed auth, shutdown). The real one ends with the
# project's web address after "ClueCon!", left out here; clients only see "Disconnected".
GOODBYE = "Disconnected, goodbye.\nSee you at ClueCon!\n"
ACL_REJECTION = "Access Denied, go away.\n"
VERSION = "1.10.12-release~64bit"

# switch_utils.h SWITCH_URL_UNSAFE; control and non-ASCII bytes are encoded as well.
_URL_UNSAFE = frozenset(b'\r\n #%&+:;<=>?@[\\]^`{|}"')
_HEX_UPPER = frozenset(b"0123456789ABCDEF")


def url_encode(value: str) -> str:
    """FreeSWITCH's ``switch_url_encode`` as used for plain events: unsafe, control and non-ASCII
    bytes become ``%XX``; a ``%`` that already starts an uppercase ``%XX`` is left alone."""
    data = value.encode("utf-8")
    if all(0x20 <= b <= 0x7E and b not in _URL_UNSAFE for b in data):
        return value
    out = []
    n = len(data)
    for i, b in enumerate(data):
        if b == 0x25 and i + 2 < n and data[i + 1] in _HEX_UPPER and data[i + 2] in _HEX_UPPER:
            out.append("%")
        elif b < 0x20 or b > 0x7E or b in _URL_UNSAFE:
            out.append(f"%{b:02X}")
        else:
            out.append(chr(b))
    return "".join(out)


def _pairs(fields: Fields | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return list(fields.items()) if isinstance(fields, Mapping) else list(fields)


def render_event(headers: Fields, body: str | None = None, fmt: str = "plain") -> bytes:
    """One event frame (envelope + body) as mod_event_socket writes it.

    ``headers`` in order; a ``Content-Length`` among them is recomputed from ``body`` (it is
    the inner length FreeSWITCH writes last, before the body). Array values (``ARRAY::a|:b``)
    become JSON lists in ``json``.
    """
    pairs = [(k, v) for k, v in _pairs(headers) if k != "Content-Length"]
    if fmt == "json":
        # Pair by pair, not through a dict: cJSON keeps duplicate keys (CODEC's
        # Channel-Write-Codec-Name, CHANNEL_HANGUP_COMPLETE's Hangup-Cause).
        items: list[tuple[str, Any]] = [(k, v[7:].split("|:") if v.startswith("ARRAY::") else v) for k, v in pairs]
        if body is not None:
            items += [("Content-Length", str(len(body.encode("utf-8")))), ("_body", body)]
        data = ("{" + ",".join(f"{_json(k)}:{_json(v)}" for k, v in items) + "}").encode("utf-8")
    elif fmt == "plain":
        text = "".join(f"{k}: {url_encode(v)}\n" for k, v in pairs)
        if body is not None:
            raw = body.encode("utf-8")
            data = (text + f"Content-Length: {len(raw)}\n\n").encode("utf-8") + raw
        else:
            data = (text + "\n").encode("utf-8")
    else:
        raise ValueError(f"event format {fmt!r} is not simulated")
    return b"Content-Length: %d\nContent-Type: text/event-%s\n\n" % (len(data), fmt.encode()) + data


_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _reply(text: str, extra: Fields = ()) -> bytes:
    lines = [f"Content-Type: command/reply\nReply-Text: {text}\n"]
    lines.extend(f"{k}: {v}\n" for k, v in _pairs(extra))
    return ("".join(lines) + "\n").encode("utf-8")


def _api_response(body: str) -> bytes:
    raw = body.encode("utf-8")
    return b"Content-Type: api/response\nContent-Length: %d\n\n" % len(raw) + raw


def _notice(message: str) -> bytes:
    raw = message.encode("utf-8")
    return b"Content-Type: text/disconnect-notice\nContent-Length: %d\n\n" % len(raw) + raw


@dataclass
class FakeChannel:
    """A channel as FreeSWITCH's channel events show it (the headers the translator reads)."""

    uuid: str
    name: str
    caller_number: str = ""
    caller_name: str = ""
    destination: str = ""
    context: str = "public"
    direction: str = "inbound"
    state: str = "CS_EXECUTE"
    call_state: str = "ACTIVE"
    answer_state: str = "answered"
    variables: dict[str, str] = field(default_factory=dict)
    parked: bool = False

    def headers(self) -> list[tuple[str, str]]:
        out = [
            ("Channel-State", self.state),
            ("Channel-Call-State", self.call_state),
            ("Channel-Name", self.name),
            ("Unique-ID", self.uuid),
            ("Call-Direction", self.direction),
            ("Presence-Call-Direction", self.direction),
            ("Channel-Call-UUID", self.uuid),
            ("Answer-State", self.answer_state),
            ("Caller-Direction", self.direction),
            ("Caller-Caller-ID-Name", self.caller_name),
            ("Caller-Caller-ID-Number", self.caller_number),
            ("Caller-Destination-Number", self.destination),
            ("Caller-Unique-ID", self.uuid),
            ("Caller-Context", self.context),
            ("Caller-Channel-Name", self.name),
        ]
        out.extend((f"variable_{k}", v) for k, v in self.variables.items())
        return out


class EslSession(asyncio.Protocol):
    """One client connection to the fake server."""

    _ids = itertools.count(1)

    def __init__(self, server: FakeEslServer) -> None:
        self.server = server
        self.id = next(self._ids)
        self.transport: asyncio.Transport | None = None
        self.parser = EslParser(commands=True)
        self.authenticated = False
        self.format: str | None = None  # None: no events; "plain" / "json"
        self.all_events = False
        self.event_names: set[str] = set()
        self.subclasses: set[str] = set()
        self.filters: list[tuple[str, str]] = []
        self.closed = False
        self.muted = False  # this session only: a half-open link (see FakeEslServer.mute)
        self.commands: list[EslFrame] = []
        self._busy = False
        self._held: list[bytes] = []
        self._inbox: asyncio.Queue[EslFrame] = asyncio.Queue()
        self._outq: list[bytes] = []
        self._writer: asyncio.Task[None] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._close_when_written = False

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.sessions.append(self)
        if self.server.reject:
            # mod_event_socket's inbound ACL check, before the greeting.
            raw = ACL_REJECTION.encode()
            self.write(b"Content-Type: text/rude-rejection\nContent-Length: %d\n\n" % len(raw) + raw)
            self.close()
            return
        self._worker = asyncio.get_running_loop().create_task(self._work(), name=f"fake-esl-session-{self.id}")
        self.write(b"Content-Type: auth/request\n\n")

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.parser.feed(data)
        except EslProtocolError as exc:
            log.warning("fake ESL: bad command stream, closing: %s", exc)
            self.drop()
            return
        for frame in frames:
            self.commands.append(frame)
            self.server.received.append(frame)
            self._inbox.put_nowait(frame)
        self.server._notify()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self in self.server.sessions:
            self.server.sessions.remove(self)
        self.server._notify()
        for task in (self._worker, self._writer):
            if task is not None and task is not asyncio.current_task():
                task.cancel()

    # -- command handling (one at a time, events held meanwhile) --------------------------------
    async def _work(self) -> None:
        while True:
            frame = await self._inbox.get()
            self._busy = True
            try:
                await self.server._handle(self, frame)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("fake ESL: handler for %r failed", frame.command)
                self.reply("-ERR fake server error")
            finally:
                self._busy = False
                held, self._held = self._held, []
                for data in held:
                    self.write(data)

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
                piece = self._outq.pop(0)
                if self.closed or self.transport is None:
                    return
                self.transport.write(piece)
                if self._outq:
                    await asyncio.sleep(self.server.split_delay)
        finally:
            self._writer = None
            if self._close_when_written and self.transport is not None:
                self.transport.close()

    def reply(self, text: str, extra: Fields = ()) -> None:
        """``command/reply`` with ``Reply-Text: text`` (plus extra headers, e.g. Job-UUID)."""
        self.write(_reply(text, extra))

    def api_response(self, body: str) -> None:
        self.write(_api_response(body))

    def wants(self, name: str, subclass: str | None, headers: Sequence[tuple[str, str]]) -> bool:
        """Would FreeSWITCH send this event to this listener (subscription, then filters)?"""
        if self.format is None or not self.authenticated:
            return False
        if not self.all_events:
            if name not in self.event_names:
                return False
            if name == "CUSTOM" and subclass and subclass not in self.subclasses:
                return False
        if not self.filters:
            return True
        # mod_event_socket's filter loop: once any filter exists an event passes only if a
        # positive filter matches; a matching "-value" filter vetoes it.
        values: dict[str, str] = {}
        for k, v in headers:
            values[k.lower()] = v
        send = False
        for key, spec in self.filters:
            value = values.get(key.lower())
            if value is None:
                continue
            positive = True
            comp = spec
            while comp[:1] in ("+", "-", " "):
                if comp[0] != " ":
                    positive = comp[0] == "+"
                comp = comp[1:]
            if send and positive:
                continue
            if spec.startswith("/") and comp.startswith("/"):
                matched = re.search(comp.strip("/"), value) is not None
            else:
                matched = value.lower() == comp.lower()
            if matched:
                if positive:
                    send = True
                else:
                    return False
        return send

    def deliver(self, name: str, subclass: str | None, headers: Sequence[tuple[str, str]], body: str | None) -> None:
        if not self.wants(name, subclass, headers):
            return
        assert self.format is not None
        data = render_event(headers, body, self.format)
        if self._busy:
            self._held.append(data)
        else:
            self.write(data)

    def close(self, notice: str | None = None) -> None:
        """FreeSWITCH's goodbye: optional disconnect notice, then close (after split writes)."""
        if notice is not None:
            self.write(_notice(notice))
        if self._writer is not None:
            self._close_when_written = True
        elif self.transport is not None:
            self.transport.close()

    def drop(self) -> None:
        """Abort the TCP connection (no FIN handshake with pending data)."""
        if self.transport is not None:
            self.transport.abort()


class FakeEslServer:
    def __init__(
        self,
        *,
        password: str = "ClueCon",
        host: str = "127.0.0.1",
        port: int = 0,
        hostname: str = "sim",
        core_uuid: str | None = None,
    ) -> None:
        self.password = password
        self.host = host
        self._port = port
        self.hostname = hostname
        self.core_uuid = core_uuid or str(uuidlib.uuid4())
        self.sessions: list[EslSession] = []
        self.received: list[EslFrame] = []
        self.logins = 0
        self.bytes_sent = 0
        # The switch's clock (Unix seconds): event dates, uptime. A simulator on virtual time
        # replaces it so Event-Date-Timestamp and the CC-*-Time headers agree.
        self.unix_time: Callable[[], float] = time.time
        self.started_at = self.unix_time()
        # switch state (grows into the simulator)
        self.channels: dict[str, FakeChannel] = {}
        self.agent_status: dict[str, str] = {}
        self.globals: dict[str, str] = {}
        # knobs
        self.split: int | Callable[[bytes], Sequence[int]] | None = None
        self.split_delay = 0.005
        self.reply_delay = 0.0
        self.delays: dict[str, float] = {}
        self.mute = False
        self.reject = False
        self.api_events = True
        self.execute_delay = 0.01
        self.heartbeat_interval: float | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._channel_queues: dict[str, asyncio.Queue[EslFrame]] = {}
        self._seq = itertools.count(1000)
        self._changed = asyncio.Event()
        self._commands: dict[str, CommandHandler] = {
            "auth": self._cmd_auth,
            "exit": self._cmd_exit,
            "event": self._cmd_event,
            "noevents": self._cmd_noevents,
            "filter": self._cmd_filter,
            "api": self._cmd_api,
            "bgapi": self._cmd_bgapi,
            "sendmsg": self._cmd_sendmsg,
        }
        self._apis: dict[str, ApiHandler] = {
            "status": self._api_status,
            "create_uuid": self._api_create_uuid,
            "uuid_setvar": self._api_uuid_setvar,
            "uuid_getvar": self._api_uuid_getvar,
            "uuid_kill": self._api_uuid_kill,
            "uuid_transfer": self._api_uuid_transfer,
            "show": self._api_show,
            "originate": self._api_originate,
            "callcenter_config": self._api_callcenter_config,
            "hostname": lambda s, a: self.hostname,
        }

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> FakeEslServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: EslSession(self), self.host, self._port)
        self._heartbeat = loop.create_task(self._heartbeats(), name="fake-esl-heartbeat")
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = set(self._tasks)
        if self._heartbeat is not None:
            tasks.add(self._heartbeat)
        for s in list(self.sessions):
            tasks.update(t for t in (s._worker, s._writer) if t is not None)
            s.drop()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FakeEslServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.sockets[0].getsockname()[1])

    # -- scripting -----------------------------------------------------------------------------
    def on_api(self, name: str, handler: ApiHandler) -> None:
        """Replace/add the handler of one api command (``api`` and ``bgapi``)."""
        self._apis[name] = handler

    def on_command(self, verb: str, handler: CommandHandler) -> None:
        """Replace/add the handler of one ESL command verb (``sendmsg``, ``filter``...)."""
        self._commands[verb.lower()] = handler

    def count(self, prefix: str) -> int:
        """How many received commands start with ``prefix`` (all sessions)."""
        return sum(1 for f in self.received if (f.command or "").startswith(prefix))

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; re-checked on every command, login and disconnect.

        Wrap in ``asyncio.timeout()``.
        """
        while not predicate():
            self._changed.clear()
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()

    def add_channel(self, uuid: str | None = None, **kw: Any) -> FakeChannel:
        uuid = uuid or str(uuidlib.uuid4())
        kw.setdefault("name", f"sofia/internal/{kw.get('caller_number') or 'anonymous'}@127.0.0.1:5190")
        ch = FakeChannel(uuid, **kw)
        self.channels[uuid] = ch
        return ch

    # -- events --------------------------------------------------------------------------------
    def event_headers(
        self,
        name: str,
        fields: Fields = (),
        *,
        subclass: str | None = None,
        channel: FakeChannel | None = None,
        calling: tuple[str, str, int] = ("switch_event.c", "switch_event_fire", 0),
    ) -> list[tuple[str, str]]:
        """The headers FreeSWITCH puts on every event, then the channel's, then ``fields``."""
        now = datetime.fromtimestamp(self.unix_time(), UTC)
        local = now.astimezone()
        out: list[tuple[str, str]] = []
        if subclass is not None:
            out.append(("Event-Subclass", subclass))  # CUSTOM events start with it (captures)
        out += [
            ("Event-Name", name),
            ("Core-UUID", self.core_uuid),
            ("FreeSWITCH-Hostname", self.hostname),
            ("FreeSWITCH-Switchname", self.hostname),
            ("FreeSWITCH-IPv4", "127.0.0.1"),
            ("FreeSWITCH-IPv6", "::1"),
            ("Event-Date-Local", local.strftime("%Y-%m-%d %H:%M:%S")),
            ("Event-Date-GMT", now.strftime("%a, %d %b %Y %H:%M:%S GMT")),
            ("Event-Date-Timestamp", str(int(now.timestamp() * 1_000_000))),
            ("Event-Calling-File", calling[0]),
            ("Event-Calling-Function", calling[1]),
            ("Event-Calling-Line-Number", str(calling[2])),
            ("Event-Sequence", str(next(self._seq))),
        ]
        if channel is not None:
            out.extend(channel.headers())
        out.extend(_pairs(fields))
        return out

    def emit(
        self,
        name: str,
        fields: Fields = (),
        body: str | None = None,
        *,
        subclass: str | None = None,
        channel: FakeChannel | None = None,
    ) -> list[tuple[str, str]]:
        """Fire an event to every listener that wants it; returns its headers."""
        headers = self.event_headers(name, fields, subclass=subclass, channel=channel)
        self._fire(name, subclass, headers, body)
        return headers

    def push_event(self, event: EslEvent) -> None:
        """Deliver a decoded event as it is (e.g. from ``trace_events``), in each session's format."""
        self._fire(event.name, event.subclass, event.items(), event.body)

    def push_raw(self, data: bytes) -> None:
        """Write raw bytes to every session with events on (e.g. ``trace_frames`` of a capture)."""
        for s in list(self.sessions):
            if s.authenticated and s.format is not None:
                s.write(data)

    def _fire(self, name: str, subclass: str | None, headers: Sequence[tuple[str, str]], body: str | None) -> None:
        for s in list(self.sessions):
            s.deliver(name, subclass, headers, body)

    def drop_all(self) -> None:
        for s in list(self.sessions):
            s.drop()

    def disconnect_all(self, message: str = GOODBYE) -> None:
        """What a shutdown looks like on the wire: a disconnect notice, then the close."""
        for s in list(self.sessions):
            s.close(message)

    async def _heartbeats(self) -> None:
        while True:
            interval = self.heartbeat_interval
            if not interval:
                await asyncio.sleep(0.05)
                continue
            await asyncio.sleep(interval)
            if self.heartbeat_interval:
                self.heartbeat()

    def heartbeat(self) -> None:
        up = self.unix_time() - self.started_at
        ms = int(up * 1000)
        self.emit(
            "HEARTBEAT",
            [
                ("Event-Info", "System Ready"),
                (
                    "Up-Time",
                    f"0 years, 0 days, {ms // 3_600_000} hours, {ms // 60_000 % 60} minutes, "
                    f"{ms // 1000 % 60} seconds, {ms % 1000} milliseconds, 0 microseconds",
                ),
                ("FreeSWITCH-Version", VERSION),
                ("Uptime-msec", str(ms)),
                ("Session-Count", str(len(self.channels))),
                ("Max-Sessions", "200"),
                ("Session-Per-Sec", "30"),
                ("Idle-CPU", "99.000000"),
            ],
        )

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
    async def _handle(self, session: EslSession, frame: EslFrame) -> None:
        line = (frame.command or "").strip()
        verb = line.split(" ", 1)[0].lower()
        delay = self.reply_delay
        best = -1
        for prefix, value in self.delays.items():
            if line.startswith(prefix) and len(prefix) > best:
                best, delay = len(prefix), value
        if delay:
            await asyncio.sleep(delay)
        if verb == "exit":
            await self._cmd_exit(session, frame)
            return
        if not session.authenticated and verb != "auth":
            session.reply("-ERR command not found")  # mod_event_socket before auth
            return
        handler = self._commands.get(verb)
        if handler is None or (verb == "auth" and session.authenticated):
            session.reply("-ERR command not found")
            return
        result = handler(session, frame)
        if result is not None:
            await result

    async def _run_api(self, session: EslSession, line: str) -> str:
        name, arg = split_api(line)
        handler = self._apis.get(name)
        if handler is None:
            return f"-ERR {name} Command not found!\n"
        result = handler(session, arg)
        if not isinstance(result, str):
            result = await result
        return result or "-ERR no reply\n"

    # -- default commands (mod_event_socket behaviour) ------------------------------------------
    def _cmd_auth(self, session: EslSession, frame: EslFrame) -> None:
        password = (frame.command or "")[5:]
        if password != self.password:
            # -ERR invalid, then the listener ends: goodbye notice and close.
            session.reply("-ERR invalid")
            session.close(GOODBYE)
            return
        session.authenticated = True
        self.logins += 1
        self._notify()
        session.reply("+OK accepted")

    async def _cmd_exit(self, session: EslSession, frame: EslFrame) -> None:
        session.reply("+OK bye")
        session.close(GOODBYE)

    def _cmd_event(self, session: EslSession, frame: EslFrame) -> None:
        words = (frame.command or "").split()[1:]
        fmt = session.format or "plain"
        if words and words[0].lower() in ("plain", "json", "xml"):
            fmt = words.pop(0).lower()
        if fmt == "xml":
            session.reply("-ERR xml events are not simulated")
            return
        custom = False
        keys = 0
        for word in words:
            if custom:
                session.subclasses.add(word)
                continue
            name = word.upper()
            keys += 1
            if name == "ALL":
                session.all_events = True
            elif name == "CUSTOM":
                custom = True
            session.event_names.add(name)
        if not keys:
            session.reply("-ERR no keywords supplied")
            return
        session.format = fmt
        session.reply(f"+OK event listener enabled {fmt}")

    def _cmd_noevents(self, session: EslSession, frame: EslFrame) -> None:
        if session.format is None:
            session.reply("-ERR not listening for events")
            return
        session.format = None
        session.all_events = False
        session.event_names.clear()
        session.subclasses.clear()
        session.reply("+OK no longer listening for events")

    def _cmd_filter(self, session: EslSession, frame: EslFrame) -> None:
        rest = (frame.command or "")[7:].strip()
        name, _, value = rest.partition(" ")
        if name.lower() == "delete" and value:
            target, _, val = value.partition(" ")
            if target.lower() == "all":
                session.filters.clear()
            else:
                session.filters = [(k, v) for k, v in session.filters if not (k == target and (not val or v == val))]
            session.reply(f"+OK filter deleted. [{target}][{val}]")
            return
        if not value:
            session.reply("-ERR invalid syntax")
            return
        session.filters.append((name, value))
        session.reply(f"+OK filter added. [{name}]=[{value}]")

    async def _cmd_api(self, session: EslSession, frame: EslFrame) -> None:
        line = (frame.command or "")[4:].strip()
        output = await self._run_api(session, line)
        session.api_response(output)
        if self.api_events:
            name, arg = split_api(line)
            fields = [("API-Command", name)] + ([("API-Command-Argument", arg)] if arg else [])
            self.emit("API", fields)

    def _cmd_bgapi(self, session: EslSession, frame: EslFrame) -> None:
        line = (frame.command or "")[6:].strip()
        job = frame.headers.get("Job-UUID") or str(uuidlib.uuid4())
        session.reply(f"+OK Job-UUID: {job}", [("Job-UUID", job)])
        self._spawn(self._bg_job(session, line, job))

    async def _bg_job(self, session: EslSession, line: str, job: str) -> None:
        name, arg = split_api(line)
        output = await self._run_api(session, line)
        if self.api_events:
            self.emit("API", [("API-Command", name)] + ([("API-Command-Argument", arg)] if arg else []))
        fields = [("Job-UUID", job), ("Job-Command", name)] + ([("Job-Command-Arg", arg)] if arg else [])
        self.emit("BACKGROUND_JOB", fields, output)

    def _cmd_sendmsg(self, session: EslSession, frame: EslFrame) -> None:
        target = (frame.command or "")[7:].strip() or frame.headers.get("session-id") or ""
        ch = self.channels.get(target)
        if ch is None:
            session.reply(f"-ERR invalid session id [{target}]")
            return
        session.reply("+OK")
        queue = self._channel_queues.get(target)
        if queue is None:
            queue = self._channel_queues[target] = asyncio.Queue()
            self._spawn(self._channel_runner(ch, queue))
        queue.put_nowait(frame)

    async def _channel_runner(self, ch: FakeChannel, queue: asyncio.Queue[EslFrame]) -> None:
        """A channel's private events, one after another (event-lock is what FreeSWITCH needs to
        wait for the application; here every execute completes before the next one starts)."""
        while ch.uuid in self.channels:
            frame = await queue.get()
            headers = {k.lower(): v for k, v in frame.headers.items()}
            command = headers.get("call-command", "")
            if command == "execute":
                app = headers.get("execute-app-name", "")
                arg = headers.get("execute-app-arg", "")
                app_uuid = headers.get("event-uuid") or str(uuidlib.uuid4())
                fields = [("Application", app), ("Application-Data", arg), ("Application-UUID", app_uuid)]
                self.emit("CHANNEL_EXECUTE", fields, channel=ch)
                await asyncio.sleep(self.execute_delay)
                response = self._execute(ch, app, arg)
                if ch.uuid not in self.channels and app != "hangup":
                    return
                self.emit(
                    "CHANNEL_EXECUTE_COMPLETE",
                    [*fields, ("Application-Response", response)],
                    channel=ch,
                )
            elif command == "hangup":
                self.hangup_channel(ch, headers.get("hangup-cause") or "NORMAL_CLEARING")
            command_line = f"sendmsg {ch.uuid}"
            self.emit("PRIVATE_COMMAND", [("Command", command_line), *frame.headers.items()], channel=ch)

    def _execute(self, ch: FakeChannel, app: str, arg: str) -> str:
        if app == "set" and "=" in arg:
            key, _, value = arg.partition("=")
            ch.variables[key] = value
        elif app == "answer":
            ch.answer_state = "answered"
        elif app == "park":
            ch.parked = True
        elif app == "hangup":
            self.hangup_channel(ch, arg or "NORMAL_CLEARING")
        return "_none_"

    def hangup_channel(self, ch: FakeChannel, cause: str = "NORMAL_CLEARING") -> None:
        self.channels.pop(ch.uuid, None)
        ch.state, ch.call_state, ch.answer_state = "CS_HANGUP", "HANGUP", "hangup"
        self.emit("CHANNEL_HANGUP", [("Hangup-Cause", cause)], channel=ch)
        ch.state = "CS_DESTROY"
        self.emit("CHANNEL_HANGUP_COMPLETE", [("Hangup-Cause", cause)], channel=ch)
        self.emit("CHANNEL_DESTROY", channel=ch)

    # -- default api commands --------------------------------------------------------------------
    def _api_status(self, session: EslSession, arg: str | None) -> str:
        ms = int((self.unix_time() - self.started_at) * 1000)
        return (
            f"UP 0 years, 0 days, 0 hours, {ms // 60_000} minutes, {ms // 1000 % 60} seconds, "
            f"{ms % 1000} milliseconds, 0 microseconds\n"
            f"FreeSWITCH (Version 1.10.12-release  64bit) is ready\n"
            f"{len(self.channels)} session(s) since startup\n"
            f"{len(self.channels)} session(s) - peak {len(self.channels)}, last 5min {len(self.channels)} \n"
            "0 session(s) per Sec out of max 30, peak 0, last 5min 0 \n"
            "200 session(s) max\n"
            "min idle cpu 0.00/99.00\n"
            "Current Stack Size/Max 240K/8192K\n"
        )

    def _api_create_uuid(self, session: EslSession, arg: str | None) -> str:
        return str(uuidlib.uuid4())  # 36 bytes, no final newline (sendmsg_ivr trace)

    def _api_uuid_setvar(self, session: EslSession, arg: str | None) -> str:
        parts = (arg or "").split(" ", 2)
        ch = self.channels.get(parts[0]) if parts else None
        if ch is None:
            return "-ERR No such channel!\n"
        if len(parts) < 2:
            return "-USAGE: <uuid> <var> [value]\n"
        if len(parts) == 2:
            ch.variables.pop(parts[1], None)
        else:
            ch.variables[parts[1]] = parts[2]
        return "+OK\n"

    def _api_uuid_getvar(self, session: EslSession, arg: str | None) -> str:
        parts = (arg or "").split(" ")
        ch = self.channels.get(parts[0]) if parts else None
        if ch is None:
            return "-ERR No such channel!\n"
        return ch.variables.get(parts[1], "_undef_") if len(parts) > 1 else "-USAGE: <uuid> <var>\n"

    def _api_uuid_kill(self, session: EslSession, arg: str | None) -> str:
        parts = (arg or "").split(" ")
        ch = self.channels.get(parts[0]) if parts else None
        if ch is None:
            return "-ERR No such channel!\n"
        self.hangup_channel(ch, parts[1] if len(parts) > 1 else "NORMAL_CLEARING")
        return "+OK\n"

    def _api_uuid_transfer(self, session: EslSession, arg: str | None) -> str:
        parts = (arg or "").split(" ")
        ch = self.channels.get(parts[0]) if parts else None
        if ch is None:
            return "-ERR No such channel!\n"
        if len(parts) < 2:
            return "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n"
        if ch.parked:
            ch.parked = False
            self.emit("CHANNEL_UNPARK", channel=ch)
        ch.destination = parts[1]
        if len(parts) > 3:
            ch.context = parts[3]
        return "+OK\n"

    def _api_show(self, session: EslSession, arg: str | None) -> str:
        words = (arg or "").split()
        if words[:1] == ["channels"] and words[-2:] == ["as", "json"]:
            if not self.channels:
                return '{"row_count": 0}\n'  # with a space and no rows (api_replies trace)
            rows = [
                {
                    "uuid": ch.uuid,
                    "direction": ch.direction,
                    "name": ch.name,
                    "state": ch.state,
                    "cid_name": ch.caller_name,
                    "cid_num": ch.caller_number,
                    "dest": ch.destination,
                    "context": ch.context,
                    "callstate": ch.call_state,
                    "call_uuid": ch.uuid,
                }
                for ch in self.channels.values()
            ]
            return json.dumps({"row_count": len(rows), "rows": rows}, separators=(",", ":"))
        return "-USAGE: show channels as json\n"

    def _api_originate(self, session: EslSession, arg: str | None) -> str:
        parts = (arg or "").split(" ", 1)
        if len(parts) < 2:
            return "-USAGE: <call url> <exten>|&<application_name>(<app_args>) ...\n"
        url = parts[0]
        m = re.search(r"origination_uuid=([^,}]+)", url)
        dest = url.rsplit("}", 1)[-1]
        number = dest.split("/")[-1].split("@")[0]
        ch = self.add_channel(m.group(1) if m else None, name=dest, destination=number, direction="outbound")
        self.emit("CHANNEL_CREATE", channel=ch)
        self.emit("CHANNEL_ANSWER", channel=ch)
        return f"+OK {ch.uuid}\n"

    def _api_callcenter_config(self, session: EslSession, arg: str | None) -> str:
        words = re.findall(r"'[^']*'|\S+", arg or "")
        words = [w.strip("'") for w in words]
        if words[:3] == ["agent", "set", "status"] and len(words) >= 5:
            status = words[4]
            if status not in ("Available", "Available (On Demand)", "On Break", "Logged Out"):
                return "-ERR Invalid Agent Status!\n"
            self.agent_status[words[3]] = status
            self.emit(
                "CUSTOM",
                [("CC-Agent", words[3]), ("CC-Action", "agent-status-change"), ("CC-Agent-Status", status)],
                subclass="callcenter::info",
            )
            return "+OK\n"
        if words[:3] == ["agent", "get", "status"] and len(words) >= 4:
            return self.agent_status.get(words[3], "Logged Out")  # no final newline (api_replies)
        return "-ERR Unknown Command!\n"


# -- captures ------------------------------------------------------------------------------------
def trace_frames(path: str | Path, *, events_only: bool = True) -> list[bytes]:
    """The received messages of a capture as raw frames, ready for ``push_raw``.

    With ``events_only`` (default) only ``text/event-*`` frames: the replies answer the recording
    client's commands.
    """
    out = []
    for frame in read_trace(path):
        if frame.direction != "recv":
            continue
        if events_only and b"\nContent-Type: text/event-" not in frame.data[: frame.data.find(b"\n\n")]:
            continue
        out.append(frame.data)
    return out


def trace_events(path: str | Path) -> list[EslEvent]:
    """The events of a capture, decoded (plain or JSON), ready for ``push_event``."""
    frames = EslParser().feed(b"".join(trace_frames(path)))
    return [decode_event(f, lazy=False) for f in frames]
