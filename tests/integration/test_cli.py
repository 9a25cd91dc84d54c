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


async def test_report_nps_and_callbacks(db_dsn, monkeypatch, capsys, tmp_path) -> None:
    import asyncio
    import csv
    import io
    import json
    from datetime import UTC, datetime

    import asyncpg

    from callcenter.storage.db import asyncpg_dsn

    monkeypatch.chdir(tmp_path)
    t = datetime(2026, 11, 2, 10, tzinfo=UTC)
    conn = await asyncpg.connect(**asyncpg_dsn(db_dsn))
    # sales: 10, 9, 3, not answered; support: 7; 23:30 UTC on the 2nd is the 3rd in Berlin
    await conn.executemany(
        "INSERT INTO survey_responses (call_id, agent, queue, score, answered, at) VALUES ($1, $2, $3, $4, $5, $6)",
        [("s1", "PJSIP/1001", "sales", 10, True, t), ("s2", "PJSIP/1001", "sales", 9, True, t),
         ("s3", "PJSIP/1002", "sales", 3, True, t), ("s4", "PJSIP/1002", "sales", None, False, t),
         ("s5", "PJSIP/1002", "support", 7, True, datetime(2026, 11, 2, 23, 30, tzinfo=UTC))])
    # completed in 30 min after 1 attempt, completed after 3 h after 2 attempts, failed after 3
    await conn.executemany(
        "INSERT INTO callbacks (phone, source, queue, status, due_at, created_at, attempts, closed_at, outcome) "
        "VALUES ('+12025550100', 'api', $1, $2, $3, $3, $4, $5, $6)",
        [("sales", "completed", t, 1, datetime(2026, 11, 2, 10, 30, tzinfo=UTC), "completed"),
         ("sales", "completed", t, 2, datetime(2026, 11, 2, 13, tzinfo=UTC), "completed"),
         ("support", "failed", t, 3, datetime(2026, 11, 2, 12, tzinfo=UTC), "attempts_exhausted")])
    await conn.close()

    async def call(*argv):
        return await asyncio.to_thread(run, ["report", *argv, "--from", "2026-11-01", "--to", "2026-12-01"],
                                       monkeypatch, db_dsn)

    assert await call("nps", "--format", "json") == 0
    rows = {r["queue"]: r for r in json.loads(capsys.readouterr().out)}
    # sales: (2 promoters - 1 detractor) / 3 answered; the unanswered one is counted apart
    assert (rows["sales"]["responses"], rows["sales"]["unanswered"], rows["sales"]["nps"]) == (4, 1, 33.3)
    assert (rows["support"]["passives"], rows["support"]["nps"]) == (1, 0.0)
    assert await call("nps", "--by", "period", "--tz", "Europe/Berlin", "--format", "csv") == 0
    got = [(r["period"], r["responses"], r["nps"]) for r in csv.DictReader(io.StringIO(capsys.readouterr().out))]
    assert got == [("2026-11-02", "4", "33.3"), ("2026-11-03", "1", "0.0")]
    assert await call("nps", "--by", "agent", "--queue", "sales", "--format", "text") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["agent", "agent_name", "responses"]
    assert [line.split()[0] for line in lines[2:]] == ["PJSIP/1001", "PJSIP/1002"]

    assert await call("callbacks", "--by", "queue", "--format", "json") == 0
    rows = {r["queue"]: r for r in json.loads(capsys.readouterr().out)}
    assert (rows["sales"]["requested"], rows["sales"]["completed"], rows["sales"]["within_deadline"],
            rows["sales"]["attempts_per_success"]) == (2, 2, 1, 1.5)
    assert (rows["support"]["failed"], rows["support"]["attempts_per_success"]) == (1, None)
    assert await call("callbacks", "--by", "total", "--deadline-minutes", "240") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["requested", "completed", "within_deadline"]
    assert lines[2].split()[:3] == ["3", "2", "2"]

    assert await call("nps", "--tz", "Nowhere/Town") == 2
    assert "unknown time zone" in capsys.readouterr().err
    assert await call("callbacks", "--deadline-minutes", "0") == 2
    assert "--deadline-minutes" in capsys.readouterr().err


def test_report_help_lists_nps_and_callbacks() -> None:
    out = subprocess.run([sys.executable, "-m", "callcenter", "report", "--help"], capture_output=True, text=True,
                         check=True)
    assert "nps" in out.stdout and "callbacks" in out.stdout
