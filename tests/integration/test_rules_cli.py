"""``callcenter rules``: check, explain (JSON customer and the real CRM database), schema, reload.

The commands are driven through their own ``add_arguments``/``run`` exactly as the main CLI
wires them, with settings loaded the normal way (environment, no settings file).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import asyncpg
import pytest

from callcenter.routing.cli import add_arguments, run
from callcenter.settings import load_settings
from callcenter.storage.db import asyncpg_dsn

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "routing.example.yaml"
SCHEMA = ROOT / "config" / "routing.schema.json"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)  # no config/callcenter.yaml of the developer's checkout
    monkeypatch.delenv("CALLCENTER_CONFIG", raising=False)
    monkeypatch.delenv("CALLCENTER_RULES__PATH", raising=False)


def rules(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="callcenter rules")
    add_arguments(parser)
    return run(parser.parse_args(list(argv)), load_settings(None))


def test_check_valid_file_prints_one_summary_line(capsys) -> None:
    assert rules("check", str(EXAMPLE)) == 0
    out, err = capsys.readouterr()
    assert err == ""
    [line] = out.splitlines()
    assert line.startswith(
        f"{EXAMPLE}: OK: 5 queues, 1 menu (2 nodes), 7 rules + fallback, 1 calendar, 1 group; version 2025-06-a@"
    )


def test_check_invalid_file_lists_every_problem_one_per_line(tmp_path, capsys) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(
        textwrap.dedent(
            """\
            queues:
              support: {}
            rules:
              - id: a
                then: {queue: sales}
              - id: b
                when: {calendar_open: office}
                then: {ivr: main}
            fallback: {queue: support}
            """
        )
    )
    assert rules("check", str(f)) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{f}:5:12: rules[0].then.queue: unknown queue 'sales' (defined: support)",
        f"{f}:7:12: rules[1].when.calendar_open: unknown calendar 'office' (defined: none defined)",
        f"{f}:8:12: rules[1].then.ivr: unknown IVR menu 'main' (defined: none defined)",
    ]


def test_check_warnings_and_strict(tmp_path, capsys) -> None:
    f = tmp_path / "warn.yaml"
    f.write_text(
        "queues: {support: {}}\ngroups: {idle: {members: [{interface: PJSIP/1}]}}\nfallback: {queue: support}\n"
    )
    assert rules("check", str(f)) == 0
    out, err = capsys.readouterr()
    assert "OK" in out
    assert err == f"{f}:2:10: groups.idle: group 'idle' is not added by any overflow step (warning)\n"
    assert rules("check", "--strict", str(f)) == 1
    assert "refused (--strict)" in capsys.readouterr().err


def test_check_missing_file(tmp_path, capsys) -> None:
    assert rules("check", str(tmp_path / "nope.yaml")) == 1
    assert capsys.readouterr().err == f"{tmp_path / 'nope.yaml'}: file not found\n"


VIP_JSON = json.dumps(
    {"id": 7, "name": "Anna Ivanova", "tier": "VIP", "segment": "enterprise", "tags": ["key-account"],
     "phones": [{"e164": "+12025550143", "label": None}]}
)


def test_explain_text_with_customer_json(capsys) -> None:
    code = rules("explain", str(EXAMPLE), "--caller", "(202) 555-0143", "--did", "+4930901820",
                 "--at", "2025-06-02T10:00", "--customer-json", VIP_JSON)
    assert code == 0
    out = capsys.readouterr().out
    assert "call:     from +12025550143 to DID +4930901820 at mon 2025-06-02 10:00 Europe/Berlin" in out
    assert "customer: #7 Anna Ivanova, tier VIP, segment enterprise, tags key-account (--customer-json)" in out
    assert "  MATCH vip-direct  all conditions hold (tier)" in out
    assert "decision: rule vip-direct -> queue vip (PBX queue vip), priority 10" in out
    assert "  display name:  VIP Ivanova A." in out


def test_explain_json_has_decision_and_trace(capsys, tmp_path) -> None:
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"name": "Bo Lind", "tier": "standard", "stage": "lead"}))
    code = rules("explain", str(EXAMPLE), "--caller", "+46701234567", "--did", "+4930901820",
                 "--at", "2025-06-02T10:00:00+02:00", "--customer-json", f"@{card}", "--format", "json",
                 "--pbx", "fs-1", "--pbx-type", "freeswitch")
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["rule"], out["action"], out["queue"], out["pbx_queue"], out["priority"]) == (
        "new-leads", "queue", "junior", "junior@default", 0
    )
    assert out["ivr_menu"] is None and out["display_name"] == "Lead Lind B."
    assert [t["rule"] for t in out["trace"]] == [
        "vip-direct", "account-manager", "billing-line", "campaign-swamped", "campaign", "new-leads"
    ]
    assert out["trace"][0] == {"rule": "vip-direct", "result": "no_match", "condition": "tier",
                               "reason": "tier is 'standard', the rule wants vip"}
    assert out["call"]["local_time"] == "2025-06-02T10:00:00+02:00"
    assert out["customer"]["name"] == "Bo Lind" and out["customer_source"] == "--customer-json"
    assert out["rules_version"].startswith("2025-06-a@")


def test_explain_unknown_caller_closed_hours_live_state_and_lookup_failure(capsys) -> None:
    base = ("explain", str(EXAMPLE), "--caller", "+4915199999999", "--format", "json")
    assert rules(*base, "--did", "+4930901820", "--at", "2025-06-02T10:00", "--customer-json", "null") == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["rule"], out["action"], out["ivr_menu"], out["ivr_node"]) == ("main-menu", "ivr", "main", "main-menu")
    assert rules(*base, "--did", "+4930901820", "--at", "2025-06-02T22:00", "--customer-json", "null") == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["rule"], out["action"], out["mailbox"], out["closed"]) == ("fallback", "voicemail", "100@default", True)
    assert out["next_open"] == "2025-06-03T07:00:00+00:00"
    live = json.dumps({"sales": {"logged_in": 2, "available": 0, "busy": 2, "waiting": 8}})
    assert rules(*base, "--did", "+493090182105", "--at", "2025-06-02T10:00", "--customer-json", "null",
                 "--live-json", live) == 0
    assert json.loads(capsys.readouterr().out)["rule"] == "campaign-swamped"
    assert rules(*base, "--did", "+4930901820", "--lookup-failed") == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["rule"], out["lookup_failed"], out["fallback"]) == ("fallback", True, True)


def test_explain_withheld_caller_needs_no_lookup(capsys) -> None:
    assert rules("explain", str(EXAMPLE), "--caller", "anonymous", "--did", "+4930901820",
                 "--at", "2025-06-02T10:00") == 0
    out = capsys.readouterr().out
    assert "from withheld" in out and "customer: unknown caller (withheld)" in out


def test_explain_usage_errors(capsys, tmp_path) -> None:
    base = ("explain", str(EXAMPLE), "--caller", "1", "--did", "2")
    assert rules(*base, "--customer-json", "{nope") == 2
    assert "--customer-json: not JSON" in capsys.readouterr().err
    assert rules(*base, "--customer-json", '{"tier": "vip", "favourite": 1}') == 2
    assert "unknown field(s) favourite" in capsys.readouterr().err
    assert rules(*base, "--at", "yesterday", "--customer-json", "null") == 2
    assert "--at: not an ISO 8601 time: 'yesterday'" in capsys.readouterr().err
    assert rules(*base, "--live-json", '{"sales": {"agents": 3}}', "--customer-json", "null") == 2
    assert "--live-json: sales:" in capsys.readouterr().err
    assert rules(*base, "--customer-json", f"@{tmp_path / 'none.json'}") == 2
    assert "cannot read" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("queues: {}\n")
    assert rules("explain", str(bad), "--caller", "1", "--did", "2") == 1
    assert f"{bad}:1:1: queues:" in capsys.readouterr().err


async def test_explain_looks_the_caller_up_in_the_crm_database(db_dsn, monkeypatch, capsys) -> None:
    conn = await asyncpg.connect(**asyncpg_dsn(db_dsn))
    try:
        alice = await conn.fetchval("INSERT INTO agents (name, extension) VALUES ('Alice', '1001') RETURNING id")
        vip = await conn.fetchval(
            "INSERT INTO customers (name, tier, segment, language, tags) "
            "VALUES ('Jürgen Müller', 'VIP', 'enterprise', 'de', '{key-account}') RETURNING id"
        )
        std = await conn.fetchval(
            "INSERT INTO customers (name, tier, segment, assigned_agent_id) "
            "VALUES ('Anna Ivanova', 'standard', 'smb', $1) RETURNING id",
            alice,
        )
        await conn.execute(
            "INSERT INTO customer_phones (customer_id, e164, label) VALUES ($1, '+4915123456789', 'mobile'), "
            "($2, '+12025550143', NULL)",
            vip,
            std,
        )
    finally:
        await conn.close()
    monkeypatch.setenv("CALLCENTER_DATABASE__DSN", db_dsn)
    monkeypatch.setenv("CALLCENTER_CRM__DEFAULT_REGION", "DE")

    async def explain(caller: str) -> dict:
        code = await asyncio.to_thread(
            rules, "explain", str(EXAMPLE), "--caller", caller, "--did", "+4930901820",
            "--at", "2025-06-02T10:00", "--format", "json",
        )
        assert code == 0
        return json.loads(capsys.readouterr().out)

    out = await explain("0151 23456789")  # national format, normalised with the settings' region
    assert (out["rule"], out["queue"], out["priority"]) == ("vip-direct", "vip", 10)
    assert out["display_name"] == "VIP Müller J."
    assert out["customer_source"] == "database" and out["customer"]["id"] == vip and out["customer_id"] == vip
    out = await explain("+1 202 555 0143")
    assert (out["rule"], out["queue"], out["sticky_agent"], out["sticky_agent_id"], out["sticky_s"]) == (
        "account-manager", "sales", "Alice", alice, 15
    )
    out = await explain("+4930111111")
    assert (out["rule"], out["customer"], out["action"]) == ("main-menu", None, "ivr")


def test_explain_with_an_unreachable_database_shows_the_fallback(monkeypatch, capsys) -> None:
    monkeypatch.setenv("CALLCENTER_DATABASE__DSN", "postgresql+asyncpg://cc:cc@127.0.0.1:9/cc")
    monkeypatch.setenv("CALLCENTER_DATABASE__CONNECT_TIMEOUT_S", "2")
    code = rules("explain", str(EXAMPLE), "--caller", "+12025550143", "--did", "+4930901820",
                 "--at", "2025-06-02T10:00", "--format", "json")
    assert code == 0
    out, err = capsys.readouterr()
    decision = json.loads(out)
    assert (decision["rule"], decision["lookup_failed"], decision["queue"]) == ("fallback", True, "support")
    assert decision["lookup_error"] and "CRM lookup failed" in err and "showing the fallback" in err


def test_schema_prints_the_committed_schema(capsys) -> None:
    assert rules("schema") == 0
    assert capsys.readouterr().out == SCHEMA.read_text()


# --- reload -----------------------------------------------------------------------------------------

FAKE_DAEMON = textwrap.dedent(
    """\
    import pathlib, signal, sys, time
    marker = pathlib.Path(sys.argv[1])
    signal.signal(signal.SIGHUP, lambda *_: marker.write_text("reloaded"))
    marker.write_text("ready")
    deadline = time.monotonic() + 30
    while marker.read_text() != "reloaded" and time.monotonic() < deadline:
        time.sleep(0.01)
    """
)


def _wait_for(path: Path, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text() == text:
            return
        time.sleep(0.01)
    raise AssertionError(f"{path} never said {text!r}")


def test_reload_without_a_daemon_is_a_clear_error(tmp_path, capsys) -> None:
    pid_file = tmp_path / "callcenter.pid"
    assert rules("reload", "--pid-file", str(pid_file)) == 1
    assert capsys.readouterr().err == (
        f"callcenter rules reload: no running daemon: {pid_file} does not exist "
        "(is `callcenter run` running, as this user?)\n"
    )
    pid_file.write_text("not a pid\n")
    assert rules("reload", "--pid-file", str(pid_file)) == 1
    assert "does not hold a process id" in capsys.readouterr().err


def test_reload_signals_the_daemon(tmp_path, capsys) -> None:
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-c", FAKE_DAEMON, str(marker), "callcenter-test-daemon"])
    try:
        _wait_for(marker, "ready")
        pid_file = tmp_path / "callcenter.pid"
        pid_file.write_text(f"{proc.pid}\n")
        assert rules("reload", "--pid-file", str(pid_file)) == 0
        assert capsys.readouterr().out == (
            f"sent SIGHUP to the daemon (pid {proc.pid}); it logs whether the new rules were accepted\n"
        )
        _wait_for(marker, "reloaded")
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_reload_refuses_stale_pids_and_other_programs(tmp_path, capsys) -> None:
    pid_file = tmp_path / "callcenter.pid"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    pid_file.write_text(str(gone.pid))
    assert rules("reload", "--pid-file", str(pid_file)) == 1
    assert "stale pid file" in capsys.readouterr().err

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        pid_file.write_text(str(other.pid))
        assert rules("reload", "--pid-file", str(pid_file)) == 1
        assert f"process {other.pid} (from {pid_file}) is not a callcenter daemon" in capsys.readouterr().err
        time.sleep(0.2)
        assert other.poll() is None  # not signalled: SIGHUP would have ended it
    finally:
        other.kill()
        other.wait()


def test_reload_refuses_to_signal_when_the_configured_rules_are_invalid(tmp_path, monkeypatch, capsys) -> None:
    bad = tmp_path / "routing.yaml"
    bad.write_text("queues: {support: {}}\nfallback: {queue: sales}\n")
    monkeypatch.setenv("CALLCENTER_RULES__PATH", str(bad))
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-c", FAKE_DAEMON, str(marker), "callcenter-test-daemon"])
    try:
        _wait_for(marker, "ready")
        pid_file = tmp_path / "callcenter.pid"
        pid_file.write_text(str(proc.pid))
        assert rules("reload", "--pid-file", str(pid_file)) == 1
        err = capsys.readouterr().err
        assert f"{bad}:2:12: fallback.queue: unknown queue 'sales' (defined: support)" in err
        assert "not signalling" in err
        time.sleep(0.2)
        assert marker.read_text() == "ready"
        assert rules("reload", "--pid-file", str(pid_file), "--no-check") == 0
        _wait_for(marker, "reloaded")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
