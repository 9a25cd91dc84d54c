"""Asyncio ESL client: the controller's link to one FreeSWITCH (inbound Event Socket).

Shape (imperative shell around the sans-I/O codec in ``protocol.py``)::

    socket --data_received--> EslParser --> replies / BACKGROUND_JOB: resolved at once
                                       \\--> events --> one queue, PBX order --> worker --> handlers

Why each piece looks the way it does:

* **Transport** is an ``asyncio.Protocol`` (no streams): one callback per read, the whole read
  framed in one go. FreeSWITCH queues events per listener and kills a listener whose queue
  overflows and then misses 500 more events, so the reader never waits for anything: it frames,
  resolves waiting commands and appends events to an in-memory queue. Events are decoded lazily
  (``message.py``): the reader only pays for framing and a UTF-8 decode.
* **Login**: FreeSWITCH greets with ``Content-Type: auth/request``; ``auth <password>`` is
  answered ``+OK accepted`` or ``-ERR invalid`` (then a disconnect notice and a hang-up, as
  mod_event_socket does), which ``start()`` raises as ``LoginError`` with that text. An inbound
  ACL refusal (``text/rude-rejection``) is a ``LoginError`` too. Then ``event <json|plain> ...``
  and the ``filter`` lines; every reply must be ``+OK``.
* **Commands are matched by order**: FreeSWITCH reads one command at a time per socket, runs it
  and writes exactly one reply (``api/response`` for ``api``, ``command/reply`` for everything
  else) before reading the next, so the oldest unanswered command owns the next reply - for
  ``api`` and every other command alike. Commands are pipelined through one FIFO. A command
  that times out (or whose caller is cancelled) keeps its place in the FIFO, so its late reply is dropped
  instead of answering a newer command (the FIFO mismatch a plain "next reply wins" client
  gets after its first timeout). Encoders refuse CR/LF (one command = one reply, see
  ``protocol.py``).
* **api runs inside FreeSWITCH's listener thread**: while it runs, that socket sends no events
  (sendmsg_ivr trace: the API event of ``create_uuid`` arrives after its reply). Long work
  (originate, transfers) belongs in ``bgapi``.
* **bgapi**: we send our own ``Job-UUID``; FreeSWITCH answers ``+OK Job-UUID: <it>`` at once and
  the result comes later as a BACKGROUND_JOB event with that Job-UUID and the output as body
  (``+OK\\n`` for uuid_transfer, ``+OK <uuid>\\n`` for originate). ``bgapi()`` waits for that
  event, matched in the reader, not behind the handler queue (it is *also* given to handlers).
* **Never re-send**: when the link drops, every in-flight command and job fails with
  ``ConnectionLost``. Nothing is queued for "after reconnect" - a transfer that may or may not
  have reached FreeSWITCH must not run twice; the caller decides.
* **Reconnect**: exponential backoff (``reconnect_min`` doubling to ``reconnect_max``) with jitter
  (x0.5..1), re-auth, re-subscribe, re-filter, then - after the events read on the old link have
  been handled - the ``on_connected`` hooks (resync live state there, e.g. ``show channels as
  json``). Hooks also run after the first login, before ``start()`` returns.
* **Heartbeat watchdog**: FreeSWITCH sends HEARTBEAT every 20 s by default (captures:
  whisper_barge, api_replies, overflow_transfer). Nothing received for ``heartbeat_timeout`` s
  means a dead (half-open) link: it is aborted and the reconnect loop takes over. HEARTBEAT
  (and BACKGROUND_JOB, for ``bgapi``) are added to the subscription and, with ``filters``, to the
  filters (FreeSWITCH only sends events matching some filter once one is set). A long ``api``
  holds back every event of the socket, so keep it well below ``heartbeat_timeout``.
* **Disconnect notice**: ``text/disconnect-notice`` (``Disconnected, goodbye.``) comes right
  before FreeSWITCH closes the socket (``exit``, a failed ``auth``, shutdown): in-flight commands
  fail at once with ``ConnectionLost`` carrying its text. ``Content-Disposition: linger`` (an
  outbound socket's channel hung up) is not a disconnect and only logged.
* **Dispatch**: one queue in exact PBX order (the translator is stateful across calls and legs),
  one worker; handlers run strictly in arrival order and async handlers are awaited. A handler
  that raises is logged with the call id (Unique-ID, else Channel-Call-UUID) and counted
  (``stats.handler_errors``); the other handlers and later events are not affected. The worker
  yields to the loop every 256 events so sync handlers cannot starve the reader.
* **Queue bound** (``queue_size``): at half of it a warning is logged (once per excursion) -
  handlers are slower than the PBX. Only at the bound itself is reading paused (and resumed at
  90 %); FreeSWITCH then buffers up to its own limit and drops the listener beyond it, which is
  an ordinary disconnect (reconnect + resync). Nothing is dropped by the client. The watchdog is
  not applied while reading is paused.
* **Recording** (``record=TraceWriter``): every message received and every command sent, one
  frame each, byte-exact; the ``auth`` password is masked by the writer.
* **Throughput** (bench/esl_ingest.py): the reader frames and decodes each event straight from
  the read buffer into a lazy ``EslEvent``; a consumer pays per header it reads (one substring
  search of the event, ~2 us per 5 KB on a small core), never for the ~150 it does not.
  ``event_format="json"`` (default) is lossless - plain values are URL-encoded by FreeSWITCH
  without re-encoding an existing ``%XX``, so a value containing ``%41`` comes back as ``A`` -
  and needs no URL-decoding. Subscribing only to the events the translator uses
  (``subscriptions=``) halves the traffic of the captured scenarios: FreeSWITCH filters before
  sending. ``FreeswitchAdapter.connect`` does that by default (``translate.SUBSCRIPTIONS``); the
  client's own default stays ``ALL`` (trace capture).
* Credentials come only from the arguments, are never logged and are not in ``repr``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import uuid as uuidlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from callcenter.pbx.freeswitch.message import EslDecodeError, EslEvent, EslFrame
from callcenter.pbx.freeswitch.protocol import (
    CT_API_RESPONSE,
    CT_AUTH_REQUEST,
    CT_COMMAND_REPLY,
    CT_DISCONNECT_NOTICE,
    CT_EVENT_JSON,
    CT_EVENT_PLAIN,
    CT_RUDE_REJECTION,
    EslParser,
    EslProtocolError,
    encode_api,
    encode_auth,
    encode_bgapi,
    encode_command,
    encode_event_subscription,
    encode_execute,
    encode_exit,
    encode_filter,
    split_api,
)
from callcenter.pbx.freeswitch.trace import TraceWriter
from callcenter.pbx.link import LinkSupervisor

__all__ = [
    "CommandFailed",
    "CommandTimeout",
    "ConnectionLost",
    "EslClient",
    "EslError",
    "EslStats",
    "LoginError",
]

log = logging.getLogger(__name__)

EventHandler = Callable[[EslEvent, datetime], Awaitable[None] | None]
ConnectedHandler = Callable[[], Awaitable[None]]
DisconnectedHandler = Callable[[Exception | None], Awaitable[None] | None]
Headers = Mapping[str, str] | Sequence[tuple[str, str]]

_YIELD_EVERY = 256
_from_json = EslEvent.from_json
_from_plain = EslEvent.from_plain


class EslError(Exception):
    """Base of every error the ESL client raises."""


class LoginError(EslError):
    """``auth`` refused (``-ERR invalid``) or the inbound ACL rejected us; FreeSWITCH's text."""


class ConnectionLost(EslError, ConnectionError):
    """The link is down (or went down while the command was in flight); nothing is re-sent.

    Also a ``ConnectionError`` (hence ``OSError``): ``start()`` fails with ``LoginError`` or an
    ``OSError`` (refused, timeout, dropped during login).
    """


class CommandTimeout(EslError, TimeoutError):
    """No reply (or BACKGROUND_JOB) within the timeout. The command may still run on the PBX."""


class CommandFailed(EslError):
    """FreeSWITCH answered ``-ERR ...`` (``.reply`` is that frame), e.g. ``sendmsg`` to a dead
    channel: ``-ERR invalid session id [<uuid>]``."""

    def __init__(self, message: str, reply: EslFrame) -> None:
        super().__init__(message)
        self.reply = reply


@dataclass
class EslStats:
    """Counters since the client was created (all connections together)."""

    connects: int = 0
    reconnects: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    frames: int = 0
    events: int = 0
    events_handled: int = 0
    decode_errors: int = 0
    malformed: int = 0
    protocol_errors: int = 0
    handler_errors: int = 0
    commands_sent: int = 0
    command_errors: int = 0
    command_timeouts: int = 0
    late_replies: int = 0
    unmatched_replies: int = 0
    jobs_completed: int = 0
    heartbeat_timeouts: int = 0
    disconnect_notices: int = 0
    queue_depth: int = 0
    queue_high_water: int = 0
    read_pauses: int = 0


class _Pending:
    """One command waiting for its reply, in send order."""

    __slots__ = ("future", "job", "kind", "name")

    def __init__(self, kind: str, name: str, future: asyncio.Future[EslFrame], job: str | None = None) -> None:
        self.kind = kind  # "api" expects api/response; everything else command/reply
        self.name = name
        self.future = future
        self.job = job


class _Connection(asyncio.Protocol):
    """One TCP connection; all its per-link state dies with it (pending commands included)."""

    def __init__(self, client: EslClient) -> None:
        loop = asyncio.get_running_loop()
        self.client = client
        self.time = loop.time
        self.transport: asyncio.Transport | None = None
        self.parser = EslParser(keep_raw=client._record is not None, on_malformed=client._log_malformed)
        self.fifo: deque[_Pending] = deque()
        self.jobs: dict[str, asyncio.Future[EslEvent]] = {}
        self.greeting: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[Exception] = loop.create_future()
        self.reason: Exception | None = None
        self.authed = False
        self.paused = False
        self.last_rx = loop.time()
        self.watchdog: asyncio.Task[None] | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.client._on_data(self, data)

    def eof_received(self) -> bool:
        return False  # FreeSWITCH closed its side: close ours too

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._on_lost(self, exc)

    def abort(self, reason: Exception) -> None:
        if self.reason is None:
            self.reason = reason
        if self.transport is not None:
            self.transport.abort()


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _verb(command: str) -> str:
    return split_api(command)[0] or "?"


class EslClient(LinkSupervisor):
    _label = "ESL"
    _closed_error = ConnectionLost
    _login_error = LoginError
    _retry_errors = (OSError, EslError)
    _log = log
    _full_note = "FreeSWITCH drops a listener that falls too far behind"

    def __init__(
        self,
        host: str,
        port: int,
        password: str,
        *,
        name: str = "freeswitch",
        connect_timeout: float = 5.0,
        command_timeout: float = 10.0,
        heartbeat_timeout: float | None = 60.0,
        reconnect_min: float = 0.5,
        reconnect_max: float = 30.0,
        record: TraceWriter | None = None,
        queue_size: int = 100_000,
        clock: Callable[[], datetime] = _utcnow,
        event_format: Literal["json", "plain"] = "json",
        subscriptions: Sequence[str] = ("ALL",),
        filters: Iterable[tuple[str, str]] = (),
        job_timeout: float = 60.0,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        if event_format not in ("json", "plain"):
            raise ValueError(f"event_format must be 'json' or 'plain', not {event_format!r}")
        if not subscriptions:
            raise ValueError("subscriptions must name at least one event (or ALL)")
        self.host = host
        self.port = port
        self._password = password
        self.name = name
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.heartbeat_timeout = heartbeat_timeout
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.job_timeout = job_timeout
        self.event_format = event_format
        self.subscriptions = tuple(subscriptions)
        self.filters = tuple(filters)
        self._record = record
        self._clock = clock
        self._queue_size = queue_size
        self._warn_at = max(1, queue_size // 2)
        self._rearm_at = queue_size // 4
        self._resume_at = queue_size - queue_size // 10
        self._warned = False
        self._paused = False
        self._handlers: tuple[EventHandler, ...] = ()
        self._on_connected: tuple[ConnectedHandler, ...] = ()
        self._on_disconnected: tuple[DisconnectedHandler, ...] = ()
        self._queue: deque[tuple[Any, list[EslEvent] | None]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self._depth = 0
        self._conn: _Connection | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._started = False
        self._closing = False
        self._handler_error_counts: dict[int, int] = {}
        self._stats = EslStats()
        # Validate the setup commands now: a bad event name or filter is a programming error
        # that must fail at construction, not on every reconnect attempt.
        self._setup = self._setup_commands()

    def __repr__(self) -> str:
        return f"<EslClient {self.name} {self.host}:{self.port} connected={self.connected}>"

    # -- state ----------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Authenticated and subscribed over a link that is up."""
        conn = self._conn
        return conn is not None and conn.authed and conn.reason is None and not self._closing

    @property
    def stats(self) -> EslStats:
        st = self._stats
        st.queue_depth = self._depth
        return st

    # -- lifecycle ------------------------------------------------------------------------------
    # -- commands -------------------------------------------------------------------------------
    # The agreed API takes per-call timeouts (ASYNC109): every command needs one, and callers
    # should not have to wrap each call in asyncio.timeout() themselves.
    async def api(self, command: str, timeout: float | None = None) -> str:
        """``api <command>``: its output (the ``api/response`` body) as text, as FreeSWITCH wrote
        it - output has no status, so ``-ERR No such channel!`` or ``-USAGE: ...`` are returned,
        not raised. Raises ``CommandFailed`` when FreeSWITCH refuses the command itself
        (``-ERR permission denied``), ``CommandTimeout``, ``ConnectionLost`` (never re-sent),
        ``ValueError`` on CR/LF in the command.
        """
        conn = self._live()
        frame = await self._request(conn, encode_api(command), "api", f"api {_verb(command)}", timeout)
        if frame.content_type != CT_API_RESPONSE:
            self._stats.command_errors += 1
            raise CommandFailed(f"api {_verb(command)}: {frame.reply_text}", frame)
        return frame.text

    async def bgapi(self, command: str, timeout: float | None = None) -> str:
        """``bgapi <command>`` with our own Job-UUID; returns the BACKGROUND_JOB body (the
        command's output, e.g. ``+OK\\n`` or ``-ERR NO_ANSWER\\n``, returned not raised).

        ``timeout`` (default ``job_timeout``) covers the reply and the job. Raises
        ``CommandFailed`` if the bgapi itself is refused, ``CommandTimeout``,
        ``ConnectionLost`` (also when the link drops while the job runs: its outcome is unknown).
        """
        conn = self._live()
        loop = asyncio.get_running_loop()
        job = str(uuidlib.uuid4())
        limit = self.job_timeout if timeout is None else timeout
        deadline = loop.time() + limit
        fut: asyncio.Future[EslEvent] = loop.create_future()
        conn.jobs[job] = fut
        name = f"bgapi {_verb(command)}"
        try:
            frame = await self._request(
                conn, encode_bgapi(command, job), "bgapi", name, min(self.command_timeout, limit), job=job
            )
            if not frame.ok:
                self._stats.command_errors += 1
                raise CommandFailed(f"{name}: {frame.reply_text}", frame)
            try:
                async with asyncio.timeout_at(deadline):
                    event = await fut
            except TimeoutError:
                self._stats.command_timeouts += 1
                raise CommandTimeout(f"{name} (Job-UUID {job}): no BACKGROUND_JOB within {limit:g} s") from None
            return event.body or ""
        finally:
            for key, waiter in list(conn.jobs.items()):
                if waiter is fut:
                    del conn.jobs[key]
            if fut.done() and not fut.cancelled():
                fut.exception()  # retrieved: a ConnectionLost that raced the reply is not "lost"
            else:
                fut.cancel()

    async def sendmsg(
        self,
        uuid: str,
        app: str,
        arg: str | None = None,
        *,
        event_lock: bool = True,
        event_uuid: str | None = None,
        timeout: float | None = None,
    ) -> EslFrame:
        """Execute a dialplan application on a channel (``sendmsg`` ``call-command: execute``).

        The reply (``+OK``) only means "queued on the channel"; the application runs later
        (CHANNEL_EXECUTE ... CHANNEL_EXECUTE_COMPLETE). ``event_lock`` (default on): the channel
        finishes it before the next queued sendmsg (without it a queued ``set`` ran nested
        inside play_and_get_digits, checks/sendmsg_no_event_lock). ``event_uuid``: sent as
        ``Event-UUID``, comes back as ``Application-UUID`` on both events - use it to match the
        completion. Raises ``CommandFailed`` (``-ERR invalid session id [<uuid>]``),
        ``CommandTimeout``, ``ConnectionLost``.
        """
        conn = self._live()
        data = encode_execute(uuid, app, arg, event_lock=event_lock, event_uuid=event_uuid)
        frame = await self._request(conn, data, "command", f"sendmsg {app}", timeout)
        if not frame.ok:
            self._stats.command_errors += 1
            raise CommandFailed(f"sendmsg {app} to {uuid}: {frame.reply_text}", frame)
        return frame

    async def command(self, text: str, *, headers: Headers = (), timeout: float | None = None) -> EslFrame:
        """Any other command (``filter ...``, ``nixevent ...``, ``sendevent ...``); returns its
        reply. Raises ``CommandFailed`` on ``-ERR``, ``CommandTimeout``, ``ConnectionLost``."""
        conn = self._live()
        line = text.strip()
        kind = "api" if line.lower().startswith("api ") else "command"
        frame = await self._request(conn, encode_command(line, headers), kind, line.split(" ", 1)[0], timeout)
        if frame.content_type == CT_COMMAND_REPLY and not frame.ok:
            self._stats.command_errors += 1
            raise CommandFailed(f"{line.split(' ', 1)[0]}: {frame.reply_text}", frame)
        return frame

    # -- internals: requests --------------------------------------------------------------------
    def _live(self) -> _Connection:
        conn = self._conn
        if conn is None or not conn.authed or conn.reason is not None or self._closing:
            raise ConnectionLost(f"ESL {self.name}: not connected")
        return conn

    async def _request(
        self,
        conn: _Connection,
        data: bytes,
        kind: str,
        name: str,
        limit: float | None,
        *,
        job: str | None = None,
    ) -> EslFrame:
        fut: asyncio.Future[EslFrame] = asyncio.get_running_loop().create_future()
        pending = _Pending(kind, name, fut, job)
        self._write(conn, data)  # raises ConnectionLost before anything is queued
        conn.fifo.append(pending)
        if limit is None:
            limit = self.command_timeout
        try:
            async with asyncio.timeout(limit):
                # Timed out or cancelled, the future is cancelled but stays in the FIFO: the
                # reply will still come and is swallowed there, not given to the next command.
                return await fut
        except TimeoutError:
            self._stats.command_timeouts += 1
            raise CommandTimeout(f"{name}: no reply within {limit:g} s") from None

    def _write(self, conn: _Connection, data: bytes) -> None:
        transport = conn.transport
        if transport is None or transport.is_closing() or conn.reason is not None:
            raise ConnectionLost(f"ESL {self.name}: link is down")
        transport.write(data)
        st = self._stats
        st.bytes_out += len(data)
        st.commands_sent += 1
        if self._record is not None:
            self._record.send(data)  # the writer masks the auth password

    def _setup_commands(self) -> list[tuple[bytes, str]]:
        """``event ...`` and ``filter ...`` lines, with what bgapi and the watchdog need."""
        names = list(self.subscriptions)
        upper = [n.upper() for n in names]
        # After CUSTOM every name is a subclass (callcenter::info), so ours go before it.
        cut = upper.index("CUSTOM") if "CUSTOM" in upper else len(names)
        if "ALL" not in upper[:cut]:
            extra = ["BACKGROUND_JOB"] + (["HEARTBEAT"] if self.heartbeat_timeout else [])
            head = names[:cut] + [n for n in extra if n not in upper[:cut]]
            names = head + names[cut:]
        out = [(encode_event_subscription(self.event_format, names), "event")]
        filters = list(self.filters)
        if filters:
            have = {(h.lower(), v) for h, v in filters}
            for value in ["BACKGROUND_JOB"] + (["HEARTBEAT"] if self.heartbeat_timeout else []):
                if ("event-name", value) not in have:
                    filters.append(("Event-Name", value))
        out.extend((encode_filter(h, v), "filter") for h, v in filters)
        return out

    # -- internals: the reader (hot path) -------------------------------------------------------
    def _on_data(self, conn: _Connection, data: bytes) -> None:
        st = self._stats
        st.bytes_in += len(data)
        conn.last_rx = conn.time()
        parser = conn.parser
        rec = self._record
        try:
            # Events come out of the framer already decoded (lazily); recording needs every
            # message's raw bytes, so it takes the frame path instead.
            items = parser.feed_events(data) if rec is None else parser.feed(data)
        except EslProtocolError as exc:
            st.protocol_errors += 1
            log.error("ESL %s: framing lost, dropping the link: %s", self.name, exc)
            conn.abort(ConnectionLost(f"ESL framing lost: {exc}"))
            return
        if parser.decode_errors or parser.malformed:
            st.decode_errors += parser.decode_errors
            st.malformed += parser.malformed
            parser.decode_errors = parser.malformed = 0
        if not items:
            return
        st.frames += len(items)
        batch: list[EslEvent] = []
        append = batch.append
        jobs = conn.jobs
        for item in items:
            if rec is not None and isinstance(item, EslFrame):
                decoded = self._recorded(rec, item)
                if decoded is None:
                    continue
                item = decoded
            if isinstance(item, EslEvent):
                if jobs and item.name == "BACKGROUND_JOB":
                    self._job_done(conn, item)
                append(item)
            else:
                self._on_reply(conn, item, item.headers.get("Content-Type"))
        if batch:
            n = len(batch)
            # One stamp per read: all its events arrived together.
            self._queue.append((self._clock(), batch))
            waiter = self._waiter
            if waiter is not None:
                self._waiter = None
                if not waiter.done():
                    waiter.set_result(None)
            st.events += n
            depth = self._depth + n
            self._depth = depth
            if depth > st.queue_high_water:
                st.queue_high_water = depth
            if depth >= self._warn_at:
                self._pressure(conn, depth)

    def _recorded(self, rec: TraceWriter, frame: EslFrame) -> EslFrame | EslEvent | None:
        """Recording path: write the message as received, then decode it if it is an event."""
        rec.recv(frame.raw)
        ct = frame.headers.get("Content-Type")
        if ct != CT_EVENT_JSON and ct != CT_EVENT_PLAIN:
            return frame
        body = frame.body
        try:
            text = body.decode()
        except UnicodeDecodeError:
            self._stats.decode_errors += 1
            text = body.decode("utf-8", "replace")
        try:
            return _from_json(text) if ct == CT_EVENT_JSON else _from_plain(text)
        except EslDecodeError as exc:
            self._malformed(body[:200], str(exc))
            return None

    def _malformed(self, raw: bytes, reason: str) -> None:
        self._stats.malformed += 1
        self._log_malformed(raw, reason)

    def _log_malformed(self, raw: bytes, reason: str) -> None:
        log.warning("ESL %s: undecodable event skipped (%s): %r", self.name, reason, raw)

    def _job_done(self, conn: _Connection, event: EslEvent) -> None:
        job = event.get("Job-UUID")
        fut = conn.jobs.get(job) if job is not None else None
        if fut is not None and not fut.done():
            self._stats.jobs_completed += 1
            fut.set_result(event)

    def _on_reply(self, conn: _Connection, frame: EslFrame, ct: str | None) -> None:
        st = self._stats
        if ct == CT_COMMAND_REPLY or ct == CT_API_RESPONSE:
            if not conn.fifo:
                st.unmatched_replies += 1
                log.warning("ESL %s: reply with no command waiting ignored: %r", self.name, frame.raw or frame.headers)
                return
            pending = conn.fifo.popleft()
            if ct == CT_API_RESPONSE and pending.kind != "api":
                # An api/response can only answer an api: the command stream and the reply
                # stream no longer line up, and every later reply would be misattributed.
                st.protocol_errors += 1
                reason = ConnectionLost(
                    f"ESL {self.name}: api/response while {pending.name} waited: replies out of step"
                )
                log.error("%s; dropping the link", reason)
                if not pending.future.done():
                    pending.future.set_exception(reason)
                conn.abort(reason)
                return
            if pending.job is not None and frame.job_uuid and frame.job_uuid != pending.job:
                # A FreeSWITCH that ignored our Job-UUID header: follow its own, here in the
                # reader, before its BACKGROUND_JOB (which may be in this very read) is seen.
                fut = conn.jobs.pop(pending.job, None)
                if fut is not None:
                    conn.jobs[frame.job_uuid] = fut
            if pending.future.done():  # its caller timed out or was cancelled
                st.late_replies += 1
                log.debug("ESL %s: late reply to %s dropped", self.name, pending.name)
                return
            pending.future.set_result(frame)
        elif ct == CT_AUTH_REQUEST:
            if not conn.greeting.done():
                conn.greeting.set_result(None)
            else:
                log.warning("ESL %s: unexpected auth/request on an open link", self.name)
        elif ct == CT_DISCONNECT_NOTICE:
            text = frame.text.strip()
            if (frame.get("Content-Disposition") or "").lower() == "linger":
                log.info("ESL %s: disconnect notice (linger) ignored: %s", self.name, text)
                return
            st.disconnect_notices += 1
            reason = ConnectionLost(f"FreeSWITCH disconnected: {text or 'disconnect notice'}")
            if not self._closing:
                log.warning("ESL %s: %s", self.name, reason)
            if conn.reason is None:
                conn.reason = reason
            self._fail_link(conn, conn.reason)
            if conn.transport is not None:
                conn.transport.close()
        elif ct == CT_RUDE_REJECTION:
            refused = LoginError(f"FreeSWITCH {self.name} {self.host}:{self.port} refused us: {frame.text.strip()}")
            if not conn.greeting.done():
                conn.greeting.set_exception(refused)
            conn.abort(refused)
        else:
            log.debug("ESL %s: frame of type %r ignored", self.name, ct)

    def _on_resume(self, conn: _Connection) -> None:
        conn.last_rx = conn.time()  # the watchdog must not count the paused time as silence

    # -- internals: dispatch --------------------------------------------------------------------
    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        st = self._stats
        while True:
            if not queue:
                waiter: asyncio.Future[None] = loop.create_future()
                self._waiter = waiter
                await waiter
                continue
            at, batch = queue.popleft()
            if batch is None:  # a barrier (drain / resync): everything before it is handled
                if not at.done():
                    at.set_result(None)
                continue
            taken = 0
            handlers = self._handlers
            try:
                for event in batch:
                    taken += 1
                    for handler in handlers:
                        try:
                            result = handler(event, at)
                            if result is not None and inspect.isawaitable(result):
                                await result
                        except Exception as exc:
                            self._handler_failed(handler, event, exc)
                    if not taken % _YIELD_EVERY:
                        # Sync handlers never yield: let the reader run.
                        self._depth -= taken
                        st.events_handled += taken
                        taken = 0
                        self._after_batch()
                        await asyncio.sleep(0)
            finally:
                self._depth -= taken
                st.events_handled += taken
            self._after_batch()
            if queue:
                await asyncio.sleep(0)

    def _event_label(self, event: EslEvent) -> tuple[str, str | None]:
        try:
            call = event.call_id
        except EslDecodeError:
            call = None
        return event.name or "?", call

    async def _barrier(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((fut, None))
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        await fut

    def _start_workers(self, loop: asyncio.AbstractEventLoop) -> None:
        self._worker_task = loop.create_task(self._worker(), name=f"esl-{self.name}-worker")

    def _goodbye(self, conn: _Connection) -> None:
        if conn.authed:
            # Polite goodbye; FreeSWITCH's "+OK bye" and disconnect notice are not awaited.
            self._write(conn, encode_exit())

    async def _stop_workers(self) -> None:
        task = self._worker_task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._worker_task = None
        self._waiter = None
        for at, batch in self._queue:
            if batch is None and not at.done():
                at.cancel()
        self._queue.clear()
        self._depth = 0

    # -- internals: link --------------------------------------------------------------------------
    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        conn = _Connection(self)
        where = f"ESL {self.name} {self.host}:{self.port}"
        try:
            async with asyncio.timeout(self.connect_timeout):
                await loop.create_connection(lambda: conn, self.host, self.port)
                # Wait for auth/request: proves this is an Event Socket before we send the password.
                await asyncio.shield(conn.greeting)
                if self._record is not None:
                    self._record.note(f"connected to {self.host}:{self.port}")
                reply = await self._request(conn, encode_auth(self._password), "command", "auth", None)
                if not reply.ok:
                    raise LoginError(f"{where}: {reply.reply_text}")
                for data, what in self._setup:
                    reply = await self._request(conn, data, "command", what, None)
                    if not reply.ok:
                        line = data.split(b"\n", 1)[0].decode("utf-8", "replace")
                        raise CommandFailed(f"{where}: {line!r} refused: {reply.reply_text}", reply)
        except BaseException as exc:
            if conn.reason is None:
                conn.reason = exc if isinstance(exc, Exception) else ConnectionLost("cancelled")
            if conn.transport is not None:
                conn.transport.abort()
            if isinstance(exc, TimeoutError) and not isinstance(exc, CommandTimeout):
                raise TimeoutError(f"{where}: no ESL greeting/auth reply within the timeout") from None
            raise
        conn.authed = True
        conn.last_rx = conn.time()
        self._conn = conn
        self._stats.connects += 1
        if self.heartbeat_timeout:
            conn.watchdog = loop.create_task(self._watchdog(conn), name=f"esl-{self.name}-watchdog")
        log.info("ESL %s: authenticated to %s:%d, events %s", self.name, self.host, self.port, self.event_format)
        return conn

    def _on_lost(self, conn: _Connection, exc: Exception | None) -> None:
        if conn.reason is None:
            if exc is not None:
                conn.reason = ConnectionLost(f"connection lost: {exc}")
            else:
                conn.reason = ConnectionLost("connection closed by FreeSWITCH")
        rest = conn.parser.pending
        if self._record is not None:
            if rest:
                self._record.recv(rest)
            self._record.note(f"connection closed: {conn.reason}")
        if rest:
            log.warning("ESL %s: link closed inside a message (%d bytes discarded)", self.name, len(rest))
        self._fail_link(conn, conn.reason)

    def _fail_link(self, conn: _Connection, reason: Exception) -> None:
        """Everything that waited on this link fails with ConnectionLost - and is forgotten."""
        if conn.closed.done():
            return
        if self._conn is conn:
            self._paused = False
        text = str(reason)
        while conn.fifo:
            pending = conn.fifo.popleft()
            if not pending.future.done():
                pending.future.set_exception(ConnectionLost(f"{pending.name}: {text}"))
        for job, fut in conn.jobs.items():
            if not fut.done():
                fut.set_exception(ConnectionLost(f"bgapi job {job}: {text}"))
        if not conn.greeting.done():
            conn.greeting.set_exception(reason if isinstance(reason, LoginError) else ConnectionLost(text))
            conn.greeting.exception()
        if conn.watchdog is not None and conn.watchdog is not asyncio.current_task():
            conn.watchdog.cancel()
        conn.closed.set_result(reason)

    async def _watchdog(self, conn: _Connection) -> None:
        limit = self.heartbeat_timeout
        assert limit
        while True:
            wait = conn.last_rx + limit - conn.time()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            if conn.paused:
                # Our own backpressure: FreeSWITCH's heartbeats are in the unread data.
                conn.last_rx = conn.time()
                continue
            self._stats.heartbeat_timeouts += 1
            log.warning(
                "ESL %s: nothing received for %g s (FreeSWITCH sends HEARTBEAT every 20 s): dropping the link",
                self.name,
                limit,
            )
            conn.abort(ConnectionLost(f"no HEARTBEAT or other traffic within {limit:g} s"))
            return

    # -- supervision (shared with the other PBX client: callcenter.pbx.link.LinkSupervisor) --
    def _barrier_timeout(self) -> float:
        return self.command_timeout

    def _timer_task(self, conn: _Connection) -> asyncio.Task[None] | None:
        return conn.watchdog

    def _stop_timers(self, conn: _Connection) -> None:
        if conn.watchdog is not None:
            conn.watchdog.cancel()
