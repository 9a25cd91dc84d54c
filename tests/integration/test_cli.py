"""The command line as a user runs it: exit codes, messages, no tracebacks for mistakes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from callcenter.cli import main

FIXTURE = Path(__file__).parent.parent / "fixtures" / "crm" / "customers.csv"


def run(argv, monkeypatch, dsn=None):
    if dsn:
        monkeypatch.setenv("CALLCENTER_DATABASE__DSN", dsn)
    return main(argv)


def test_help_lists_the_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "callcenter", "--help"], capture_output=True, text=True, check=True)
    for cmd in ("db", "crm"):
        assert cmd in out.stdout


async def test_db_upgrade_then_import_and_show(empty_db_dsn, monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    import asyncio

    # commands use asyncio.run(): run them in a thread, as a user's shell would
    async def call(*argv):
        return await asyncio.to_thread(run, list(argv), monkeypatch, empty_db_dsn)

    assert await call("crm", "show", "2025550143") == 1
    assert "no schema yet" in capsys.readouterr().err
    assert await call("db", "upgrade") == 0
    out = capsys.readouterr().out
    assert "database at revision" in out and "(empty)" not in out
    import asyncpg

    from callcenter.storage.db import asyncpg_dsn

    conn = await asyncpg.connect(**asyncpg_dsn(empty_db_dsn))
    await conn.execute("INSERT INTO agents (name, extension) VALUES ('Alice', '1001'), ('Bob', '1002')")
    await conn.close()
    assert await call("crm", "import", str(FIXTURE), "--dry-run") == 0
    assert "NOT written" in capsys.readouterr().out
    assert await call("crm", "import", str(FIXTURE)) == 0
    assert "3 customers / 4 phones written" in capsys.readouterr().out
    assert await call("crm", "show", "(202) 555-0143") == 0
    out = capsys.readouterr().out
    assert "Anna Ivanova" in out and "tier: standard" in out
    assert await call("crm", "show", "+49 1512 3456789", "--format", "json") == 0
    assert '"tier": "vip"' in capsys.readouterr().out
    assert await call("crm", "show", "2025550111") == 1
    assert "no customer with phone +12025550111" in capsys.readouterr().err
    assert await call("crm", "show", "hello") == 2
    assert await call("crm", "import", str(tmp_path / "missing.csv")) == 1
    assert "no such file" in capsys.readouterr().err
    assert await call("db", "downgrade", "base") == 0
    assert "(empty)" in capsys.readouterr().out


def test_bad_settings_file_is_one_clear_message(tmp_path, capsys) -> None:
    f = tmp_path / "cc.yaml"
    f.write_text("http:\n  port: -1\n")
    assert main(["--config", str(f), "db", "current"]) == 2
    err = capsys.readouterr().err
    assert f"{f}:2:3: http.port:" in err and "Traceback" not in err
