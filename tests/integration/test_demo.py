"""`callcenter demo` end to end, short: the whole product against the simulated Asterisk, and
against the simulated FreeSWITCH (``--pbx freeswitch``)."""

from __future__ import annotations

import re
import subprocess
import sys


def test_demo_runs_and_reports_where_callers_were_lost() -> None:
    _check_demo([])


def test_freeswitch_demo_routes_answers_and_records_calls() -> None:
    out = _check_demo(["--pbx", "freeswitch"])
    # mod_callcenter's queue names (the rules' pbx_queue for freeswitch) in the reports: the
    # calls were routed into the simulator's queues and recorded from its ESL events
    kpi = out.split("=== KPI", 1)[1].split("=== Where", 1)[0].splitlines()
    header = kpi[1]
    answered = {
        line.split()[1]: int(line[header.index("answered"):header.index("abandoned")].split()[0])
        for line in kpi[4:] if "@default" in line
    }
    assert answered and sum(answered.values()) > 0, kpi
    assert "=== The abandoned calls" in out


def _check_demo(extra: list[str]) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "callcenter", "demo", "--minutes", "0.25", "--speed", "30", "--port", "0",
         "--rate", "300", *extra],
        capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert re.search(r"Wallboard:\s+http://127\.0\.0\.1:\d+/wallboard\?token=\S+", out)
    assert "=== KPI" in out and "=== Where callers were lost" in out and "cc_vip_vs_other" in out
    # the KPI table's total row: offered and answered are real numbers from recorded calls
    kpi = out.split("=== KPI", 1)[1].splitlines()
    header, total = kpi[1], kpi[3]
    start = header.index("offered")
    offered = int(total[start:header.index("answered")].split()[0])
    answered = int(total[header.index("answered"):header.index("abandoned")].split()[0])
    assert offered >= 10 and 0 < answered <= offered
    assert "Traceback" not in proc.stderr
    return out
