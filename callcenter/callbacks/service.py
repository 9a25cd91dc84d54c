"""The callback shell: reads due requests from PostgreSQL, asks the pure core what to do, rings
the agent first, records every attempt, and escalates.

State lives in the ``callbacks`` table (and ``callback_attempts``/``callback_escalations``),
never only in memory: a restart picks up open requests, and an attempt that was ``dialing``
when the controller stopped becomes stale and is retried (``core.Retry``). Requests filed by
routing (IVR/rule choice), by the API (website) or by hand all go through the same loop.

One round (``tick``), in one transaction: ``SELECT ... FOR UPDATE SKIP LOCKED`` the unfinished
requests (a second controller process skips rows the first holds, so no request is dialled
twice), ``core.next_actions``, write the transitions, attempts and escalations, commit; *then*
publish and send the Originates. Committing first means a crash between the two leaves a
``dialing`` row that goes stale and is retried, never a call nobody knows about.

Agent first: ``Originate`` rings the agent's endpoint into ``cc-callback,<customer E.164>,1``;
the dialplan dials the customer only when the agent answered, with ``CC_CALLBACK_ID`` and
``CC_CALLBACK_ATTEMPT`` on the agent's channel. The adapters report how dialling the customer
ended as one PBX-neutral ``CallbackDialed`` event (Asterisk: the ``UserEvent(CcCallback, ...)``
of ``[cc-callback]``; FreeSWITCH: the agent leg's hang-up with ``originate_disposition``).
Results:

* ``OriginateResult`` failed: the agent did not answer (``agent_no_answer``) or the PBX could not
  place the call (``failed``);
* ``CallbackDialed``: ``ANSWER`` -> ``completed``, ``NOANSWER`` -> ``customer_no_answer``,
  ``BUSY`` -> ``busy``, anything else (``CANCEL``: the agent hung up first) -> ``failed``.

Agents are named as the PBX names them (``PJSIP/1001``; on FreeSWITCH the mod_callcenter agent
name, which the adapter dials through the agent's mod_callcenter contact).

The screen pop (kind ``screen_pop`` with ``callback_id`` and the topic) is published before the
Originate, so the agent knows who they are calling back and why before the customer rings.
Escalations go on the bus as ``callback_overdue`` (reason overdue / expired /
attempts_exhausted), once per reason per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from callcenter.callbacks import core
from callcenter.domain.commands import Originate
from callcenter.domain.events import CallbackDialed, Event, OriginateResult

if TYPE_CHECKING:
    from callcenter.app import Controller

log = logging.getLogger(__name__)

CONTEXT = "cc-callback"
DIALSTATUS_RESULTS = {"ANSWER": "completed", "NOANSWER": "customer_no_answer", "BUSY": "busy"}
# Agent leg (OriginateResponse Reason) -> attempt result. The customer was never dialled.
AGENT_LEG_RESULTS = {"no_answer": "agent_no_answer", "busy": "agent_no_answer", "hangup": "agent_no_answer"}

_SELECT = text("""
SELECT cb.id, cb.queue, cb.status, cb.created_at, cb.due_at, cb.deadline_at, cb.attempts, cb.last_attempt_at,
       cb.phone, cb.name, cb.topic, cb.call_id, cb.customer_id, c.entered_at,
       ARRAY(SELECT e.reason FROM callback_escalations e WHERE e.callback_id = cb.id) AS escalated
FROM callbacks cb LEFT JOIN calls c ON c.call_id = cb.call_id
WHERE cb.status IN ('open', 'scheduled', 'dialing')
ORDER BY COALESCE(c.entered_at, cb.created_at), cb.id
LIMIT :limit
FOR UPDATE OF cb SKIP LOCKED
""")


def available_agents(controller: Controller, pbx: str) -> dict[str | None, list[str]]:
    """Free agents by queue from the live registry, longest idle first; ``None`` (requests
    without a queue) may go to any free agent. Keys are the PBX's queue names: a deployment
    whose logical queue names differ passes its own ``agents`` callable."""
    everyone: list[tuple[float, str]] = []
    by_queue: dict[str, list[tuple[float, str]]] = {}
    for a in controller.live.agents.values():
        if a.pbx != pbx or not a.available:
            continue
        key = (a.since.timestamp() if a.since else 0.0, a.agent)
        everyone.append(key)
        for q in a.queues:
            by_queue.setdefault(q, []).append(key)
    out: dict[str | None, list[str]] = {None: [agent for _, agent in sorted(everyone)]}
    for q, items in by_queue.items():
        out[q] = [agent for _, agent in sorted(items)]
    return out


@dataclass
class _Pending:
    callback_id: int
    attempt: int
    agent: str


@dataclass
class CallbackStats:
    rounds: int = 0
    dispatched: int = 0
    results: dict[str, int] = field(default_factory=dict)
    escalations: int = 0
    expired: int = 0
    errors: int = 0


class CallbackService:
    def __init__(
        self,
        controller: Controller,
        engine: AsyncEngine,
        *,
        pbx: str,
        interval: float = 5.0,
        policy: core.CallbackPolicy | None = None,
        agents: Callable[[], Mapping[str | None, Sequence[str]]] | None = None,
        caller_id: str | None = None,
        batch: int = 200,
        pbx_queue: Callable[[str], str] | None = None,
    ) -> None:
        self.controller = controller
        self.engine = engine
        self.pbx = pbx
        self.interval = interval
        self.policy = policy or core.CallbackPolicy()
        self.agents = agents or (lambda: available_agents(controller, pbx))
        # A request's queue is the rules' (logical) name; the live registry knows the PBX's
        # (``sales@default`` on FreeSWITCH): ``pbx_queue`` maps one to the other.
        self.pbx_queue = pbx_queue
        self.caller_id = caller_id
        self.batch = batch
        self.stats = CallbackStats()
        self._pending: dict[str, _Pending] = {}  # Originate command id -> attempt
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        controller.listeners.append(self._on_event)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="callbacks")

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._background) if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._task = None
        with contextlib.suppress(ValueError):
            self.controller.listeners.remove(self._on_event)

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                # One failed round (database down) never ends the loop: the rows are still there.
                self.stats.errors += 1
                log.exception("callbacks: one round failed; the next runs as usual")
            await asyncio.sleep(self.interval)

    # -- one round ------------------------------------------------------------------------------
    async def tick(self, now: datetime | None = None) -> list[core.Action]:
        now = now or self.controller.clock()
        self.stats.rounds += 1
        sends: list[tuple[core.Dispatch, Any]] = []
        notices: list[tuple[str, dict[str, Any], str | None]] = []
        async with self.engine.begin() as conn:
            rows = (await conn.execute(_SELECT, {"limit": self.batch})).mappings().all()
            requests = [self._request(r) for r in rows]
            by_id = {r["id"]: r for r in rows}
            actions = core.next_actions(requests, self._available(requests), now, self.policy)
            for a in actions:
                row = by_id[a.request_id]
                if isinstance(a, core.Dispatch):
                    await conn.execute(text(
                        "UPDATE callbacks SET status = 'dialing', attempts = attempts + 1, last_attempt_at = :now "
                        "WHERE id = :id"), {"id": a.request_id, "now": now})
                    cmd = self._originate(a, row)
                    await conn.execute(text(
                        "INSERT INTO callback_attempts (callback_id, attempt, started_at, agent, command_id) "
                        "VALUES (:id, :n, :now, :agent, :cmd)"),
                        {"id": a.request_id, "n": a.attempt, "now": now, "agent": a.agent, "cmd": cmd.command_id})
                    sends.append((a, cmd))
                elif isinstance(a, core.Retry):
                    await self._end_attempt(conn, a.request_id, a.attempt, a.result, now)
                    await self._transition(conn, a.request_id, a.transition)
                elif isinstance(a, core.Expire):
                    await self._transition(conn, a.request_id, a.transition)
                    self.stats.expired += 1
                elif isinstance(a, core.Escalate) and await self._escalation(conn, a.request_id, a.reason, now):
                    notices.append(("callback_overdue", self._escalation_data(row, a.reason, a.deadline_at),
                                    row["queue"]))
        for kind, data, queue in notices:
            self.controller.bus.publish(kind, data, queue=queue)
        for dispatch, cmd in sends:
            row = by_id[dispatch.request_id]
            self._pending[cmd.command_id] = _Pending(dispatch.request_id, dispatch.attempt, dispatch.agent)
            # Screen pop before the agent's phone rings, so the customer is never asked again.
            self.controller.bus.publish("screen_pop", {
                "callback_id": row["id"], "attempt": dispatch.attempt, "agent": dispatch.agent,
                "queue": row["queue"], "caller": row["phone"], "caller_name": row["name"], "topic": row["topic"],
                "original_call_id": row["call_id"], "customer": {"id": row["customer_id"]},
            }, agent=dispatch.agent, queue=row["queue"])
            self.stats.dispatched += 1
            result = await self.controller.execute(self.pbx, cmd)
            if not result.ok:
                self._pending.pop(cmd.command_id, None)
                await self.record_result(dispatch.request_id, dispatch.attempt, "failed")
        return actions

    def _available(self, requests: Sequence[core.Request]) -> Mapping[str | None, Sequence[str]]:
        available = self.agents()
        if self.pbx_queue is None:
            return available
        out: dict[str | None, Sequence[str]] = {None: available.get(None, [])}
        for q in {r.queue for r in requests if r.queue}:
            out[q] = available.get(self.pbx_queue(q), [])
        return out

    def _request(self, r: Any) -> core.Request:
        return core.Request(
            id=r["id"], queue=r["queue"], status=r["status"], requested_at=r["created_at"], due_at=r["due_at"],
            deadline_at=r["deadline_at"], attempts=r["attempts"], last_attempt_at=r["last_attempt_at"],
            entered_at=r["entered_at"], escalated=frozenset(r["escalated"] or ()),
        )

    def _originate(self, a: core.Dispatch, row: Any) -> Originate:
        return Originate(
            endpoint=a.agent, destination=f"{CONTEXT},{row['phone']},1",
            caller_id=self.caller_id or f"Callback {row['phone']}", timeout_s=self.policy.originate_timeout_s,
            variables=(("CC_CALLBACK_ID", str(row["id"])), ("CC_CALLBACK_ATTEMPT", str(a.attempt)),
                       ("CC_CALLBACK_QUEUE", row["queue"] or ""),
                       ("CC_CALLBACK_CALL", row["call_id"] or "")),
        )

    @staticmethod
    def _escalation_data(row: Any, reason: str, deadline: datetime) -> dict[str, Any]:
        return {"callback_id": row["id"], "reason": reason, "queue": row["queue"], "phone": row["phone"],
                "name": row["name"], "topic": row["topic"], "attempts": row["attempts"],
                "deadline_at": deadline.isoformat(), "original_call_id": row["call_id"]}

    async def _escalation(self, conn: AsyncConnection, callback_id: int, reason: str, now: datetime) -> bool:
        """Stored once per reason: True only the first time (the caller then publishes it)."""
        inserted = await conn.scalar(text(
            "INSERT INTO callback_escalations (callback_id, reason, at) VALUES (:id, :r, :now) "
            "ON CONFLICT DO NOTHING RETURNING callback_id"), {"id": callback_id, "r": reason, "now": now})
        if inserted is not None:
            self.stats.escalations += 1
        return inserted is not None

    @staticmethod
    async def _transition(conn: AsyncConnection, callback_id: int, t: core.Transition) -> None:
        await conn.execute(text(
            "UPDATE callbacks SET status = :s, due_at = :due, outcome = :o, closed_at = :closed WHERE id = :id"),
            {"id": callback_id, "s": t.status, "due": t.due_at, "o": t.outcome, "closed": t.closed_at})

    @staticmethod
    async def _end_attempt(conn: AsyncConnection, callback_id: int, attempt: int, result: str, now: datetime,
                           call_id: str | None = None) -> bool:
        ended = await conn.scalar(text(
            "UPDATE callback_attempts SET result = :r, ended_at = :now, call_id = COALESCE(:call, call_id) "
            "WHERE callback_id = :id AND attempt = :n AND result IS NULL RETURNING id"),
            {"id": callback_id, "n": attempt, "r": result, "now": now, "call": call_id})
        return ended is not None

    # -- results --------------------------------------------------------------------------------
    async def record_result(self, callback_id: int, attempt: int, result: str, *, call_id: str | None = None,
                            now: datetime | None = None) -> core.Transition | None:
        """An attempt ended: store it and move the request on. A late or repeated result for an
        attempt that already has one changes nothing (returns None)."""
        now = now or self.controller.clock()
        escalate: dict[str, Any] | None = None
        async with self.engine.begin() as conn:
            row = (await conn.execute(text(
                "SELECT id, queue, status, created_at, due_at, deadline_at, attempts, last_attempt_at, phone, name, "
                "topic, call_id FROM callbacks WHERE id = :id FOR UPDATE"), {"id": callback_id})).mappings().first()
            if row is None or not await self._end_attempt(conn, callback_id, attempt, result, now, call_id):
                return None
            self.stats.results[result] = self.stats.results.get(result, 0) + 1
            if row["status"] != "dialing" or row["attempts"] != attempt:
                return None  # the request moved on (expired, canceled) while this attempt ran
            req = core.Request(id=row["id"], queue=row["queue"], status=row["status"], requested_at=row["created_at"],
                               due_at=row["due_at"], deadline_at=row["deadline_at"], attempts=row["attempts"],
                               last_attempt_at=row["last_attempt_at"])
            t = core.on_result(req, result, now, self.policy)
            await self._transition(conn, callback_id, t)
            if t.escalate and await self._escalation(conn, callback_id, t.escalate, now):
                escalate = self._escalation_data(row, t.escalate, req.deadline(self.policy))
        self.controller.bus.publish("callback", {"callback_id": callback_id, "attempt": attempt, "result": result,
                                                 "status": t.status, "outcome": t.outcome}, queue=row["queue"])
        if escalate is not None:
            self.controller.bus.publish("callback_overdue", escalate, queue=row["queue"])
        return t

    def _on_event(self, ev: Event) -> None:
        if isinstance(ev, CallbackDialed):
            self._on_dialed(ev)
            return
        if not isinstance(ev, OriginateResult):
            return
        pending = self._pending.get(ev.request_id)
        if pending is None:
            return
        if ev.success:
            # The agent answered; the customer leg's result comes from the dialplan's user event.
            return
        del self._pending[ev.request_id]
        result = AGENT_LEG_RESULTS.get(ev.reason or "", "failed")
        self._spawn(self.record_result(pending.callback_id, pending.attempt, result))

    def _on_dialed(self, ev: CallbackDialed) -> None:
        if ev.pbx != self.pbx:
            return
        for key, p in list(self._pending.items()):
            if p.callback_id == ev.callback_id and p.attempt == ev.attempt:
                del self._pending[key]
        result = DIALSTATUS_RESULTS.get(ev.dial_status.upper(), "failed")
        self._spawn(self.record_result(ev.callback_id, ev.attempt, result, call_id=ev.callback_call_id))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait for results being stored (tests, shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
