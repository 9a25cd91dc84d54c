"""Routing decisions on realistic rule sets: the example file and small adversarial ones."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from callcenter.crm.repository import CustomerCard
from callcenter.domain.commands import (
    CollectDigits,
    HangUp,
    PlayPrompt,
    ReleaseCall,
    RouteToQueue,
    SetDisplayName,
    SetVariable,
)
from callcenter.routing.decide import (
    CallInfo,
    LiveState,
    QueueLive,
    decide,
    decide_after_ivr,
    decision_commands,
    render_display_name,
    short_name,
)
from callcenter.routing.ivr import IvrCallback, IvrHangup, IvrQueue, IvrVoicemail, ivr_next
from callcenter.routing.loader import load_rules, parse_rules

EXAMPLE = load_rules(Path(__file__).resolve().parents[2] / "config" / "routing.example.yaml")
MONDAY_10 = datetime(2025, 6, 2, 8, 0, tzinfo=UTC)  # 10:00 in Berlin, office open
MONDAY_22 = datetime(2025, 6, 2, 20, 0, tzinfo=UTC)  # 22:00 in Berlin, closed
NO_LIVE = LiveState()


def card(**kw) -> CustomerCard:
    base = {
        "id": 42,
        "name": "Anna Ivanova",
        "tier": "standard",
        "segment": "smb",
        "language": "ru",
        "tags": (),
        "assigned_agent_id": None,
        "assigned_agent": None,
        "stage": "customer",
        "notes": None,
        "do_not_call": False,
        "phones": (("+12025550143", None),),
    }
    base.update(kw)
    return CustomerCard(**base)


def call(at: datetime = MONDAY_10, did: str | None = "+4930901820", caller: str | None = "+12025550143", **kw):
    return CallInfo.from_caller(caller, did, at, **{"pbx": "asterisk-1", "pbx_type": "asterisk", **kw})


def kinds(cmds) -> list[type]:
    return [type(c) for c in cmds]


# --- the example rules ---------------------------------------------------------------------------


def test_vip_goes_straight_to_the_vip_queue_with_priority_and_a_display_name() -> None:
    d = decide(call(), card(tier="VIP"), NO_LIVE, EXAMPLE)
    assert (d.rule_id, d.action, d.queue, d.pbx_queue, d.priority) == ("vip-direct", "queue", "vip", "vip", 10)
    assert d.display_name == "VIP Ivanova A."
    assert d.rules_version == EXAMPLE.version and d.tier == "vip" and d.customer_id == 42
    assert [t.result for t in d.trace] == ["matched"]
    cmds = decision_commands(d, "call-1", "PJSIP/trunk-0001")
    assert kinds(cmds) == [SetDisplayName, RouteToQueue]
    assert cmds[0].name == "VIP Ivanova A."  # type: ignore[attr-defined]
    assert (cmds[1].queue, cmds[1].priority) == ("vip", 10)  # type: ignore[attr-defined]
    assert all(c.call_id == "call-1" and c.channel == "PJSIP/trunk-0001" for c in cmds)


def test_pbx_queue_name_follows_the_call_s_pbx() -> None:
    d = decide(call(pbx="fs-1", pbx_type="freeswitch"), card(tier="vip"), NO_LIVE, EXAMPLE)
    assert (d.queue, d.pbx_queue) == ("vip", "vip@default")
    d = decide(call(pbx=None, pbx_type=None), card(tier="vip"), NO_LIVE, EXAMPLE)
    assert d.pbx_queue == "vip"


def test_vip_out_of_hours_gets_a_callback_from_the_seniors() -> None:
    d = decide(call(MONDAY_22), card(tier="vip"), NO_LIVE, EXAMPLE)
    assert (d.rule_id, d.action, d.callback_queue, d.closed, d.closed_calendar) == (
        "vip-direct",
        "callback",
        "vip",
        True,
        "office",
    )
    assert d.next_open == datetime(2025, 6, 3, 7, 0, tzinfo=UTC)  # Tuesday 09:00 CEST
    assert d.announcement == "cc/vip-closed"
    cmds = decision_commands(d, "c", "ch")
    assert kinds(cmds) == [SetDisplayName, PlayPrompt, SetVariable, HangUp]
    assert (cmds[2].name, cmds[2].value) == ("CC_CALLBACK", "vip")  # type: ignore[attr-defined]


def test_unknown_caller_ivr_choice_then_skill_queue() -> None:
    c = call(caller="+4915199999999")
    d = decide(c, None, NO_LIVE, EXAMPLE)
    assert (d.rule_id, d.action, d.ivr_menu, d.ivr_node) == ("main-menu", "ivr", "main", "main-menu")
    assert d.display_name is None  # "{name_short}" of nobody
    assert [t.result for t in d.trace] == ["no_match"] * 6 + ["matched"]
    assert d.trace[0].condition == "tier" and d.trace[0].reason == "the caller is not in the CRM"
    [collect] = decision_commands(d, "c", "ch")
    assert isinstance(collect, CollectDigits) and collect.node == "main-menu"

    step = ivr_next(EXAMPLE.ivr["main"], "main-menu", "3")
    assert isinstance(step, IvrQueue)
    final = decide_after_ivr(d, step, c, EXAMPLE)
    assert (final.rule_id, final.action, final.queue, final.pbx_queue, final.ivr_node) == (
        "main-menu",
        "queue",
        "billing",
        "billing",
        "main-menu",
    )
    assert final.trace[-1].result == "ivr" and final.trace[-1].reason == "digits '3' at node 'main-menu': queue billing"
    assert final.survey  # billing has the post-call survey in the example
    assert kinds(decision_commands(final, "c", "ch")) == [SetVariable, RouteToQueue]


def test_ivr_exits_callback_voicemail_hangup() -> None:
    c = call(caller="+4915199999999")
    d = decide(c, None, NO_LIVE, EXAMPLE)
    cb = decide_after_ivr(d, IvrCallback("main-menu", "support", "cc/callback-confirm", "9", "option"), c, EXAMPLE)
    assert (cb.action, cb.callback_queue, cb.announcement) == ("callback", "support", "cc/callback-confirm")
    vm = decide_after_ivr(d, IvrVoicemail("main-menu", "100@default", None, "8", "option"), c, EXAMPLE)
    assert (vm.action, vm.mailbox) == ("voicemail", "100@default")
    assert kinds(decision_commands(vm, "c", "ch")) == [SetVariable, ReleaseCall]
    bye = decide_after_ivr(d, IvrHangup("main-menu", None, None, "failure"), c, EXAMPLE)
    assert bye.action == "hangup" and "(retries used up)" in bye.trace[-1].reason
    assert kinds(decision_commands(bye, "c", "ch")) == [HangUp]


def test_closed_hours_unknown_caller_reaches_the_fallback_voicemail() -> None:
    d = decide(call(MONDAY_22, caller="+4915199999999"), None, NO_LIVE, EXAMPLE)
    assert (d.rule_id, d.fallback, d.action, d.closed) == ("fallback", True, "voicemail", True)
    assert d.mailbox == "100@default"
    assert d.trace[-1].reason == "fallback: no rule matched; calendar 'office' closed: voicemail"
    assert d.trace[-2].condition == "calendar_open" and d.trace[-2].reason == "calendar 'office' is closed"
    assert kinds(decision_commands(d, "c", "ch")) == [PlayPrompt, SetVariable, ReleaseCall]


def test_holiday_is_closed() -> None:
    christmas = datetime(2025, 12, 25, 10, 0, tzinfo=UTC)
    d = decide(call(christmas), card(), NO_LIVE, EXAMPLE)
    assert d.closed and d.action == "voicemail"
    assert d.next_open == datetime(2025, 12, 29, 8, 0, tzinfo=UTC)  # 26th holiday, then a weekend


def test_did_rule_routes_the_billing_line() -> None:
    d = decide(call(did="+493090182030"), card(), NO_LIVE, EXAMPLE)
    assert (d.rule_id, d.queue, d.display_name) == ("billing-line", "billing", "Billing: Anna Ivanova")
    night = decide(call(MONDAY_22, did="+493090182030"), card(), NO_LIVE, EXAMPLE)
    assert (night.rule_id, night.action, night.mailbox) == ("billing-line", "voicemail", "billing@default")


def test_sticky_routing_to_the_assigned_agent() -> None:
    alice = card(assigned_agent="Alice", assigned_agent_id=1)
    d = decide(call(), alice, NO_LIVE, EXAMPLE)
    assert (d.rule_id, d.queue, d.priority) == ("account-manager", "sales", 3)
    assert (d.sticky_agent, d.sticky_agent_id, d.sticky_s) == ("Alice", 1, 15)
    assert d.display_name == "Ivanova A. (smb)"
    assert "assigned agent Alice rings first for 15 s" in d.trace[-1].reason
    cmds = decision_commands(d, "c", "ch", sticky_interface="PJSIP/1001")
    assert kinds(cmds) == [SetDisplayName, SetVariable, SetVariable, RouteToQueue]
    assert [(c.name, c.value) for c in cmds[1:3]] == [("CC_STICKY_AGENT", "PJSIP/1001"), ("CC_STICKY_S", "15")]  # type: ignore[attr-defined]
    # the shell could not map the agent to an interface: plain queue routing
    assert kinds(decision_commands(d, "c", "ch")) == [SetDisplayName, RouteToQueue]


def test_live_state_conditions() -> None:
    campaign = call(did="+493090182101")
    swamped = LiveState({"sales": QueueLive(logged_in=4, available=0, busy=4, waiting=6)})
    d = decide(campaign, None, swamped, EXAMPLE)
    assert (d.rule_id, d.action, d.callback_queue, d.announcement) == (
        "campaign-swamped",
        "callback",
        "sales",
        "cc/sales-busy-callback",
    )
    busy = LiveState({"sales": QueueLive(logged_in=4, available=0, busy=4, waiting=5)})
    d = decide(campaign, None, busy, EXAMPLE)
    assert (d.rule_id, d.queue) == ("campaign", "sales")
    swamped_entry = d.trace[-2]
    assert (swamped_entry.rule_id, swamped_entry.condition, swamped_entry.reason) == (
        "campaign-swamped",
        "live[0]",
        "sales: 5 waiting, the rule wants more than 5",
    )
    d = decide(campaign, None, LiveState({"sales": QueueLive(available=1, waiting=9)}), EXAMPLE)
    assert d.rule_id == "campaign" and d.trace[-2].reason == "sales: 1 available, the rule wants exactly 0"
    d = decide(campaign, None, NO_LIVE, EXAMPLE)
    assert d.rule_id == "campaign" and d.trace[-2].reason == "no live state for queue 'sales'"
    assert d.display_name == "Campaign +12025550143"


def test_lookup_failed_uses_the_fallback_and_says_so() -> None:
    d = decide(call(), card(tier="vip"), NO_LIVE, EXAMPLE, lookup_failed=True)
    assert (d.rule_id, d.fallback, d.lookup_failed, d.queue, d.tier, d.customer_id) == (
        "fallback",
        True,
        True,
        "support",
        None,
        None,
    )
    assert [t.result for t in d.trace] == ["not_evaluated"] * len(EXAMPLE.rules) + ["matched"]
    assert d.trace[-1].reason == "fallback: CRM lookup failed"
    assert decide(call(MONDAY_22), None, NO_LIVE, EXAMPLE, lookup_failed=True).action == "voicemail"


def test_new_lead_goes_to_juniors_but_a_vip_lead_never_does() -> None:
    d = decide(call(), card(stage="lead"), NO_LIVE, EXAMPLE)
    assert (d.rule_id, d.queue, d.display_name) == ("new-leads", "junior", "Lead Ivanova A.")
    assert decide(call(), card(stage="lead", tier="Vip"), NO_LIVE, EXAMPLE).queue == "vip"


# --- the tier invariant on adversarial rule sets -------------------------------------------------

ADVERSARIAL = parse_rules(
    textwrap.dedent(
        """\
        queues:
          support: {}
          junior: {forbidden_tiers: [vip]}
          gold-desk: {allowed_tiers: [gold]}
        ivr:
          menu:
            nodes:
              - id: pick
                prompt: cc/pick
                options:
                  "1": {queue: junior, priority: 2}
                  "2": {callback: gold-desk}
                on_failure: {queue: support}
        rules:
          - id: everyone-to-juniors
            then: {queue: junior, display_name: "{name_short}"}
          - id: menu-for-vips
            when: {tier: [vip]}
            then: {ivr: menu}
          - id: gold-callback
            when: {tier: [gold, standard]}
            then: {callback: gold-desk}
        fallback:
          queue: junior
          alternatives: [gold-desk, support]
        """
    ),
    "adversarial.yaml",
)


def test_a_matching_rule_whose_queue_forbids_the_tier_is_skipped_with_a_reason() -> None:
    d = decide(call(), card(tier="VIP"), NO_LIVE, ADVERSARIAL)
    assert (d.rule_id, d.action) == ("menu-for-vips", "ivr")
    skipped = d.trace[0]
    assert (skipped.rule_id, skipped.result, skipped.condition, skipped.reason) == (
        "everyone-to-juniors",
        "skipped",
        "then.queue",
        "queue 'junior': tier 'vip' is in the queue's forbidden_tiers",
    )
    assert decide(call(), card(), NO_LIVE, ADVERSARIAL).queue == "junior"
    assert decide(call(), None, NO_LIVE, ADVERSARIAL).queue == "junior"  # unknown callers are no VIPs


def test_an_ivr_choice_of_a_forbidden_queue_goes_to_the_fallback_chain() -> None:
    c = call()
    d = decide(c, card(tier="vip"), NO_LIVE, ADVERSARIAL)
    step = ivr_next(ADVERSARIAL.ivr["menu"], "pick", "1")
    final = decide_after_ivr(d, step, c, ADVERSARIAL)
    assert (final.action, final.queue, final.priority, final.rule_id) == ("queue", "support", 2, "menu-for-vips")
    assert final.trace[-1].reason == (
        "digits '1' at node 'pick': queue junior; junior: tier 'vip' is in the queue's forbidden_tiers; "
        "gold-desk: tier 'vip' is not in the queue's allowed_tiers (gold); took 'support' from the fallback chain"
    )
    cb = decide_after_ivr(d, ivr_next(ADVERSARIAL.ivr["menu"], "pick", "2"), c, ADVERSARIAL)
    assert (cb.action, cb.callback_queue) == ("callback", "support")


def test_a_callback_rule_is_tier_checked_too() -> None:
    rules = parse_rules(
        textwrap.dedent(
            """\
            timezone: Europe/Berlin
            queues: {support: {}, gold-desk: {allowed_tiers: [gold]}}
            calendars: {office: {hours: {mon: "09:00-18:00"}}}
            rules:
              - {id: callback, when: {tier: [gold, standard]}, then: {callback: gold-desk}}
              - id: closed-callback
                then: {queue: support, closed: {calendar: office, callback: gold-desk}}
            fallback: {queue: support}
            """
        ),
        "cb.yaml",
    )
    gold = decide(call(), card(tier="gold"), NO_LIVE, rules)
    assert (gold.rule_id, gold.action, gold.callback_queue) == ("callback", "callback", "gold-desk")
    standard = decide(call(), card(tier="standard"), NO_LIVE, rules)
    assert (standard.trace[0].result, standard.trace[0].condition) == ("skipped", "then.callback")
    assert (standard.rule_id, standard.queue) == ("closed-callback", "support")  # open: no callback needed
    night = decide(call(MONDAY_22), card(tier="standard"), NO_LIVE, rules)
    assert [(t.rule_id, t.result, t.condition) for t in night.trace] == [
        ("callback", "skipped", "then.callback"),
        ("closed-callback", "skipped", "then.closed.callback"),
        ("fallback", "matched", None),
    ]
    assert night.queue == "support"


def test_fallback_takes_the_first_queue_admitting_the_tier() -> None:
    rules = parse_rules(
        textwrap.dedent(
            """\
            queues:
              support: {}
              junior: {forbidden_tiers: [vip]}
              gold-desk: {allowed_tiers: [gold]}
            fallback: {queue: junior, alternatives: [gold-desk, support]}
            """
        ),
        "f.yaml",
    )
    assert decide(call(), card(tier="standard"), NO_LIVE, rules).queue == "junior"
    vip = decide(call(), card(tier="vip"), NO_LIVE, rules)
    assert vip.queue == "support"
    assert vip.trace[-1].reason == (
        "fallback: no rules; passed over junior: tier 'vip' is in the queue's forbidden_tiers; gold-desk: tier "
        "'vip' is not in the queue's allowed_tiers (gold); took 'support'"
    )
    # CRM down: the caller could be a VIP; only a queue that refuses no tier will do
    failed = decide(call(), None, NO_LIVE, rules, lookup_failed=True)
    assert failed.queue == "support"


# --- conditions ------------------------------------------------------------------------------------

CONDITIONS = parse_rules(
    textwrap.dedent(
        """\
        timezone: Europe/Berlin
        queues: {support: {}, night: {}, lunch: {}, german: {}, churn: {}, vips: {}, anon: {}, dnc: {}}
        rules:
          - {id: anon, when: {withheld: true}, then: {queue: anon, display_name: "anon {caller}"}}
          - {id: dnc, when: {do_not_call: true}, then: {queue: dnc}}
          - {id: churn, when: {tags_any: [churn-risk, Angry]}, then: {queue: churn}}
          - {id: vips, when: {tags_all: [key-account, berlin], segment: enterprise}, then: {queue: vips}}
          - {id: german, when: {language: [de, DE-at]}, then: {queue: german}}
          - {id: lunch, when: {weekdays: [mon, tue], time_of_day: "12:00-13:00"}, then: {queue: lunch}}
          - {id: night, when: {time_of_day: "22:00-06:00"}, then: {queue: night}}
        fallback: {queue: support}
        """
    ),
    "c.yaml",
)


@pytest.mark.parametrize(
    ("customer", "at", "caller", "rule"),
    [
        (None, MONDAY_10, "anonymous", "anon"),
        (card(do_not_call=True), MONDAY_10, "+12025550143", "dnc"),
        (card(tags=("ANGRY",)), MONDAY_10, "+12025550143", "churn"),
        (card(tags=("berlin", "key-account"), segment="Enterprise"), MONDAY_10, "+12025550143", "vips"),
        (card(tags=("berlin",), segment="enterprise", language="de-AT"), MONDAY_10, "+12025550143", "german"),
        (card(), datetime(2025, 6, 2, 10, 30, tzinfo=UTC), "+12025550143", "lunch"),  # 12:30 Monday
        (card(), datetime(2025, 6, 4, 10, 30, tzinfo=UTC), "+12025550143", "fallback"),  # 12:30 Wednesday
        (card(), datetime(2025, 6, 4, 23, 30, tzinfo=UTC), "+12025550143", "night"),  # 01:30 Thursday
        (card(), datetime(2025, 6, 4, 20, 0, tzinfo=UTC), "+12025550143", "night"),  # 22:00 sharp
        (card(), datetime(2025, 6, 5, 4, 0, tzinfo=UTC), "+12025550143", "fallback"),  # 06:00: the range ended
    ],
)
def test_customer_and_time_conditions(customer, at, caller, rule) -> None:
    assert decide(call(at, caller=caller), customer, NO_LIVE, CONDITIONS).rule_id == rule


def test_condition_reasons_name_the_values() -> None:
    d = decide(call(datetime(2025, 6, 4, 10, 30, tzinfo=UTC)), card(tags=("berlin",)), NO_LIVE, CONDITIONS)
    reasons = {t.rule_id: (t.condition, t.reason) for t in d.trace}
    assert reasons["anon"] == ("withheld", "the caller id is not withheld")
    assert reasons["dnc"] == ("do_not_call", "do_not_call is false")
    assert reasons["churn"] == ("tags_any", "tags [berlin] have none of churn-risk, angry")
    assert reasons["vips"] == ("segment", "segment is 'smb', the rule wants enterprise")  # segment before tags
    assert reasons["german"] == ("language", "language is 'ru', the rule wants de, de-at")
    assert reasons["lunch"] == ("weekdays", "wed is not one of mon, tue (Europe/Berlin)")
    assert reasons["night"] == ("time_of_day", "12:30 is outside 22:00-06:00 (Europe/Berlin)")
    assert d.trace[-1].reason == "fallback: no rule matched"


def test_withheld_caller_display_name_does_not_leak_the_raw_caller_id() -> None:
    d = decide(call(caller="anonymous"), None, NO_LIVE, CONDITIONS)
    assert d.display_name == "anon"


# --- display names and inputs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "short"),
    [
        ("Anna Ivanova", "Ivanova A."),
        ("  Anna   Maria  Ivanova ", "Ivanova A. M."),
        ("Ivanova, Anna Maria", "Ivanova A. M."),
        ("Jean-Pierre Dupont", "Dupont J.-P."),
        ("Cher", "Cher"),
        ("", ""),
        ("jürgen müller", "müller J."),
    ],
)
def test_short_name(name: str, short: str) -> None:
    assert short_name(name) == short


def test_display_name_rendering_is_safe() -> None:
    c = call()
    nasty = card(name="Evil\r\nAction: Originate\x00 Guy", tier="gold", segment=None)
    assert render_display_name("{tier}/{segment}/{name}", nasty, c) == "gold//EvilAction: Originate Guy"
    assert render_display_name("{{literal}} {caller}", None, c) == "{literal} +12025550143"
    assert render_display_name("{name}", card(name="x" * 200), c) == "x" * 80
    assert render_display_name("{name_short}", None, c) is None


def test_call_info() -> None:
    at = datetime(2025, 6, 2, 10, 0, tzinfo=UTC)
    assert CallInfo.from_caller("(202) 555-0143", "100", at).caller_e164 == "+12025550143"
    anon = CallInfo.from_caller("anonymous", None, at)
    assert anon.withheld and anon.caller_e164 is None
    sip = CallInfo.from_caller("sip:alice", None, at)
    assert not sip.withheld and sip.caller_e164 is None
    with pytest.raises(ValueError, match="timezone-aware"):
        CallInfo("1", None, False, None, datetime(2025, 6, 2, 10, 0))


def test_decision_to_dict_has_what_explain_promises() -> None:
    d = decide(call(), card(tier="vip"), NO_LIVE, EXAMPLE).to_dict()
    for key in ("rule", "action", "queue", "priority", "ivr_menu", "display_name", "trace", "rules_version"):
        assert key in d
    assert d["trace"] == [{"rule": "vip-direct", "result": "matched", "condition": None,
                           "reason": "all conditions hold (tier)"}]


def test_decide_is_deterministic() -> None:
    a = decide(call(), card(tier="vip"), NO_LIVE, EXAMPLE)
    b = decide(call(), card(tier="vip"), NO_LIVE, EXAMPLE)
    assert a == b
