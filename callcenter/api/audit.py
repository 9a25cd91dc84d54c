"""The audit trail of supervisor and admin actions.

The row is written (result ``pending``) and committed *before* the action is sent to the PBX:
if the database cannot take the row, the action is refused (503) rather than carried out
unrecorded. The result (``ok``, ``failed``, ``partial``) is written after.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from callcenter.api.auth import Principal


async def begin(engine: AsyncEngine, who: Principal, action: str, target: str | None,
                detail: dict[str, Any]) -> int:
    async with engine.begin() as conn:
        return int((await conn.execute(text(
            "INSERT INTO audit_log (actor_token_id, actor, role, action, target, detail, result) "
            "VALUES (:t, :a, :r, :act, :tg, CAST(:d AS jsonb), 'pending') RETURNING id"),
            {"t": who.token_id, "a": who.actor, "r": who.role, "act": action, "tg": target,
             "d": json.dumps(detail, default=str)})).scalar_one())


async def finish(engine: AsyncEngine, audit_id: int, result: str, detail: dict[str, Any] | None = None) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(
            "UPDATE audit_log SET result = :res, detail = detail || CAST(:d AS jsonb) WHERE id = :id"),
            {"res": result, "d": json.dumps(detail or {}, default=str), "id": audit_id})


async def read(engine: AsyncEngine, *, limit: int, action: str | None, before_id: int | None) -> list[dict[str, Any]]:
    where: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    if action:
        where.append("action = :action")
        params["action"] = action
    if before_id:
        where.append("id < :before")
        params["before"] = before_id
    sql = ("SELECT id, at, actor_token_id, actor, role, action, target, detail, result FROM audit_log"
           + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC LIMIT :limit")
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(text(sql), params)).mappings()]
