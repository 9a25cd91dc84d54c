"""Overflow planning: time and load triggers, hysteresis, tier safety, one move per step."""

from __future__ import annotations

import math
import textwrap
from datetime import UTC, datetime, timedelta

from callcenter.domain.commands import AddQueueMember, MoveToQueue, RemoveQueueMember
from callcenter.routing.decide import LiveState, QueueLive
from callcenter.routing.loader import parse_rules
from callcenter.routing.overflow import (
    AddGroup,
    MoveCall,
    RemoveGroup,
    WaitingCall,
    load,
    overflow_actions,
    overflow_commands,
)

RULES = parse_rules(
    textwrap.dedent(
        """\
        groups:
          overload:
            members:
              - {interface: PJSIP/1010, penalty: 5, name: Carol}
              - {interface: agent-1010@default, penalty: 5, pbx: fs-1}
          seniors:
            members: [{interface: PJSIP/1001}]
        queues:
          sales:
            pbx_queue: {default: sales, freeswitch: sales@default}
            overflow:
              - {id: sales-group, add_group: overload, add_above: 3, remove_below: 1}
              - {id: sales-empty, no_agents_logged_in: true, move_to: support}
              - {id: sales-slow, after_wait_s: 120, move_to: support, priority: 5}
          support:
            overflow:
              - {id: support-slow, after_wait_s: 60, move_to: sales}
              - {id: support-group, add_group: seniors, add_above: 2, remove_below: 0.5, after_wait_s: 30}
          vip:
            allowed_tiers: [vip]
            overflow:
              - {id: vip-to-junior, after_wait_s: 30, move_to: junior}
              - {id: vip-to-gold, after_wait_s: 30, move_to: gold-desk}
              - {id: vip-to-support, after_wait_s: 30, move_to: support, priority: 10}
          junior:
            forbidden_tiers: [vip]
            overflow:
              - {id: junior-busy, estimated_wait_s_over: 90, move_to: vip}
              - {id: junior-nobody-free, no_agents_available: true, move_to: support}
          gold-desk: {allowed_tiers: [gold]}
        fallback: {queue: support}
        """
    ),
    "overflow.yaml",
)
T0 = datetime(2025, 6, 2, 8, 0, tzinfo=UTC)
STAFFED = QueueLive(logged_in=3, available=1, busy=2, waiting=1)


def waiting(call_id: str, queue: str, waited_s: float, *, tier: str | None = "standard", **kw) -> WaitingCall:
    entered = T0 - timedelta(seconds=waited_s)
    return WaitingCall(call_id, queue, entered, kw.pop("original", entered), tier, **kw)


def live(**queues: QueueLive) -> LiveState:
    return LiveState(queues)


def moves(actions) -> list[str]:
    return [a.step_id for a in actions if isinstance(a, MoveCall)]


def test_time_trigger_moves_after_the_wait_keeping_the_original_entry() -> None:
    original = T0 - timedelta(seconds=500)
    early = waiting("c1", "sales", 119.9, original=original)
    due = waiting("c2", "sales", 120, original=original, priority=2)
    acts = overflow_actions(RULES, live(sales=STAFFED), [early, due], frozenset(), T0)
    assert acts == [MoveCall("c2", "sales", "support", 5, original, "sales-slow")]


def test_queue_level_trigger_moves_every_waiting_call_and_keeps_its_priority() -> None:
    calls = [waiting("b", "sales", 5, priority=3), waiting("a", "sales", 10)]
    acts = overflow_actions(RULES, live(sales=QueueLive(logged_in=0, waiting=2)), calls, frozenset(), T0)
    # nobody there: infinite load, the overload group comes in too; then the moves, longest-waiting
    # first; the step has no priority: each call keeps its own
    assert acts == [
        AddGroup("sales", "overload", "sales-group", math.inf),
        MoveCall("a", "sales", "support", 0, calls[1].original_entry_at, "sales-empty"),
        MoveCall("b", "sales", "support", 3, calls[0].original_entry_at, "sales-empty"),
    ]


def test_a_step_never_moves_the_same_call_twice() -> None:
    # moved to support by sales-slow, back to sales by support-slow: sales-slow is used up
    c = waiting("c1", "sales", 300, steps_done=frozenset({"sales-slow", "support-slow"}))
    assert overflow_actions(RULES, live(sales=STAFFED), [c], frozenset(), T0) == []
    # a queue-level step not yet used still applies
    nobody = live(sales=QueueLive(logged_in=0, waiting=1))
    assert moves(overflow_actions(RULES, nobody, [c], frozenset(), T0)) == ["sales-empty"]


def test_one_move_per_call_per_evaluation_first_step_wins() -> None:
    c = waiting("c1", "sales", 500)
    acts = overflow_actions(RULES, live(sales=QueueLive(logged_in=0, waiting=1)), [c], frozenset(), T0)
    assert moves(acts) == ["sales-empty"]


def test_ping_pong_chains_terminate() -> None:
    """sales -> support -> sales -> (nothing): each step is used once per call."""
    c = waiting("c1", "sales", 120)
    moves = 0
    for _ in range(10):
        acts = [a for a in overflow_actions(RULES, live(sales=STAFFED, support=STAFFED), [c], frozenset(), T0)
                if isinstance(a, MoveCall)]
        if not acts:
            break
        [m] = acts
        moves += 1
        c = WaitingCall(c.call_id, m.to_queue, T0 - timedelta(seconds=500), m.keep_entry_at, c.tier,
                        m.priority, c.steps_done | {m.step_id})
    assert moves == 2 and c.queue == "sales" and c.steps_done == {"sales-slow", "support-slow"}


def test_never_moves_a_call_to_a_queue_that_refuses_its_tier() -> None:
    vip = waiting("v", "vip", 31, tier="vip")
    acts = overflow_actions(RULES, live(vip=STAFFED), [vip], frozenset(), T0)
    # junior forbids vip, gold-desk only takes gold: support
    assert acts == [MoveCall("v", "vip", "support", 10, vip.original_entry_at, "vip-to-support")]
    # a junior call never goes to the vip queue (allowed_tiers: vip), whatever the load
    busy = live(junior=QueueLive(logged_in=2, available=0, waiting=9, estimated_wait_s=300))
    std = waiting("s", "junior", 1)
    assert overflow_actions(RULES, busy, [std], frozenset(), T0) == [
        MoveCall("s", "junior", "support", 0, std.original_entry_at, "junior-nobody-free")
    ]
    # unknown callers are no VIPs either
    assert [a.to_queue for a in overflow_actions(RULES, busy, [waiting("u", "junior", 1, tier=None)],  # type: ignore[union-attr]
                                                 frozenset(), T0)] == ["support"]


def test_a_call_whose_crm_lookup_failed_only_moves_to_unrestricted_queues() -> None:
    c = waiting("x", "vip", 31, tier=None, lookup_failed=True)
    acts = overflow_actions(RULES, live(vip=STAFFED), [c], frozenset(), T0)
    assert [a.to_queue for a in acts] == ["support"]  # type: ignore[union-attr]


def test_estimated_wait_trigger_needs_an_estimate() -> None:
    vip_in_junior = waiting("v", "junior", 1, tier="vip")  # could not happen, but even so:
    no_estimate = live(junior=QueueLive(logged_in=2, available=1, waiting=9))
    assert overflow_actions(RULES, no_estimate, [vip_in_junior], frozenset(), T0) == []
    gold = waiting("g", "junior", 1, tier="gold")
    slow = live(junior=QueueLive(logged_in=2, available=1, waiting=9, estimated_wait_s=91))
    assert overflow_actions(RULES, slow, [gold], frozenset(), T0) == []  # vip queue refuses gold
    slow_vip = waiting("v2", "junior", 1, tier="VIP".casefold())
    assert [a.to_queue for a in overflow_actions(RULES, slow, [slow_vip], frozenset(), T0)] == ["vip"]  # type: ignore[union-attr]


def test_group_hysteresis() -> None:
    key = frozenset({("sales", "overload")})

    def plan(waiting_calls: int, available: int, active: bool):
        q = QueueLive(logged_in=available + 1, available=available, busy=1, waiting=waiting_calls)
        return overflow_actions(RULES, live(sales=q), [], key if active else frozenset(), T0)

    assert plan(6, 2, active=False) == []  # load 3: not above 3
    assert plan(7, 2, active=False) == [AddGroup("sales", "overload", "sales-group", 3.5)]
    assert plan(7, 2, active=True) == []  # already there
    assert plan(4, 2, active=True) == []  # load 2: inside the band, stays
    assert plan(2, 2, active=True) == []  # load 1: not below 1, stays
    assert plan(1, 2, active=True) == [RemoveGroup("sales", "overload", "sales-group", 0.5)]
    assert plan(1, 2, active=False) == []
    assert plan(1, 0, active=False) == [AddGroup("sales", "overload", "sales-group", math.inf)]
    assert plan(0, 0, active=True) == [RemoveGroup("sales", "overload", "sales-group", 0.0)]


def test_group_step_with_an_extra_wait_trigger_and_without_live_state() -> None:
    crowded = QueueLive(logged_in=2, available=1, waiting=5, longest_wait_s=20)
    assert overflow_actions(RULES, live(support=crowded), [], frozenset(), T0) == []  # longest wait 20 <= 30
    crowded = QueueLive(logged_in=2, available=1, waiting=5, longest_wait_s=31)
    assert overflow_actions(RULES, live(support=crowded), [], frozenset(), T0) == [
        AddGroup("support", "seniors", "support-group", 5.0)
    ]
    # no live state: groups stay as they are, time-based moves still happen
    c = waiting("c", "sales", 130)
    acts = overflow_actions(RULES, LiveState(), [c], frozenset({("sales", "overload")}), T0)
    assert acts == [MoveCall("c", "sales", "support", 5, c.original_entry_at, "sales-slow")]


def test_order_is_queues_in_file_order_groups_then_moves_by_entry() -> None:
    calls = [
        waiting("z", "support", 70),
        waiting("b", "sales", 130, original=T0 - timedelta(seconds=900)),
        waiting("a", "sales", 130, original=T0 - timedelta(seconds=900)),
        waiting("c", "sales", 200),
    ]
    state = live(sales=QueueLive(logged_in=1, available=0, waiting=3), support=STAFFED)
    acts = overflow_actions(RULES, state, calls, frozenset(), T0)
    assert [(type(a).__name__, getattr(a, "call_id", None)) for a in acts] == [
        ("AddGroup", None),
        ("MoveCall", "a"),
        ("MoveCall", "b"),
        ("MoveCall", "c"),
        ("MoveCall", "z"),
    ]
    assert overflow_actions(RULES, state, list(reversed(calls)), frozenset(), T0) == acts


def test_load() -> None:
    assert load(QueueLive()) == 0.0
    assert load(QueueLive(waiting=3, available=0)) == math.inf
    assert load(QueueLive(waiting=3, available=2)) == 1.5


def test_commands_use_the_pbx_queue_names_and_members_of_that_pbx() -> None:
    move = MoveCall("c1", "vip", "sales", 5, T0, "x", channel="PJSIP/trunk-7")
    [cmd] = overflow_commands(move, RULES, pbx="fs-1", pbx_type="freeswitch")
    assert isinstance(cmd, MoveToQueue)
    assert (cmd.call_id, cmd.channel, cmd.queue, cmd.priority) == ("c1", "PJSIP/trunk-7", "sales@default", 5)

    add = overflow_commands(AddGroup("sales", "overload", "sales-group", 4.0), RULES, pbx="asterisk-1")
    assert [(type(c), c.queue, c.agent, c.penalty, c.member_name) for c in add] == [  # type: ignore[attr-defined]
        (AddQueueMember, "sales", "PJSIP/1010", 5, "Carol")
    ]
    fs = overflow_commands(AddGroup("sales", "overload", "sales-group", 4.0), RULES, pbx="fs-1", pbx_type="freeswitch")
    assert [(c.queue, c.agent) for c in fs] == [  # type: ignore[attr-defined]
        ("sales@default", "PJSIP/1010"),
        ("sales@default", "agent-1010@default"),
    ]
    rm = overflow_commands(RemoveGroup("sales", "overload", "sales-group", 0.0), RULES, pbx="asterisk-1")
    assert [(type(c), c.agent) for c in rm] == [(RemoveQueueMember, "PJSIP/1010")]  # type: ignore[attr-defined]


def test_group_members_can_be_chosen_by_pbx_type() -> None:
    rules = parse_rules(textwrap.dedent("""
        version: t
        groups:
          overload:
            members:
              - {interface: PJSIP/1010, pbx: asterisk}
              - {interface: "1010", pbx: freeswitch}
              - {interface: "1099", pbx: fs-2}
        queues:
          sales: {overflow: [{id: g, add_group: overload, add_above: 3, remove_below: 1}]}
        rules: []
        fallback: {id: f, queue: sales}
    """), "groups.yaml")
    add = AddGroup("sales", "overload", "g", 1.0)
    assert [c.agent for c in overflow_commands(add, rules, pbx="ast-1", pbx_type="asterisk")] == [  # type: ignore[attr-defined]
        "PJSIP/1010"]
    assert [c.agent for c in overflow_commands(add, rules, pbx="fs-1", pbx_type="freeswitch")] == [  # type: ignore[attr-defined]
        "1010"]
    assert [c.agent for c in overflow_commands(add, rules, pbx="fs-2", pbx_type="freeswitch")] == [  # type: ignore[attr-defined]
        "1010", "1099"]
