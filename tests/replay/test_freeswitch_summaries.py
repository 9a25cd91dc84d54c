"""Replay every captured FreeSWITCH 1.10.12 trace down to the ``calls`` rows.

Pipeline: trace frames -> ESL events -> ``FreeswitchTranslator`` -> ``summarize_events``. The
expected rows are written from what happened in each scenario, as described in
tests/fixtures/freeswitch/TRACES_README.md (the comment on each value says which fact it stands
for), not copied from the output: categorical fields exactly, durations within the precision
the description gives. mod_callcenter's own epoch-second times (CC-Member-Joined/Leaving-Time,
CC-Agent-Answered-Time, CC-Bridge-Terminated-Time) are a second, independent oracle, like
Asterisk's queue_log is for the Asterisk rows. A new trace without an expectation fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from callcenter.analytics.attribution import summarize_events
from callcenter.pbx.freeswitch.translate import FreeswitchTranslator
from tests.replay._esl import events as trace_events

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "freeswitch"
TRACES = sorted(p.name.removesuffix(".esl.txt") for p in FIXTURES.glob("*.esl.txt"))

SALES, SUPPORT = "sales@default", "support@default"
IVR_NODE, PARK_NODE = "public,5550100", "public,5550199"
CALLER = "2125550123"  # the sipp UAC's caller id in every scenario


def replay(name: str) -> list[dict[str, Any]]:
    translator = FreeswitchTranslator("fs-1")
    events = []
    for ev, at in trace_events(FIXTURES / f"{name}.esl.txt"):
        events.extend(translator.feed(ev, at))
    # No hold_nodes configuration: the translator marks park as non-interactive itself.
    return summarize_events(events)


@dataclass
class Row:
    """Expected calls row: ``exact`` fields compared with ==, ``approx`` as (value, tolerance)."""

    call_id: str
    exact: dict[str, Any]
    approx: dict[str, tuple[float, float]] = field(default_factory=dict)
    duration: tuple[float, float] | None = None  # ended_at - entered_at


COMMON = {
    "pbx": "fs-1",
    "vip": None,
    "customer_id": None,
    "caller": CALLER,
    "rules_version": None,
    "rule_id": None,
    "partial": False,
    "end_cause": 16,  # NORMAL_CLEARING for every BYE, bridged or not
}


def answered(call_id: str, *, did: str = "5550100", **exact: Any) -> dict[str, Any]:
    base = {
        **COMMON,
        "call_id": call_id,
        "outcome": "answered",
        "abandon_stage": None,
        "abandon_node": None,
        "short_abandon": False,
        "did": did,
        "overflows": 0,
        "missed_rings": 0,
        "offered_agents": 1,
        "ivr_path": [IVR_NODE] if did == "5550100" else [PARK_NODE],
    }
    base.update(exact)
    return base


def stint(queue: str, outcome: str, agent: str | None = None, moved_to: str | None = None) -> dict[str, Any]:
    return {"queue": queue, "outcome": outcome, "agent": agent, "moved_to": moved_to}


# The lab IVR plays ~1.5 s of tones before the digit; callers key at ~2 s after answer.
IVR_S = (2.0, 0.1)

EXPECTED: dict[str, list[Row]] = {
    # a. caller -> 5550100, no digit, BYE after 3 s in the IVR: no callcenter events at all
    "ivr_abandon": [
        Row(
            "3772aa8e-187f-4034-a12b-718e64dcbd0a",
            {
                **COMMON,
                "call_id": "3772aa8e-187f-4034-a12b-718e64dcbd0a",
                "outcome": "abandoned",
                "abandon_stage": "ivr",
                "abandon_node": IVR_NODE,
                "short_abandon": True,  # 3 s <= 5 s
                "answered_via_ivr": False,
                "did": "5550100",
                "answered_at": None,
                "talk_s": None,
                "queue_wait_s": None,
                "ring_s": None,
                "stints": [],
                "overflows": 0,
                "queue": None,
                "agent": None,
                "hung_up_by": "caller",  # recv_bye
                "offered_agents": 0,
                "missed_rings": 0,
                "ivr_path": [IVR_NODE],
            },
            approx={"ivr_s": (3.0, 0.1)},
            duration=(3.0, 0.1),
        )
    ],
    # b. DTMF 2 -> support@default; 1001 rings and never answers; caller BYE after ~8 s in queue:
    # the phone was ringing when the caller left (ORIGINATOR_CANCEL), so stage "ringing".
    "queue_abandon": [
        Row(
            "182c1473-b64a-4db1-aacc-244c98df0fef",
            {
                **COMMON,
                "call_id": "182c1473-b64a-4db1-aacc-244c98df0fef",
                "outcome": "abandoned",
                "abandon_stage": "ringing",
                "abandon_node": SUPPORT,
                "short_abandon": False,
                "answered_via_ivr": False,
                "did": "5550100",
                "answered_at": None,
                "talk_s": None,
                "stints": [stint(SUPPORT, "abandoned")],
                "overflows": 0,
                "queue": SUPPORT,
                "agent": None,
                "hung_up_by": "caller",
                "offered_agents": 1,  # leg_timeout 15 s: 1002 was never offered within 8 s
                "missed_rings": 0,
                "ivr_path": [IVR_NODE],
            },
            approx={"queue_wait_s": (8.0, 0.1), "ring_s": (8.0, 0.1), "ivr_s": IVR_S},
        )
    ],
    # c. DTMF 1 -> sales@default; 1001 answers after 1 s ring; ~5 s talk; caller BYE
    "answered_caller_hangup": [
        Row(
            "ec425ec4-f824-48ed-bc82-4dd065c396f6",
            answered(
                "ec425ec4-f824-48ed-bc82-4dd065c396f6",
                answered_via_ivr=True,
                stints=[stint(SALES, "answered", "1001")],
                queue=SALES,
                agent="1001",
                hung_up_by="caller",
            ),
            approx={"ring_s": (1.0, 0.1), "queue_wait_s": (1.0, 0.1), "talk_s": (5.5, 0.6), "ivr_s": IVR_S},
        )
    ],
    # c again, subscribed with `event json ALL`
    "answered_caller_hangup.json": [
        Row(
            "332279fa-8d43-4328-b325-20ab2599a98a",
            answered(
                "332279fa-8d43-4328-b325-20ab2599a98a",
                answered_via_ivr=True,
                stints=[stint(SALES, "answered", "1001")],
                queue=SALES,
                agent="1001",
                hung_up_by="caller",
            ),
            approx={"ring_s": (1.0, 0.1), "queue_wait_s": (1.0, 0.1), "talk_s": (5.5, 0.6), "ivr_s": IVR_S},
        )
    ],
    # d. as c, the agent's sipp sends BYE 5 s after answering
    "answered_agent_hangup": [
        Row(
            "be6c4498-d2f8-426b-a4b0-7c2daca730cc",
            answered(
                "be6c4498-d2f8-426b-a4b0-7c2daca730cc",
                answered_via_ivr=True,
                stints=[stint(SALES, "answered", "1001")],
                queue=SALES,
                agent="1001",
                hung_up_by="agent",
            ),
            approx={"ring_s": (1.0, 0.1), "queue_wait_s": (1.0, 0.1), "talk_s": (5.0, 0.1), "ivr_s": IVR_S},
        )
    ],
    # f. answered call; the supervisor (not a call: an originated leg) whispers, barges, listens,
    # barges again; caller BYE ~23 s after the answer (sipp hold)
    "whisper_barge": [
        Row(
            "a433cd3b-7dca-4fd1-b1bd-4b721de2ef71",
            answered(
                "a433cd3b-7dca-4fd1-b1bd-4b721de2ef71",
                answered_via_ivr=True,
                stints=[stint(SALES, "answered", "1001")],
                queue=SALES,
                agent="1001",
                hung_up_by="caller",
            ),
            approx={"ring_s": (1.0, 0.1), "queue_wait_s": (1.0, 0.1), "talk_s": (23.0, 0.5), "ivr_s": IVR_S},
            duration=(26.1, 0.5),
        )
    ],
    # g. 5550199 answer+park; the controller plays a tone, uuid_transfers to sales ~2 s after the
    # park; 1001 answers after 1 s; the controller uuid_kills the call 5 s later. A direct line:
    # parked (not a menu) -> not via IVR. The BYE came from FreeSWITCH: system.
    "park_controller_flow": [
        Row(
            "21080fbf-0692-46ab-a319-a4d1f146846c",
            answered(
                "21080fbf-0692-46ab-a319-a4d1f146846c",
                did="5550199",
                answered_via_ivr=False,
                stints=[stint(SALES, "answered", "1001")],
                queue=SALES,
                agent="1001",
                hung_up_by="system",
            ),
            approx={"ivr_s": (2.05, 0.1), "ring_s": (1.0, 0.1), "queue_wait_s": (1.0, 0.1), "talk_s": (5.0, 0.1)},
        )
    ],
    # i. 5550199 answer+park; the controller's play_and_get_digits (caller keys 1 at +3 s) makes
    # it "via IVR"; bgapi uuid_transfer to sales; 1001 answers after 1 s; caller BYE ~4.5 s later
    "sendmsg_ivr": [
        Row(
            "2fcc1294-e632-4ebe-9bee-e3a33ed7346e",
            answered(
                "2fcc1294-e632-4ebe-9bee-e3a33ed7346e",
                did="5550199",
                answered_via_ivr=True,
                stints=[stint(SALES, "answered", "1001")],
                queue=SALES,
                agent="1001",
                hung_up_by="caller",
            ),
            approx={"ivr_s": (3.0, 0.1), "ring_s": (1.0, 0.1), "queue_wait_s": (1.0, 0.1), "talk_s": (4.5, 0.1)},
        )
    ],
    # k. DTMF 1 -> sales, 1001 rings; 10 s after member-queue-start uuid_transfer to support
    # (Cancel/BREAK_OUT, like an abandon); 1003 answers after 1 s; caller BYE ~3.5 s later. ONE
    # answered call with a moved sales stint, never a sales abandon.
    "overflow_transfer": [
        Row(
            "9fc201f3-c254-4869-b746-6aa517e40365",
            answered(
                "9fc201f3-c254-4869-b746-6aa517e40365",
                answered_via_ivr=True,
                stints=[stint(SALES, "moved", moved_to=SUPPORT), stint(SUPPORT, "answered", "1003")],
                overflows=1,
                queue=SUPPORT,
                agent="1003",
                hung_up_by="caller",
                offered_agents=2,  # 1001 in sales, 1003 in support
            ),
            # a phone rang all the time: 10 s of 1001 in sales, 1 s of 1003 in support
            approx={"ring_s": (11.0, 0.1), "queue_wait_s": (11.0, 0.1), "talk_s": (3.6, 0.2), "ivr_s": IVR_S},
        )
    ],
    # l. 1001 On Break; caller presses 1 -> offered to 1002 only, answered; caller BYE ~6 s later
    "agent_status_break": [
        Row(
            "907dc546-c161-44df-81fc-ef06067ecf15",
            answered(
                "907dc546-c161-44df-81fc-ef06067ecf15",
                answered_via_ivr=True,
                stints=[stint(SALES, "answered", "1002")],
                queue=SALES,
                agent="1002",
                hung_up_by="caller",
            ),
            approx={"ring_s": (1.0, 0.1), "queue_wait_s": (1.0, 0.15), "talk_s": (6.0, 0.1), "ivr_s": IVR_S},
        )
    ],
    # h. caller presses 1 and waits in sales while both agents are on break; 1001 back to
    # Available ~1 s later gets the member, answers after 1 s; caller BYE ~14 s later
    "api_replies": [
        Row(
            "87c63186-e739-468a-b53a-e734ecb9522a",
            answered(
                "87c63186-e739-468a-b53a-e734ecb9522a",
                answered_via_ivr=True,
                stints=[stint(SALES, "answered", "1001")],
                queue=SALES,
                agent="1001",
                hung_up_by="caller",
            ),
            approx={"ring_s": (1.0, 0.1), "queue_wait_s": (2.1, 0.1), "talk_s": (14.0, 0.1), "ivr_s": IVR_S},
        )
    ],
}

TIME_FIELDS = {"entered_at", "answered_at", "ended_at"}


def _ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@pytest.mark.parametrize("name", TRACES)
def test_calls_rows(name: str) -> None:
    rows = replay(name)
    expected = EXPECTED[name]  # a new trace needs its expectation written here
    assert [r["call_id"] for r in rows] == [e.call_id for e in expected]
    for row, want in zip(rows, expected, strict=True):
        covered = set(want.exact) | set(want.approx) | TIME_FIELDS | {"stints"}
        assert covered >= set(row), f"fields not checked: {set(row) - covered}"
        diffs = {k: (row[k], v) for k, v in want.exact.items() if k != "stints" and row[k] != v}
        assert not diffs, diffs
        assert [{k: s[k] for k in ("queue", "outcome", "agent", "moved_to")} for s in row["stints"]] == want.exact[
            "stints"
        ]
        for key, (value, tol) in want.approx.items():
            assert row[key] is not None and abs(row[key] - value) <= tol, (key, row[key], value, tol)
        entered, answered_at, ended = (_ts(row[k]) for k in ("entered_at", "answered_at", "ended_at"))
        assert entered is not None and ended is not None and entered <= ended
        if row["outcome"] == "answered":
            assert answered_at is not None and entered <= answered_at <= ended
        if want.duration is not None:
            value, tol = want.duration
            assert abs((ended - entered).total_seconds() - value) <= tol
        for s in row["stints"]:
            joined, left = _ts(s["joined_at"]), _ts(s["left_at"])
            assert joined is not None and left is not None and entered <= joined <= left <= ended
            assert s["wait_s"] == pytest.approx((left - joined).total_seconds(), abs=0.002)


def _cc_facts(name: str) -> dict[str, list[dict[str, str]]]:
    """mod_callcenter's own account per caller UUID: member-queue-start/end and bridge-agent-*."""
    out: dict[str, list[dict[str, str]]] = {}
    for ev, _ in trace_events(FIXTURES / f"{name}.esl.txt"):
        action = ev.get("CC-Action") or ""
        if ev.subclass == "callcenter::info" and action.startswith(("member-queue", "bridge-agent")):
            out.setdefault(ev.get("CC-Member-Session-UUID") or "", []).append(ev.headers)
    return out


@pytest.mark.parametrize("name", TRACES)
def test_rows_agree_with_mod_callcenters_times(name: str) -> None:
    rows = {r["call_id"]: r for r in replay(name)}
    facts = _cc_facts(name)
    assert set(facts) <= set(rows)
    for call_id, row in rows.items():
        cc = facts.get(call_id, [])
        starts = [f for f in cc if f["CC-Action"] == "member-queue-start"]
        assert [f["CC-Queue"] for f in starts] == [s["queue"] for s in row["stints"]]
        for f, s in zip(starts, row["stints"], strict=True):
            joined = _ts(s["joined_at"])
            assert joined is not None and 0 <= joined.timestamp() - int(f["Event-Date-Timestamp"]) / 1e6 < 0.5
        for f in cc:
            action = f["CC-Action"]
            stints_here = [s for s in row["stints"] if s["queue"] == f["CC-Queue"]]
            if action == "member-queue-end":
                held = int(f["CC-Member-Leaving-Time"]) - int(f["CC-Member-Joined-Time"])
                if f["CC-Cause"] == "Cancel":
                    assert any(abs(s["wait_s"] - held) <= 1.0 for s in stints_here), (held, stints_here)
                    if row["outcome"] == "answered":  # a Cancel in a call answered later is a move
                        assert all(s["outcome"] == "moved" for s in stints_here)
                else:
                    assert f["CC-Cause"] == "Terminated" and row["outcome"] == "answered"
            if action == "bridge-agent-start":
                assert row["agent"] == f["CC-Agent"]
                wait = int(f["CC-Agent-Answered-Time"]) - int(f["CC-Member-Joined-Time"])
                assert any(abs(s["wait_s"] - wait) <= 1.0 for s in stints_here)
            if action == "bridge-agent-end":
                talk = int(f["CC-Bridge-Terminated-Time"]) - int(f["CC-Agent-Answered-Time"])
                assert abs(row["talk_s"] - talk) <= 1.0
        if not any(f["CC-Action"] == "bridge-agent-start" for f in cc):
            assert row["outcome"] != "answered"
