"""Taking a callback request on the phone (pure dialog) and how the rules decide to offer one
or to survey a call."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter.callbacks.dialog import (
    Ask,
    Declined,
    Failed,
    Filed,
    ask_commands,
    dialog_next,
    dialog_start,
    filed_commands,
    offer_start,
)
from callcenter.crm.repository import CustomerCard
from callcenter.domain.commands import CollectDigits, HangUp, PlayPrompt, RouteToQueue, SetVariable
from callcenter.routing.decide import CallInfo, LiveState, QueueLive, decide, decide_after_ivr, decision_commands
from callcenter.routing.ivr import IvrQueue
from callcenter.routing.loader import parse_rules
from callcenter.routing.rules import CallbackDialog
from callcenter.yamlconf import ConfigError

CALLER = "+12025550143"
TOPICS = CallbackDialog(topic_prompt="cc/callback-topics", topics={"1": "billing", "2": "technical"})
PLAIN = CallbackDialog()


def normalise(digits: str) -> str | None:
    """Stand-in for E.164 validation in region US: 10 digits."""
    return f"+1{digits}" if digits.isdigit() and len(digits) == 10 else None


def run(dialog: CallbackDialog, first: Ask, keys: list[str | None], *, offered: bool = False,
        hang_up_at: int | None = None):
    step = first
    seen: list[Ask] = []
    for i in range(50):
        if not isinstance(step, Ask):
            return step, seen
        seen.append(step)
        digits = keys[i] if i < len(keys) else None
        step = dialog_next(step, digits, dialog, normalise, hung_up=hang_up_at == i, offered=offered)
    raise AssertionError("the dialog did not end")


# --- the dialog --------------------------------------------------------------------------------------


def test_confirming_the_caller_id_files_it() -> None:
    end, seen = run(PLAIN, dialog_start(PLAIN, CALLER), ["1"])
    assert end == Filed(CALLER, None, True)
    assert [s.stage for s in seen] == ["confirm"]


def test_another_number_is_keyed_and_validated_then_a_topic_is_picked() -> None:
    end, seen = run(TOPICS, dialog_start(TOPICS, CALLER), ["2", "123#", "2025550199#", "2"])
    assert end == Filed("+12025550199", "technical", True)
    assert [s.stage for s in seen] == ["confirm", "number", "number", "topic"]
    assert seen[2].before == TOPICS.invalid_number_prompt  # told the first number was not valid


def test_withheld_caller_is_asked_for_a_number_straight_away() -> None:
    first = dialog_start(PLAIN, None)
    assert first.stage == "number" and first.max_digits == PLAIN.max_number_digits
    end, _ = run(PLAIN, first, ["2025550199"])
    assert end == Filed("+12025550199", None, True)


def test_withheld_caller_who_keys_nothing_valid_is_not_filed() -> None:
    end, seen = run(PLAIN, dialog_start(PLAIN, None), ["1", None, "99"])
    assert isinstance(end, Failed)
    assert len(seen) == PLAIN.retries + 1


def test_silence_at_the_confirmation_files_the_caller_id_unconfirmed() -> None:
    end, seen = run(PLAIN, dialog_start(PLAIN, CALLER), [None, None, None])
    assert end == Filed(CALLER, None, False)
    assert len(seen) == PLAIN.retries + 1


def test_a_topic_is_never_a_reason_to_lose_the_request() -> None:
    end, _ = run(TOPICS, dialog_start(TOPICS, CALLER), ["1", "7", None, "9"])
    assert end == Filed(CALLER, None, True)


def test_hang_up_after_asking_keeps_the_request_with_the_best_number() -> None:
    end, _ = run(TOPICS, dialog_start(TOPICS, CALLER), ["2", "2025550199"], hang_up_at=2)
    assert end == Filed("+12025550199", None, True)  # hung up while picking the topic
    end, _ = run(PLAIN, dialog_start(PLAIN, CALLER), [], hang_up_at=0)
    assert end == Filed(CALLER, None, False)
    end, _ = run(PLAIN, dialog_start(PLAIN, None), [], hang_up_at=0)
    assert isinstance(end, Failed)


def test_offer_accepted_declined_or_ignored() -> None:
    offer = offer_start("cc/callback-offer", "1", 5000, CALLER)
    end, seen = run(PLAIN, offer, ["1", "1"], offered=True)
    assert end == Filed(CALLER, None, True) and [s.stage for s in seen] == ["offer", "confirm"]
    assert isinstance(run(PLAIN, offer, ["2"], offered=True)[0], Declined)
    assert isinstance(run(PLAIN, offer, [None], offered=True)[0], Declined)
    assert isinstance(run(PLAIN, offer, [], offered=True, hang_up_at=0)[0], Declined)
    # accepted, but no valid number keyed: back to the queue rather than lost
    end, _ = run(PLAIN, offer, ["1", "2", None, "5", None], offered=True)
    assert isinstance(end, Declined)


def test_commands() -> None:
    ask = dialog_start(PLAIN, CALLER)
    (only,) = ask_commands(ask, "c1", "ch")
    assert isinstance(only, CollectDigits)
    assert (only.prompt, only.max_digits, only.timeout_ms, only.call_id, only.channel) == (
        PLAIN.confirm_prompt, 1, 6000, "c1", "ch")
    again = dialog_next(dialog_next(ask, "2", PLAIN, normalise), "12", PLAIN, normalise)
    assert isinstance(again, Ask)
    cmds = ask_commands(again, "c1", "ch")
    assert [type(c) for c in cmds] == [PlayPrompt, CollectDigits]
    assert all(c.node is None for c in cmds if isinstance(c, CollectDigits))  # not an IVR node
    out = filed_commands(PLAIN, "sales", "c1", "ch")
    assert [type(c) for c in out] == [PlayPrompt, SetVariable, HangUp]
    assert out[1].name == "CC_CALLBACK" and out[1].value == "sales"


@settings(max_examples=300, deadline=None)
@given(
    keys=st.lists(st.one_of(st.none(), st.sampled_from(["1", "2", "9", "#", "2025550199", "12", "*"])), max_size=12),
    caller=st.sampled_from([CALLER, None]),
    offered=st.booleans(),
    topics=st.booleans(),
    hang_up_at=st.one_of(st.none(), st.integers(0, 12)),
)
def test_every_dialog_ends_and_never_files_an_invalid_number(keys, caller, offered, topics, hang_up_at) -> None:
    dialog = TOPICS if topics else PLAIN
    first = offer_start("cc/offer", "1", 5000, caller) if offered else dialog_start(dialog, caller)
    end, seen = run(dialog, first, keys, offered=offered, hang_up_at=hang_up_at)
    assert len(seen) <= 1 + 3 * (dialog.retries + 1)
    if isinstance(end, Filed):
        assert end.phone in (CALLER, "+12025550199")
        assert end.topic in (None, "billing", "technical")
    if isinstance(end, Declined):
        assert offered  # only an offer can be declined
    if isinstance(end, Failed):
        assert caller is None


# --- rules: survey per queue or rule, the callback offer ---------------------------------------------

RULES = textwrap.dedent("""
    version: t
    timezone: UTC
    queues:
      sales:
        survey: true
        callback_offer: {estimated_wait_s_over: 120, prompt: cc/callback-offer}
      support: {}
      vip: {allowed_tiers: [vip], callback_offer: {estimated_wait_s_over: 30}}
    ivr:
      main:
        nodes:
          - id: menu
            prompt: cc/main-menu
            options:
              "1": {queue: sales}
              "2": {queue: support}
            on_failure: {queue: support}
    callback:
      topic_prompt: cc/callback-topics
      topics: {"1": billing}
    rules:
      - {id: vip, when: {tier: [vip]}, then: {queue: vip}}
      - {id: support-surveyed, when: {did: ["5550111"]}, then: {queue: support, survey: true}}
      - {id: sales-unsurveyed, when: {did: ["5550112"]}, then: {queue: sales, survey: false}}
      - {id: menu, when: {did: ["5550113"]}, then: {ivr: main, survey: true}}
    fallback: {id: fallback, queue: sales}
""")
AT = datetime(2025, 6, 2, 8, 0, tzinfo=UTC)


def _live(**ewt: float) -> LiveState:
    return LiveState({q: QueueLive(1, 0, 1, 0, 3, 10.0, s) for q, s in ewt.items()})


def _call(did: str) -> CallInfo:
    return CallInfo.from_caller(CALLER, did, AT, pbx="a1", pbx_type="asterisk")


def _vip() -> CustomerCard:
    return CustomerCard(id=1, name="Anna Ivanova", tier="vip", segment=None, language=None, tags=(),
                        assigned_agent_id=None, assigned_agent=None, stage=None, notes=None, do_not_call=False,
                        phones=())


def test_survey_comes_from_the_queue_unless_the_rule_says_otherwise() -> None:
    rules = parse_rules(RULES, "t.yaml")
    assert decide(_call("5550199"), None, _live(), rules).survey is True  # fallback -> sales (survey: true)
    assert decide(_call("5550111"), None, _live(), rules).survey is True  # rule override on support
    assert decide(_call("5550112"), None, _live(), rules).survey is False  # rule override on sales
    d = decide(_call("5550111"), None, _live(), rules)
    cmds = decision_commands(d, "c1", "ch")
    assert [type(c) for c in cmds] == [SetVariable, RouteToQueue]
    assert (cmds[0].name, cmds[0].value) == ("CC_SURVEY", "1")
    plain = decision_commands(decide(_call("5550112"), None, _live(), rules), "c1", "ch")
    assert [type(c) for c in plain] == [RouteToQueue]


def test_ivr_exit_takes_the_survey_setting_of_the_rule_that_sent_the_caller() -> None:
    rules = parse_rules(RULES, "t.yaml")
    d = decide(_call("5550113"), None, _live(), rules)
    final = decide_after_ivr(d, IvrQueue("menu", "support", 0, None, "2", "option"), _call("5550113"), rules)
    assert final.queue == "support" and final.survey is True


def test_callback_offer_only_over_the_threshold() -> None:
    rules = parse_rules(RULES, "t.yaml")
    assert decide(_call("5550199"), None, _live(sales=100.0), rules).callback_offer is None
    d = decide(_call("5550199"), None, _live(sales=300.0), rules)
    assert d.callback_offer is not None
    assert (d.callback_offer.queue, d.callback_offer.estimated_wait_s, d.callback_offer.prompt) == (
        "sales", 300.0, "cc/callback-offer")
    assert "callback from 'sales' is offered" in d.trace[-1].reason
    assert d.to_dict()["callback_offer"]["queue"] == "sales"
    assert isinstance(decision_commands(d, "c", "ch")[-1], RouteToQueue)  # the shell plays the offer before it
    # after the IVR, with the live state at the exit
    ivr = decide(_call("5550113"), None, _live(), rules)
    final = decide_after_ivr(ivr, IvrQueue("menu", "sales", 0, None, "1", "option"), _call("5550113"), rules,
                             _live(sales=500.0))
    assert final.callback_offer is not None and final.callback_offer.queue == "sales"


def test_vip_offer_keeps_the_tier_invariant() -> None:
    rules = parse_rules(RULES, "t.yaml")
    d = decide(_call("5550199"), _vip(), _live(vip=60.0), rules)
    assert d.queue == "vip" and d.callback_offer is not None and d.callback_offer.queue == "vip"


@pytest.mark.parametrize(("snippet", "message"), [
    ("callback: {topics: {'1': billing}}", "topics need a topic_prompt"),
    ("callback: {confirm_key: '1', other_key: '1'}", "confirm_key and other_key must differ"),
])
def test_bad_dialog_settings_are_refused(snippet: str, message: str) -> None:
    text = "queues: {sales: {}}\nfallback: {queue: sales}\n" + snippet + "\n"
    with pytest.raises(ConfigError, match=message):
        parse_rules(text, "t.yaml")


def test_offer_from_a_queue_that_refuses_the_callers_is_refused() -> None:
    text = textwrap.dedent("""
        queues:
          sales: {callback_offer: {estimated_wait_s_over: 60, queue: vip}}
          vip: {allowed_tiers: [vip]}
          nowhere: {callback_offer: {estimated_wait_s_over: 60, queue: missing}}
        fallback: {queue: sales}
    """)
    with pytest.raises(ConfigError) as err:
        parse_rules(text, "t.yaml")
    msgs = str(err.value)
    assert "queues.sales.callback_offer.queue" in msgs and "refuses unknown callers" in msgs
    assert "queues.nowhere.callback_offer.queue" in msgs and "unknown queue 'missing'" in msgs
