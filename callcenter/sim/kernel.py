"""Virtual time for the PBX simulator: a small discrete-event kernel on top of asyncio.

Why not plain ``asyncio.sleep``: the simulator must be deterministic for a seed and must stamp
its events with times that add up (a queue ``HoldTime`` is the integer difference of two
``time()`` values in app_queue, so a few ms of scheduling jitter would turn a 2 s hold into 1 s).
Here every simulated activity is a *process* (an asyncio task started with ``spawn``) that only
blocks in ``Kernel.wait``/``Kernel.sleep``. The kernel wakes exactly one due timer at a time and
waits until every woken process has blocked again before it looks at the next one, so events
come out in (virtual time, scheduling order) order whatever the host does.

Time modes:

* ``speed`` > 0 (finite): virtual time runs ``speed`` times faster than the event loop's clock,
  starting at ``epoch`` (Unix seconds) -- the mode for tests against a live controller: 10x
  faster than real time, yet the AMI events keep their relative timing.
* ``speed=math.inf``: *stepped* mode. Nothing happens on its own; ``advance(seconds)`` runs
  the simulation up to ``now + seconds`` as fast as the host can. For controller-less runs
  (traffic statistics, load generation); an external client sees events late.

Inputs from outside the kernel (AMI actions handled in session tasks) call ``sync()`` first,
which moves virtual time up to the wall-clock-derived time, so an action is stamped when it
arrived. Processes may be *interrupted*: ``interrupt(proc, exc)`` raises ``exc`` at the wait the
process is blocked in (or at its next one) -- that is how a caller's BYE reaches the dialplan
application the caller is in.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

__all__ = ["Kernel", "Proc", "Signal", "Timer"]

log = logging.getLogger(__name__)


class Timer:
    """A scheduled callback or process wake-up; ``cancel()`` makes it a no-op."""

    __slots__ = ("args", "cancelled", "fn", "when")

    def __init__(self, when: float, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.when = when
        self.fn = fn
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Signal:
    """Something processes can wait for; ``fire()`` wakes every process waiting on it."""

    __slots__ = ("_kernel", "_waiters", "name")

    def __init__(self, kernel: Kernel, name: str = "") -> None:
        self._kernel = kernel
        self._waiters: list[asyncio.Future[Any]] = []
        self.name = name

    def fire(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            self._kernel._resolve(fut, self)


class Proc:
    """A simulated activity (one asyncio task); see ``Kernel.spawn``."""

    __slots__ = ("fut", "name", "pending", "task")

    def __init__(self, name: str) -> None:
        self.name = name
        self.task: asyncio.Task[Any] | None = None
        self.fut: asyncio.Future[Any] | None = None
        self.pending: list[BaseException] = []

    @property
    def done(self) -> bool:
        return self.task is None or self.task.done()

    def __repr__(self) -> str:
        return f"<Proc {self.name}>"


class Kernel:
    def __init__(self, *, speed: float = 1.0, epoch: float | None = None) -> None:
        if not speed > 0:
            raise ValueError("speed must be > 0 (math.inf for stepped mode)")
        self.speed = speed
        self.epoch = time.time() if epoch is None else float(epoch)
        self._now = self.epoch
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._runnable = 0
        self._procs: dict[asyncio.Task[Any], Proc] = {}
        self._wake: asyncio.Event | None = None
        self._engine: asyncio.Task[None] | None = None
        self._real0 = 0.0
        self._virt0 = self._now
        # stepped mode: nothing beyond this virtual time runs until advance() moves it
        self._horizon = self._now
        self._idle: asyncio.Event | None = None
        self.steps = 0  # timers run (work counts for tests: cost per simulated activity)
        self.wakeups = 0  # blocked processes resumed (by a signal, a timeout or an interrupt)
        self._in_step = False
        self.errors: list[tuple[str, BaseException]] = []
        # called every few steps in stepped mode (e.g. to let slow AMI readers catch up)
        self.throttle: Callable[[], Awaitable[None]] | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def stepped(self) -> bool:
        return math.isinf(self.speed)

    def start(self) -> None:
        if self._engine is not None:
            return
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._real0 = loop.time()
        self._virt0 = self._now
        self._engine = loop.create_task(self._run(), name="sim-kernel")

    async def stop(self) -> None:
        tasks = [t for t in (self._engine, *self._procs) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._engine = None
        self._procs.clear()
        self._heap.clear()
        self._runnable = 0

    # -- time ----------------------------------------------------------------------------------
    def now(self) -> float:
        """Virtual Unix time of the current step."""
        return self._now

    def wall(self) -> float:
        """The virtual time the event loop's clock corresponds to (== now() when stepped)."""
        if self.stepped or self._engine is None:
            return self._now
        return self._virt0 + (asyncio.get_running_loop().time() - self._real0) * self.speed

    def lag(self) -> float:
        """How far (virtual seconds) the earliest due timer is behind the wall: 0 while the
        kernel keeps up with its speed (always 0 when stepped)."""
        if self.stepped or self._engine is None:
            return 0.0
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return max(0.0, self.wall() - heap[0][0]) if heap else 0.0

    def sync(self) -> None:
        """An input from outside the simulation arrives: move virtual time up to the wall.
        (No-op inside a process or timer: simulated activities happen at their step's time.)"""
        if self._in_step or asyncio.current_task() in self._procs:
            return
        self._now = max(self._now, self.wall())

    # -- scheduling ----------------------------------------------------------------------------
    def call_at(self, when: float, fn: Callable[..., None], *args: Any) -> Timer:
        timer = Timer(max(when, self._now), fn, args)
        heapq.heappush(self._heap, (timer.when, next(self._seq), timer))
        self._poke()
        return timer

    def call_later(self, delay: float, fn: Callable[..., None], *args: Any) -> Timer:
        return self.call_at(self._now + max(0.0, delay), fn, *args)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str = "proc") -> Proc:
        """Start a process. It runs at once (before the kernel takes its next step)."""
        proc = Proc(name)
        self._runnable += 1
        task = asyncio.get_running_loop().create_task(self._body(proc, coro), name=f"sim-{name}")
        proc.task = task
        self._procs[task] = proc
        return proc

    async def _body(self, proc: Proc, coro: Coroutine[Any, Any, Any]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug in a simulated activity must not stop the others
            log.exception("sim process %s failed", proc.name)
            self.errors.append((proc.name, exc))
        finally:
            self._procs.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            self._runnable -= 1
            self._poke()

    def current(self) -> Proc:
        task = asyncio.current_task()
        proc = self._procs.get(task) if task is not None else None
        if proc is None:
            raise RuntimeError("Kernel.wait/sleep can only be used inside a process (Kernel.spawn)")
        return proc

    async def wait(self, *signals: Signal, timeout: float | None = None) -> Signal | None:
        """Block the current process until one of ``signals`` fires (returns it) or
        ``timeout`` virtual seconds pass (returns None). Raises a pending interrupt."""
        proc = self.current()
        if proc.pending:
            raise proc.pending.pop(0)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        proc.fut = fut
        timer = self.call_at(self._now + max(0.0, timeout), self._resolve, fut, None) if timeout is not None else None
        for s in signals:
            s._waiters.append(fut)
        self._runnable -= 1
        self._poke()
        try:
            return await fut  # type: ignore[no-any-return]
        finally:
            proc.fut = None
            if timer is not None:
                timer.cancel()
            for s in signals:
                if fut in s._waiters:
                    s._waiters.remove(fut)

    async def sleep(self, seconds: float) -> None:
        await self.wait(timeout=seconds)

    def interrupt(self, proc: Proc | None, exc: BaseException) -> None:
        """Raise ``exc`` in ``proc`` at the wait it is blocked in (or its next one)."""
        if proc is None or proc.done:
            return
        fut = proc.fut
        if fut is not None and not fut.done():
            self._runnable += 1
            self.wakeups += 1
            fut.set_exception(exc)
        else:
            proc.pending.append(exc)

    def _resolve(self, fut: asyncio.Future[Any], value: Any) -> None:
        if fut.done():
            return
        self._runnable += 1
        self.wakeups += 1
        fut.set_result(value)

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # -- stepped mode ------------------------------------------------------------------------------
    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass: stepped mode runs everything due up to then as
        fast as possible; scaled mode sleeps ``seconds / speed``."""
        target = self._now + max(0.0, seconds)
        if not self.stepped:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            def arrived() -> None:
                if not done.done():
                    done.set_result(None)

            self.call_at(target, arrived)
            await done
            return
        assert self._idle is not None
        self._horizon = target
        self._idle.clear()
        self._poke()
        await self._idle.wait()

    # -- the engine ------------------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._wake is not None and self._idle is not None
        loop = asyncio.get_running_loop()
        wake = self._wake
        while True:
            if self._runnable > 0:
                wake.clear()
                if self._runnable > 0:
                    await wake.wait()
                continue
            while self._heap and self._heap[0][2].cancelled:
                heapq.heappop(self._heap)
            if not self._heap or (self.stepped and self._heap[0][0] > self._horizon):
                if self.stepped and self._now < self._horizon:
                    self._now = self._horizon
                self._idle.set()
                wake.clear()
                await wake.wait()
                continue
            when = self._heap[0][0]
            if not self.stepped:
                delay = (when - self.wall()) / self.speed
                if delay > 0:
                    wake.clear()
                    handle = loop.call_later(delay, wake.set)
                    await wake.wait()
                    handle.cancel()
                    continue
            _, _, timer = heapq.heappop(self._heap)
            self._now = max(self._now, when)
            self.steps += 1
            self._in_step = True
            try:
                timer.fn(*timer.args)
            except Exception as exc:
                log.exception("sim timer %r failed", timer.fn)
                self.errors.append((getattr(timer.fn, "__name__", "timer"), exc))
            finally:
                self._in_step = False
            if self.stepped and self.steps % 64 == 0:
                await asyncio.sleep(0)
                if self.throttle is not None:
                    await self.throttle()
