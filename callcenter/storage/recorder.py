"""The recorder: journey steps, call summaries and agent state changes into PostgreSQL,
without ever losing one.

Design: a write-ahead journal in front of the database.

1. ``submit_*`` (synchronous, never blocks the event loop) appends rows to an in-memory batch.
2. The writer task appends what is pending to the current journal segment every
   ``journal_interval`` (10 ms): handed to the OS, the rows survive a crash or a kill of the
   daemon. Every ``flush_interval`` (100 ms; at once when ``batch_size`` rows wait) it fsyncs
   the segment (group commit, in a worker thread): from then on they survive the machine's
   crash too, and a database outage.
3. It then writes the rows journaled since the last write to PostgreSQL: COPY into a temporary
   table and ``INSERT ... ON CONFLICT DO NOTHING`` into the real one, in one transaction per
   batch. Every table has an idempotency key (``call_events (call_id, seq, at)``, ``calls
   (call_id)``, ``agent_state_events (event_key, at)``), so writing a row twice is harmless.
4. A journal segment is deleted only when every row in it is in PostgreSQL.

If PostgreSQL is down or slower than ``db_timeout``, the batch stays in the journal and the
recorder switches to *backlog* mode: new batches are only journaled (memory stays bounded by
one batch), and a retry loop with backoff replays the segments in order once the database
answers again. Back in sync, it returns to the direct path. At start-up, segments left by a
previous run (a crash, or a stop while the database was down) are replayed first. Order is
kept: rows reach the database in the order they were submitted.

First-call resolution is maintained as calls rows arrive: a call from a customer within the
window after that customer's answered call gets ``repeat_of`` = the earlier call, and the
earlier call's ``first_contact_resolved`` becomes false; an answered call starts as resolved.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from callcenter.analytics.attribution import CallSummary
from callcenter.calls.journey import JourneyRecord
from callcenter.domain.events import AgentPauseChanged, AgentStatusChanged, Event, QueueMemberChanged
from callcenter.storage.db import with_settings

log = logging.getLogger(__name__)

# Column order of each table as the recorder writes it; journal lines use the same order.
TABLES: dict[str, tuple[str, ...]] = {
    "call_events": (
        "call_id", "seq", "at", "controller_at", "pbx", "kind", "ivr_node", "queue", "agent", "detail",
        "rules_version", "rule_id",
    ),
    "calls": (
        "call_id", "pbx", "caller", "did", "customer_id", "vip", "entered_at", "answered_at", "ended_at", "outcome",
        "abandon_stage", "abandon_node", "short_abandon", "answered_via_ivr", "queue", "agent", "ivr_s",
        "queue_wait_s", "ring_s", "talk_s", "stints", "overflows", "offered_agents", "missed_rings", "hung_up_by",
        "rules_version", "rule_id",
    ),
    "agent_state_events": (
        "event_key", "at", "pbx", "agent", "kind", "status", "paused", "reason", "queue", "detail",
    ),
}
_TIME_COLS = {"at", "controller_at", "entered_at", "answered_at", "ended_at"}
_CODE = {"call_events": "e", "calls": "c", "agent_state_events": "a"}
_TABLE_OF = {v: k for k, v in _CODE.items()}


# Errors that say "the database is not reachable right now": retry later, keep the journal.
# Anything else from PostgreSQL is about the rows themselves (a bug or bad data): the batch is
# bisected so the good rows are written and the bad one goes to the dead-letter file.
TRANSIENT = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)


@dataclass
class RecorderStats:
    submitted: int = 0
    written: int = 0
    journaled: int = 0
    batches: int = 0
    db_failures: int = 0
    replayed: int = 0
    backlog_rows: int = 0
    dead_letters: int = 0
    last_error: str | None = None
    segments_deleted: int = 0


@dataclass
class _Segment:
    path: Path
    rows: int = 0
    committed: int = 0
    closed: bool = False


# --- rows ------------------------------------------------------------------------------------


# JSON columns (detail, stints) are encoded once, when the row is made: the same text goes into
# the journal line and, unchanged, to COPY (asyncpg's jsonb codec takes text).
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def record_row(r: JourneyRecord, pbx: str) -> tuple[Any, ...]:
    return (
        r.call_id, r.seq, r.pbx_at, r.controller_at, pbx, r.kind, r.ivr_node, r.queue, r.agent,
        _detail_json(r.detail) if r.detail else "{}", r.rules_version, r.rule_id,
    )


_PLAIN = frozenset({str, int, float, bool, type(None)})


def _detail_json(detail: dict[str, Any]) -> str:
    """``_dumps(_jsonable(detail))``; a flat detail of plain values (most steps: the routing
    note's eleven fields 20 -> 8 us) skips the per-value conversion, which leaves them as
    they are."""
    for k, v in detail.items():
        if type(k) is not str or type(v) not in _PLAIN:
            return _dumps(_jsonable(detail))
    return _dumps(detail)


def summary_row(s: CallSummary) -> tuple[Any, ...]:
    hung = s.hung_up_by.value if hasattr(s.hung_up_by, "value") else s.hung_up_by
    stints = _dumps([_jsonable(dataclasses.asdict(st)) for st in s.stints]) if s.stints else "[]"
    return (
        s.call_id, s.pbx, s.caller, s.did, s.customer_id, s.vip, s.entered_at or s.ended_at, s.answered_at,
        s.ended_at, s.outcome, s.abandon_stage, s.abandon_node, s.short_abandon, s.answered_via_ivr, s.queue,
        s.agent, s.ivr_s, s.queue_wait_s, s.ring_s, s.talk_s, stints, s.overflows, s.offered_agents,
        s.missed_rings, hung, s.rules_version, s.rule_id,
    )


def agent_row(ev: Event) -> tuple[Any, ...] | None:
    key = uuid.uuid4()
    if isinstance(ev, AgentStatusChanged):
        return (key, ev.at, ev.pbx, ev.agent, "status", ev.status.value, None, None, ev.queue, "{}")
    if isinstance(ev, AgentPauseChanged):
        return (key, ev.at, ev.pbx, ev.agent, "pause", None, ev.paused, ev.reason, ev.queue, "{}")
    if isinstance(ev, QueueMemberChanged):
        detail = _dumps({"added": ev.added, "penalty": ev.penalty})
        return (key, ev.at, ev.pbx, ev.agent, "member", None, None, None, ev.queue, detail)
    return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "value") and not isinstance(value, str | int | float | bool):
        return value.value  # enums
    return value


def _line_default(v: Any) -> Any:
    if isinstance(v, datetime):
        return {"$t": v.isoformat()}
    if isinstance(v, uuid.UUID):
        return str(v)
    raise TypeError(f"cannot journal a {type(v).__name__}")


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_line_default).encode


def _encode_line(table: str, row: Sequence[Any]) -> str:
    return _encode([_CODE[table], row])


_INLINE_BYTES = 64 * 1024  # a larger journal write (a burst, a backlog) goes to a worker thread

# A submitted row with its journal line. The line is encoded at submission, on the event loop,
# a row at a time (~11 us): encoded in the journal's worker thread, a 200-row batch held the
# GIL for ~3 ms while the event loop waited for it (CPython hands the GIL over only after its
# 5 ms switch interval), and a row that cannot be journaled failed the writer, not its caller.
_Item = tuple[str, tuple[Any, ...], str]


def _item(table: str, row: tuple[Any, ...]) -> _Item:
    return (table, row, f'["{_CODE[table]}",[{",".join(map(_line_value, row))}]]\n')


_esc = json.encoder.encode_basestring  # what JSONEncoder(ensure_ascii=False) uses for str


def _line_value(v: Any) -> str:
    """One row value as ``_encode_line`` writes it; the common types without the general
    encoder (a line in ~11 us instead of ~16, measured; about seven of them per routed call)."""
    t = type(v)
    if t is str:
        return _esc(v)
    if v is None:
        return "null"
    if t is int:
        return int.__repr__(v)
    if t is datetime:
        return '{"$t":"' + v.isoformat() + '"}'
    if t is bool:
        return "true" if v else "false"
    return _encode(v)  # floats (NaN...), UUIDs, subclasses: exactly as the general encoder


def _decode_line(line: str) -> tuple[str, tuple[Any, ...]]:
    code, values = json.loads(line)
    table = _TABLE_OF[code]
    row: list[Any] = []
    for col, v in zip(TABLES[table], values, strict=True):
        if isinstance(v, dict) and "$t" in v and col in _TIME_COLS:
            row.append(datetime.fromisoformat(v["$t"]))
        elif col == "event_key" and isinstance(v, str):
            row.append(uuid.UUID(v))
        else:
            row.append(v)
    return table, tuple(row)


# --- database writes ---------------------------------------------------------------------------


_FCR_SQL = """
WITH new AS (
    SELECT n.call_id, n.customer_id, n.entered_at
      FROM calls n WHERE n.call_id = ANY($1::text[]) AND n.customer_id IS NOT NULL
), prev AS (
    SELECT new.call_id,
           (SELECT p.call_id FROM calls p
             WHERE p.customer_id = new.customer_id AND p.outcome = 'answered'
               AND p.entered_at < new.entered_at AND p.entered_at >= new.entered_at - $2::interval
               AND p.call_id <> new.call_id
             ORDER BY p.entered_at DESC LIMIT 1) AS prev_id
      FROM new
), upd_new AS (
    UPDATE calls c SET repeat_of = prev.prev_id FROM prev
     WHERE c.call_id = prev.call_id AND prev.prev_id IS NOT NULL AND c.repeat_of IS NULL
    RETURNING c.call_id
)
UPDATE calls c SET first_contact_resolved = false FROM prev
 WHERE c.call_id = prev.prev_id
"""


# Every call of a known customer is an interaction in the CRM ("every contact is recorded in one
# base"); the agent is resolved from the PBX interface. NOT EXISTS keeps a replay idempotent.
_INTERACTIONS_SQL = """
INSERT INTO interactions (customer_id, at, channel, direction, call_id, outcome, agent_id, summary)
SELECT c.customer_id, c.entered_at, 'phone', 'inbound', c.call_id, c.outcome,
       (SELECT e.agent_id FROM agent_endpoints e WHERE e.pbx = c.pbx AND e.interface = c.agent),
       CASE c.outcome
         WHEN 'answered' THEN 'answered in ' || coalesce(c.queue, '?')
         WHEN 'abandoned' THEN 'hung up in ' || c.abandon_stage || coalesce(' at ' || c.abandon_node, '')
         ELSE c.outcome END
  FROM calls c
 WHERE c.call_id = ANY($1::text[]) AND c.customer_id IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM interactions i WHERE i.call_id = c.call_id)
"""


# asyncpg encodes a COPY's rows in one go when it is handed a list: ~6 us a row, so a 100 ms
# batch at 200 calls/s (~150 steps) held the event loop ~1 ms, ten times a second, and a call
# arriving then waited for it (routing bench: ~200 such steps in 20 s). Handed an async
# iterable, it encodes row by row as they come; this one gives the loop a turn every slice.
_COPY_SLICE = 32


async def _in_slices(rows: Sequence[tuple[Any, ...]]) -> AsyncIterator[tuple[Any, ...]]:
    for i, row in enumerate(rows):
        if i and not i % _COPY_SLICE:
            await asyncio.sleep(0)
        yield row


async def write_rows(
    conn: asyncpg.Connection, rows: Sequence[tuple[str, tuple[Any, ...]]], *, fcr_window_h: float
) -> None:
    """Write (table, row) pairs idempotently in one transaction, preserving table semantics."""
    by_table: dict[str, list[tuple[Any, ...]]] = {}
    for table, row in rows:
        by_table.setdefault(table, []).append(row)
    async with conn.transaction():
        for table in ("call_events", "agent_state_events", "calls"):  # steps before summaries
            batch = by_table.get(table)
            if not batch:
                continue
            cols = TABLES[table]
            tmp = f"_cc_in_{table}"
            await conn.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {tmp} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            await conn.copy_records_to_table(tmp, records=_in_slices(batch), columns=list(cols))
            collist = ", ".join(cols)
            await conn.execute(f"INSERT INTO {table} ({collist}) SELECT {collist} FROM {tmp} ON CONFLICT DO NOTHING")
            if table == "calls":
                ids = [r[0] for r in batch]
                await conn.execute(
                    "UPDATE calls SET first_contact_resolved = true "
                    "WHERE call_id = ANY($1::text[]) AND outcome = 'answered' AND first_contact_resolved IS NULL",
                    ids,
                )
                await conn.execute(_FCR_SQL, ids, timedelta(hours=fcr_window_h))
                await conn.execute(_INTERACTIONS_SQL, ids)


# The recorder's statements run for the life of its connection, prepared once (asyncpg), while
# the tables they read grow from nothing: PostgreSQL's generic plan, chosen after five runs and
# kept until the next ANALYZE, was planned for an empty ``calls`` table. Measured (routing
# bench, 20k CRM, 150 calls/s for 30 s, pg_stat_statements): the first-call-resolution
# statement took 24 ms a batch (6.9 s of the server's CPU in 30 s), 0.6 ms with a plan made
# for each batch. Planning costs about a millisecond a statement; a plan per batch is the
# cheaper side by far, and never goes stale.
_RECORDER_SETTINGS = {"plan_cache_mode": "force_custom_plan", "application_name": "callcenter-recorder"}


# --- the recorder --------------------------------------------------------------------------------


@dataclass
class Recorder:
    """See the module docstring. ``connect`` returns a new asyncpg connection."""

    connect_kwargs: dict[str, Any]
    journal_dir: Path
    batch_size: int = 2000
    flush_interval: float = 0.1  # database writes: one batch per interval under load
    journal_interval: float = 0.01  # journal group commits: what a crash of the daemon can lose
    db_timeout: float = 5.0
    segment_bytes: int = 16 * 1024 * 1024
    retry_min: float = 0.2
    retry_max: float = 5.0
    fcr_window_h: float = 72.0
    stats: RecorderStats = field(default_factory=RecorderStats)

    def __post_init__(self) -> None:
        self.journal_dir = Path(self.journal_dir)
        self._pending: list[_Item] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._segments: list[_Segment] = []
        self._current: _Segment | None = None
        self._fh: Any = None
        self._conn: asyncpg.Connection | None = None
        self._backlog = False
        self._task: asyncio.Task[None] | None = None
        self._inflight = 0  # rows taken from _pending and not yet journaled + written (or failed)
        self._closing = False
        self._seg_seq = 0
        self._flush_now = False  # drain(): write what is journaled without waiting for the interval
        self._waiting_empty = False  # the writer sleeps with nothing to journal: wake it for a row
        self._unsynced = False  # journal lines handed to the OS and not yet fsync'd
        self._unlinking: set[asyncio.Future[None]] = set()  # committed segments being deleted

    # -- submission (synchronous; called from event handlers) ---------------------------------
    def submit_records(self, records: Iterable[JourneyRecord], pbx: str) -> None:
        for r in records:
            self._pending.append(_item("call_events", record_row(r, pbx)))
        self._poke()

    def submit_summary(self, summary: CallSummary) -> None:
        self._pending.append(_item("calls", summary_row(summary)))
        self._poke()

    def submit_agent_event(self, event: Event) -> bool:
        row = agent_row(event)
        if row is None:
            return False
        self._pending.append(_item("agent_state_events", row))
        self._poke()
        return True

    def _poke(self) -> None:
        self._idle.clear()
        if self._waiting_empty or len(self._pending) >= self.batch_size:
            self._waiting_empty = False
            self._wake.set()

    @property
    def healthy(self) -> bool:
        return not self._backlog

    @property
    def backlog_rows(self) -> int:
        return sum(s.rows - s.committed for s in self._segments) + len(self._pending) + self._inflight

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        self.journal_dir.mkdir(parents=True, exist_ok=True)
        existing = sorted(self.journal_dir.glob("journal-*.jsonl"))
        for p in existing:
            rows = await asyncio.to_thread(_count_lines, p)
            self._segments.append(_Segment(p, rows=rows, closed=True))
            self._seg_seq = max(self._seg_seq, int(p.stem.split("-")[1]))
        if existing:
            self._backlog = True
            log.warning("recorder: %d journal segment(s) with %d rows from a previous run: replaying",
                        len(existing), sum(s.rows for s in self._segments))
        self._open_segment()
        self._task = asyncio.create_task(self._run(), name="recorder")

    async def close(self, timeout: float = 10.0) -> None:
        """Flush what is pending to the journal (always) and to the database (if it answers)."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                log.warning("recorder: database did not catch up within %.0f s; %d rows stay in the journal "
                            "and are replayed at the next start", timeout, self.backlog_rows)
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self._pending:  # cancelled mid-way: the journal must still get them
            await self._journal(self._take())
        try:
            await self._sync()
        except OSError as exc:
            log.critical("recorder: cannot fsync the journal in %s: %s", self.journal_dir, exc)
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        # a fully committed current segment is not needed any more
        for seg in list(self._segments):
            if seg.committed >= seg.rows:
                self._delete(seg)
        if self._unlinking:
            await asyncio.gather(*self._unlinking)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until everything submitted so far is in the database (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._pending or self._inflight or self._backlog or any(s.committed < s.rows for s in self._segments):
            self._flush_now = True
            self._wake.set()
            if time.monotonic() > deadline:
                raise TimeoutError(f"recorder backlog not drained: {self.backlog_rows} rows")
            await asyncio.sleep(0.02)

    # -- internals --------------------------------------------------------------------------------
    def _take(self) -> list[_Item]:
        # At most one batch: a burst (a restart's resync, a busy hour) becomes several COPYs of
        # bounded size and time, never one that outlasts db_timeout.
        batch = self._pending[: self.batch_size]
        del self._pending[: self.batch_size]
        self._inflight = len(batch)
        return batch

    def _open_segment(self) -> None:
        self._seg_seq += 1
        path = self.journal_dir / f"journal-{self._seg_seq:08d}.jsonl"
        self._fh = path.open("a", encoding="utf-8")
        self._current = _Segment(path)
        self._segments.append(self._current)

    def _delete(self, seg: _Segment) -> None:
        """Forget a segment whose rows are all in the database; its file goes in a worker thread
        (unlinking a 16 MB segment took ~18 ms of the event loop at 1M, routing bench)."""
        self._segments.remove(seg)
        self.stats.segments_deleted += 1
        task = asyncio.ensure_future(asyncio.to_thread(_unlink, seg.path))
        self._unlinking.add(task)
        task.add_done_callback(self._unlinking.discard)

    async def _journal(self, batch: list[_Item]) -> _Segment:
        """Append a batch to the current segment: handed to the OS (it survives a crash of the
        daemon from here), fsync'd by the next ``_sync`` (then it survives the machine's)."""
        assert self._current is not None
        fh = self._fh
        data = "".join(line for _, _, line in batch)

        def write() -> None:
            fh.write(data)
            fh.flush()

        if len(data) <= _INLINE_BYTES:
            write()  # a few KB into the page cache: cheaper than a hand-off to a thread
        else:
            await asyncio.to_thread(write)
        self._unsynced = True
        seg = self._current
        seg.rows += len(batch)
        self.stats.journaled += len(batch)
        self.stats.submitted += len(batch)
        if self._fh.tell() >= self.segment_bytes:
            await self._sync()
            self._fh.close()
            seg.closed = True
            self._open_segment()
        return seg

    async def _sync(self) -> None:
        if self._unsynced and self._fh is not None:
            fd = self._fh.fileno()
            self._unsynced = False  # a write during the fsync sets it again
            await asyncio.to_thread(os.fsync, fd)

    async def _db(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            kwargs = with_settings(self.connect_kwargs, **_RECORDER_SETTINGS)
            self._conn = await asyncio.wait_for(asyncpg.connect(**kwargs), self.db_timeout)
        return self._conn

    async def _write(self, rows: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
        conn = await self._db()
        try:
            await asyncio.wait_for(write_rows(conn, rows, fcr_window_h=self.fcr_window_h), self.db_timeout)
        except TRANSIENT:
            # a half-done transaction or a timed-out connection is not reused
            conn.terminate()
            self._conn = None
            raise
        except asyncpg.PostgresError as exc:
            if len(rows) == 1:
                await self._dead_letter(rows[0], exc)
                return
            mid = len(rows) // 2
            await self._write(rows[:mid])
            await self._write(rows[mid:])

    async def _dead_letter(self, row: tuple[str, tuple[Any, ...]], exc: BaseException) -> None:
        """A row PostgreSQL refuses for what it is (not for being unreachable): kept, with the
        error, in ``dead-letter.jsonl`` beside the journal, and counted; never silently dropped."""
        table, values = row
        line = json.dumps({"error": f"{type(exc).__name__}: {exc}", "row": json.loads(_encode_line(table, values))},
                          ensure_ascii=False)
        path = self.journal_dir / "dead-letter.jsonl"

        def write() -> None:
            with path.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
                fh.flush()
                os.fsync(fh.fileno())

        await asyncio.to_thread(write)
        self.stats.dead_letters += 1
        log.error("recorder: %s row refused by PostgreSQL (%s), kept in %s", table, exc, path,
                  extra={"call_id": values[0] if table != "agent_state_events" else None})

    def _db_failed(self, exc: BaseException) -> None:
        self.stats.db_failures += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        if not self._backlog:
            log.error("recorder: database write failed (%s); rows are kept in the journal and replayed when "
                      "PostgreSQL answers again", self.stats.last_error)
        self._backlog = True

    async def _run(self) -> None:
        delay = self.retry_min
        journaled_at = written_at = retry_at = 0.0
        # Two cadences: the journal every journal_interval (what a crash of the daemon can lose),
        # fsync + database every flush_interval. Each database batch is five statements whatever
        # its size; written back to back, batches held the ~50 rows that came in during the
        # previous write, and PostgreSQL spent 28 % of a core at 200 calls/s, 19-20 % at one
        # batch per 100 ms (routing bench, 20k CRM). ``unwritten``: journaled, not yet in the
        # database (direct path; in backlog mode the replay reads them from the journal).
        unwritten: list[tuple[_Segment, list[_Item]]] = []
        n_unwritten = 0
        while True:
            full = len(self._pending) >= self.batch_size or n_unwritten >= self.batch_size
            if not (self._closing or self._flush_now or full):
                now = time.monotonic()
                if self._pending:
                    due = journaled_at + self.journal_interval
                    if unwritten or self._unsynced:
                        due = min(due, written_at + self.flush_interval)
                elif unwritten or self._unsynced:
                    due = written_at + self.flush_interval
                else:
                    due = retry_at if self._backlog else now + self.flush_interval
                if due > now:
                    self._waiting_empty = not self._pending
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), due - now)
                    self._waiting_empty = False
            self._wake.clear()
            now = time.monotonic()
            urgent = self._closing or self._flush_now or len(self._pending) >= self.batch_size
            self._flush_now = False
            if self._pending and (urgent or now >= journaled_at + self.journal_interval):
                journaled_at = now
                batch = self._take()
                try:
                    seg = await self._journal(batch)
                except OSError as exc:
                    # The local disk refused (full, read-only): keep the rows in memory, in order,
                    # and try again; this is loud because it is the last line of defence.
                    log.critical("recorder: cannot write the journal in %s: %s", self.journal_dir, exc)
                    self._pending[:0] = batch
                    self._inflight = 0
                    await asyncio.sleep(delay)
                    continue
                self._inflight = 0  # journaled: from now on the segment counters account for it
                if not self._backlog:
                    unwritten.append((seg, batch))
                    n_unwritten += len(batch)
            tick = urgent or n_unwritten >= self.batch_size or now >= written_at + self.flush_interval
            if tick and (unwritten or self._unsynced):
                written_at = now
                try:
                    await self._sync()  # group commit: one fsync per database batch
                except OSError as exc:
                    log.critical("recorder: cannot fsync the journal in %s: %s", self.journal_dir, exc)
                    self._unsynced = True
            if tick and unwritten:
                try:
                    await self._write([(t, r) for _, part in unwritten for t, r, _ in part])
                    for seg, part in unwritten:
                        seg.committed += len(part)
                    self.stats.written += n_unwritten
                    self.stats.batches += 1
                    self._gc()
                except TRANSIENT as exc:
                    self._db_failed(exc)  # the rows are in the journal: the replay writes them
                unwritten.clear()
                n_unwritten = 0
            if self._backlog and (urgent or time.monotonic() >= retry_at):
                try:
                    await self._replay()
                    self._backlog = False
                    delay = self.retry_min
                    log.info("recorder: database back, journal replayed (%d rows so far)", self.stats.replayed)
                except TRANSIENT as exc:
                    self._db_failed(exc)
                    delay = min(self.retry_max, delay * 2) * (0.8 + 0.4 * random.random())
                    retry_at = time.monotonic() + delay  # journaling goes on meanwhile
                    if self._closing:
                        return  # the rows are safe in the journal
            self.stats.backlog_rows = self.backlog_rows
            if self._closing and not self._pending and not unwritten and not self._backlog:
                return
            if not self._pending and not unwritten:
                self._idle.set()

    async def _replay(self) -> None:
        """Write every uncommitted journal row, oldest segment first, in batches."""
        for seg in list(self._segments):
            if seg.committed >= seg.rows:
                continue
            if seg is self._current:
                self._fh.flush()
            lines = await asyncio.to_thread(_read_lines, seg.path, seg.committed, seg.rows)
            for i in range(0, len(lines), self.batch_size):
                chunk = [_decode_line(x) for x in lines[i : i + self.batch_size]]
                await self._write(chunk)
                seg.committed += len(chunk)
                self.stats.replayed += len(chunk)
                self.stats.written += len(chunk)
        self._gc()

    def _gc(self) -> None:
        for seg in list(self._segments):
            if seg is not self._current and seg.committed >= seg.rows:
                self._delete(seg)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:  # its rows are in the database: a leftover file is only replayed again
        log.warning("recorder: could not delete the committed journal segment %s: %s", path, exc)


def _count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.endswith(b"\n"))


def _read_lines(path: Path, start: int, stop: int) -> list[str]:
    """Lines [start, stop) of a segment; a torn last line (crash mid-write) is ignored."""
    out: list[str] = []
    with path.open("r", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i >= stop:
                break
            if i >= start and line.endswith("\n"):
                out.append(line)
    return out
