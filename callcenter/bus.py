"""The internal bus: live notifications (screen pops, call/queue/agent changes) for the HTTP
API's SSE stream, the wallboard and webhooks.

Publishing never blocks call handling: each subscriber has a bounded queue; a subscriber that
does not keep up loses its *oldest* notifications and is told how many it missed (a
``gap`` notification), so a stuck browser tab can never slow down the controller. The bus is
for live views only; the durable record of every call step is the recorder's business.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Notification:
    kind: str  # screen_pop | call | queue | agent | call_ended | callback | ...
    data: dict[str, Any]
    id: int = 0
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    # who may see it: the agent interface of a screen pop, queues of a call, for filtering
    agent: str | None = None
    queue: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "at": self.at, "agent": self.agent, "queue": self.queue,
                "data": self.data}


Filter = Callable[[Notification], bool]


class Subscription:
    def __init__(self, bus: Bus, size: int, accept: Filter | None) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[Notification] = asyncio.Queue(size)
        self._accept = accept
        self.missed = 0

    def offer(self, n: Notification) -> None:
        if self._accept is not None and not self._accept(n):
            return
        if self._queue.full():
            self._queue.get_nowait()  # drop the oldest; say so on the next read
            self.missed += 1
        self._queue.put_nowait(n)

    async def get(self) -> Notification:
        n = await self._queue.get()
        if self.missed:
            missed, self.missed = self.missed, 0
            # put back the real one behind the gap marker
            rest = [n]
            while not self._queue.empty():
                rest.append(self._queue.get_nowait())
            for item in rest:
                self._queue.put_nowait(item)
            return Notification("gap", {"missed": missed}, id=n.id)
        return n

    def close(self) -> None:
        self._bus._subs.discard(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Bus:
    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self._ids = itertools.count(1)
        self.published = 0
        self.hooks: list[Callable[[Notification], None]] = []  # webhooks etc. (must not block)

    def subscribe(self, *, size: int = 1000, accept: Filter | None = None) -> Subscription:
        sub = Subscription(self, size, accept)
        self._subs.add(sub)
        return sub

    def publish(self, kind: str, data: dict[str, Any], *, agent: str | None = None,
                queue: str | None = None) -> Notification:
        n = Notification(kind, data, id=next(self._ids), agent=agent, queue=queue)
        self.published += 1
        for sub in list(self._subs):
            sub.offer(n)
        for hook in self.hooks:
            hook(n)
        return n

    @property
    def subscribers(self) -> int:
        return len(self._subs)
