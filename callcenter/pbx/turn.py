"""``Turn``: one call's commands, one batch at a time, first come first served.

An ``asyncio.Lock`` that can also be taken **synchronously** when it is free
(``try_take``): the routing path puts a call's first commands on the wire from the event
dispatcher's callback, with no task switch in between, and must hold the call's turn from that
moment until their results are in, so no other batch for the call (a move, a supervisor's
action) runs in between. ``asyncio.Lock`` has no synchronous acquire.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType


class Turn:
    __slots__ = ("_busy", "_waiters")

    def __init__(self) -> None:
        self._busy = False
        self._waiters: deque[asyncio.Future[None]] = deque()

    def locked(self) -> bool:
        return self._busy

    def try_take(self) -> bool:
        """Take the turn now if it is free and nobody is waiting for it."""
        if self._busy or any(not w.done() for w in self._waiters):
            return False
        self._waiters.clear()
        self._busy = True
        return True

    async def take(self) -> None:
        """Wait for the turn (FIFO)."""
        if self.try_take():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed the turn, then cancelled before using it: pass it on
            raise

    def release(self) -> None:
        """Give the turn to the next waiter, or free it."""
        if not self._busy:
            raise RuntimeError("Turn.release() on a free turn")
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # still busy: handed over
                return
        self._busy = False

    async def __aenter__(self) -> None:
        await self.take()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.release()
