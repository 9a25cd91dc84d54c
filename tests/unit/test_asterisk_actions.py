"""Domain commands -> AMI actions / AGI commands, checked against the SEND frames that worked
on Asterisk 22.10.1 (tests/fixtures/asterisk) and against injection."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcenter.domain.commands import (
    AddQueueMember,
    Answer,
    CollectDigits,
    HangUp,
    MoveToQueue,
    Originate,
    PauseAgent,
    PlayPrompt,
    ReleaseCall,
    RemoveQueueMember,
    RouteToQueue,
    SetDisplayName,
    SetVariable,
    StartSpy,
    StopSpy,
)
from callcenter.domain.events import SpyMode
from callcenter.pbx.asterisk.actions import (
    AgiCommand,
    AmiAction,
    DialplanNames,
    agi_quote,
    clean_text,
    originate_value,
    plan,
    spy_target,
)
from callcenter.pbx.asterisk.trace import read_trace

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "asterisk"
CALLER = "PJSIP/pstn-00000000"


def sent(scenario: str, action: str) -> list[bytes]:
    """The SEND frames of one action type in a trace, in order."""
    return [
        f.data
        for f in read_trace(FIXTURES / f"{scenario}.ami.txt")
        if f.direction == "send" and f.data.startswith(f"Action: {action}\r\n".encode())
    ]


def action_id(frame: bytes) -> str:
    return frame.split(b"ActionID: ", 1)[1].split(b"\r\n", 1)[0].decode()


def wire(step: AmiAction | AgiCommand, frame: bytes, channel: str = CALLER) -> bytes:
    action = step.as_action(channel) if isinstance(step, AgiCommand) else step
    return action.to_bytes(action_id(frame))


def agi_parse_args(s: str) -> list[str]:
    """Python port of res_agi.c parse_args(): how Asterisk splits an AGI command line."""
    argv: list[list[str]] = []
    quoted = escaped = False
    whitespace = True
    for ch in s:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and whitespace:
                argv.append([])
                whitespace = False
            escaped = False
            continue
        if ch in " \t" and not quoted and not escaped:
            whitespace = True
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if whitespace:
            argv.append([])
            whitespace = False
        argv[-1].append(ch)
        escaped = False
    return ["".join(a) for a in argv]


# -- AsyncAGI (asyncagi_ivr) -------------------------------------------------------------------
def test_asyncagi_commands_match_the_trace_byte_for_byte() -> None:
    frames = sent("asyncagi_ivr", "AGI")
    steps = [
        *plan(PlayPrompt(prompt="hello-world", command_id="c1-stream", channel=CALLER)),
        *plan(CollectDigits(prompt="hello-world", max_digits=1, timeout_ms=5000, command_id="c2-getdata")),
        # RouteToQueue's SET VARIABLEs carry derived ids; compare the commands below.
    ]
    assert [wire(s, f) for s, f in zip(steps, frames[:2], strict=True)] == frames[:2]
    route = plan(RouteToQueue(queue="sales", priority=10, command_id="c6-break"))
    display = plan(SetDisplayName(name="VIP Ivanova", command_id="c5-cidname"))
    assert [s.command for s in route] == ["SET VARIABLE CC_QUEUE sales", "SET VARIABLE CC_PRIO 10", "ASYNCAGI BREAK"]
    assert wire(display[0], frames[4]) == frames[4]  # SET VARIABLE CALLERID(name) "VIP Ivanova"
    assert wire(route[2], frames[5]) == frames[5]  # ASYNCAGI BREAK, CommandID c6-break
    # The two SET VARIABLEs carry derived ids ("<id>/queue", "<id>/prio"); with the trace's
    # CommandIDs they are the same bytes.
    for step, frame in zip(route[:2], frames[2:4], strict=True):
        assert isinstance(step, AgiCommand)
        trace_id = frame.split(b"CommandID: ", 1)[1].split(b"\r\n", 1)[0].decode()
        assert wire(AgiCommand(step.command, trace_id), frame) == frame


def test_route_to_queue_ids_end_with_the_command_id() -> None:
    steps = plan(RouteToQueue(queue="vip", priority=0, command_id="cc-7"))
    assert [s.command_id for s in steps if isinstance(s, AgiCommand)] == ["cc-7/queue", "cc-7/prio", "cc-7"]


def test_release_call_clears_the_queue_choice_and_breaks() -> None:
    frame = sent("asyncagi_no_controller", "AGI")[0]  # phase B: a bare BREAK -> default queue
    steps = plan(ReleaseCall(channel="PJSIP/pstn-00000001", command_id="b1-break"))
    assert steps[0] == AgiCommand('SET VARIABLE CC_QUEUE ""', "b1-break/queue")
    assert wire(steps[1], frame, channel="PJSIP/pstn-00000001") == frame
    assert plan(ReleaseCall(command_id="x"), lease_s=30) == plan(ReleaseCall(command_id="x"))


def test_answer_and_collect_with_node() -> None:
    assert plan(Answer(command_id="a1")) == [AgiCommand("ANSWER", "a1")]
    steps = plan(CollectDigits(prompt="ivr/menu-main", max_digits=4, timeout_ms=8000, node="main-menu", command_id="x"))
    assert steps == [
        AgiCommand("SET VARIABLE CC_NODE main-menu", "x/node"),
        AgiCommand("GET DATA ivr/menu-main 8000 4", "x"),
    ]


def test_play_prompt_with_interrupt_digits() -> None:
    assert plan(PlayPrompt(prompt="queue-thankyou", interrupt_digits="0#", command_id="p")) == [
        AgiCommand('STREAM FILE queue-thankyou "0#"', "p")
    ]


# -- AGI quoting -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        'VIP" ANSWER',
        "Ivanova\nASYNCAGI BREAK",
        'back\\slash "quoted" \\"',
        "trailing\\",
        "",
        "tab\there",
        "\r\nAction: Hangup\r\nChannel: PJSIP/1001-00000001",
    ],
)
def test_display_name_stays_one_argument_of_one_command(name: str) -> None:
    (step,) = plan(SetDisplayName(name=name, command_id="n"))
    assert isinstance(step, AgiCommand)
    assert "\n" not in step.command and "\r" not in step.command
    assert agi_parse_args(step.command) == ["SET", "VARIABLE", "CALLERID(name)", clean_text(name)]
    frame = step.as_action(CALLER).to_bytes("x")
    assert frame.count(b"\r\n") == 6  # 5 header lines + the blank line: nothing injected


@given(st.text())
def test_agi_quote_round_trips_through_res_agi_parser(value: str) -> None:
    assert agi_parse_args(f"SET VARIABLE X {agi_quote(value)}") == ["SET", "VARIABLE", "X", clean_text(value)]


def test_agi_quote_leaves_plain_words_bare() -> None:
    assert agi_quote("sales") == "sales"
    assert agi_quote("") == '""'
    assert agi_quote("VIP Ivanova") == '"VIP Ivanova"'


@pytest.mark.parametrize(
    "cmd",
    [
        PlayPrompt(prompt="hello world"),
        PlayPrompt(prompt="x", interrupt_digits="1 ANSWER"),
        CollectDigits(prompt='a"b'),
        SetVariable(name="X Y", value="1"),
        SetVariable(name="X\nANSWER", value="1"),
        RouteToQueue(queue="Sales"),
        RouteToQueue(queue="sales queue"),
        RouteToQueue(queue="s"),
    ],
)
def test_bad_identifiers_are_rejected(cmd: object) -> None:
    with pytest.raises(ValueError):
        plan(cmd, channel=CALLER)  # type: ignore[arg-type]


# -- Redirect overflow (overflow_redirect, redirect_flow) ---------------------------------------
def test_move_to_queue_matches_overflow_and_redirect_traces() -> None:
    overflow = sent("overflow_redirect", "Setvar") + sent("overflow_redirect", "Redirect")
    steps = plan(MoveToQueue(queue="support", priority=0, min_penalty=1, channel=CALLER))
    assert [s.name for s in steps if isinstance(s, AmiAction)] == ["Setvar", "Setvar", "Redirect"]
    # QUEUE_PRIO first (always set), then the two frames the overflow trace sent.
    assert [wire(s, f) for s, f in zip(steps[1:], overflow, strict=True)] == overflow
    redirect_flow = sent("redirect_flow", "Setvar")[0], sent("redirect_flow", "Redirect")[0]
    steps = plan(MoveToQueue(queue="sales", priority=5, channel=CALLER))
    assert len(steps) == 2  # no min penalty given: QUEUE_MIN_PENALTY untouched
    assert (wire(steps[0], redirect_flow[0]), wire(steps[1], redirect_flow[1])) == redirect_flow


def test_move_to_queue_uses_the_channel_argument_and_configured_context() -> None:
    steps = plan(
        MoveToQueue(queue="vip", priority=3, call_id="c"),
        channel="PJSIP/trunk-0000002a",
        names=DialplanNames(queue_context="my-queues"),
    )
    assert steps[-1] == AmiAction(
        "Redirect",
        (("Channel", "PJSIP/trunk-0000002a"), ("Context", "my-queues"), ("Exten", "vip"), ("Priority", "1")),
    )
    with pytest.raises(ValueError, match="no channel"):
        plan(MoveToQueue(queue="vip"))
    with pytest.raises(ValueError, match="channel"):
        plan(MoveToQueue(queue="vip"), channel="PJSIP/x\r\nAction: Hangup")


def test_hangup() -> None:
    assert plan(HangUp(cause=21, channel=CALLER)) == [AmiAction("Hangup", (("Channel", CALLER), ("Cause", "21")))]


# -- supervisor spy (whisper_barge) -----------------------------------------------------------
@pytest.mark.parametrize(("index", "mode"), [(0, SpyMode.WHISPER), (1, SpyMode.BARGE)])
def test_start_spy_is_the_proven_originate_plus_the_target(index: int, mode: SpyMode) -> None:
    frame = sent("whisper_barge", "Originate")[index]
    (step,) = plan(
        StartSpy(supervisor_endpoint="PJSIP/1009", target="PJSIP/1001", mode=mode),
        names=DialplanNames(spy_context="spy"),  # the lab dialplan's context name
    )
    assert isinstance(step, AmiAction)
    # Identical to what worked, with one more Variable naming whom to spy on.
    assert wire(step, frame) == frame[:-2] + b"Variable: CC_SPY_TARGET=PJSIP/1001-\r\n\r\n"


def test_start_spy_defaults_and_listen() -> None:
    (step,) = plan(StartSpy(supervisor_endpoint="PJSIP/1009", target="PJSIP/1001-0000002b", mode=SpyMode.LISTEN))
    assert isinstance(step, AmiAction)
    assert step.header("Context") == "cc-spy"
    assert step.header("Exten") == "listen"
    assert [v for k, v in step.headers if k == "Variable"] == [
        "CC_SPY_MODE=listen",
        "CC_SUPERVISOR=1009",
        "CC_SPY_TARGET=PJSIP/1001-0000002b",  # a channel name: exact, no extra dash
    ]


def test_spy_target_prefix() -> None:
    # ChanSpy matches by name prefix: PJSIP/1001 alone would also catch PJSIP/10010-...
    assert spy_target("PJSIP/1001") == "PJSIP/1001-"
    assert spy_target("PJSIP/agent-alice") == "PJSIP/agent-alice-"
    assert spy_target("PJSIP/1001-00000001") == "PJSIP/1001-00000001"


def test_stop_spy_matches_the_trace() -> None:
    frames = sent("whisper_barge", "Hangup")
    step = plan(StopSpy(spyer_channel="PJSIP/1009-00000002"))[0]
    assert wire(step, frames[0]) == frames[0]


# -- queue members (queue_pause_reason, status_queries) ----------------------------------------
def test_queue_member_actions_match_the_traces() -> None:
    pauses = sent("status_queries", "QueuePause")
    cases: list[tuple[object, bytes]] = [
        (PauseAgent(agent="PJSIP/1002", paused=True, reason="lunch"), pauses[0]),
        (PauseAgent(agent="PJSIP/1002", paused=False), pauses[1]),
        (PauseAgent(agent="PJSIP/1001", paused=True, reason="after-call-work", queue="sales"), pauses[2]),
        (PauseAgent(agent="PJSIP/1001", paused=False, queue="sales"), pauses[3]),
        (
            AddQueueMember(queue="sales", agent="PJSIP/1003", member_name="Carol", penalty=2),
            sent("queue_pause_reason", "QueueAdd")[0],
        ),
        (
            AddQueueMember(queue="support", agent="PJSIP/1003", member_name="Carol", penalty=1),
            sent("overflow_redirect", "QueueAdd")[0],
        ),
        (RemoveQueueMember(queue="sales", agent="PJSIP/1003"), sent("queue_pause_reason", "QueueRemove")[0]),
    ]
    for cmd, frame in cases:
        (step,) = plan(cmd)  # type: ignore[arg-type]
        assert wire(step, frame) == frame, cmd


def test_pause_reason_cannot_inject_headers() -> None:
    (step,) = plan(PauseAgent(agent="PJSIP/1001", paused=True, reason="lunch\r\nAction: Hangup"))
    assert isinstance(step, AmiAction)
    assert step.header("Reason") == "lunch  Action: Hangup"
    with pytest.raises(ValueError):
        plan(PauseAgent(agent="PJSIP/1001\r\nAction: Hangup", paused=True))


# -- Originate ---------------------------------------------------------------------------------
def test_originate() -> None:
    cmd = Originate(
        endpoint="PJSIP/1001",
        destination="cc-callback,s",
        caller_id='"Callback" <5550100>',
        timeout_s=25,
        variables=(("CC_CALLBACK_NUMBER", "2025550143"), ("CC_NOTE", "a,b (c)")),
    )
    (step,) = plan(cmd)
    assert step == AmiAction(
        "Originate",
        (
            ("Channel", "PJSIP/1001"),
            ("Context", "cc-callback"),
            ("Exten", "s"),
            ("Priority", "1"),
            ("CallerID", '"Callback" <5550100>'),
            ("Timeout", "25000"),
            ("Async", "true"),
            ("Variable", "CC_CALLBACK_NUMBER=2025550143"),
            ("Variable", "CC_NOTE=a\\,b \\(c\\)"),
        ),
    )
    with pytest.raises(ValueError):
        plan(Originate(endpoint="PJSIP/1001", destination="nocomma"))
    with pytest.raises(ValueError):
        plan(Originate(endpoint="PJSIP/1001", destination="ctx,s,one"))


def test_originate_value_escapes_manager_argument_syntax() -> None:
    assert originate_value('x,y"z\\[1](2)\n') == 'x\\,y\\"z\\\\\\[1\\]\\(2\\) '


# -- fail-open lease ---------------------------------------------------------------------------
def test_lease_renews_the_fail_open_guard_before_agi_commands() -> None:
    steps = plan(CollectDigits(prompt="menu", timeout_ms=7500, command_id="g"), lease_s=30)
    assert steps == [
        AgiCommand("SET VARIABLE TIMEOUT(absolute) 38", "g/lease"),  # 30 s + the 7.5 s wait, rounded up
        AgiCommand("GET DATA menu 7500 1", "g"),
    ]
    assert plan(PlayPrompt(prompt="hello-world", command_id="p"), lease_s=30)[0] == AgiCommand(
        "SET VARIABLE TIMEOUT(absolute) 30", "p/lease"
    )
    # ASYNCAGI BREAK hands the call back to the dialplan, which clears the timeout itself;
    # AMI-only plans never touch it ([cc-queue] clears it on entry).
    assert plan(RouteToQueue(queue="sales", command_id="r"), lease_s=30) == plan(
        RouteToQueue(queue="sales", command_id="r")
    )
    assert plan(HangUp(channel=CALLER, command_id="h"), lease_s=30) == plan(HangUp(channel=CALLER, command_id="h"))
