"""IVR stepping: options, timeouts, invalid input, retries, commands."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter.domain.commands import CollectDigits, HangUp, PlayPrompt
from callcenter.routing.ivr import (
    IvrCallback,
    IvrCollect,
    IvrHangup,
    IvrInvalid,
    IvrQueue,
    IvrVoicemail,
    ivr_commands,
    ivr_next,
    ivr_start,
)
from callcenter.routing.loader import load_rules, parse_rules

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "routing.example.yaml"
MAIN = load_rules(EXAMPLE).ivr["main"]

OTHER = parse_rules(
    textwrap.dedent(
        """\
        queues: {support: {}}
        ivr:
          account:
            nodes:
              - id: account-number
                prompt: cc/enter-account
                max_digits: 3
                timeout_s: 8.5
                retries: 0
                options:
                  "123": {queue: support, priority: 7}
                  "999": {voicemail: 100@default, prompt: cc/leave-message}
                  "#": {hangup: true, prompt: cc/goodbye}
                on_failure: {hangup: true}
        fallback: {queue: support}
        """
    ),
    "other.yaml",
).ivr["account"]


def test_start_collects_at_the_start_node() -> None:
    assert ivr_start(MAIN) == IvrCollect("main-menu", "cc/main-menu", 1, 5.0, 0, None)


def test_options_lead_to_queues_nodes_callbacks() -> None:
    assert ivr_next(MAIN, "main-menu", "1") == IvrQueue("main-menu", "sales", 0, None, "1", "option")
    assert ivr_next(MAIN, "main-menu", "3") == IvrQueue("main-menu", "billing", 0, None, "3", "option")
    assert ivr_next(MAIN, "main-menu", "0") == IvrQueue("main-menu", "support", 5, "cc/connecting", "0", "option")
    assert ivr_next(MAIN, "main-menu", "9") == IvrCallback(
        "main-menu", "support", None, "9", "option"  # the callback dialog asks the rest
    )
    assert ivr_next(MAIN, "main-menu", "2") == IvrCollect("support-menu", "cc/support-menu", 1, 5.0, 0, None)
    assert ivr_next(MAIN, "support-menu", "*") == IvrCollect("main-menu", "cc/main-menu", 1, 5.0, 0, None)
    assert ivr_next(MAIN, "support-menu", "2") == IvrQueue("support-menu", "support", 3, None, "2", "option")


def test_invalid_input_replays_with_the_invalid_prompt_and_counts_a_try() -> None:
    step = ivr_next(MAIN, "main-menu", "7")
    assert step == IvrInvalid(
        "main-menu", "invalid", "cc/invalid-option", "7", IvrCollect("main-menu", "cc/main-menu", 1, 5.0, 1)
    )


def test_timeout_replays_with_the_timeout_prompt() -> None:
    for nothing in (None, ""):
        step = ivr_next(MAIN, "main-menu", nothing, tries=1)
        assert step == IvrInvalid(
            "main-menu", "timeout", "cc/please-choose", None, IvrCollect("main-menu", "cc/main-menu", 1, 5.0, 2)
        )


def test_retries_used_up_take_on_failure() -> None:
    # retries: 2 -> three attempts; the third failure goes to on_failure
    first = ivr_next(MAIN, "main-menu", None, 0)
    assert isinstance(first, IvrInvalid) and first.next.tries == 1
    second = ivr_next(MAIN, "main-menu", "8", first.next.tries)
    assert isinstance(second, IvrInvalid) and second.next.tries == 2
    third = ivr_next(MAIN, "main-menu", None, second.next.tries)
    assert third == IvrQueue("main-menu", "support", 0, "cc/connecting", None, "failure")


def test_a_node_without_prompts_for_errors_just_replays() -> None:
    step = ivr_next(MAIN, "support-menu", "5")
    assert isinstance(step, IvrInvalid) and step.prompt is None and step.next.node == "support-menu"


def test_no_retries_and_multi_digit_options() -> None:
    assert ivr_start(OTHER) == IvrCollect("account-number", "cc/enter-account", 3, 8.5, 0)
    assert ivr_next(OTHER, "account-number", "123") == IvrQueue("account-number", "support", 7, None, "123", "option")
    assert ivr_next(OTHER, "account-number", "999") == IvrVoicemail(
        "account-number", "100@default", "cc/leave-message", "999", "option"
    )
    assert ivr_next(OTHER, "account-number", "#") == IvrHangup("account-number", "cc/goodbye", "#", "option")
    assert ivr_next(OTHER, "account-number", "12") == IvrHangup("account-number", None, "12", "failure")
    assert ivr_next(OTHER, "account-number", None, tries=-3) == IvrHangup("account-number", None, None, "failure")


def test_unknown_node_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no IVR node 'gone' in this menu"):
        ivr_next(MAIN, "gone", "1")


def test_commands_for_collect_invalid_and_hangup() -> None:
    [collect] = ivr_commands(ivr_start(MAIN), "call-1", "PJSIP/trunk-1")
    assert isinstance(collect, CollectDigits)
    assert (collect.prompt, collect.max_digits, collect.timeout_ms) == ("cc/main-menu", 1, 5000)
    assert collect.node == "main-menu"  # the journey's ivr_node, what the abandon report names
    assert (collect.call_id, collect.channel) == ("call-1", "PJSIP/trunk-1")

    replay = ivr_commands(ivr_next(MAIN, "main-menu", "7"), "call-1", "ch")
    assert [type(c) for c in replay] == [PlayPrompt, CollectDigits]
    assert replay[0].prompt == "cc/invalid-option"  # type: ignore[attr-defined]

    silent = ivr_commands(ivr_next(MAIN, "support-menu", "5"), "call-1", "ch")
    assert [type(c) for c in silent] == [CollectDigits]

    bye = ivr_commands(IvrHangup("account-number", "cc/goodbye", "#", "option"), "call-1", "ch")
    assert [type(c) for c in bye] == [PlayPrompt, HangUp]

    announced = IvrCollect("support-menu", "cc/support-menu", 1, 5.0, 0, "cc/one-moment")
    cmds = ivr_commands(announced, "call-1", "ch")
    assert [type(c) for c in cmds] == [PlayPrompt, CollectDigits]
    assert cmds[0].prompt == "cc/one-moment"  # type: ignore[attr-defined]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(alphabet="0123456789*#", max_size=3)), max_size=30))
def test_any_input_sequence_steps_safely(inputs: list[str | None]) -> None:
    """Whatever the caller does: never an exception, tries never pass the node's retries, and
    the caller leaves the menu after at most retries + 1 failures in a row at one node."""
    step = ivr_start(MAIN)
    failures_in_a_row = 0
    for digits in inputs:
        assert isinstance(step, IvrCollect)
        node = MAIN.node(step.node)
        assert node is not None and 0 <= step.tries <= node.retries
        nxt = ivr_next(MAIN, step.node, digits, step.tries)
        if isinstance(nxt, IvrInvalid):
            failures_in_a_row += 1
            assert failures_in_a_row <= node.retries
            step = nxt.next
        elif isinstance(nxt, IvrCollect):
            failures_in_a_row = 0
            step = nxt
        else:
            assert isinstance(nxt, IvrQueue | IvrCallback | IvrVoicemail | IvrHangup)
            return
