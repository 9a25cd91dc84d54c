"""The same scenario on Asterisk and on FreeSWITCH gives the same journey summary.

Each pair below is one lab scenario run on both PBXs (tests/fixtures/asterisk and
tests/fixtures/freeswitch, see their TRACES_README.md). Both traces go through their own
translator and the same ``summarize_events``; the PBX-neutral fields of the ``calls`` rows must
be equal once names are mapped through ``NAMES`` (the two labs name their queues, agents and IVR
places the way each PBX wants them). Where the two runs really differed -- not the translation,
the lab -- the difference is listed in ``SCENARIO_DIFFERENCES`` with both values and why, and
asserted too: any other difference fails.

Not compared: call ids, caller/DID numbers (the labs used different test numbers), times and
durations (different runs), ``end_cause`` (Asterisk reports 0 for an unbridged BYE, FreeSWITCH
16), ``pbx``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.replay.test_asterisk_summaries import replay as asterisk_rows
from tests.replay.test_freeswitch_summaries import replay as freeswitch_rows

# FreeSWITCH name -> Asterisk name.
NAMES: dict[str, str] = {
    # mod_callcenter queue names carry the domain (TRACES_README: "the queue name must be
    # sales@default"); app_queue's do not.
    "sales@default": "sales",
    "support@default": "support",
    # mod_callcenter agent names vs app_queue member interfaces
    "1001": "PJSIP/1001",
    "1002": "PJSIP/1002",
    "1003": "PJSIP/1003",
    # IVR places are "context,extension" on both: the FreeSWITCH lab's IVR is DID 5550100 in
    # context public, Asterisk's is ivr-main,s; the hold place where callers wait for the
    # controller is 5550199 (answer+park) vs park-like,s (MusicOnHold).
    "public,5550100": "ivr-main,s",
    "public,5550199": "park-like,s",
}

# (Asterisk trace, FreeSWITCH trace)
PAIRS: list[tuple[str, str]] = [
    ("ivr_abandon", "ivr_abandon"),
    ("queue_abandon", "queue_abandon"),
    ("answered_caller_hangup", "answered_caller_hangup"),
    ("answered_caller_hangup", "answered_caller_hangup.json"),
    ("answered_agent_hangup", "answered_agent_hangup"),
    ("whisper_barge", "whisper_barge"),
    # controller-driven flows: parked on hold then sent to sales / a controller menu first
    ("redirect_flow", "park_controller_flow"),
    ("asyncagi_ivr", "sendmsg_ivr"),
    # overflow: moved from sales to support after 10 s, answered there by 1003
    ("overflow_redirect", "overflow_transfer"),
    # one agent paused / on break, the other one answers
    ("queue_pause_reason", "agent_status_break"),
]

FIELDS = (
    "outcome",
    "abandon_stage",
    "abandon_node",
    "short_abandon",
    "answered_via_ivr",
    "hung_up_by",
    "overflows",
    "queue",
    "agent",
    "offered_agents",
    "missed_rings",
    "ivr_path",
    "partial",
    "stints",
)

# (Asterisk trace, FreeSWITCH trace) -> field -> (Asterisk value, FreeSWITCH value mapped, why)
SCENARIO_DIFFERENCES: dict[tuple[str, str], dict[str, tuple[Any, Any, str]]] = {
    ("queue_abandon", "queue_abandon"): {
        "abandon_stage": (
            "queue",
            "ringing",
            "the Asterisk lab's agents answered every INVITE with 486 at once, so no phone rang when "
            "the caller left (retry pause); the FreeSWITCH lab's agents let it ring (ORIGINATOR_CANCEL)",
        ),
        "offered_agents": (2, 1, "486 freed both Asterisk agents at once; FreeSWITCH rang 1001 for the whole 8 s"),
        "missed_rings": (4, 0, "4x RINGNOANSWER|0 (486) on Asterisk; the FreeSWITCH ring was canceled, not missed"),
    },
    ("redirect_flow", "park_controller_flow"): {
        "hung_up_by": (
            "caller",
            "system",
            "the FreeSWITCH driver ended the call with uuid_kill; the Asterisk caller sent BYE",
        ),
    },
    ("asyncagi_ivr", "sendmsg_ivr"): {
        "ivr_path": (
            [],
            ["park-like,s"],
            "FreeSWITCH parks the caller in the dialplan (a hold place, non-interactive) before the "
            "controller's menu; AGI(agi:async) is not a place. The hold node does not make the call "
            "'via IVR' -- the controller's digit collection does, on both",
        ),
    },
}


def _map(value: Any) -> Any:
    if isinstance(value, str):
        return NAMES.get(value, value)
    if isinstance(value, list):
        return [_map(v) for v in value]
    if isinstance(value, dict):
        return {k: _map(v) for k, v in value.items()}
    return value


def _neutral(row: dict[str, Any], mapped: bool) -> dict[str, Any]:
    out = {k: row[k] for k in FIELDS if k != "stints"}
    out["stints"] = [{k: s[k] for k in ("queue", "outcome", "agent", "moved_to")} for s in row["stints"]]
    return _map(out) if mapped else out


@pytest.mark.parametrize(("asterisk", "freeswitch"), PAIRS, ids=[f"{a}~{f}" for a, f in PAIRS])
def test_same_scenario_same_summary(asterisk: str, freeswitch: str) -> None:
    a_rows, f_rows = asterisk_rows(asterisk), freeswitch_rows(freeswitch)
    assert len(a_rows) == len(f_rows) == 1
    a, f = _neutral(a_rows[0], mapped=False), _neutral(f_rows[0], mapped=True)
    known = SCENARIO_DIFFERENCES.get((asterisk, freeswitch), {})
    for key in FIELDS:
        if key in known:
            want_a, want_f, why = known[key]
            assert (a[key], f[key]) == (want_a, want_f), f"{key}: the documented difference changed ({why})"
        else:
            assert a[key] == f[key], f"{key}: asterisk {a[key]!r} != freeswitch {f[key]!r}"


def test_every_documented_difference_is_a_real_pair() -> None:
    assert set(SCENARIO_DIFFERENCES) <= set(PAIRS)
    for diffs in SCENARIO_DIFFERENCES.values():
        assert set(diffs) <= set(FIELDS)


def test_unmapped_names_would_differ() -> None:
    """The mapping is needed, not decorative: raw names differ between the PBXs."""
    a = _neutral(asterisk_rows("overflow_redirect")[0], mapped=False)
    f = _neutral(freeswitch_rows("overflow_transfer")[0], mapped=False)
    assert a["queue"] != f["queue"] and a["agent"] != f["agent"]
    assert _map(f["stints"]) == a["stints"]
