"""``callcenter replay --pbx asterisk FILE``: JSON lines out, problems on stderr, exit codes."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from callcenter.pbx import replay
from callcenter.pbx.asterisk.trace import TraceWriter

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "asterisk"


def run(argv: list[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    replay.add_arguments(parser)
    out, err = io.StringIO(), io.StringIO()
    code = replay.run(parser.parse_args(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_prints_one_json_event_per_line() -> None:
    code, out, err = run(["--pbx", "asterisk", str(FIXTURES / "ivr_abandon.ami.txt")])
    assert (code, err) == (0, "")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["type"] for r in rows] == ["call_arrived", "call_answered", "ivr_node_entered", "call_ended"]
    first = rows[0]
    assert list(first)[:5] == ["type", "pbx", "call_id", "at", "channel"]
    assert first["call_id"] == "1795360381.0" and first["pbx"] == "asterisk"
    assert first["at"] == "2026-11-22T15:13:01.589226+00:00"  # the Newchannel frame's capture time
    assert rows[-1]["hung_up_by"] == "caller"


def test_events_of_no_call_have_null_call_id_and_name_is_configurable() -> None:
    code, out, _ = run(["--name", "pbx-east", str(FIXTURES / "queue_pause_reason.ami.txt")])
    assert code == 0
    first = json.loads(out.splitlines()[0])
    assert (first["type"], first["call_id"], first["pbx"]) == ("agent_pause_changed", None, "pbx-east")


def test_module_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "callcenter.pbx.replay", str(FIXTURES / "whisper_barge.ami.txt")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    types_ = [json.loads(line)["type"] for line in result.stdout.splitlines()]
    assert types_.count("spy_started") == 2 and types_[-1] == "call_ended"


def test_malformed_trace_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ami.txt"
    bad.write_bytes(b"Event: Newchannel\r\nChannel: PJSIP/x\r\n\r\n")
    code, out, err = run([str(bad)])
    assert (code, out) == (2, "")
    assert "not an AMI trace" in err and "bad.ami.txt:1" in err

    cut = tmp_path / "cut.ami.txt"
    cut.write_bytes(b"### 2026-11-22T15:13:00.388337Z +0.000585s <<< RECV 300 bytes\nEvent: Hangup\r\n")
    code, _, err = run([str(cut)])
    assert code == 2 and "announces 300 bytes" in err

    code, _, err = run([str(tmp_path / "missing.ami.txt")])
    assert code == 2 and "no such file" in err


def test_unknown_events_are_reported_not_fatal(tmp_path: Path) -> None:
    trace = tmp_path / "t.ami.txt"
    writer = TraceWriter(trace)
    writer.recv(b"Asterisk Call Manager/11.0.0\r\n")
    writer.recv(b"Event: AttendedTransfer\r\nPrivilege: call,all\r\nResult: Success\r\n\r\n")
    writer.note("a note is not AMI")
    writer.send(b"Action: Ping\r\nActionID: 1\r\n\r\n")
    writer.recv(b"Response: Success\r\nActionID: 1\r\nPing: Pong\r\n\r\n")
    writer.recv(
        b"Event: Newchannel\r\nChannel: PJSIP/pstn-00000000\r\nChannelState: 4\r\nCallerIDNum: 100\r\n"
        b"CallerIDName: <unknown>\r\nContext: from-pstn\r\nExten: 5550100\r\nUniqueid: 1.0\r\nLinkedid: 1.0\r\n\r\n"
    )
    writer.recv(b"Event: AttendedTransfer\r\n\r\n")
    writer.close()
    code, out, err = run([str(trace)])
    assert code == 0
    assert [json.loads(line)["type"] for line in out.splitlines()] == ["call_arrived"]
    assert "2 AMI event(s) without a rule: AttendedTransfer x2" in err


def _fake_attribution(monkeypatch: pytest.MonkeyPatch, **attrs: Any) -> None:
    module = types.ModuleType("callcenter.analytics.attribution")
    for name, value in attrs.items():
        setattr(module, name, value)
    monkeypatch.setitem(sys.modules, "callcenter.analytics.attribution", module)


def test_summary_uses_the_analytics_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    def summarize_events(events: list[Any]) -> list[dict[str, Any]]:
        seen.extend(events)
        return [{"call_id": e.call_id, "n": 1} for e in events if e.type == "call_ended"]

    _fake_attribution(monkeypatch, summarize_events=summarize_events)
    code, out, _ = run(["--summary", str(FIXTURES / "status_queries.ami.txt")])
    assert code == 0
    assert [json.loads(line) for line in out.splitlines()] == [
        {"call_id": "1795360518.0", "n": 1},
        {"call_id": "1795360520.2", "n": 1},
    ]
    assert len(seen) > 10


def test_summary_not_available(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_attribution(monkeypatch)  # the module without summarize_events
    code, out, err = run(["--summary", str(FIXTURES / "ivr_abandon.ami.txt")])
    assert (code, out) == (2, "")
    assert "summary not available" in err


def test_summary_with_the_real_journey_pipeline() -> None:
    code, out, err = run(["--summary", str(FIXTURES / "overflow_redirect.ami.txt")])
    assert code == 0, err
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert row["call_id"] == "1795360811.0"


def test_only_known_pbx_types_are_accepted() -> None:
    parser = argparse.ArgumentParser()
    replay.add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--pbx", "yate", "x"])
    assert parser.parse_args(["--pbx", "freeswitch", "x"]).pbx == "freeswitch"


def test_a_closed_pipe_is_not_an_error() -> None:
    """``callcenter replay FILE | head -1``: the reader leaves early, the replay exits 0 quietly."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "callcenter.pbx.replay", str(FIXTURES / "asyncagi_no_controller.ami.txt")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the child writes anything: its first write gets EPIPE
    err = proc.stderr.read()
    assert (proc.wait(timeout=60), err) == (0, b"")
