"""``callcenter token create|list|revoke`` (callcenter.api.cli): the token is printed once and
works against the API; list never shows it; revoke makes the API refuse it."""

from __future__ import annotations

import argparse
import asyncio
import json

from sqlalchemy import text

from callcenter.api import cli
from callcenter.api.auth import authenticate, hash_token
from callcenter.settings import Settings


def run(dsn: str, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="callcenter token")
    cli.add_arguments(parser)
    args = parser.parse_args(list(argv))
    return cli.run(args, Settings.model_validate({"database": {"dsn": dsn}}))


async def test_create_list_revoke(db_dsn, database, capsys) -> None:
    async with database.engine.begin() as conn:
        alice = (await conn.execute(text("INSERT INTO agents (name) VALUES ('Alice') RETURNING id"))).scalar_one()
        await conn.execute(text("INSERT INTO agents (name) VALUES ('Twin'), ('Twin')"))

    async def cmd(*argv: str) -> tuple[int, str, str]:
        code = await asyncio.to_thread(run, db_dsn, *argv)
        out, err = capsys.readouterr()
        return code, out, err

    code, out, err = await cmd("create", "--role", "agent", "--agent", "alice", "--name", "alice desk",
                               "--expires-days", "30")
    assert code == 0 and "shown once" in err
    token = out.strip()
    assert token.startswith("cc_") and "\n" not in token  # stdout is the token alone
    p = await authenticate(database.engine, token)
    assert p is not None and (p.role, p.agent_id, p.name) == ("agent", alice, "alice desk")

    code, out, err = await cmd("create", "--role", "supervisor", "--agent", str(alice), "--name", "by id")
    assert code == 0
    code, out, err = await cmd("create", "--role", "agent", "--agent", "Twin", "--name", "x")
    assert code == 2 and "give the id" in err
    code, out, err = await cmd("create", "--role", "agent", "--name", "nobody")
    assert code == 2 and "needs --agent" in err
    code, out, err = await cmd("create", "--role", "agent", "--agent", "ghost", "--name", "x")
    assert code == 2 and "no agent" in err

    code, out, err = await cmd("list", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert [(r["name"], r["role"]) for r in rows] == [("alice desk", "agent"), ("by id", "supervisor")]
    assert token not in out and hash_token(token) not in out
    code, out, err = await cmd("list")
    assert code == 0 and "alice desk" in out and token not in out

    code, out, err = await cmd("revoke", str(rows[0]["id"]))
    assert code == 0 and "revoked" in out
    assert await authenticate(database.engine, token) is None
    code, out, err = await cmd("revoke", "999")
    assert code == 1 and "no token 999" in err


async def test_no_schema_is_a_clear_error(empty_db_dsn, capsys) -> None:
    code = await asyncio.to_thread(run, empty_db_dsn, "list")
    assert code == 1 and "callcenter db upgrade" in capsys.readouterr().err
