"""Bearer tokens, roles and scopes.

Tokens are random strings shown once; only their SHA-256 (hex) is stored, so a database dump
does not hand out working tokens. A token has one role:

- ``admin``: everything.
- ``supervisor``: live state and actions on the agents of the teams they supervise
  (``team_members.role = 'supervisor'``) and on the queues those teams own (``team_queues``);
  CRM and callbacks. A supervisor token not linked to an agent supervises nothing.
- ``analyst``: reports (and ``/metrics``).
- ``agent``: their own live state, screen pops and calls; CRM.

The scope is read from the database per request (a handful of indexed rows), so a change of
team membership applies at once, without re-issuing tokens.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

ROLES = ("admin", "supervisor", "analyst", "agent")
TOKEN_PREFIX = "cc_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    # 32 random bytes; the prefix makes a leaked token easy to recognise (secret scanners, logs).
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Principal:
    token_id: int
    name: str
    role: str
    agent_id: int | None

    @property
    def actor(self) -> str:
        return f"token:{self.token_id}:{self.name}"


@dataclass(frozen=True, slots=True)
class Scope:
    """What a principal may see and act on. ``everything`` for admins."""

    everything: bool = False
    agent_ids: frozenset[int] = frozenset()
    interfaces: frozenset[str] = frozenset()
    queues: frozenset[str] = frozenset()
    teams: frozenset[int] = frozenset()
    own_interfaces: frozenset[str] = field(default_factory=frozenset)  # an agent's own phones

    def agent(self, agent_id: int) -> bool:
        return self.everything or agent_id in self.agent_ids

    def interface(self, interface: str | None) -> bool:
        return self.everything or (interface is not None and interface in self.interfaces)

    def queue(self, queue: str | None) -> bool:
        return self.everything or (queue is not None and queue in self.queues)

    def call(self, call: dict[str, Any]) -> bool:
        """A live call (``LiveCall.to_dict``): waiting in a queue of scope, talking to or
        ringing an agent of scope."""
        if self.everything:
            return True
        if call.get("queue") in self.queues or call.get("agent") in self.interfaces:
            return True
        return any(a in self.interfaces for a in call.get("ringing") or ())


EVERYTHING = Scope(everything=True)
NOTHING = Scope()


async def authenticate(engine: AsyncEngine, token: str) -> Principal | None:
    """The principal of a valid token (not revoked, not expired), or None."""
    if not token or len(token) > 200:
        return None
    digest = hash_token(token)
    async with engine.begin() as conn:
        row = (await conn.execute(text(
            "SELECT id, name, role, agent_id FROM api_tokens WHERE token_hash = :h AND revoked_at IS NULL "
            "AND (expires_at IS NULL OR expires_at > now())"), {"h": digest})).first()
        if row is None:
            return None
        # last_used_at at most once a minute: a busy wallboard must not turn reads into writes.
        await conn.execute(text(
            "UPDATE api_tokens SET last_used_at = now() WHERE id = :id "
            "AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')"), {"id": row.id})
    return Principal(row.id, row.name, row.role, row.agent_id)


async def load_scope(engine: AsyncEngine, p: Principal) -> Scope:
    if p.role == "admin":
        return EVERYTHING
    if p.role == "analyst" or p.agent_id is None:
        return NOTHING
    async with engine.connect() as conn:
        if p.role == "agent":
            own = await _interfaces(conn, [p.agent_id])
            return Scope(agent_ids=frozenset({p.agent_id}), interfaces=own, own_interfaces=own)
        teams = [r.team_id for r in await conn.execute(text(
            "SELECT team_id FROM team_members WHERE agent_id = :a AND role = 'supervisor'"), {"a": p.agent_id})]
        if not teams:
            return Scope(own_interfaces=await _interfaces(conn, [p.agent_id]))
        agents = {r.agent_id for r in await conn.execute(text(
            "SELECT DISTINCT agent_id FROM team_members WHERE team_id = ANY(:t)"), {"t": teams})}
        queues = {r.queue for r in await conn.execute(text(
            "SELECT queue FROM team_queues WHERE team_id = ANY(:t)"), {"t": teams})}
        return Scope(
            agent_ids=frozenset(agents),
            interfaces=await _interfaces(conn, list(agents)),
            queues=frozenset(queues),
            teams=frozenset(teams),
            own_interfaces=await _interfaces(conn, [p.agent_id]),
        )


async def _interfaces(conn: AsyncConnection, agent_ids: list[int]) -> frozenset[str]:
    if not agent_ids:
        return frozenset()
    rows = await conn.execute(text("SELECT interface FROM agent_endpoints WHERE agent_id = ANY(:a)"),
                              {"a": agent_ids})
    return frozenset(r.interface for r in rows)


# --- token administration (API and CLI) ---------------------------------------------------------


async def create_token(engine: AsyncEngine, *, name: str, role: str, agent_id: int | None = None,
                       expires_at: datetime | None = None) -> tuple[str, dict[str, Any]]:
    """A new token: (the token itself, shown once; its row without the hash)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    token = new_token()
    async with engine.begin() as conn:
        row = (await conn.execute(text(
            "INSERT INTO api_tokens (name, token_hash, role, agent_id, expires_at) "
            "VALUES (:n, :h, :r, :a, :e) RETURNING " + TOKEN_COLUMNS),
            {"n": name, "h": hash_token(token), "r": role, "a": agent_id, "e": expires_at})).mappings().one()
    return token, dict(row)


TOKEN_COLUMNS = "id, name, role, agent_id, created_at, expires_at, revoked_at, last_used_at"


async def list_tokens(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text(f"SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY id"))
        return [dict(r) for r in rows.mappings()]


async def revoke_token(engine: AsyncEngine, token_id: int) -> dict[str, Any] | None:
    """Revoke (idempotent: the first revocation time is kept); None if no such token."""
    async with engine.begin() as conn:
        row = (await conn.execute(text(
            "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = :id RETURNING "
            + TOKEN_COLUMNS), {"id": token_id})).mappings().first()
    return dict(row) if row is not None else None


def expiry(days: float | None, now: datetime) -> datetime | None:
    return now + timedelta(days=days) if days else None
