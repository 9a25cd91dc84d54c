"""Replay every captured Asterisk 22 trace down to the ``calls`` rows.

Pipeline: trace frames -> ``AmiParser`` -> ``AsteriskTranslator`` -> ``summarize_events``.
The expected rows are written from what really happened in each scenario, as described in
tests/fixtures/asterisk/TRACES_README.md (the comment on each value says which fact it stands
for), not copied from the output: categorical fields exactly, durations within the precision
the description gives. The queue_log Asterisk wrote during the same run is a second,
independent oracle (ENTERQUEUE per stint, ABANDON/CONNECT hold times, COMPLETECALLER/
COMPLETEAGENT talk time and who hung up). A new trace without an expectation fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from callcenter.analytics.attribution import summarize_events
from callcenter.pbx.asterisk.protocol import AmiParser
from callcenter.pbx.asterisk.trace import read_trace
from callcenter.pbx.asterisk.translate import AsteriskTranslator

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "asterisk"
TRACES = sorted(p.name.removesuffix(".ami.txt") for p in FIXTURES.glob("*.ami.txt"))

# The lab dialplan's 5550199 parks callers in ``park-like`` on MusicOnHold until the controller
# Redirects them: a place where callers wait, not a menu (README: "park-like:
# MusicOnHold(default,120)").
# No hold_nodes configuration: the translator marks MusicOnHold waits (redirect_flow's
# park-like,s) as non-interactive, which keeps a parked call "direct".
HOLD_NODES: frozenset[str] = frozenset()

ALICE, BOB, CAROL = "PJSIP/1001", "PJSIP/1002", "PJSIP/1003"


def replay(name: str) -> list[dict[str, Any]]:
    parser = AmiParser()
    translator = AsteriskTranslator("asterisk-1")
    events = []
    for frame in read_trace(FIXTURES / f"{name}.ami.txt"):
        if frame.direction == "recv":
            for msg in parser.feed(frame.data):
                events.extend(translator.feed(msg, frame.at))
    assert parser.malformed == 0 and parser.pending == b""
    return summarize_events(events, hold_nodes=HOLD_NODES)


@dataclass
class Row:
    """Expected calls row: ``exact`` fields compared with ==, ``approx`` as (value, tolerance)."""

    call_id: str
    exact: dict[str, Any]
    approx: dict[str, tuple[float, float]] = field(default_factory=dict)
    duration: tuple[float, float] | None = None  # ended_at - entered_at


COMMON_UNANSWERED = {
    "answered_at": None,
    "answered_via_ivr": False,
    "talk_s": None,
    "agent": None,
    "vip": None,
    "customer_id": None,
    "rules_version": None,
    "rule_id": None,
    "partial": False,
}


def answered(call_id: str, *, caller: str, did: str, **exact: Any) -> dict[str, Any]:
    base = {
        "call_id": call_id,
        "pbx": "asterisk-1",
        "outcome": "answered",
        "abandon_stage": None,
        "abandon_node": None,
        "short_abandon": False,
        "vip": None,
        "customer_id": None,
        "caller": caller,
        "did": did,
        "overflows": 0,
        "missed_rings": 0,
        "rules_version": None,
        "rule_id": None,
        "end_cause": 16,  # bridged calls end with Cause 16 Normal Clearing
        "partial": False,
    }
    base.update(exact)
    return base


def stint(queue: str, outcome: str, agent: str | None = None, moved_to: str | None = None) -> dict[str, Any]:
    return {"queue": queue, "outcome": outcome, "agent": agent, "moved_to": moved_to}


EXPECTED: dict[str, list[Row]] = {
    # caller 2025550143 -> 5550100, presses nothing, BYE 3 s after 200 OK during
    # Background/WaitExten of ivr-main; unbridged BYE -> Hangup Cause 0.
    "ivr_abandon": [
        Row(
            "1795360381.0",
            {
                **COMMON_UNANSWERED,
                "call_id": "1795360381.0",
                "pbx": "asterisk-1",
                "outcome": "abandoned",
                "abandon_stage": "ivr",
                "abandon_node": "ivr-main,s",
                "short_abandon": True,  # 3 s <= 5 s
                "caller": "2025550143",
                "did": "5550100",
                "queue_wait_s": None,
                "ring_s": None,
                "stints": [],
                "overflows": 0,
                "queue": None,
                "hung_up_by": "caller",
                "offered_agents": 0,
                "missed_rings": 0,
                "ivr_path": ["ivr-main,s"],
                "end_cause": 0,
            },
            approx={"ivr_s": (3.0, 0.1)},
            duration=(3.0, 0.1),
        )
    ],
    # agents answer every INVITE with 486 (-> RINGNOANSWER|0), both tried at once and again
    # after retry=5 s; caller pressed 2 (support), BYE 8 s after the digit -> during the retry
    # pause: no phone ringing. queue_log ABANDON|1|1|8.
    "queue_abandon": [
        Row(
            "1795360390.0",
            {
                **COMMON_UNANSWERED,
                "call_id": "1795360390.0",
                "pbx": "asterisk-1",
                "outcome": "abandoned",
                "abandon_stage": "queue",
                "abandon_node": "support",
                "short_abandon": False,
                "caller": "2025550143",
                "did": "5550100",
                "stints": [stint("support", "abandoned")],
                "overflows": 0,
                "queue": "support",
                "hung_up_by": "caller",
                "offered_agents": 2,  # Alice and Bob
                "missed_rings": 4,  # 4x RINGNOANSWER|0
                "ivr_path": ["ivr-main,s"],
                "end_cause": 0,
            },
            # 486 answers at once: the phones "rang" for a few ms in all
            approx={"queue_wait_s": (8.0, 0.1), "ring_s": (0.0, 0.05), "ivr_s": (3.5, 3.0)},
        )
    ],
    # caller presses 1 (sales), 1001 rings 2 s and answers, caller BYE after ~5-6 s of talk;
    # queue_log CONNECT|2|..|2, COMPLETECALLER|2|6|1.
    "answered_caller_hangup": [
        Row(
            "1795360405.0",
            answered(
                "1795360405.0",
                caller="2025550143",
                did="5550100",
                answered_via_ivr=True,
                stints=[stint("sales", "answered", ALICE)],
                queue="sales",
                agent=ALICE,
                hung_up_by="caller",
                offered_agents=1,
                ivr_path=["ivr-main,s"],
            ),
            approx={"ring_s": (2.0, 0.1), "queue_wait_s": (2.0, 0.1), "talk_s": (5.75, 0.75), "ivr_s": (3.5, 3.0)},
        )
    ],
    # same, the agent 1001 sends BYE 5 s after answering; COMPLETEAGENT|2|5|1.
    "answered_agent_hangup": [
        Row(
            "1795360420.0",
            answered(
                "1795360420.0",
                caller="2025550143",
                did="5550100",
                answered_via_ivr=True,
                stints=[stint("sales", "answered", ALICE)],
                queue="sales",
                agent=ALICE,
                hung_up_by="agent",
                offered_agents=1,
                ivr_path=["ivr-main,s"],
            ),
            approx={"ring_s": (2.0, 0.1), "queue_wait_s": (2.0, 0.1), "talk_s": (5.0, 0.1), "ivr_s": (3.5, 3.0)},
        )
    ],
    # caller presses 1, 1001 answers; the supervisor whispers then barges (legs with their own
    # Linkedid: not calls); caller BYE at ~28 s; CONNECT|2, COMPLETECALLER|2|26.
    "whisper_barge": [
        Row(
            "1795360461.0",
            answered(
                "1795360461.0",
                caller="2025550143",
                did="5550100",
                answered_via_ivr=True,
                stints=[stint("sales", "answered", ALICE)],
                queue="sales",
                agent=ALICE,
                hung_up_by="caller",
                offered_agents=1,
                ivr_path=["ivr-main,s"],
            ),
            approx={"ring_s": (2.0, 0.1), "queue_wait_s": (2.0, 0.1), "talk_s": (26.0, 1.0), "ivr_s": (3.5, 3.0)},
            duration=(28.5, 1.0),
        )
    ],
    # caller 2025550177 -> 5550199: answered, music on hold in park-like; the driver Redirects
    # it to cc-queue,sales (~1 s later: callid ...496, ENTERQUEUE ...497); 1001 answers after
    # 2 s; caller BYE at 16 s. A direct line: never in a menu.
    "redirect_flow": [
        Row(
            "1795360496.0",
            answered(
                "1795360496.0",
                caller="2025550177",
                did="5550199",
                answered_via_ivr=False,
                stints=[stint("sales", "answered", ALICE)],
                queue="sales",
                agent=ALICE,
                hung_up_by="caller",
                offered_agents=1,
                ivr_path=["park-like,s"],
            ),
            approx={"ivr_s": (1.0, 0.5), "ring_s": (2.0, 0.1), "queue_wait_s": (2.0, 0.1), "talk_s": (13.0, 0.5)},
            duration=(16.0, 0.2),
        )
    ],
    # caller A -> sales (1001 answers at once); caller B -> support waits (Bob paused for lunch,
    # Alice busy, ringinuse no) until QueueAdd PJSIP/1003 and connects to Carol: CONNECT|4.
    # A ends first (COMPLETECALLER|1|29), then B (COMPLETECALLER|4|26).
    "status_queries": [
        Row(
            "1795360518.0",
            answered(
                "1795360518.0",
                caller="2025550101",
                did="5550100",
                answered_via_ivr=True,
                stints=[stint("sales", "answered", ALICE)],
                queue="sales",
                agent=ALICE,
                hung_up_by="caller",
                offered_agents=1,
                ivr_path=["ivr-main,s"],
            ),
            approx={"ring_s": (1.0, 0.1), "queue_wait_s": (1.0, 0.1), "talk_s": (29.0, 1.0), "ivr_s": (3.5, 3.0)},
        ),
        Row(
            "1795360520.2",
            answered(
                "1795360520.2",
                caller="2025550102",
                did="5550100",
                answered_via_ivr=True,
                stints=[stint("support", "answered", CAROL)],
                queue="support",
                agent=CAROL,
                hung_up_by="caller",
                offered_agents=1,  # only Carol ever rang
                ivr_path=["ivr-main,s"],
            ),
            approx={"ring_s": (1.0, 0.1), "queue_wait_s": (4.0, 0.6), "talk_s": (26.0, 1.0), "ivr_s": (3.5, 3.0)},
        ),
    ],
    # AsyncAGI menu: STREAM FILE, GET DATA (caller keys 1), SET VARIABLEs, BREAK -> Queue(sales),
    # 1001 answers after 1 s, caller BYE after ~4.4 s of talk. The menu is the controller's (no
    # dialplan node), the digits make it "via IVR".
    "asyncagi_ivr": [
        Row(
            "1795360779.0",
            answered(
                "1795360779.0",
                caller="2025550188",
                did="5550110",
                answered_via_ivr=True,
                stints=[stint("sales", "answered", ALICE)],
                queue="sales",
                agent=ALICE,
                hung_up_by="caller",
                offered_agents=1,
                ivr_path=[],
            ),
            approx={"ring_s": (1.0, 0.1), "queue_wait_s": (1.0, 0.1), "talk_s": (4.4, 0.2), "ivr_s": (5.0, 3.0)},
        )
    ],
    # A: no AMI session at all -> nothing in this trace. B: logged-in but silent 20 s, then
    # BREAK -> fallback Queue(support). C: fail-open DID, silent controller -> T after 10 s ->
    # support. D: the controller answers at once (BREAK after 40 ms), sales, call lasts 18 s.
    # E: GET DATA 15000 at once, the 10 s timeout cuts it -> support. queue_log: B Alice,
    # C Bob, D Alice, E Alice; COMPLETECALLER talk 6, 6, 17, 6.
    "asyncagi_no_controller": [
        Row(
            "1795361242.1",
            answered(
                "1795361242.1",
                caller="2025550191",
                did="5550110",
                answered_via_ivr=False,  # parked in a silent AGI: no menu
                stints=[stint("support", "answered", ALICE)],
                queue="support",
                agent=ALICE,
                hung_up_by="caller",
                offered_agents=1,
                ivr_path=[],
            ),
            approx={"ivr_s": (20.0, 0.5), "ring_s": (1.0, 0.1), "talk_s": (6.0, 1.0), "queue_wait_s": (1.0, 0.1)},
        ),
        Row(
            "1795361270.3",
            answered(
                "1795361270.3",
                caller="2025550192",
                did="5550111",
                answered_via_ivr=False,
                stints=[stint("support", "answered", BOB)],
                queue="support",
                agent=BOB,
                hung_up_by="caller",
                offered_agents=1,
                ivr_path=[],
            ),
            approx={"ivr_s": (10.0, 0.2), "ring_s": (1.0, 0.1), "talk_s": (6.0, 1.0), "queue_wait_s": (1.0, 0.1)},
        ),
        Row(
            "1795361289.5",
            answered(
                "1795361289.5",
                caller="2025550193",
                did="5550111",
                answered_via_ivr=False,  # the controller routed at once, no menu
                stints=[stint("sales", "answered", ALICE)],
                queue="sales",
                agent=ALICE,
                hung_up_by="caller",
                offered_agents=1,
                ivr_path=[],
            ),
            approx={"ivr_s": (0.05, 0.05), "ring_s": (1.0, 0.1), "talk_s": (17.0, 1.0), "queue_wait_s": (1.0, 0.1)},
            duration=(18.0, 0.5),
        ),
        Row(
            "1795361308.7",
            answered(
                "1795361308.7",
                caller="2025550196",
                did="5550111",
                answered_via_ivr=True,  # the caller was in the controller's GET DATA menu
                stints=[stint("support", "answered", ALICE)],
                queue="support",
                agent=ALICE,
                hung_up_by="caller",
                offered_agents=1,
                ivr_path=[],
            ),
            approx={"ivr_s": (10.0, 0.2), "ring_s": (1.0, 0.1), "talk_s": (6.0, 1.0), "queue_wait_s": (1.0, 0.1)},
        ),
    ],
    # caller presses 1 (sales), 1001 rings; 10 s after the join the controller Redirects to
    # support (Asterisk: RINGCANCELED|10004 + ABANDON|1|1|10 for sales, ENTERQUEUE support);
    # Carol answers after 1 s, caller BYE ~3.5 s later. ONE answered call, never a sales abandon.
    "overflow_redirect": [
        Row(
            "1795360811.0",
            answered(
                "1795360811.0",
                caller="2025550194",
                did="5550100",
                answered_via_ivr=True,
                stints=[stint("sales", "moved", moved_to="support"), stint("support", "answered", CAROL)],
                overflows=1,
                queue="support",
                agent=CAROL,
                hung_up_by="caller",
                offered_agents=2,  # Alice in sales, Carol in support
                ivr_path=["ivr-main,s"],
            ),
            approx={"ring_s": (11.0, 0.1), "queue_wait_s": (11.0, 0.1), "talk_s": (3.5, 0.2), "ivr_s": (3.5, 3.0)},
        )
    ],
    # Alice paused (lunch), Carol added with penalty 2; caller presses 1 -> Bob answers (Alice
    # paused, Carol not rung); COMPLETECALLER|1|6.
    "queue_pause_reason": [
        Row(
            "1795360832.0",
            answered(
                "1795360832.0",
                caller="2025550195",
                did="5550100",
                answered_via_ivr=True,
                stints=[stint("sales", "answered", BOB)],
                queue="sales",
                agent=BOB,
                hung_up_by="caller",
                offered_agents=1,
                ivr_path=["ivr-main,s"],
            ),
            approx={"ring_s": (1.0, 0.1), "queue_wait_s": (1.0, 0.1), "talk_s": (6.0, 1.0), "ivr_s": (3.5, 3.0)},
        )
    ],
}

TIME_FIELDS = {"entered_at", "answered_at", "ended_at"}


def _ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def queue_log(name: str) -> list[list[str]]:
    lines = (FIXTURES / f"{name}.queue_log").read_text().splitlines()
    return [line.split("|") for line in lines if line]


@pytest.mark.parametrize("name", TRACES)
def test_calls_rows(name: str) -> None:
    rows = replay(name)
    expected = EXPECTED[name]  # a new trace needs its expectation written here
    assert [r["call_id"] for r in rows] == [e.call_id for e in expected]
    for row, want in zip(rows, expected, strict=True):
        covered = set(want.exact) | set(want.approx) | TIME_FIELDS | {"stints"}
        if want.exact.get("answered_at", "") is None:
            covered |= {"talk_s"}
        assert covered >= set(row), f"fields not checked: {set(row) - covered}"
        got_exact = {k: row[k] for k in want.exact if k != "stints"}
        diffs = {k: (got_exact[k], v) for k, v in want.exact.items() if k != "stints" and got_exact[k] != v}
        assert not diffs, diffs
        assert [{k: s[k] for k in ("queue", "outcome", "agent", "moved_to")} for s in row["stints"]] == want.exact[
            "stints"
        ]
        for key, (value, tol) in want.approx.items():
            assert row[key] is not None and abs(row[key] - value) <= tol, (key, row[key], value, tol)
        entered, answered_at, ended = (_ts(row[k]) for k in ("entered_at", "answered_at", "ended_at"))
        assert entered is not None and ended is not None and entered <= ended
        # Uniqueid/Linkedid is "<epoch>.<seq>": the call was created in that second
        assert int(entered.timestamp()) == int(row["call_id"].split(".")[0])
        if row["outcome"] == "answered":
            assert answered_at is not None and entered <= answered_at <= ended
        if want.duration is not None:
            value, tol = want.duration
            assert abs((ended - entered).total_seconds() - value) <= tol
        for s in row["stints"]:
            joined, left = _ts(s["joined_at"]), _ts(s["left_at"])
            assert joined is not None and left is not None and entered <= joined <= left <= ended
            assert s["wait_s"] == pytest.approx((left - joined).total_seconds(), abs=0.002)


@pytest.mark.parametrize("name", TRACES)
def test_rows_agree_with_the_queue_log(name: str) -> None:
    """queue_log (epoch seconds, integer hold/talk seconds) is Asterisk's own account."""
    rows = {r["call_id"]: r for r in replay(name)}
    log = queue_log(name)
    for call_id, row in rows.items():
        lines = [line for line in log if line[1] == call_id]
        enters = [line for line in lines if line[4] == "ENTERQUEUE"]
        assert [line[2] for line in enters] == [s["queue"] for s in row["stints"]]
        for line, s in zip(enters, row["stints"], strict=True):
            joined = _ts(s["joined_at"])
            assert joined is not None and -0.5 <= joined.timestamp() - int(line[0]) < 1.5
        for line in lines:
            event = line[4]
            stints_here = [s for s in row["stints"] if s["queue"] == line[2]]
            if event in ("ABANDON", "CONNECT"):
                hold = int(line[7] if event == "ABANDON" else line[5])
                assert any(abs(s["wait_s"] - hold) <= 1.0 for s in stints_here), (event, hold, stints_here)
            if event == "ABANDON" and row["outcome"] == "answered":
                # an ABANDON in a call that went on to be answered is a move, never a loss
                assert all(s["outcome"] == "moved" for s in stints_here)
            if event in ("COMPLETECALLER", "COMPLETEAGENT"):
                assert row["hung_up_by"] == ("caller" if event == "COMPLETECALLER" else "agent")
                assert abs(row["talk_s"] - int(line[6])) <= 1.0
        if not any(line[4] in ("CONNECT",) for line in lines):
            assert row["outcome"] != "answered"
