"""Asyncio AMI client: the controller's link to one Asterisk.

Shape (imperative shell around the sans-I/O parser in ``protocol.py``)::

    socket --data_received--> AmiParser --> responses / list items / AsyncAGIExec: resolved at once
                                       \\--> events --> shard queues (by call) --> workers --> handlers

Why each piece looks the way it does:

* **Transport** is an ``asyncio.Protocol`` (no streams): one callback per read, the whole read
  parsed in one go. Asterisk drops a manager session whose writes stay blocked for more than
  ``writetimeout`` (100 ms by default), so the reader must never wait for anything: it only
  parses, resolves waiting actions and appends events to in-memory queues.
* **Actions** are correlated by ``ActionID`` (unique per client: a random token + counter, so a
  late ``OriginateResponse`` carrying the ActionID of an Originate sent long ago, as in the
  whisper_barge trace, can never be mistaken for the answer to a newer action). Every action
  has a timeout (``ActionTimeout``). ``Response: Error`` raises ``ActionFailed`` (failed Getvar:
  ``No such channel``; unknown action). Responses are resolved in the reader, not behind the
  event queue, so slow handlers never delay an action (a response may therefore overtake
  events that were read before it and are still queued).
* **Event lists** (CoreShowChannels, QueueStatus, Status, ...): the response says
  ``EventList: start``, items are events carrying the ActionID (first or last header, it
  varies), the end is the ``*Complete`` event (``EventList: Complete``). ``action_list``
  returns ``(response, items)`` where ``items`` **ends with the Complete event** (it carries
  ``ListItems``). List items are not dispatched to event handlers.
* **AsyncAGI**: ``Action: AGI`` only answers ``Added AGI command to queue``; the result comes
  later as ``Event: AsyncAGIExec`` with ``CommandId`` (sic) = our ``CommandID``. ``agi()``
  waits for that event (AGIExecStart/End carry an unrelated internal CommandId and are
  ignored for correlation). If the AGI session ends first (``AsyncAGIEnd`` or ``Hangup`` of
  the channel) the call fails with ``AgiEnded``. AsyncAGIExec is *also* dispatched to handlers.
* **Never re-send**: when the link drops, every in-flight action fails with
  ``ConnectionLost``. Nothing is queued for "after reconnect" - an Originate or Redirect that
  may or may not have reached Asterisk must not run twice; the caller decides.
* **Reconnect**: exponential backoff (``reconnect_min`` doubling to ``reconnect_max``) with
  jitter (x0.5..1), re-login, then - after the events read on the old link have been handled -
  the ``on_connected`` hooks (the adapter resyncs live state there: CoreShowChannels,
  QueueStatus). Hooks also run after the first login, before ``start()`` returns.
* **Keepalive**: ``Ping`` every ``ping_interval`` s; no answer within ``ping_timeout`` s aborts
  the link (half-open TCP: a dead peer is otherwise only noticed after minutes) and the
  reconnect loop takes over.
* **Dispatch**: events go to ``workers`` shard queues by ``hash(call key) % workers`` where the
  key is Linkedid, else Uniqueid (else the Dest*/Spyer* ids of legs that have no own snapshot,
  e.g. Originate DialBegin); events with no call at all (QueueMemberStatus, DeviceStateChange,
  FullyBooted) go to one extra global shard. Within a shard, handlers run strictly in arrival
  order and async handlers are awaited (ordered per call; one slow call only delays calls in
  its shard). Across shards there is no order - so a *stateful consumer that spans calls*
  (one translator fed by every call and by QueueMemberStatus) sees an interleaving that
  depends on read boundaries: measured on the captures, such a translator's output differs
  from feeding it in PBX order. ``workers=0`` gives one queue in exact PBX order instead
  (no per-call isolation of slow handlers). A handler that raises is logged with the call
  key and counted (``stats.handler_errors``); the other handlers and later events are not
  affected. Workers yield to the loop every 256 events so sync handlers cannot starve the
  reader.
* **Queue bound** (``queue_size``, all shards together): at half of it a warning is logged
  (once per excursion) - handlers are slower than the PBX. Only at the bound itself reading
  from the socket is paused (``pause_reading``), and resumed when the backlog is back to 90 %.
  Nothing is ever dropped by the client; while paused Asterisk may give up on the session
  (writetimeout), which then is an ordinary disconnect: reconnect + ``on_connected`` resync.
  Pings are not checked while reading is paused (the pong is in the unread data). A single
  read (up to 256 KiB) is always enqueued whole, so the bound may be exceeded by one read.
* **Recording** (``record=TraceWriter``): every message received and every action sent, one
  frame per message, byte-exact, with the Login ``Secret`` replaced by ``********``. Bytes of
  malformed frames and of a message cut off by a disconnect are recorded too.
* Credentials are never logged (neither username nor secret) and not in ``repr``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import secrets
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from callcenter.pbx.asterisk.message import AmiMessage
from callcenter.pbx.asterisk.protocol import AmiParser, encode_action
from callcenter.pbx.asterisk.trace import TraceWriter
from callcenter.pbx.link import LinkSupervisor

__all__ = [
    "ActionFailed",
    "ActionTimeout",
    "AgiEnded",
    "AmiClient",
    "AmiError",
    "AmiStats",
    "ConnectionLost",
    "LoginError",
]

log = logging.getLogger(__name__)

EventHandler = Callable[[AmiMessage, datetime], Awaitable[None] | None]
ConnectedHandler = Callable[[], Awaitable[None]]
DisconnectedHandler = Callable[[Exception | None], Awaitable[None] | None]
Headers = Mapping[str, str] | Sequence[tuple[str, str]]

_MASK = "********"
_YIELD_EVERY = 256
_ABANDONED_MAX = 1024


class AmiError(Exception):
    """Base of every error the AMI client raises."""


class LoginError(AmiError):
    """Login refused; the message is Asterisk's (``Authentication failed``)."""


class ConnectionLost(AmiError, ConnectionError):
    """The link is down (or went down while the action was in flight); nothing is re-sent.

    Also a ``ConnectionError`` (hence ``OSError``): ``start()`` fails with ``LoginError`` or an
    ``OSError`` (refused, timeout, dropped during login).
    """


class ActionTimeout(AmiError, TimeoutError):
    """No (complete) answer within the timeout. The action may still have run on the PBX."""


class ActionFailed(AmiError):
    """Asterisk answered ``Response: Error``; ``.response`` is that message."""

    def __init__(self, message: str, response: AmiMessage) -> None:
        super().__init__(message)
        self.response = response


class AgiEnded(ActionFailed):
    """The AsyncAGI session ended (AsyncAGIEnd / Hangup) before our command produced a result."""


@dataclass
class AmiStats:
    """Counters since the client was created (all connections together)."""

    connects: int = 0
    reconnects: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    messages: int = 0
    events: int = 0
    events_handled: int = 0
    decode_errors: int = 0
    malformed: int = 0
    handler_errors: int = 0
    actions_sent: int = 0
    action_errors: int = 0
    action_timeouts: int = 0
    unmatched_responses: int = 0
    ping_timeouts: int = 0
    queue_depth: int = 0
    queue_high_water: int = 0
    read_pauses: int = 0


class _Pending:
    """An action waiting for its response. An AGI action has no future of its own: its reply
    goes to its ``_AgiSent`` (``agi``), whose one future carries the command's outcome."""

    __slots__ = ("agi", "future", "is_list", "items", "name", "response")

    def __init__(self, name: str, future: asyncio.Future[Any] | None, is_list: bool,
                 agi: _AgiSent | None = None) -> None:
        self.name = name
        self.future = future
        self.is_list = is_list
        self.agi = agi
        self.response: AmiMessage | None = None
        self.items: list[AmiMessage] = []


# (channel, command, command_id or None, timeout or None): one command for ``AmiClient.agi_many``
AgiRequest = tuple[str, str, "str | None", "float | None"]


@dataclass(slots=True)
class _AgiSent:
    """An AGI action registered on a connection: its bytes, and the one future that gets its
    AsyncAGIExec (or why there is none: refused, timed out, session ended, link lost)."""

    channel: str
    command: str
    cid: str
    aid: str
    fut: asyncio.Future[AmiMessage]
    limit: float
    reply_by: float  # loop time: the action's response is due (min(action_timeout, limit))
    deadline: float  # loop time: the AsyncAGIExec is due
    data: bytes
    replied: bool = False


class _AgiBatch:
    """The AGI actions of one write, watched by one timer instead of a task and two timeouts
    per command (a routed call sends 3-4: display name, queue, priority, BREAK)."""

    __slots__ = ("conn", "left", "sent", "timer")

    def __init__(self, conn: _Connection, sent: list[_AgiSent]) -> None:
        self.conn = conn
        self.sent = sent
        self.left = len(sent)
        self.timer: asyncio.TimerHandle | None = None


class _Shard:
    __slots__ = ("index", "queue", "task", "waiter")

    def __init__(self, index: int) -> None:
        self.index = index
        # (received_at, [messages of one read for this shard]) or (barrier future, None).
        # Batches, not single events: one deque operation per read and shard instead of per
        # event keeps the reader's per-event cost to a list append.
        self.queue: deque[tuple[Any, list[AmiMessage] | None]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None


class _Connection(asyncio.Protocol):
    """One TCP connection; all its per-link state dies with it (pending actions included)."""

    def __init__(self, client: AmiClient) -> None:
        loop = asyncio.get_running_loop()
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.parser = AmiParser(keep_raw=client._record is not None, on_malformed=self._malformed)
        self.pending: dict[str, _Pending] = {}
        self.lists: dict[str, _Pending] = {}
        self.abandoned: OrderedDict[str, None] = OrderedDict()
        self.agi: dict[str, tuple[str, asyncio.Future[AmiMessage]]] = {}
        # channel -> CommandIDs in flight: a channel's AsyncAGIEnd/Hangup fails its own commands
        # without scanning every call's (with thousands of calls that scan was quadratic)
        self.agi_by_channel: dict[str, set[str]] = {}
        self.banner: asyncio.Future[str] = loop.create_future()
        self.closed: asyncio.Future[Exception] = loop.create_future()
        self.reason: Exception | None = None
        self.logged_in = False
        self.paused = False
        self.keepalive: asyncio.Task[None] | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.client._on_data(self, data)

    def eof_received(self) -> bool:
        return False  # half-close from Asterisk: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._on_lost(self, exc)

    def _malformed(self, raw: bytes, reason: str) -> None:
        log.warning("AMI %s: malformed frame skipped (%s): %r", self.client.name, reason, raw[:200])
        rec = self.client._record
        if rec is not None:
            rec.recv(raw)

    def abort(self, reason: Exception) -> None:
        if self.reason is None:
            self.reason = reason
        if self.transport is not None:
            self.transport.abort()


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _is_complete(msg: AmiMessage, event: str) -> bool:
    return msg.get_exact("EventList") == "Complete" or event.endswith("Complete")


class AmiClient(LinkSupervisor):
    _label = "AMI"
    _closed_error = ConnectionLost
    _login_error = LoginError
    _retry_errors = (OSError, AmiError)
    _log = log
    _full_note = "Asterisk may drop the session (writetimeout)"

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        name: str = "asterisk",
        connect_timeout: float = 5.0,
        action_timeout: float = 10.0,
        ping_interval: float | None = 15.0,
        ping_timeout: float = 5.0,
        reconnect_min: float = 0.5,
        reconnect_max: float = 30.0,
        record: TraceWriter | None = None,
        queue_size: int = 100_000,
        clock: Callable[[], datetime] = _utcnow,
        workers: int = 8,
        agi_timeout: float = 60.0,
    ) -> None:
        if queue_size < 1 or workers < 0:
            raise ValueError("queue_size must be >= 1 and workers >= 0")
        self.host = host
        self.port = port
        self._username = username
        self._secret = secret
        self.name = name
        self.connect_timeout = connect_timeout
        self.action_timeout = action_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.agi_timeout = agi_timeout
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
        self._shards = [_Shard(i) for i in range(workers)]
        self._global = _Shard(workers)
        self._all_shards = (*self._shards, self._global)
        self._nshards = workers
        self._depth = 0
        self._conn: _Connection | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._started = False
        self._closing = False
        self._id_token = secrets.token_hex(3)
        self._id_seq = 0
        self._handler_error_counts: dict[int, int] = {}
        self._stats = AmiStats()
        self._decode_base = 0
        self._malformed_base = 0
        self.banner: str | None = None

    def __repr__(self) -> str:
        return f"<AmiClient {self.name} {self.host}:{self.port} connected={self.connected}>"

    # -- state ----------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Logged in over a link that is up."""
        conn = self._conn
        return conn is not None and conn.logged_in and conn.reason is None and not self._closing

    @property
    def stats(self) -> AmiStats:
        st = self._stats
        conn = self._conn
        st.decode_errors = self._decode_base + (conn.parser.decode_errors if conn else 0)
        st.malformed = self._malformed_base + (conn.parser.malformed if conn else 0)
        st.queue_depth = self._depth
        return st

    # -- lifecycle ------------------------------------------------------------------------------
    # -- actions --------------------------------------------------------------------------------
    # The agreed API takes per-call timeouts (ASYNC109): every action needs one, and callers should
    # not have to wrap each call in asyncio.timeout() themselves.
    async def action(
        self,
        name: str,
        headers: Headers = (),
        *,
        timeout: float | None = None,
    ) -> AmiMessage:
        """Send one action and return its response.

        An ``ActionID`` in ``headers`` is used as given (must not be in flight); otherwise one
        is generated (read it back from ``response.action_id``, e.g. to match a later
        ``OriginateResponse``). Raises ``ActionFailed`` on ``Response: Error``,
        ``ActionTimeout``, ``ConnectionLost`` (never re-sent), ``ValueError`` on CR/LF in a value.
        """
        conn = self._live()
        result = await self._request(conn, name, headers, timeout)
        assert isinstance(result, AmiMessage)
        return result

    async def action_list(
        self,
        name: str,
        headers: Headers = (),
        *,
        timeout: float | None = None,
    ) -> tuple[AmiMessage, list[AmiMessage]]:
        """Send an EventList action; return ``(response, items)``.

        ``items`` are the list events in arrival order and **end with the ``*Complete``
        event** (``EventList: Complete``, ``ListItems: n``). If the response is not a list
        (no ``EventList: start``), ``items`` is empty. ``timeout`` covers the whole list.
        """
        conn = self._live()
        result = await self._request(conn, name, headers, timeout, is_list=True)
        assert isinstance(result, tuple)
        return result

    async def agi(
        self,
        channel: str,
        command: str,
        *,
        command_id: str | None = None,
        timeout: float | None = None,
    ) -> AmiMessage:
        """Queue an AsyncAGI command and return its ``AsyncAGIExec`` event.

        Decode the result with ``protocol.agi_result(event)``. ``timeout`` (default
        ``agi_timeout``) covers the whole command - GET DATA/STREAM FILE run for as long as the
        prompt/wait lasts. Raises ``ActionFailed`` if the action is refused (``Channel ... does
        not exist.``), ``AgiEnded`` if the AGI session ends first, ``ActionTimeout``,
        ``ConnectionLost``.
        """
        conn = self._live()
        return await self._agi_send(conn, [(channel, command, command_id, timeout)])[0]

    def agi_many(self, commands: Sequence[AgiRequest]) -> list[asyncio.Future[AmiMessage]]:
        """Queue several AsyncAGI commands **now**, in order, in one socket write.

        Each item is ``(channel, command, command_id, timeout)`` as for ``agi()``. Returns one
        future per command, resolving as ``agi()`` does (its ``AsyncAGIExec`` event, or the same
        exceptions); cancelling one forgets its command. The actions are on the socket when this
        returns, so the PBX queues them in this order whoever awaits the futures, and when: a
        caller can put a call's commands on the wire from a plain callback and wait for their
        results elsewhere. Raises ``ConnectionLost`` (nothing sent) when the link is down,
        ``ValueError`` for a CommandID already in flight or an action that cannot be encoded.
        """
        return self._agi_send(self._live(), commands)

    def _agi_send(self, conn: _Connection, commands: Sequence[AgiRequest]) -> list[asyncio.Future[AmiMessage]]:
        """Register, write in one go, and watch: no task per command. Each command's future is
        resolved by the reader (AsyncAGIExec, an error response, the session's end, the link's
        loss) or by the batch's timer; its waiters are forgotten when it is done."""
        if not commands:
            return []
        sent: list[_AgiSent] = []
        try:
            for channel, command, command_id, timeout in commands:
                sent.append(self._agi_register(conn, channel, command, command_id, timeout))
            self._write(conn, b"".join(x.data for x in sent), actions=len(sent))
        except BaseException:
            for s in sent:
                self._agi_forget(conn, s)
            raise
        batch = _AgiBatch(conn, sent)
        done = functools.partial(self._agi_done, batch)
        for one in sent:
            one.fut.add_done_callback(functools.partial(done, one))
        self._agi_arm(batch)
        return [one.fut for one in sent]

    def _agi_register(self, conn: _Connection, channel: str, command: str, command_id: str | None,
                      timeout: float | None) -> _AgiSent:
        """An AGI action's waiters registered and its bytes encoded; not written yet."""
        loop = asyncio.get_running_loop()
        cid = command_id or self._next_id("agi")
        if cid in conn.agi:
            raise ValueError(f"AGI CommandID {cid!r} is already in flight")
        limit = self.agi_timeout if timeout is None else timeout
        fut: asyncio.Future[AmiMessage] = loop.create_future()
        aid = self._next_id("agi")
        data = encode_action("AGI", [("Channel", channel), ("Command", command), ("CommandID", cid)], aid)
        now = loop.time()
        reply_by = now + min(self.action_timeout, limit)
        sent = _AgiSent(channel, command, cid, aid, fut, limit, reply_by, now + limit, data)
        conn.agi[cid] = (channel, fut)
        conn.agi_by_channel.setdefault(channel, set()).add(cid)
        conn.pending[aid] = _Pending("AGI", None, False, sent)
        return sent

    def _agi_forget(self, conn: _Connection, sent: _AgiSent) -> None:
        conn.pending.pop(sent.aid, None)
        if conn.agi.get(sent.cid, (None, None))[1] is sent.fut:
            del conn.agi[sent.cid]
            ids = conn.agi_by_channel.get(sent.channel)
            if ids is not None:
                ids.discard(sent.cid)
                if not ids:
                    del conn.agi_by_channel[sent.channel]
        fut = sent.fut
        if fut.done() and not fut.cancelled():
            fut.exception()  # retrieved: an AgiEnded that raced a failed action is not "lost"
        else:
            fut.cancel()

    def _agi_done(self, batch: _AgiBatch, sent: _AgiSent, _fut: asyncio.Future[AmiMessage]) -> None:
        self._agi_forget(batch.conn, sent)
        batch.left -= 1
        if not batch.left and batch.timer is not None:
            batch.timer.cancel()
            batch.timer = None

    def _agi_arm(self, batch: _AgiBatch) -> None:
        """The batch's timer at its next due time: a missing response, else a missing result."""
        due = min((s.deadline if s.replied else s.reply_by) for s in batch.sent if not s.fut.done())
        batch.timer = asyncio.get_running_loop().call_at(due, self._agi_due, batch)

    def _agi_due(self, batch: _AgiBatch) -> None:
        batch.timer = None
        now = asyncio.get_running_loop().time()
        for s in batch.sent:
            if s.fut.done():
                continue
            if not s.replied and now >= s.reply_by:
                self._stats.action_timeouts += 1
                s.fut.set_exception(ActionTimeout(
                    f"AGI (ActionID {s.aid}): no response within {min(self.action_timeout, s.limit):g} s"))
            elif now >= s.deadline:
                self._stats.action_timeouts += 1
                s.fut.set_exception(ActionTimeout(
                    f"AGI {s.command.split(' ', 1)[0]!r} (CommandID {s.cid}) on {s.channel}: "
                    f"no AsyncAGIExec within {s.limit:g} s"
                ))
        if any(not s.fut.done() for s in batch.sent):
            self._agi_arm(batch)

    # -- internals: requests --------------------------------------------------------------------
    def _next_id(self, prefix: str) -> str:
        self._id_seq += 1
        return f"{prefix}-{self._id_token}-{self._id_seq}"

    def _live(self) -> _Connection:
        conn = self._conn
        if conn is None or not conn.logged_in or conn.reason is not None or self._closing:
            raise ConnectionLost(f"AMI {self.name}: not connected")
        return conn

    async def _request(
        self,
        conn: _Connection,
        name: str,
        headers: Headers,
        limit: float | None,
        *,
        is_list: bool = False,
        record_as: bytes | None = None,
    ) -> AmiMessage | tuple[AmiMessage, list[AmiMessage]]:
        items = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        aid = None
        for i, (k, v) in enumerate(items):
            if isinstance(k, str) and k.lower() == "actionid":
                aid = str(v)
                del items[i]
                break
        if aid is None:
            aid = self._next_id(name.lower())
        elif aid in conn.pending:
            raise ValueError(f"ActionID {aid!r} is already in flight")
        data = encode_action(name, items, aid)
        pending = _Pending(name, asyncio.get_running_loop().create_future(), is_list)
        conn.pending[aid] = pending
        if is_list:
            conn.lists[aid] = pending
        try:
            self._write(conn, data, record_as)
        except BaseException:
            conn.pending.pop(aid, None)
            conn.lists.pop(aid, None)
            raise
        return await self._await_reply(conn, aid, pending, limit)

    async def _await_reply(self, conn: _Connection, aid: str, pending: _Pending,
                           limit: float | None) -> Any:
        """The response to an action already written (or its complete list)."""
        if limit is None:
            limit = self.action_timeout
        try:
            assert pending.future is not None
            async with asyncio.timeout(limit):
                return await pending.future
        except TimeoutError:
            self._stats.action_timeouts += 1
            if pending.is_list:
                # Items may still come; swallow them instead of handing them to event handlers.
                conn.abandoned[aid] = None
                while len(conn.abandoned) > _ABANDONED_MAX:
                    conn.abandoned.popitem(last=False)
            what = "complete list" if pending.is_list else "response"
            raise ActionTimeout(f"{pending.name} (ActionID {aid}): no {what} within {limit:g} s") from None
        finally:
            conn.pending.pop(aid, None)
            conn.lists.pop(aid, None)

    def _write(self, conn: _Connection, data: bytes, record_as: bytes | None = None, *, actions: int = 1) -> None:
        transport = conn.transport
        if transport is None or transport.is_closing() or conn.reason is not None:
            raise ConnectionLost(f"AMI {self.name}: link is down")
        transport.write(data)
        st = self._stats
        st.bytes_out += len(data)
        st.actions_sent += actions
        if self._record is not None:
            self._record.send(record_as if record_as is not None else data)

    # -- internals: the reader (hot path) -------------------------------------------------------
    def _on_data(self, conn: _Connection, data: bytes) -> None:
        st = self._stats
        st.bytes_in += len(data)
        msgs = conn.parser.feed(data)
        if not msgs:
            return
        st.messages += len(msgs)
        rec = self._record
        nshards = self._nshards
        batches: list[list[AmiMessage] | None] = [None] * (nshards + 1)  # last: the global shard
        enqueued = 0
        for msg in msgs:
            if rec is not None:
                rec.recv(msg.raw)
            event = msg.event
            if event is None:
                self._on_non_event(conn, msg)
                continue
            if conn.lists or conn.abandoned:
                aid = msg.get_exact("ActionID")
                if aid is not None and self._list_item(conn, msg, event, aid):
                    continue
            if conn.agi and (event == "AsyncAGIExec" or event == "AsyncAGIEnd" or event == "Hangup"):
                self._agi_event(conn, msg, event)
            key = msg.call_key()
            index = hash(key) % nshards if key and nshards else nshards
            batch = batches[index]
            if batch is None:
                batches[index] = [msg]
            else:
                batch.append(msg)
            enqueued += 1
        if enqueued:
            now = self._clock()  # one stamp per read: all its messages arrived together
            for shard, batch in zip(self._all_shards, batches, strict=True):
                if batch is not None:
                    shard.queue.append((now, batch))
                    waiter = shard.waiter
                    if waiter is not None:
                        shard.waiter = None
                        if not waiter.done():
                            waiter.set_result(None)
            # No worker runs while this callback does, so the bound is checked once per read.
            st.events += enqueued
            depth = self._depth + enqueued
            self._depth = depth
            if depth > st.queue_high_water:
                st.queue_high_water = depth
            if depth >= self._warn_at:
                self._pressure(conn, depth)

    def _on_non_event(self, conn: _Connection, msg: AmiMessage) -> None:
        get = msg.get_exact
        response = get("Response")
        if response is None:
            banner = get("Banner")
            if banner is not None:
                self.banner = banner
                if not conn.banner.done():
                    conn.banner.set_result(banner)
            else:
                log.debug("AMI %s: message that is neither event nor response ignored", self.name)
            return
        aid = get("ActionID")
        pending = conn.pending.get(aid) if aid is not None else None
        if pending is None:
            self._stats.unmatched_responses += 1
            log.debug("AMI %s: response for unknown/expired ActionID %r ignored", self.name, aid)
            return
        agi = pending.agi
        if agi is not None:
            del conn.pending[agi.aid]
            if response == "Error":
                self._stats.action_errors += 1
                if not agi.fut.done():
                    reason = msg.get("Message") or "Response: Error"
                    agi.fut.set_exception(ActionFailed(f"AGI: {reason}", msg))
            else:
                agi.replied = True
            return
        fut = pending.future
        assert fut is not None
        if fut.done():
            return
        if response == "Error":
            self._stats.action_errors += 1
            reason = msg.get("Message") or "Response: Error"
            fut.set_exception(ActionFailed(f"{pending.name}: {reason}", msg))
        elif pending.is_list:
            if (get("EventList") or "").lower() == "start":
                pending.response = msg
            else:
                fut.set_result((msg, pending.items))
        else:
            fut.set_result(msg)

    def _list_item(self, conn: _Connection, msg: AmiMessage, event: str, aid: str) -> bool:
        pending = conn.lists.get(aid)
        if pending is not None:
            pending.items.append(msg)
            fut = pending.future
            if _is_complete(msg, event) and fut is not None and not fut.done():
                fut.set_result((pending.response or msg, pending.items))
            return True
        if aid in conn.abandoned:
            if _is_complete(msg, event):
                del conn.abandoned[aid]
            return True
        return False

    def _agi_event(self, conn: _Connection, msg: AmiMessage, event: str) -> None:
        if event == "AsyncAGIExec":
            # Correlate on the AsyncAGIExec CommandId only (AGIExecStart/End carry Asterisk's
            # own random CommandId, see the asyncagi_ivr trace).
            cid = msg.get_exact("CommandId") or msg.get("CommandID")
            waiter = conn.agi.get(cid) if cid is not None else None
            if waiter is not None and not waiter[1].done():
                waiter[1].set_result(msg)
            return
        channel = msg.get_exact("Channel")
        for cid in list(conn.agi_by_channel.get(channel or "", ())):
            chan, fut = conn.agi[cid]
            if not fut.done():
                fut.set_exception(
                    AgiEnded(f"AsyncAGI on {chan} ended ({event}) before command {cid} produced a result", msg)
                )

    # -- internals: dispatch --------------------------------------------------------------------
    async def _worker(self, shard: _Shard) -> None:
        loop = asyncio.get_running_loop()
        queue = shard.queue
        st = self._stats
        while True:
            if not queue:
                waiter: asyncio.Future[None] = loop.create_future()
                shard.waiter = waiter
                await waiter
                continue
            at, batch = queue.popleft()
            if batch is None:  # a barrier (drain / resync): everything before it is handled
                if not at.done():
                    at.set_result(None)
                continue
            taken = 0
            try:
                for msg in batch:
                    taken += 1
                    for handler in self._handlers:
                        try:
                            result = handler(msg, at)
                            if result is not None and inspect.isawaitable(result):
                                await result
                        except Exception as exc:
                            self._handler_failed(handler, msg, exc)
                    if not taken % _YIELD_EVERY:
                        # Sync handlers never yield: let the reader (and other shards) run.
                        self._depth -= taken
                        st.events_handled += taken
                        taken = 0
                        self._after_batch()
                        await asyncio.sleep(0)
            finally:
                # Accounted per batch, not per event: the depth is only compared with the
                # bounds, where being off by < one batch does not matter.
                self._depth -= taken
                st.events_handled += taken
            self._after_batch()
            if queue:
                await asyncio.sleep(0)

    def _event_label(self, event: AmiMessage) -> tuple[str, str | None]:
        return event.event or "?", event.call_key()

    async def _barrier(self) -> None:
        loop = asyncio.get_running_loop()
        futs = []
        for shard in self._all_shards:
            fut: asyncio.Future[None] = loop.create_future()
            shard.queue.append((fut, None))
            waiter = shard.waiter
            if waiter is not None:
                shard.waiter = None
                if not waiter.done():
                    waiter.set_result(None)
            futs.append(fut)
        await asyncio.gather(*futs)

    def _start_workers(self, loop: asyncio.AbstractEventLoop) -> None:
        for shard in self._all_shards:
            shard.task = loop.create_task(self._worker(shard), name=f"ami-{self.name}-worker-{shard.index}")

    def _goodbye(self, conn: _Connection) -> None:
        if conn.logged_in:
            self._write(conn, encode_action("Logoff", (), self._next_id("logoff")))

    async def _stop_workers(self) -> None:
        tasks = [s.task for s in self._all_shards if s.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for s in self._all_shards:
            s.task = None
            s.waiter = None
            s.queue.clear()
        self._depth = 0

    # -- internals: link --------------------------------------------------------------------------
    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        conn = _Connection(self)
        try:
            async with asyncio.timeout(self.connect_timeout):
                await loop.create_connection(lambda: conn, self.host, self.port)
                # Wait for the greeting: proves this is an AMI port before we send credentials.
                await asyncio.shield(conn.banner)
            if self._record is not None:
                self._record.note(f"connected to {self.host}:{self.port} ({conn.banner.result()})")
            login_id = self._next_id("login")
            masked = encode_action(
                "Login", [("Username", self._username), ("Secret", _MASK), ("Events", "on")], login_id
            )
            try:
                await self._request(
                    conn,
                    "Login",
                    [("ActionID", login_id), ("Username", self._username), ("Secret", self._secret), ("Events", "on")],
                    self.action_timeout,
                    record_as=masked,
                )
            except ActionFailed as exc:
                reason = exc.response.get("Message") or "login refused"
                raise LoginError(f"AMI {self.name} {self.host}:{self.port}: {reason}") from None
        except BaseException as exc:
            if conn.reason is None:
                conn.reason = exc if isinstance(exc, Exception) else ConnectionLost("cancelled")
            if conn.transport is not None:
                conn.transport.abort()
            if isinstance(exc, TimeoutError):
                raise TimeoutError(
                    f"AMI {self.name} {self.host}:{self.port}: no AMI greeting/login within the timeout"
                ) from None
            raise
        conn.logged_in = True
        self._conn = conn
        self._stats.connects += 1
        if self.ping_interval:
            conn.keepalive = loop.create_task(self._keepalive(conn), name=f"ami-{self.name}-ping")
        log.info("AMI %s: logged in to %s:%d (%s)", self.name, self.host, self.port, conn.banner.result())
        return conn

    def _on_lost(self, conn: _Connection, exc: Exception | None) -> None:
        if conn.reason is None:
            if exc is not None:
                conn.reason = ConnectionLost(f"connection lost: {exc}")
            else:
                conn.reason = ConnectionLost("connection closed by the PBX")
        rest = conn.parser.pending
        if self._record is not None:
            if rest:
                self._record.recv(rest)
            self._record.note(f"connection closed: {conn.reason}")
        if rest:
            log.warning("AMI %s: link closed inside a message (%d bytes discarded)", self.name, len(rest))
        self._fail_link(conn, conn.reason)

    def _fail_link(self, conn: _Connection, reason: Exception) -> None:
        """Everything that waited on this link fails with ConnectionLost - and is forgotten."""
        if conn.closed.done():
            return
        self._decode_base += conn.parser.decode_errors
        self._malformed_base += conn.parser.malformed
        conn.parser.decode_errors = conn.parser.malformed = 0
        if self._conn is conn:
            self._stats.decode_errors = self._decode_base
            self._stats.malformed = self._malformed_base
            self._paused = False
        text = str(reason)
        for pending in conn.pending.values():
            if pending.future is not None and not pending.future.done():
                pending.future.set_exception(ConnectionLost(f"{pending.name}: {text}"))
        for cid, (chan, fut) in conn.agi.items():
            if not fut.done():
                fut.set_exception(ConnectionLost(f"AGI {cid} on {chan}: {text}"))
        if not conn.banner.done():
            conn.banner.set_exception(ConnectionLost(text))
            conn.banner.exception()
        if conn.keepalive is not None and conn.keepalive is not asyncio.current_task():
            conn.keepalive.cancel()
        conn.closed.set_result(reason if isinstance(reason, Exception) else ConnectionLost(text))

    async def _keepalive(self, conn: _Connection) -> None:
        assert self.ping_interval
        while True:
            await asyncio.sleep(self.ping_interval)
            if conn.paused:
                continue  # our own backpressure: the pong is in the unread data
            try:
                await self._request(conn, "Ping", (), self.ping_timeout)
            except ActionTimeout:
                self._stats.ping_timeouts += 1
                log.warning(
                    "AMI %s: no answer to Ping within %g s, dropping the link (half-open?)",
                    self.name,
                    self.ping_timeout,
                )
                conn.abort(ConnectionLost(f"no answer to Ping within {self.ping_timeout:g} s"))
                return
            except ConnectionLost:
                return
            except ActionFailed as exc:
                log.warning("AMI %s: Ping refused: %s", self.name, exc)

    # -- supervision (shared with the other PBX client: callcenter.pbx.link.LinkSupervisor) --
    def _barrier_timeout(self) -> float:
        return self.action_timeout

    def _timer_task(self, conn: _Connection) -> asyncio.Task[None] | None:
        return conn.keepalive

    def _stop_timers(self, conn: _Connection) -> None:
        if conn.keepalive is not None:
            conn.keepalive.cancel()
