"""Properties over generated rule sets, customers, times and live states.

- every call gets exactly one decision, and decide() never raises on a valid RuleSet;
- no caller is ever routed (directly, after the IVR, by a callback, or by overflow) to a
  queue whose allowed/forbidden tiers exclude their tier; with a failed CRM lookup only to
  queues that restrict no tier;
- the trace lists the rules in order up to the deciding one.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from callcenter.crm.repository import CustomerCard
from callcenter.routing.decide import CallInfo, Decision, LiveState, QueueLive, decide, decide_after_ivr
from callcenter.routing.ivr import IvrCollect, IvrInvalid, ivr_next
from callcenter.routing.loader import load_rules
from callcenter.routing.overflow import MoveCall, WaitingCall, overflow_actions
from callcenter.routing.rules import RuleSet

EXAMPLE = load_rules(Path(__file__).resolve().parents[2] / "config" / "routing.example.yaml")
TIERS = ["vip", "gold", "standard", "bronze"]
QUEUES = ["q0", "q1", "q2", "q3"]
PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- generated rule sets ---------------------------------------------------------------------------


@st.composite
def queue_cfg(draw: st.DrawFn, name: str) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    kind = draw(st.sampled_from(["open", "allowed", "forbidden", "both"]))
    if kind in ("allowed", "both"):
        cfg["allowed_tiers"] = draw(st.lists(st.sampled_from(TIERS), min_size=1, max_size=3, unique=True))
    if kind in ("forbidden", "both"):
        pool = [t for t in TIERS if t not in cfg.get("allowed_tiers", [])]
        if pool:
            cfg["forbidden_tiers"] = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2, unique=True))
    steps = []
    for i in range(draw(st.integers(0, 2))):
        target = draw(st.sampled_from([q for q in [*QUEUES, "safe"] if q != name]))
        trigger = draw(
            st.sampled_from(
                [{"after_wait_s": draw(st.integers(1, 300))}, {"no_agents_logged_in": True},
                 {"no_agents_available": True}, {"estimated_wait_s_over": draw(st.integers(0, 300))}]
            )
        )
        steps.append({"id": f"{name}-step{i}", "move_to": target, **trigger})
    if draw(st.booleans()):
        steps.append({"id": f"{name}-group", "add_group": "helpers", "add_above": 2, "remove_below": 1})
    if steps:
        cfg["overflow"] = steps
    return cfg


@st.composite
def action(draw: st.DrawFn, *, fallback: bool = False) -> dict[str, Any]:
    all_queues = [*QUEUES, "safe"]
    kind = draw(st.sampled_from(["queue", "queue", "ivr", "callback", "voicemail", "hangup"]))
    out: dict[str, Any] = {
        "queue": {"queue": draw(st.sampled_from(all_queues)), "priority": draw(st.integers(0, 10))},
        "ivr": {"ivr": "menu"},
        "callback": {"callback": draw(st.sampled_from(all_queues))},
        "voicemail": {"voicemail": "100@default"},
        "hangup": {"hangup": True},
    }[kind]
    if kind == "queue" and draw(st.booleans()):
        out["sticky_agent_s"] = 15
    if draw(st.booleans()):
        out["display_name"] = draw(st.sampled_from(["VIP {name_short}", "{tier} {caller}", "{segment}: {name}"]))
    if draw(st.booleans()):
        closed = draw(
            st.sampled_from([{"hangup": True}, {"voicemail": "1@x"}, {"callback": draw(st.sampled_from(all_queues))}])
        )
        out["closed"] = {"calendar": "office", "prompt": "cc/closed", **closed}
    if fallback:
        out["alternatives"] = draw(st.permutations([*QUEUES, "safe"]))[: draw(st.integers(0, 5))]
        if "safe" not in out["alternatives"] and out.get("queue") != "safe":
            out["alternatives"].append("safe")  # validation demands a queue open to every tier
    return out


@st.composite
def when(draw: st.DrawFn) -> dict[str, Any]:
    w: dict[str, Any] = {}
    customer_side = draw(st.sampled_from(["tier", "tags", "known", "none", "assigned"]))
    if customer_side == "tier":
        w["tier"] = draw(st.lists(st.sampled_from([*TIERS, "VIP", "Gold"]), min_size=1, max_size=3))
    elif customer_side == "tags":
        w["tags_any"] = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=2))
    elif customer_side == "known":
        w["known"] = draw(st.booleans())
    elif customer_side == "assigned":
        w["assigned_agent"] = draw(st.booleans())
    if draw(st.booleans()):
        w[draw(st.sampled_from(["calendar_open", "calendar_closed"]))] = "office"
    if draw(st.booleans()):
        w["withheld"] = draw(st.booleans())
    if draw(st.booleans()):
        w["time_of_day"] = draw(st.sampled_from(["08:00-12:00", "22:00-06:00", "12:00-12:30"]))
    if draw(st.booleans()):
        w["live"] = [
            {
                "queue": draw(st.sampled_from(QUEUES)),
                draw(st.sampled_from(["available_at_least", "available_exactly", "waiting_over"])): draw(
                    st.integers(0, 3)
                ),
            }
        ]
    if draw(st.booleans()):
        w["did_pattern"] = r"\+4930.*"
    if draw(st.booleans()):
        w["did"] = draw(st.lists(st.sampled_from(["+4930901820", "+493090182030", "+493090182101"]),
                                 min_size=1, max_size=2, unique=True))
    return w


@st.composite
def rule_sets(draw: st.DrawFn) -> RuleSet:
    queues = {name: draw(queue_cfg(name)) for name in QUEUES}
    queues["safe"] = {}
    data = {
        "timezone": draw(st.sampled_from(["Europe/Berlin", "America/New_York", "UTC"])),
        "calendars": {"office": {"hours": {d: "09:00-18:00" for d in ("mon", "tue", "wed", "thu", "fri")},
                                 "holidays": ["2025-12-25"]}},
        "groups": {"helpers": {"members": [{"interface": "PJSIP/1099"}]}},
        "queues": queues,
        "ivr": {
            "menu": {
                "nodes": [
                    {
                        "id": "top",
                        "prompt": "cc/top",
                        "retries": draw(st.integers(0, 2)),
                        "options": {
                            str(d): draw(
                                st.sampled_from(
                                    [{"queue": q} for q in QUEUES]
                                    + [{"callback": q} for q in QUEUES]
                                    + [{"node": "sub"}, {"voicemail": "1@x"}, {"hangup": True}]
                                )
                            )
                            for d in range(draw(st.integers(1, 4)))
                        },
                        "on_failure": {"queue": draw(st.sampled_from(QUEUES))},
                    },
                    {"id": "sub", "prompt": "cc/sub", "options": {"*": {"node": "top"}},
                     "on_failure": {"queue": draw(st.sampled_from(QUEUES))}},
                ]
            }
        },
        "rules": [
            {"id": f"r{i}", "when": draw(when()), "then": draw(action())} for i in range(draw(st.integers(0, 8)))
        ],
        "fallback": draw(action(fallback=True)),
    }
    try:
        return RuleSet.model_validate(data)
    except ValidationError:
        reject()  # e.g. a generated rule that could only match tiers its queue refuses


customers = st.one_of(
    st.none(),
    st.builds(
        CustomerCard,
        id=st.integers(1, 10**6),
        name=st.text(max_size=30),
        tier=st.one_of(st.sampled_from([*TIERS, "VIP", " Vip ", "Gold", "platinum"]), st.text(min_size=1, max_size=8)),
        segment=st.one_of(st.none(), st.sampled_from(["smb", "enterprise"])),
        language=st.one_of(st.none(), st.sampled_from(["de", "en"])),
        tags=st.lists(st.sampled_from(["a", "b", "c", "A"]), max_size=3).map(tuple),
        assigned_agent_id=st.one_of(st.none(), st.integers(1, 50)),
        assigned_agent=st.one_of(st.none(), st.sampled_from(["Alice", "Bob"])),
        stage=st.one_of(st.none(), st.sampled_from(["lead", "customer"])),
        notes=st.none(),
        do_not_call=st.booleans(),
        phones=st.just(()),
    ),
)
times = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC))
counts = st.integers(0, 6)
lives = st.dictionaries(
    st.sampled_from([*QUEUES, "safe", "sales", "support", "vip", "junior", "billing"]),
    st.builds(QueueLive, logged_in=counts, available=counts, busy=counts, paused=counts, waiting=counts,
              longest_wait_s=st.floats(0, 600), estimated_wait_s=st.one_of(st.none(), st.floats(0, 600))),
).map(LiveState)
calls = st.builds(
    CallInfo.from_caller,
    st.sampled_from(["+4915123456789", "anonymous", "2025550143", "", "sip:alice"]),
    st.sampled_from(["+4930901820", "+493090182030", "+493090182101", None]),
    times,
    pbx=st.sampled_from(["asterisk-1", "fs-1", None]),
    pbx_type=st.sampled_from(["asterisk", "freeswitch", None]),
)


def assert_tier_safe(d: Decision, rules: RuleSet, customer: CustomerCard | None, lookup_failed: bool) -> None:
    tier = None if (customer is None or lookup_failed) else customer.tier.strip().casefold()
    assert d.tier == tier
    target = d.queue if d.action == "queue" else d.callback_queue if d.action == "callback" else None
    if d.action in ("queue", "callback"):
        assert target is not None
        assert rules.queues[target].excludes(tier, strict=lookup_failed) is None, (target, tier, d.trace)
    if d.queue is not None:
        assert d.pbx_queue is not None


def assert_one_decision(d: Decision, rules: RuleSet) -> None:
    matched = [t for t in d.trace if t.result == "matched"]
    assert len(matched) == 1 and d.trace[-1] is matched[0] and matched[0].rule_id == d.rule_id
    rule_ids = [r.id for r in rules.rules]
    tried = [t.rule_id for t in d.trace if t.result != "ivr"]
    if d.fallback:
        assert tried == [*rule_ids, rules.fallback.id]
    else:
        assert tried == rule_ids[: len(tried)]
    assert d.rules_version == rules.version


def walk_ivr(d: Decision, rules: RuleSet, call: CallInfo, digits: list[str | None]) -> Decision | None:
    assert d.ivr is not None and d.ivr_menu is not None
    menu = rules.ivr[d.ivr_menu]
    step: Any = d.ivr
    for key in digits:
        nxt = ivr_next(menu, step.node, key, step.tries)
        if isinstance(nxt, IvrInvalid):
            step = nxt.next
        elif isinstance(nxt, IvrCollect):
            step = nxt
        else:
            return decide_after_ivr(d, nxt, call, rules)
    return None


@PROPS
@given(rules=rule_sets(), customer=customers, call=calls, live=lives, lookup_failed=st.booleans(),
       digits=st.lists(st.one_of(st.none(), st.sampled_from(["0", "1", "2", "3", "*", "9"])), max_size=8))
def test_generated_rules_never_route_a_caller_to_a_queue_refusing_their_tier(
    rules: RuleSet, customer, call: CallInfo, live: LiveState, lookup_failed: bool, digits
) -> None:
    d = decide(call, customer, live, rules, lookup_failed=lookup_failed)
    assert_one_decision(d, rules)
    assert_tier_safe(d, rules, customer, lookup_failed)
    assert d.lookup_failed == lookup_failed
    if d.action == "ivr":
        final = walk_ivr(d, rules, call, digits)
        if final is not None:
            assert_tier_safe(final, rules, customer, lookup_failed)
            assert final.rule_id == d.rule_id and final.trace[: len(d.trace)] == d.trace


@PROPS
@given(rules=rule_sets(), customer=customers, call=calls, live=lives, lookup_failed=st.booleans())
def test_routing_without_explanation_decides_the_same(
    rules: RuleSet, customer, call: CallInfo, live: LiveState, lookup_failed: bool
) -> None:
    """The routing service asks for no explanation (explain=False: no per-rule trace, rules
    whose DID list misses the call skipped at once): the decision must be the one the full
    evaluation gives, trace entry of the deciding rule included."""
    full = decide(call, customer, live, rules, lookup_failed=lookup_failed)
    quick = decide(call, customer, live, rules, lookup_failed=lookup_failed, explain=False)
    assert quick.trace == full.trace[-1:]
    assert quick == dataclasses.replace(full, trace=full.trace[-1:])


@PROPS
@given(customer=customers, call=calls, live=lives, lookup_failed=st.booleans(),
       digits=st.lists(st.one_of(st.none(), st.sampled_from(["0", "1", "2", "3", "9", "*", "5"])), max_size=8))
def test_example_rules_every_call_one_safe_decision(customer, call, live, lookup_failed, digits) -> None:
    d = decide(call, customer, live, EXAMPLE, lookup_failed=lookup_failed)
    assert_one_decision(d, EXAMPLE)
    assert_tier_safe(d, EXAMPLE, customer, lookup_failed)
    if customer is not None and customer.vip and not lookup_failed:
        assert d.queue != "junior" and d.callback_queue != "junior"
        if d.action == "queue":
            assert d.queue == "vip"
    if d.action == "ivr":
        final = walk_ivr(d, EXAMPLE, call, digits)
        if final is not None:
            assert_tier_safe(final, EXAMPLE, customer, lookup_failed)


@PROPS
@given(
    rules=rule_sets(),
    live=lives,
    data=st.data(),
)
def test_overflow_never_moves_a_call_to_a_queue_refusing_its_tier(rules: RuleSet, live: LiveState, data) -> None:
    now = datetime(2025, 6, 2, 10, 0, tzinfo=UTC)
    step_ids = [s.id for q in rules.queues.values() for s in q.overflow]
    waiting = data.draw(
        st.lists(
            st.builds(
                WaitingCall,
                call_id=st.text(alphabet="abcdef", min_size=1, max_size=4),
                queue=st.sampled_from([*QUEUES, "safe"]),
                entered_queue_at=st.integers(0, 900).map(lambda s: now - timedelta(seconds=s)),
                original_entry_at=st.integers(0, 2000).map(lambda s: now - timedelta(seconds=s)),
                tier=st.one_of(st.none(), st.sampled_from([*TIERS, "platinum"])),
                priority=st.integers(0, 5),
                steps_done=st.frozensets(st.sampled_from(step_ids)) if step_ids else st.just(frozenset()),
                lookup_failed=st.booleans(),
            ),
            max_size=8,
            unique_by=lambda c: c.call_id,
        )
    )
    active = data.draw(st.frozensets(st.tuples(st.sampled_from([*QUEUES, "safe"]), st.just("helpers"))))
    acts = overflow_actions(rules, live, waiting, active, now)
    assert acts == overflow_actions(rules, live, list(reversed(waiting)), active, now)  # order-independent
    by_id = {c.call_id: c for c in waiting}
    moved = [a for a in acts if isinstance(a, MoveCall)]
    assert len({m.call_id for m in moved}) == len(moved)  # at most one move per call
    for m in moved:
        c = by_id[m.call_id]
        assert m.from_queue == c.queue != m.to_queue
        assert m.step_id not in c.steps_done
        assert m.keep_entry_at == c.original_entry_at
        assert rules.queues[m.to_queue].excludes(c.tier, strict=c.lookup_failed) is None
    for a in acts:
        if not isinstance(a, MoveCall):
            assert ((a.queue, a.group) in active) == (type(a).__name__ == "RemoveGroup")
