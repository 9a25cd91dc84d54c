"""``callcenter token create|list|revoke``: API tokens from the command line.

``create`` prints the token itself on standard output, once, and nothing else there (so
``TOKEN=$(callcenter token create ...)`` works); what it is for goes to standard error. Only
the token's SHA-256 is stored: a lost token cannot be shown again, only revoked and replaced.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from callcenter.api import auth

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    c = sub.add_parser("create", help="create a token and print it (shown only this once)")
    c.add_argument("--role", required=True, choices=auth.ROLES)
    c.add_argument("--agent", metavar="NAME_OR_ID",
                   help="the agent this token belongs to (required for --role agent; a supervisor's agent "
                        "decides the teams they supervise)")
    c.add_argument("--name", required=True, metavar="LABEL", help="what the token is for, e.g. 'wallboard floor 2'")
    c.add_argument("--expires-days", type=float, metavar="N", help="expire after N days (default: never)")
    ls = sub.add_parser("list", help="list tokens (never the tokens themselves)")
    ls.add_argument("--format", choices=("table", "json"), default="table")
    r = sub.add_parser("revoke", help="revoke a token by id")
    r.add_argument("id", type=int)


class _UsageError(Exception):
    pass


async def _agent_id(engine: Any, ref: str) -> int:
    async with engine.connect() as conn:
        if ref.isdigit():
            found = await conn.scalar(text("SELECT id FROM agents WHERE id = :id"), {"id": int(ref)})
            if found is not None:
                return int(found)
        rows = (await conn.execute(text("SELECT id FROM agents WHERE lower(name) = lower(:n) ORDER BY id"),
                                   {"n": ref})).all()
    if not rows:
        raise _UsageError(f"no agent {ref!r} (give an agent id or exact name)")
    if len(rows) > 1:
        raise _UsageError(f"{len(rows)} agents are named {ref!r}: give the id ({', '.join(str(r.id) for r in rows)})")
    return int(rows[0].id)


def _table(rows: list[dict[str, Any]]) -> str:
    cols = ["id", "name", "role", "agent_id", "created_at", "expires_at", "revoked_at", "last_used_at"]

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        return v.strftime("%Y-%m-%d %H:%M") if isinstance(v, datetime) else str(v)

    cells = [[cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


async def _main(args: argparse.Namespace, settings: Any) -> int:
    from callcenter.storage.db import current_revision, open_database

    db = await open_database(settings)
    try:
        if await current_revision(db.engine) is None:
            print("callcenter token: the database has no schema yet: run `callcenter db upgrade` first",
                  file=sys.stderr)
            return EXIT_FAIL
        if args.token_command == "create":
            agent_id = await _agent_id(db.engine, args.agent) if args.agent else None
            if args.role == "agent" and agent_id is None:
                raise _UsageError("an agent token needs --agent")
            expires = auth.expiry(args.expires_days, datetime.now(UTC))
            token, row = await auth.create_token(db.engine, name=args.name, role=args.role, agent_id=agent_id,
                                                 expires_at=expires)
            print(token)
            until = f", expires {row['expires_at']:%Y-%m-%d %H:%M} UTC" if row["expires_at"] else ""
            print(f"token #{row['id']} ({args.role}{f', agent {agent_id}' if agent_id else ''}{until}): "
                  "shown once, store it now", file=sys.stderr)
            return EXIT_OK
        if args.token_command == "list":
            rows = await auth.list_tokens(db.engine)
            if args.format == "json":
                print(json.dumps(rows, default=str, indent=2))
            else:
                print(_table(rows))
            return EXIT_OK
        revoked = await auth.revoke_token(db.engine, args.id)
        if revoked is None:
            print(f"callcenter token: no token {args.id}", file=sys.stderr)
            return EXIT_FAIL
        print(f"token #{revoked['id']} ({revoked['name']}) revoked at {revoked['revoked_at']:%Y-%m-%d %H:%M:%S} UTC")
        return EXIT_OK
    finally:
        await db.close()


def run(args: argparse.Namespace, settings: Any) -> int:
    if getattr(args, "expires_days", None) is not None and args.expires_days <= 0:
        print("callcenter token: --expires-days must be positive", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(_main(args, settings))
    except _UsageError as exc:
        print(f"callcenter token: {exc}", file=sys.stderr)
        return EXIT_USAGE
