"""Post-call survey, the imperative shell around ``survey.core``.

The dialplan hands a caller back to the controller when the *agent* hung up a queue call and
``CC_SURVEY`` was set: on Asterisk ``AGI(agi:async)`` in ``[cc-survey]`` (Queue option ``c``), on
FreeSWITCH ``park`` in ``cc_survey`` (``transfer_after_bridge``). To the controller that is a
second ``ControllerAttached`` for a call whose journey is already answered; routing it again
would queue a caller who has been served, so the call driver asks ``claims(event)`` first and
hands such calls to ``run``.

``run`` asks the question (``CollectDigits`` through ``Controller.execute``), stores one
``survey_responses`` row (a score, or NULL with ``answered = false`` when the caller hung up or
keyed nothing valid), publishes ``detractor`` for 0-6, thanks the caller and hangs up. The row
is written before the hang-up so that a failed ``HangUp`` (caller already gone) loses nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from callcenter.domain.commands import Command, HangUp, PlayPrompt, SetVariable
from callcenter.domain.events import ControllerAttached
from callcenter.logs import call_context
from callcenter.pbx.port import CommandResult
from callcenter.survey import core

if TYPE_CHECKING:
    from callcenter.app import Controller

log = logging.getLogger(__name__)

CallDriver = Callable[[ControllerAttached], Awaitable[Any]]


@dataclass
class SurveyStats:
    offered: int = 0
    answered: int = 0
    not_answered: int = 0
    detractors: int = 0
    store_failures: int = 0


@dataclass(frozen=True, slots=True)
class SurveyContext:
    """What the journey knows about the conversation the survey is about."""

    call_id: str
    pbx: str
    channel: str | None
    agent: str | None
    queue: str | None
    customer_id: int | None


class SurveyService:
    """``queues=None``: every answered call that comes back gets the survey (the dialplan only
    sends those with ``CC_SURVEY`` set); otherwise only calls answered in one of ``queues``
    (PBX queue names, as the journey records them)."""

    def __init__(self, controller: Controller, engine: AsyncEngine | None, *, queues: set[str] | None = None) -> None:
        self.controller = controller
        self.engine = engine
        self.policy = (core.SurveyPolicy(all_queues=True) if queues is None
                       else core.SurveyPolicy(queues=frozenset(queues)))
        self.stats = SurveyStats()
        self._running: set[str] = set()

    # -- which calls ------------------------------------------------------------------------------
    def context(self, ev: ControllerAttached) -> SurveyContext | None:
        if ev.call_id is None:
            return None
        state = self.controller.book.state(ev.call_id)
        if state is None or not state.answered:
            return None  # a new call (or one never answered): routing's, not ours
        return SurveyContext(ev.call_id, ev.pbx, ev.channel, state.agent, state.answer_queue, state.customer_id)

    def claims(self, ev: ControllerAttached) -> bool:
        """True for a call handed back after an answered conversation. Such a call is never
        routed again, even when its queue is not surveyed: ``run`` then just hangs it up."""
        return self.context(ev) is not None

    def route_commands(self, pbx_queue: str | None, call_id: str, channel: str | None) -> list[Command]:
        """To run before a call is sent into ``pbx_queue``: ``CC_SURVEY=1`` makes the dialplan
        queue it with option ``c`` on Asterisk (Queue() reads its options when it starts, so later
        is too late) and set ``transfer_after_bridge`` on FreeSWITCH. Nothing for a queue
        without the survey."""
        if not self.policy.wants(pbx_queue):
            return []
        return [SetVariable(name="CC_SURVEY", value="1", call_id=call_id, channel=channel)]

    def wrap(self, driver: CallDriver) -> CallDriver:
        """A call driver that gives answered calls to the survey and the others to ``driver``
        (called at once, so a driver that acts before returning, like routing, still does)."""

        def drive(ev: ControllerAttached) -> Awaitable[Any]:
            return self.run(ev) if self.claims(ev) else driver(ev)

        return drive

    # -- one survey -------------------------------------------------------------------------------
    async def run(self, ev: ControllerAttached) -> core.Step | None:
        ctx = self.context(ev)
        if ctx is None:
            return None
        with call_context(ctx.call_id):
            if not self.policy.wants(ctx.queue) or ctx.call_id in self._running:
                # Not a surveyed queue (or the same call attached twice): the conversation is
                # over, so the caller is hung up rather than sent back into a queue.
                await self._execute(ctx, HangUp(call_id=ctx.call_id, channel=ctx.channel))
                return None
            self._running.add(ctx.call_id)
            try:
                return await self._survey(ctx)
            finally:
                self._running.discard(ctx.call_id)

    async def _survey(self, ctx: SurveyContext) -> core.Step:
        self.stats.offered += 1
        step: core.Step = core.first_step()
        while isinstance(step, core.Ask):
            digits: str | None = None
            gone = False
            for cmd in core.ask_commands(step, ctx.call_id, ctx.channel):
                result = await self._execute(ctx, cmd)
                if not result.ok:
                    gone = True  # hang-up, or the call left AsyncAGI (fail-open timeout)
                    break
                if cmd.kind == "collect_digits":
                    digits = result.detail.get("digits") or None
            step = core.survey_next(step, digits, hung_up=gone)
        score = step.score if isinstance(step, core.Answered) else None
        log.info("survey: %s", f"score {step.score}" if isinstance(step, core.Answered)
                 else f"not answered ({step.reason})")
        await self._store(ctx, score)
        if score is not None:
            self.stats.answered += 1
        else:
            self.stats.not_answered += 1
        if core.is_detractor(score):
            self.stats.detractors += 1
            self.controller.bus.publish(
                "detractor",
                {"call_id": ctx.call_id, "agent": ctx.agent, "queue": ctx.queue, "customer_id": ctx.customer_id,
                 "score": score},
                agent=ctx.agent, queue=ctx.queue)
        if not (isinstance(step, core.NotAnswered) and step.reason == "hangup"):
            if score is not None:
                await self._execute(ctx, PlayPrompt(prompt=core.THANKS, call_id=ctx.call_id, channel=ctx.channel))
            await self._execute(ctx, HangUp(call_id=ctx.call_id, channel=ctx.channel))
        return step

    async def _execute(self, ctx: SurveyContext, cmd: Command) -> CommandResult:
        return await self.controller.execute(ctx.pbx, cmd)

    async def _store(self, ctx: SurveyContext, score: int | None) -> None:
        if self.engine is None:
            return
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    text("INSERT INTO survey_responses (call_id, customer_id, agent, queue, score, answered) "
                         "VALUES (:c, :cust, :a, :q, :s, :ans)"),
                    {"c": ctx.call_id, "cust": ctx.customer_id, "a": ctx.agent, "q": ctx.queue, "s": score,
                     "ans": score is not None})
        except Exception:
            # The caller has already keyed the score; losing the row must not stop the hang-up.
            self.stats.store_failures += 1
            log.exception("survey: could not store the response")
