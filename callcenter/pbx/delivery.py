"""Handing an adapter's domain events to its subscribers, in order, without a coroutine per event.

Both PBX adapters translate the PBX's traffic into domain events inside their client's dispatch
callback. Most subscribers (the controller's) are synchronous: delivering through a coroutine
would cost one per PBX event that translates to anything, and a task switch before the
controller sees it. ``Delivery`` calls the subscribers directly; only when one returns an
awaitable does the rest (the later subscribers of that event, the later events) wait for it,
returned as one awaitable for the client to await before its next PBX event. A subscriber that
raises is logged with the event and the call, and the others still get the event.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from callcenter.domain.events import Event
from callcenter.pbx.port import EventHandler

log = logging.getLogger(__name__)


class Delivery:
    """``deliver(events)``: to ``handlers`` (the adapter's own list: subscribing later counts),
    each event first through ``prepare`` (the adapter's rewriting and bookkeeping)."""

    __slots__ = ("_handlers", "_name", "_prepare")

    def __init__(self, name: str, handlers: list[EventHandler], prepare: Callable[[Event], Event]) -> None:
        self._name = name
        self._handlers = handlers
        self._prepare = prepare

    def deliver(self, events: list[Event]) -> Awaitable[None] | None:
        """Hand ``events`` to the subscribers now, in order. When a subscriber returns an
        awaitable, the rest (later subscribers, later events) waits for it: returned as one
        awaitable. None when everything was delivered."""
        for i, event in enumerate(events):
            event = self._prepare(event)
            rest = self._to_subscribers(event, list(self._handlers))
            if rest is not None:
                return self._then(rest, events[i + 1:])
        return None

    def _to_subscribers(self, event: Event, handlers: list[EventHandler]) -> Awaitable[None] | None:
        for j, handler in enumerate(handlers):
            try:
                result = handler(event)
            except Exception:
                self._failed(event)
                continue
            if result is not None and inspect.isawaitable(result):
                return self._awaited(result, event, handlers[j + 1:])
        return None

    async def _awaited(self, pending: Awaitable[Any], event: Event, handlers: list[EventHandler]) -> None:
        try:
            await pending
        except Exception:
            self._failed(event)
        rest = self._to_subscribers(event, handlers)
        if rest is not None:
            await rest

    async def _then(self, pending: Awaitable[None], events: list[Event]) -> None:
        await pending
        rest = self.deliver(events)
        if rest is not None:
            await rest

    def _failed(self, event: Event) -> None:
        log.exception("pbx %s: event handler failed on %s (call %s)", self._name, event.type, event.call_id)
