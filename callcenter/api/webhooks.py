"""Webhooks: screen pops and call ends (or any notification kind a receiver asks for, e.g.
``detractor``) POSTed to configured URLs, signed, retried, never in the way.

The bus hook only filters by kind and enqueues into a bounded queue (``put_nowait``): call
handling never waits for a slow or dead receiver. A full queue drops the notification and
counts it. A background task takes notifications off the queue and starts one delivery task
per (notification, webhook), at most ``concurrency`` at a time, so one receiver in a retry
back-off does not hold back the others.

Signature: ``X-Callcenter-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``
with ``X-Callcenter-Timestamp: <unix seconds>``. The timestamp is inside the signed text so a
captured request cannot be replayed later with a fresh timestamp; receivers should refuse
timestamps more than a few minutes off. Each delivery also carries ``X-Callcenter-Delivery``
(unique per notification and webhook, the same across retries, for de-duplication).

Retries: connection errors, timeouts, 408, 429 and 5xx are retried after ``backoff_s``,
doubling up to ``backoff_max_s``, for ``max_attempts`` attempts in all; other 4xx answers are the
receiver refusing the payload and are not retried. A notification given up on counts in
``callcenter_webhook_failures``.

A receiver without a team gets every notification of its kinds, whatever the team (only an
admin registers one, like reading the whole floor). A receiver of a team (``webhooks.team_id``)
gets only what that team's supervisors get on the event stream: the same filter
(``events.make_filter``) over the team's scope (its agents' interfaces, its queues), re-read with
the table. A ``call_ended`` goes to a team receiver when the call was the team's: the hook shows
the ``call`` notifications to those receivers' filters as they are published (set lookups, like an
SSE client's filter), whether or not the receiver asked for ``call`` itself.

``detractor`` (a post-call survey scored 0-6) is sent with the customer's name added
(``data.customer_name``, one primary-key read when the notification is taken off the queue;
null when unknown or the database does not answer in time), the same as on the event stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import aiohttp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from callcenter.api.auth import Scope
from callcenter.api.problems import ApiProblem, forbidden, not_found
from callcenter.api.router import Call, Reply
from callcenter.bus import Notification

if TYPE_CHECKING:
    from callcenter.api.context import ApiOptions
    from callcenter.api.metrics import ApiMetrics
    from callcenter.api.models import WebhookIn
    from callcenter.storage.db import Database

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Callcenter-Signature"
TIMESTAMP_HEADER = "X-Callcenter-Timestamp"
DELIVERY_HEADER = "X-Callcenter-Delivery"
DEFAULT_KINDS = frozenset({"screen_pop", "call_ended"})


NAME_TIMEOUT_S = 1.0


async def with_customer_name(database: Database, n: Notification) -> Notification:
    """A ``detractor`` notification with ``data.customer_name`` (the CRM name of
    ``data.customer_id``); any other notification as it is. Never raises: a slow or failing
    database gives a null name rather than holding the notification."""
    if n.kind != "detractor" or "customer_name" in n.data:
        return n
    name: str | None = None
    customer_id = n.data.get("customer_id")
    if isinstance(customer_id, int) and not isinstance(customer_id, bool):
        try:
            async with asyncio.timeout(NAME_TIMEOUT_S), database.engine.connect() as conn:
                name = await conn.scalar(text("SELECT name FROM customers WHERE id = :id"), {"id": customer_id})
        except Exception as exc:
            log.warning("detractor %s: no customer name (%s)", n.data.get("call_id"), exc)
    return replace(n, data={**n.data, "customer_name": name})


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass(frozen=True)
class Target:
    id: int
    url: str
    secret: str
    kinds: frozenset[str]
    team_id: int | None = None
    # a team's receiver: the event stream's filter for that team's supervisors (None: all teams)
    accept: Callable[[Notification], bool] | None = field(default=None, compare=False)

    def gets(self, n: Notification) -> bool:
        """Whether this receiver gets ``n``: of its kinds and, for a team's receiver, in the team's
        scope. Call it once per notification, in bus order (the filter tracks the calls shown)."""
        return n.kind in self.kinds and (self.accept is None or self.accept(n))


async def team_scopes(conn: AsyncConnection, team_ids: list[int]) -> dict[int, Scope]:
    """What each team's supervisors see because of that team (``auth.load_scope`` for one
    team): its members' agent ids and interfaces, the queues it owns."""
    members: dict[int, set[int]] = {t: set() for t in team_ids}
    interfaces: dict[int, set[str]] = {t: set() for t in team_ids}
    queues: dict[int, set[str]] = {t: set() for t in team_ids}
    if team_ids:
        for r in await conn.execute(text(
                "SELECT m.team_id, m.agent_id, e.interface FROM team_members m "
                "LEFT JOIN agent_endpoints e ON e.agent_id = m.agent_id WHERE m.team_id = ANY(:t)"), {"t": team_ids}):
            members[r.team_id].add(r.agent_id)
            if r.interface is not None:
                interfaces[r.team_id].add(r.interface)
        for r in await conn.execute(text("SELECT team_id, queue FROM team_queues WHERE team_id = ANY(:t)"),
                                    {"t": team_ids}):
            queues[r.team_id].add(r.queue)
    return {t: Scope(agent_ids=frozenset(members[t]), interfaces=frozenset(interfaces[t]),
                     queues=frozenset(queues[t]), teams=frozenset({t})) for t in team_ids}


class WebhookDispatcher:
    def __init__(self, database: Database, options: ApiOptions, metrics: ApiMetrics) -> None:
        self.database = database
        self.options = options
        self.metrics = metrics
        self.queue: asyncio.Queue[Notification] = asyncio.Queue(options.webhook_queue_size)
        self._targets: list[Target] = []
        self._follow: list[Target] = []  # team receivers of call_ended: shown every ``call`` as published
        self._seen: dict[int, set[str]] = {}  # per team receiver: the calls it was shown (kept across reloads)
        self._loaded_at = float("-inf")
        self._stale = True
        self._task: asyncio.Task[None] | None = None
        self._reload: asyncio.Task[None] | None = None
        self._generation = 0  # bumped by invalidate(): a read that began before is stale already
        self._load_lock = asyncio.Lock()  # one read at a time, so an older read never lands last
        self._deliveries: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(options.webhook_concurrency)
        self._session: aiohttp.ClientSession | None = None
        self.kinds: frozenset[str] = DEFAULT_KINDS  # widened when a webhook asks for more

    # -- the bus hook: runs inside Bus.publish, on the controller's path ---------------------------
    def hook(self, n: Notification) -> None:
        if n.kind == "call":  # the calls a team's receiver is shown, for its call_ended (even if dropped below)
            for t in self._follow:
                assert t.accept is not None
                t.accept(n)
        if n.kind not in self.kinds:
            return
        try:
            self.queue.put_nowait(n)
        except asyncio.QueueFull:
            self.metrics.webhook_dropped.inc()

    def invalidate(self) -> None:
        """The webhooks table changed: re-read it now. The hook only passes on the kinds some
        receiver asked for, so a receiver added for another kind (``detractor``) would otherwise
        get nothing until a notification of a default kind made the dispatcher re-read the table."""
        self._stale = True
        self._generation += 1
        if self._task is not None and (self._reload is None or self._reload.done()):
            self._reload = asyncio.get_running_loop().create_task(self._refresh(), name="webhooks-reload")

    async def _refresh(self) -> None:
        while self._stale:  # again if the table changed while it was being read
            try:
                await self._load()
            except Exception as exc:
                log.warning("webhooks: cannot read the webhooks table (%s); retrying at the next delivery", exc)
                return

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.options.webhook_timeout_s))
        with contextlib.suppress(Exception):  # database down at start: loaded on first use
            await self._load()
        self._task = asyncio.create_task(self._run(), name="webhooks")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, self._reload, *self._deliveries) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    # -- work ------------------------------------------------------------------------------------
    async def _load(self) -> None:
        from callcenter.api.events import make_filter  # events imports this module
        from callcenter.api.models import EventsQuery

        async with self._load_lock:
            generation = self._generation
            async with self.database.engine.connect() as conn:
                rows = (await conn.execute(text(
                    "SELECT id, url, secret, kinds, team_id FROM webhooks WHERE active ORDER BY id"))).all()
                scopes = await team_scopes(conn, sorted({r.team_id for r in rows if r.team_id is not None}))
            everything = EventsQuery(snapshot=False)  # no kinds, queue or agent filter: the scope only
            self._seen = {r.id: self._seen.get(r.id, set()) for r in rows if r.team_id is not None}
            self._targets = [
                Target(r.id, r.url, r.secret, frozenset(r.kinds), r.team_id,
                       None if r.team_id is None else make_filter(scopes[r.team_id], everything, self._seen[r.id],
                                                                  "supervisor"))
                for r in rows]
            self._follow = [t for t in self._targets if t.accept is not None and "call_ended" in t.kinds]
            self.kinds = DEFAULT_KINDS.union(*(t.kinds for t in self._targets))
            self._loaded_at = time.monotonic()
            self._stale = generation != self._generation

    async def targets(self) -> list[Target]:
        if self._stale or time.monotonic() - self._loaded_at > self.options.webhook_refresh_s:
            try:
                await self._load()
            except Exception as exc:  # keep delivering to the last known list
                log.warning("webhooks: cannot read the webhooks table (%s); using the last list", exc)
                self._loaded_at = time.monotonic()
        return self._targets

    async def _run(self) -> None:
        while True:
            n = await self.queue.get()
            n = await with_customer_name(self.database, n)
            for target in await self.targets():
                if target.gets(n):
                    await self._slots.acquire()
                    task = asyncio.create_task(self._deliver(target, n), name=f"webhook-{target.id}-{n.id}")
                    self._deliveries.add(task)
                    task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._deliveries.discard(task)
        self._slots.release()

    async def _deliver(self, target: Target, n: Notification) -> None:
        assert self._session is not None
        body = json.dumps(n.to_dict(), ensure_ascii=False, default=str).encode()
        delay = self.options.webhook_backoff_s
        last = ""
        for attempt in range(1, self.options.webhook_max_attempts + 1):
            ts = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(target.secret, ts, body),
                TIMESTAMP_HEADER: ts,
                DELIVERY_HEADER: f"{n.id}-{target.id}",
                "User-Agent": "callcenter-webhooks",
            }
            retry = True
            try:
                async with self._session.post(target.url, data=body, headers=headers) as resp:
                    await resp.read()
                    if 200 <= resp.status < 300:
                        self.metrics.webhook_deliveries.labels("ok").inc()
                        return
                    last = f"HTTP {resp.status}"
                    retry = resp.status in (408, 429) or resp.status >= 500
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            if not retry or attempt == self.options.webhook_max_attempts:
                break
            self.metrics.webhook_deliveries.labels("retry").inc()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.options.webhook_backoff_max_s)
        self.metrics.webhook_deliveries.labels("failed").inc()
        self.metrics.webhook_failures.inc()
        log.warning("webhook %s: gave up on %s #%s: %s", target.id, n.kind, n.id, last)

    def pending(self) -> dict[str, Any]:
        return {"queued": self.queue.qsize(), "in_flight": len(self._deliveries)}


# -- the API's webhook routes (registered in admin.py): admins any, supervisors their own teams' ---

COLUMNS = "id, url, kinds, active, team_id, created_at"


def _row(r: Any) -> dict[str, Any]:
    return {**r, "kinds": list(r["kinds"])}


async def list_webhooks(c: Call) -> dict[str, Any]:
    """Admins: all receivers; supervisors: those of their teams (not the ones of all teams)."""
    scope = await c.scope()
    where, params = ("", {}) if scope.everything else (" WHERE team_id = ANY(:t)", {"t": sorted(scope.teams)})
    async with c.ctx.database.engine.connect() as conn:
        rows = (await conn.execute(text(f"SELECT {COLUMNS} FROM webhooks{where} ORDER BY id"), params)).mappings()
        return {"webhooks": [_row(r) for r in rows], "delivery": c.state.webhooks.pending()}


async def create_webhook(c: Call) -> Reply:
    b: WebhookIn = c.body
    scope = await c.scope()
    if not scope.everything:
        if b.team_id is None:
            raise forbidden("a webhook without a team gets every team's notifications: admins only; give team_id")
        if b.team_id not in scope.teams:
            raise forbidden("you do not supervise this team")
    secret = b.secret or secrets.token_urlsafe(32)
    async with c.ctx.database.engine.begin() as conn:
        if b.team_id is not None and not await conn.scalar(text("SELECT 1 FROM teams WHERE id = :t"), {"t": b.team_id}):
            raise ApiProblem(422, f"no team {b.team_id}", kind="validation-error",
                             errors=[{"in": "body", "path": "team_id", "pointer": "#/team_id",
                                      "detail": f"no team {b.team_id}", "type": "value_error"}])
        row = (await conn.execute(text(
            "INSERT INTO webhooks (url, secret, kinds, active, team_id) VALUES (:u, :s, :k, :a, :t) "
            f"RETURNING {COLUMNS}"),
            {"u": str(b.url), "s": secret, "k": sorted(set(b.kinds)), "a": b.active, "t": b.team_id})).mappings().one()
    c.state.webhooks.invalidate()
    return Reply({**_row(row), "secret": secret}, 201)


async def delete_webhook(c: Call) -> None:
    """Supervisors: 403 for any receiver not of their teams (whether or not it exists)."""
    scope = await c.scope()
    webhook_id = c.path["webhook_id"]
    async with c.ctx.database.engine.begin() as conn:
        team_id = await conn.scalar(text("SELECT team_id FROM webhooks WHERE id = :id FOR UPDATE"), {"id": webhook_id})
        if not scope.everything and team_id not in scope.teams:
            raise forbidden("this webhook is not of your teams")
        if await conn.scalar(text("DELETE FROM webhooks WHERE id = :id RETURNING id"), {"id": webhook_id}) is None:
            raise not_found(f"no webhook {webhook_id}")
    c.state.webhooks.invalidate()
