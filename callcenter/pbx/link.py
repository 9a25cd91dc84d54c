"""What the AMI and ESL clients share about keeping a PBX link: reconnect backoff and hooks."""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Callable, Iterable
from typing import Any


def backoff_delay(attempt: int, minimum: float, maximum: float, rnd: Callable[[], float] = random.random) -> float:
    """Exponential backoff with jitter: several controllers (or a restart storm) must not hit
    the PBX in lockstep. ``attempt`` 0 is the first retry."""
    delay = min(maximum, minimum * 2 ** min(attempt, 30))
    return delay * (0.5 + rnd() / 2)


async def call_hooks(hooks: Iterable[Callable[..., Any]], *args: Any, log: logging.Logger, what: str) -> None:
    """Run each hook (sync or async) in order; one that fails is logged and the rest still run."""
    for hook in hooks:
        try:
            result = hook(*args)
            if result is not None and inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("%s hook %r failed", what, hook)


class LinkSupervisor:
    """The supervisor both PBX clients run once logged in: resync hooks, wait for the link to
    drop, reconnect with backoff, let the handlers finish the old link's events, resync.

    A client provides: ``name``, ``reconnect_min``/``reconnect_max``, ``_closing``, ``_conn``,
    ``_stats.reconnects``, ``_on_connected``/``_on_disconnected``, ``async _connect()``,
    ``async _barrier()``, and the class attributes below."""

    _label: str = "PBX"  # "AMI" / "ESL" in log lines
    _login_error: type[Exception] = Exception  # credentials refused: logged as an error
    _retry_errors: tuple[type[Exception], ...] = (OSError,)  # a failed attempt: retried
    _log: logging.Logger = logging.getLogger(__name__)
    _full_note: str = "the PBX may drop a reader that falls behind"  # what a full queue risks

    name: str
    reconnect_min: float
    reconnect_max: float
    _closing: bool
    _conn: Any
    _stats: Any
    _started: bool
    _supervisor: asyncio.Task[None] | None
    _record: Any
    _closed_error: type[Exception] = ConnectionError  # a client's ConnectionLost
    _handlers: tuple[Callable[..., Any], ...]
    _handler_error_counts: dict[int, int]
    _on_connected: tuple[Callable[..., Any], ...]
    _on_disconnected: tuple[Callable[..., Any], ...]

    # -- registration -------------------------------------------------------------------------
    def on_event(self, handler: Callable[..., Any]) -> None:
        """``handler(event, received_at)`` for every event (sync or async), in PBX order (on
        AMI: per call)."""
        self._handlers = (*self._handlers, handler)

    def on_connected(self, handler: Callable[..., Any]) -> None:
        """Awaited after every (re)login (and subscription); the place to resync state. Errors
        are logged."""
        self._on_connected = (*self._on_connected, handler)

    def on_disconnected(self, handler: Callable[..., Any]) -> None:
        """Called with the reason when an established link drops, with None on ``close()``."""
        self._on_disconnected = (*self._on_disconnected, handler)

    @property
    def connected(self) -> bool:
        raise NotImplementedError  # pragma: no cover - abstract: each client knows its login state

    def _event_label(self, event: Any) -> tuple[str, str | None]:
        """(event name, call) of a message, for log lines."""
        raise NotImplementedError  # pragma: no cover - abstract

    def _handler_failed(self, handler: Callable[..., Any], event: Any, exc: Exception) -> None:
        self._stats.handler_errors += 1
        n = self._handler_error_counts.get(id(handler), 0) + 1
        self._handler_error_counts[id(handler)] = n
        # A handler that fails on every event must not flood the log at PBX event rates.
        if n <= 10 or n % 1000 == 0:
            name, call = self._event_label(event)
            self._log.error(
                "%s %s: event handler %s failed on %s for call %s (failure #%d)",
                self._label,
                self.name,
                getattr(handler, "__qualname__", repr(handler)),
                name,
                call or "-",
                n,
                exc_info=exc,
            )

    async def _connect(self) -> Any:
        raise NotImplementedError  # pragma: no cover - abstract: each client connects itself

    async def _barrier(self) -> None:
        raise NotImplementedError  # pragma: no cover - abstract

    def _barrier_timeout(self) -> float:
        raise NotImplementedError  # pragma: no cover - abstract

    def _stop_timers(self, conn: Any) -> None:
        """Cancel the link's keepalive/watchdog task, if any."""

    def _timer_task(self, conn: Any) -> Any:
        """The link's keepalive/watchdog task, if any (``close()`` waits for it)."""
        return None

    def _start_workers(self, loop: asyncio.AbstractEventLoop) -> None:
        raise NotImplementedError  # pragma: no cover - abstract

    async def _stop_workers(self) -> None:
        raise NotImplementedError  # pragma: no cover - abstract

    def _goodbye(self, conn: Any) -> None:
        """Say goodbye on a logged-in link (AMI Logoff, ESL exit); best effort."""

    def _fail_link(self, conn: Any, reason: Exception) -> None:
        raise NotImplementedError  # pragma: no cover - abstract

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect and log in (raises ``LoginError``/``OSError``/``TimeoutError``; ESL also
        ``CommandFailed`` when subscribing), run the ``on_connected`` hooks, then keep the link
        up in background tasks until ``close()``."""
        if self._started:
            raise RuntimeError(f"{type(self).__name__}.start() called twice")
        self._started = True
        self._closing = False
        loop = asyncio.get_running_loop()
        self._start_workers(loop)
        try:
            conn = await self._connect()
        except BaseException:
            await self._stop_workers()
            self._started = False
            raise
        first_sync: asyncio.Future[None] = loop.create_future()
        self._supervisor = loop.create_task(self._run(conn, first_sync), name=f"{self._label.lower()}-{self.name}-link")
        await asyncio.shield(first_sync)

    async def close(self) -> None:
        """Stop everything this client owns; requests in flight fail with ``ConnectionLost``.

        Events still queued for handlers are dropped (call ``drain()`` first to handle them).
        """
        if self._closing:
            return
        was_connected = self.connected
        self._closing = True
        conn = self._conn
        if conn is not None:
            if conn.transport is not None and not conn.transport.is_closing():
                try:
                    self._goodbye(conn)
                except Exception:  # pragma: no cover - best effort only
                    pass
            if conn.reason is None:
                conn.reason = self._closed_error("client closed")
            if conn.transport is not None:
                conn.transport.close()
            self._fail_link(conn, conn.reason)
        tasks: list[asyncio.Task[Any]] = []
        if self._supervisor is not None:
            tasks.append(self._supervisor)
        timer = self._timer_task(conn) if conn is not None else None
        if timer is not None:
            tasks.append(timer)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._stop_workers()
        self._supervisor = None
        self._started = False
        if was_connected:
            await self._notify_disconnected(None)
        if self._record is not None:
            self._record.flush()

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until every event received so far has been through the handlers."""
        await asyncio.wait_for(self._barrier(), timeout)

    async def _run(self, conn: Any, first_sync: Any) -> None:
        """Supervisor: resync hooks, then wait for the link to drop and bring it back."""
        try:
            await self._notify_connected()
        finally:
            if not first_sync.done():
                first_sync.set_result(None)
        while not self._closing:
            reason = await conn.closed
            if self._conn is conn:
                self._conn = None
            self._stop_timers(conn)
            if self._closing:
                return
            self._log.warning("%s %s: link down: %s", self._label, self.name, reason)
            await self._notify_disconnected(reason)
            conn = await self._reconnect()
            self._stats.reconnects += 1
            # Handle what the old link delivered before resyncing, so a stale event can never
            # be applied on top of the fresh snapshot.
            try:
                await asyncio.wait_for(self._barrier(), self._barrier_timeout())
            except TimeoutError:
                self._log.warning("%s %s: handlers still busy with old events; resyncing anyway",
                                  self._label, self.name)
            await self._notify_connected()

    async def _reconnect(self) -> Any:
        attempt = 0
        while True:
            await asyncio.sleep(backoff_delay(attempt, self.reconnect_min, self.reconnect_max))
            attempt += 1
            try:
                return await self._connect()
            except self._login_error as exc:
                self._log.error("%s %s: login refused: %s (attempt %d)", self._label, self.name, exc, attempt)
            except self._retry_errors as exc:
                self._log.warning("%s %s: reconnect attempt %d failed: %s", self._label, self.name, attempt, exc)

    async def _notify_connected(self) -> None:
        await call_hooks(self._on_connected, log=self._log, what=f"{self._label} {self.name}: on_connected")

    async def _notify_disconnected(self, reason: Exception | None) -> None:
        await call_hooks(self._on_disconnected, reason, log=self._log,
                         what=f"{self._label} {self.name}: on_disconnected")

    # -- backpressure: the event queue between the socket reader and the handlers --------------
    _queue_size: int
    _paused: bool
    _warned: bool
    _depth: int
    _resume_at: int
    _rearm_at: int

    def _on_resume(self, conn: Any) -> None:
        """Called when reading resumes (e.g. the ESL watchdog restarts its clock)."""

    def _pressure(self, conn: Any, depth: int) -> None:
        """Warn once handlers fall behind; at the bound, pause reading (never drop events)."""
        if depth >= self._queue_size:
            if not self._paused and conn.transport is not None and not conn.transport.is_closing():
                self._paused = True
                conn.paused = True
                self._stats.read_pauses += 1
                conn.transport.pause_reading()
                self._log.error("%s %s: event queue full (%d events, bound %d): socket reading paused until "
                                "handlers catch up; %s", self._label, self.name, depth, self._queue_size,
                                self._full_note)
        if not self._warned:
            self._warned = True
            self._log.warning("%s %s: %d events queued (bound %d): handlers are slower than the PBX",
                              self._label, self.name, depth, self._queue_size)

    def _after_batch(self) -> None:
        depth = self._depth
        if self._paused and depth <= self._resume_at:
            self._paused = False
            conn = self._conn
            if conn is not None and conn.paused:
                conn.paused = False
                self._on_resume(conn)
                if conn.transport is not None and not conn.transport.is_closing():
                    conn.transport.resume_reading()
                    self._log.info("%s %s: socket reading resumed (%d events queued)", self._label, self.name, depth)
        if self._warned and depth < self._rearm_at:
            self._warned = False
