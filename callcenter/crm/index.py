"""``RoutingIndex``: every CRM phone's routing attributes in the controller's memory.

Opt-in (``crm.routing_index``). With it, routing never waits for PostgreSQL: the CRM lookup
answers from memory for every number, known or not, and the database is only read off the
call's path (the full card for the screen pop, after the decision). What the rules read is
held: customer id, name (the display name), tier, segment, language, tags, assigned agent (id
and name), stage, do-not-call. Notes, other phones and past interactions are not.

Freshness: the index LISTENs on ``cc_crm`` (migration 0007's statement triggers: which phones,
customers or agents changed, or ``*`` after a bulk statement) and re-reads exactly those rows;
changes are visible to routing as soon as the notification is handled, typically a few
milliseconds after the commit. Notifications are only delivered to a live listener, so on
(re)connect the index reloads everything, keeping the previous contents until the new ones
are complete; a bulk change (``*``) does the same. Until the first load completes the index
is not ready and lookups go to the database as without it.

Memory: one dict entry per phone (the E.164 string and a tuple; repeated values such as tiers,
stages and tag sets are shared). The routing bench prints the figure for 1M customers.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass
from typing import Any

from callcenter.crm.repository import CustomerCard
from callcenter.storage.db import with_settings

log = logging.getLogger(__name__)

CHANNEL = "cc_crm"
APP_NAME = "callcenter-crm-index"  # pg_stat_activity.application_name of the listener

_SELECT = """
    SELECT p.e164, c.id, c.name, c.tier, c.segment, c.language, c.tags, c.assigned_agent_id,
           a.name AS assigned_agent, c.stage, c.do_not_call
      FROM customer_phones p
      JOIN customers c ON c.id = p.customer_id
      LEFT JOIN agents a ON a.id = c.assigned_agent_id
"""
_BY_PHONES = _SELECT + " WHERE p.e164 = ANY($1::text[])"
_BY_CUSTOMERS = _SELECT + " WHERE c.id = ANY($1::bigint[])"
_BY_AGENTS = _SELECT + " WHERE c.assigned_agent_id = ANY($1::bigint[])"

# A customer's routing attributes: (id, name, tier, segment, language, tags, assigned_agent_id,
# assigned_agent, stage, do_not_call)
_Entry = tuple[int, str, str, "str | None", "str | None", "tuple[str, ...]", "int | None", "str | None",
               "str | None", bool]


@dataclass
class IndexStats:
    loads: int = 0
    load_s: float = 0.0
    rows_loaded: int = 0  # rows indexed so far by the load in progress (or by the last one)
    notifications: int = 0
    updates: int = 0  # phones re-read after a notification
    reconnects: int = 0


class RoutingIndex:
    def __init__(self, connect_kwargs: dict[str, Any], *, chunk: int = 5000, slice_rows: int = 500,
                 retry_s: float = 1.0, retry_max_s: float = 30.0, ping_s: float = 30.0) -> None:
        self.connect_kwargs = connect_kwargs
        self.chunk = chunk  # rows per fetch (a round trip each)
        self.slice = slice_rows  # rows indexed between two turns of the event loop
        self.retry_s = retry_s
        self.retry_max_s = retry_max_s
        self.ping_s = ping_s
        self.stats = IndexStats()
        self._entries: dict[str, _Entry] = {}
        self._shared: dict[Any, Any] = {}
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._changes: asyncio.Queue[str | None] = asyncio.Queue()
        self._releasing: set[asyncio.Task[None]] = set()

    # -- reading ----------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def __len__(self) -> int:
        return len(self._entries)

    def card(self, e164: str) -> CustomerCard | None:
        """The routing card for ``e164`` (None: no customer has this number). Only meaningful
        when ``ready``."""
        e = self._entries.get(e164)
        if e is None:
            return None
        return CustomerCard(id=e[0], name=e[1], tier=e[2], segment=e[3], language=e[4], tags=e[5],
                            assigned_agent_id=e[6], assigned_agent=e[7], stage=e[8], notes=None,
                            do_not_call=e[9], phones=((e164, None),))

    async def wait_ready(self, timeout: float | None = None) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            return False
        return True

    # -- running ----------------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for task in list(self._releasing):
            task.cancel()  # what is left of an old index goes in one piece: we are stopping
        await asyncio.gather(*self._releasing, return_exceptions=True)

    async def _run(self) -> None:
        import asyncpg

        delay = self.retry_s
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(**with_settings(self.connect_kwargs, application_name=APP_NAME))
                self._changes = asyncio.Queue()
                conn.add_termination_listener(lambda _c: self._changes.put_nowait(None))
                # listening before the load: nothing committed after the snapshot is missed
                await conn.add_listener(CHANNEL, self._on_notify)
                await self._load_all(conn)
                delay = self.retry_s
                while True:
                    try:
                        payload = await asyncio.wait_for(self._changes.get(), self.ping_s)
                    except TimeoutError:
                        await conn.fetchval("SELECT 1")  # a dead link would never notify
                        continue
                    batch = [payload]
                    while not self._changes.empty():
                        batch.append(self._changes.get_nowait())
                    if None in batch:
                        raise ConnectionError("listener connection closed")
                    await self._apply(conn, [p for p in batch if p is not None])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.reconnects += 1
                log.warning("CRM routing index: %s: %s; reconnecting in %g s (%s)", type(exc).__name__, exc,
                            delay, "serving the previous contents" if self.ready else "not ready yet")
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)  # a failing reload must not run back to back
            finally:
                if conn is not None and not conn.is_closed():
                    conn.terminate()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.stats.notifications += 1
        self._changes.put_nowait(payload)

    async def _load_all(self, conn: Any) -> None:
        started = time.perf_counter()
        entries: dict[str, _Entry] = {}
        self._shared = {}
        entry, step, stats = self._entry, self.slice, self.stats
        stats.rows_loaded = 0
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            cursor = await conn.cursor(_SELECT)
            while rows := await cursor.fetch(self.chunk):
                for start in range(0, len(rows), step):
                    part = rows[start:start + step]
                    for r in part:
                        entries[r[0]] = entry(r)
                    stats.rows_loaded += len(part)
                    # A slice at a time: calls keep being routed meanwhile. A 5,000-row chunk in
                    # one go held the event loop ~40 ms (1M load at 200 calls/s); a slice, a tenth.
                    await asyncio.sleep(0)
        old, self._entries = self._entries, entries
        if old:
            # Dropped in one go, a 1M-entry index is freed at once by reference counting: ~110
            # ms with the event loop held. A slice at a time instead, off the load's path.
            task = asyncio.ensure_future(self._release(old))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)
        # The collector's first full pass after a load walks every new entry: 51 ms for 1M in
        # isolation, 118-129 ms in the routing bench, where it fell among the calls. Everything
        # alive now (the entries, the start-up heap) is long-lived: move it out of the
        # collector's generations. Objects still die by reference counting as usual.
        gc.freeze()
        self.stats.loads += 1
        self.stats.load_s = time.perf_counter() - started
        self._ready.set()
        log.info("CRM routing index: %d phones loaded in %.1f s", len(self._entries), self.stats.load_s)

    async def _release(self, old: dict[str, _Entry]) -> None:
        """Free a replaced index's entries ``slice_rows`` x 2 at a time between turns of the loop."""
        step = self.slice * 2
        while old:
            for _ in range(min(step, len(old))):
                old.popitem()
            await asyncio.sleep(0)

    async def _apply(self, conn: Any, payloads: list[str]) -> None:
        if "*" in payloads:
            await self._load_all(conn)
            return
        phones: set[str] = set()
        customers: set[int] = set()
        agents: set[int] = set()
        for payload in payloads:
            kind, _, keys = payload.partition(":")
            values = [k for k in keys.split(",") if k]
            if kind == "p":
                phones.update(values)
            elif kind == "c":
                customers.update(int(v) for v in values)
            elif kind == "a":
                agents.update(int(v) for v in values)
            else:
                log.warning("CRM routing index: unknown notification %r ignored", payload[:80])
        if phones:
            rows = await conn.fetch(_BY_PHONES, list(phones))
            found = {r[0]: self._entry(r) for r in rows}
            for e164 in phones:
                entry = found.get(e164)
                if entry is None:
                    self._entries.pop(e164, None)
                else:
                    self._entries[e164] = entry
            self.stats.updates += len(phones)
        for query, ids in ((_BY_CUSTOMERS, customers), (_BY_AGENTS, agents)):
            if ids:
                rows = await conn.fetch(query, list(ids))
                for r in rows:
                    self._entries[r[0]] = self._entry(r)
                self.stats.updates += len(rows)

    def _entry(self, r: Any) -> _Entry:
        share = self._shared.setdefault
        tags = tuple(r[6] or ())
        return (r[1], r[2], share(r[3], r[3]), share(r[4], r[4]), share(r[5], r[5]), share(tags, tags), r[7],
                share(r[8], r[8]), share(r[9], r[9]), r[10])
