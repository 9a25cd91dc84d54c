"""Callback requests: the pure core (no I/O, no clock of its own).

A request is stored the moment a caller (IVR, a rule, a long wait) or the website (API) asks
for it, and lives in PostgreSQL until it is closed *with an outcome*; the shell
(``callbacks.service``) reads the open ones, asks ``next_actions`` what to do now and carries
it out. Life of a request::

    open --Dispatch--> dialing --completed--> completed            (outcome "completed")
      ^                   |----other result, attempts left----> open (due_at = now + spacing)
      |                   '----other result, no attempts left--> failed (outcome "attempts_exhausted")
      '--deadline passed before a successful attempt-----------> expired (outcome "deadline_passed")

``scheduled`` (a request with a future ``due_at``, e.g. "call me after 18:00") behaves like
``open``. ``canceled`` is set by people (API), never here. Every terminal transition carries
an outcome: the table's CHECK (closed_at iff outcome) makes "closed without saying why"
impossible, and this module never produces one (property-tested).

Dispatch keeps the caller's place: due requests are handed out strictly in order of the
original call's entry (or the request time when there was no call), across queues, one free
agent each; a request whose queue has no free agent waits and no later request of that queue
overtakes it. Agent first: the agent's phone rings, and only an answering agent gets the
customer dialled (the agent has seen the screen pop first).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

OPEN_STATUSES = frozenset({"open", "scheduled"})
TERMINAL_STATUSES = frozenset({"completed", "failed", "canceled", "expired"})
ATTEMPT_RESULTS = ("agent_no_answer", "customer_no_answer", "busy", "completed", "failed")

# Outcomes written when a request closes (``callbacks.outcome``).
OUTCOME_COMPLETED = "completed"
OUTCOME_EXHAUSTED = "attempts_exhausted"
OUTCOME_EXPIRED = "deadline_passed"


@dataclass(frozen=True, slots=True)
class CallingWindow:
    """Hours in which customers may be called: ``start``..``end`` local time on ``days``
    (0 = Monday). A simple alternative to a routing calendar."""

    start: time = time(9, 0)
    end: time = time(20, 0)
    days: frozenset[int] = frozenset(range(7))
    tz: str = "UTC"

    def __call__(self, at: datetime) -> bool:
        local = at.astimezone(ZoneInfo(self.tz))
        return local.weekday() in self.days and self.start <= local.time() < self.end


def calendar_hours(calendar: object) -> Callable[[datetime], bool]:
    """Calling hours from a routing rules calendar (``rules.calendars[name]``)."""
    from callcenter.routing.calendar import is_open

    return lambda at: is_open(calendar, at)  # type: ignore[arg-type]


def always(_: datetime) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class CallbackPolicy:
    max_attempts: int = 3
    # Wait after the n-th failed attempt (the last value repeats): a customer who did not pick
    # up right now is unlikely to pick up 30 s later.
    spacing: tuple[timedelta, ...] = (timedelta(minutes=5), timedelta(minutes=15), timedelta(minutes=30))
    # Deadline for requests that came without one ("we call back within 2 hours").
    deadline: timedelta = timedelta(hours=2)
    # Escalate (``callback_overdue``) this long before the deadline when still not completed,
    # so a supervisor can act while the promise can still be kept.
    warn_before: timedelta = timedelta(minutes=30)
    # A ``dialing`` request with no result after this long (controller restarted mid-attempt,
    # lost OriginateResponse) is retried rather than forgotten.
    stale_dialing: timedelta = timedelta(minutes=5)
    hours: Callable[[datetime], bool] = always
    originate_timeout_s: int = 30

    def spacing_after(self, attempts: int) -> timedelta:
        if not self.spacing:
            return timedelta(0)
        return self.spacing[min(max(attempts, 1), len(self.spacing)) - 1]


@dataclass(frozen=True, slots=True)
class Request:
    """What the core needs of a ``callbacks`` row."""

    id: int
    queue: str | None
    status: str
    requested_at: datetime
    due_at: datetime
    deadline_at: datetime | None = None
    attempts: int = 0
    last_attempt_at: datetime | None = None
    # entry time of the original call (its place in the queue); the request time otherwise
    entered_at: datetime | None = None
    escalated: frozenset[str] = frozenset()  # escalation reasons already sent
    outcome: str | None = None
    closed_at: datetime | None = None

    @property
    def place(self) -> tuple[datetime, int]:
        return (self.entered_at or self.requested_at, self.id)

    def deadline(self, policy: CallbackPolicy) -> datetime:
        return self.deadline_at or self.requested_at + policy.deadline


@dataclass(frozen=True, slots=True)
class Dispatch:
    request_id: int
    queue: str | None
    agent: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Retry:
    """An attempt that never reported back (stale ``dialing``): count it failed, schedule again."""

    request_id: int
    attempt: int
    result: str
    transition: Transition


@dataclass(frozen=True, slots=True)
class Expire:
    request_id: int
    transition: Transition


@dataclass(frozen=True, slots=True)
class Escalate:
    request_id: int
    queue: str | None
    reason: str  # overdue | expired | attempts_exhausted
    deadline_at: datetime


Action = Dispatch | Retry | Expire | Escalate


@dataclass(frozen=True, slots=True)
class Transition:
    """The new state of a request after a result or a deadline."""

    status: str
    due_at: datetime
    outcome: str | None = None
    closed_at: datetime | None = None
    escalate: str | None = None  # reason, when this transition must be escalated

    def apply(self, r: Request) -> Request:
        return replace(r, status=self.status, due_at=self.due_at, outcome=self.outcome, closed_at=self.closed_at)


def start_attempt(r: Request, now: datetime) -> Request:
    """The Dispatch was sent: the request is ``dialing`` attempt ``attempts + 1``."""
    return replace(r, status="dialing", attempts=r.attempts + 1, last_attempt_at=now)


def on_result(r: Request, result: str, now: datetime, policy: CallbackPolicy) -> Transition:
    """Where a request goes after its current attempt ended with ``result``."""
    if result not in ATTEMPT_RESULTS:
        raise ValueError(f"unknown attempt result {result!r}")
    if result == "completed":
        return Transition("completed", r.due_at, OUTCOME_COMPLETED, now)
    if r.attempts >= policy.max_attempts:
        return Transition("failed", r.due_at, OUTCOME_EXHAUSTED, now, escalate=OUTCOME_EXHAUSTED)
    # Agent did not answer: the customer was never dialled, so no customer-facing spacing is
    # needed - the next free agent may try right away (a different one, by dispatch order).
    wait = timedelta(0) if result == "agent_no_answer" else policy.spacing_after(r.attempts)
    due = now + wait
    deadline = r.deadline(policy)
    if due >= deadline:
        return Transition("expired", r.due_at, OUTCOME_EXPIRED, now, escalate="expired")
    return Transition("open", due)


def next_actions(
    requests: Sequence[Request],
    agents_available_by_queue: Mapping[str | None, Sequence[str]],
    now: datetime,
    policy: CallbackPolicy | None = None,
) -> list[Action]:
    """What to do now with these requests.

    ``agents_available_by_queue`` lists the free agents (interfaces) who have a queue's skills,
    best first; key ``None`` serves requests without a queue. One agent gets at most one
    request per round. Terminal requests are ignored; ``dialing`` ones wait for their result
    unless stale."""
    policy = policy or CallbackPolicy()
    out: list[Action] = []
    due: list[Request] = []
    for r in requests:
        if r.status in TERMINAL_STATUSES:
            continue
        deadline = r.deadline(policy)
        if r.status == "dialing":
            if r.last_attempt_at is None or now - r.last_attempt_at >= policy.stale_dialing:
                t = on_result(r, "failed", now, policy)
                out.append(Retry(r.id, r.attempts, "failed", t))
                if t.escalate:
                    out.append(Escalate(r.id, r.queue, t.escalate, deadline))
            continue
        if now >= deadline:
            out.append(Expire(r.id, Transition("expired", r.due_at, OUTCOME_EXPIRED, now, escalate="expired")))
            if "expired" not in r.escalated:
                out.append(Escalate(r.id, r.queue, "expired", deadline))
            continue
        if now >= deadline - policy.warn_before and "overdue" not in r.escalated:
            out.append(Escalate(r.id, r.queue, "overdue", deadline))
        if r.due_at <= now and policy.hours(now):
            due.append(r)
    taken: set[str] = set()
    blocked: set[str | None] = set()  # queues whose oldest due request found no agent
    for r in sorted(due, key=lambda x: x.place):
        if r.queue in blocked:
            continue  # nobody overtakes the caller ahead in the same queue
        agent = next((a for a in agents_available_by_queue.get(r.queue, ()) if a not in taken), None)
        if agent is None:
            blocked.add(r.queue)
            continue
        taken.add(agent)
        out.append(Dispatch(r.id, r.queue, agent, r.attempts + 1))
    return out


def is_overdue(r: Request, now: datetime, policy: CallbackPolicy) -> bool:
    return r.status not in TERMINAL_STATUSES and now >= r.deadline(policy) - policy.warn_before


@dataclass(frozen=True, slots=True)
class CallbackFigures:
    requested: int = 0
    completed: int = 0
    within_deadline: int = 0
    attempts_of_completed: int = 0
    failed: int = 0
    expired: int = 0
    open: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)

    @property
    def attempts_per_success(self) -> float | None:
        return self.attempts_of_completed / self.completed if self.completed else None

    @property
    def within_deadline_pct(self) -> float | None:
        return 100.0 * self.within_deadline / self.requested if self.requested else None


def figures(requests: Sequence[Request], policy: CallbackPolicy | None = None) -> CallbackFigures:
    """Report figures: requested, completed, completed within the deadline, attempts per success."""
    policy = policy or CallbackPolicy()
    by: dict[str, int] = {}
    completed = within = attempts = failed = expired = open_ = 0
    for r in requests:
        if r.outcome:
            by[r.outcome] = by.get(r.outcome, 0) + 1
        if r.status == "completed":
            completed += 1
            attempts += r.attempts
            if r.closed_at is not None and r.closed_at <= r.deadline(policy):
                within += 1
        elif r.status == "failed":
            failed += 1
        elif r.status == "expired":
            expired += 1
        elif r.status not in TERMINAL_STATUSES:
            open_ += 1
    return CallbackFigures(len(requests), completed, within, attempts, failed, expired, open_, by)
