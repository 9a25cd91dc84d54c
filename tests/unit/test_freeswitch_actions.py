"""Domain commands -> ESL commands: the shapes the FreeSWITCH traces prove, and injection safety.

The lab dialplan of the traces names its queue extensions ``queue_<name>`` in context
``public``; with those names (``LAB``) the planned commands must equal, byte for byte, the
commands the capture driver SENT (tests/fixtures/freeswitch/*.esl.txt).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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
from callcenter.pbx.freeswitch.actions import (
    DEFAULT_NAMES,
    Api,
    DialplanNames,
    Execute,
    cause_name,
    clean_text,
    plan,
    queue_extension,
)
from tests.replay._esl import read_frames

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "freeswitch"
LAB = DialplanNames(context="public", queue_prefix="queue_", invalid_prompt="tone_stream://%(200,0,400)")
U = "2fcc1294-e632-4ebe-9bee-e3a33ed7346e"
SUP = "e8487226-4657-41e3-b62b-c182b6056711"


def sent(scenario: str) -> list[str]:
    frames = read_frames(FIXTURES / f"{scenario}.esl.txt")
    return [f.data.decode().rstrip("\n") for f in frames if f.direction == "send"]


def sent_line(scenario: str, prefix: str) -> str:
    lines = [s for s in sent(scenario) if s.startswith(prefix)]
    assert len(lines) == 1, (prefix, lines)
    return lines[0]


def as_wire(step: Api) -> str:
    return ("bgapi " if step.background else "api ") + step.command


def _uuid_of(line: str) -> str:
    found = re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", line)
    assert found
    return found.group(0)


# -- what the traces proved ----------------------------------------------------------------------


def test_route_to_queue_transfers_like_park_controller_flow() -> None:
    line = sent_line("park_controller_flow", "api uuid_transfer")
    uuid = _uuid_of(line)
    steps = plan(RouteToQueue(queue="sales@default", priority=0), uuid=uuid, names=LAB)
    assert isinstance(steps[-1], Api) and as_wire(steps[-1]) == line
    # the score goes first, on the parked channel (sendmsg_ivr: set before the transfer)
    assert steps[0] == Execute(uuid, "set", "cc_base_score=0")


def test_move_to_queue_transfers_like_overflow_transfer() -> None:
    line = sent_line("overflow_transfer", "api uuid_transfer")
    uuid = _uuid_of(line)
    steps = plan(MoveToQueue(queue="support", priority=1), uuid=uuid, names=LAB)
    assert [as_wire(s) for s in steps if isinstance(s, Api)] == [
        f"api uuid_setvar {uuid} cc_base_score 3600",  # uuid_setvar was accepted (park_controller_flow)
        line,
    ]
    # no sendmsg: the member sits in mod_callcenter's wait loop, which flushes private events
    assert not any(isinstance(s, Execute) for s in steps)


def test_hang_up_is_uuid_kill_with_the_cause_name() -> None:
    line = sent_line("park_controller_flow", "api uuid_kill")
    uuid = _uuid_of(line)
    assert [as_wire(s) for s in plan(HangUp(), uuid=uuid) if isinstance(s, Api)] == [line]
    assert cause_name(17) == "USER_BUSY" and cause_name(999) == "NORMAL_CLEARING"


def test_collect_digits_is_the_sendmsg_of_sendmsg_ivr() -> None:
    frame = next(s for s in sent("sendmsg_ivr") if "play_and_get_digits" in s)
    head, *headers = frame.split("\n")
    fields = dict(h.split(": ", 1) for h in headers)
    steps = plan(CollectDigits(prompt="tone_stream://%(200,0,800)", max_digits=1, timeout_ms=5000),
                 uuid=head.split()[1], names=LAB)
    assert steps == [
        Execute(head.split()[1], fields["execute-app-name"], fields["execute-app-arg"], event_lock=True)
    ]
    assert fields["call-command"] == "execute" and fields["event-lock"] == "true"


def test_set_variable_is_the_queued_set_of_sendmsg_ivr() -> None:
    frame = next(s for s in sent("sendmsg_ivr") if "execute-app-name: set" in s)
    head, *headers = frame.split("\n")
    fields = dict(h.split(": ", 1) for h in headers)
    name, _, value = fields["execute-app-arg"].partition("=")
    assert plan(SetVariable(name=name, value=value), uuid=head.split()[1]) == [
        Execute(head.split()[1], "set", fields["execute-app-arg"])
    ]


def test_pause_and_unpause_as_api_replies_and_agent_status_break() -> None:
    assert as_wire(plan(PauseAgent(agent="1001", paused=True))[0]) in sent("api_replies")  # type: ignore[arg-type]
    assert as_wire(plan(PauseAgent(agent="1001", paused=False))[0]) in sent("api_replies")  # type: ignore[arg-type]
    # unquoted 'On Break' was refused (-ERR Invalid Agent Status!): the planned one is quoted
    assert plan(PauseAgent(agent="1002", paused=True))[0] == Api("callcenter_config agent set status 1002 'On Break'")


def test_add_queue_member_is_the_tier_add_of_overflow_transfer() -> None:
    line = sent_line("overflow_transfer", "api callcenter_config tier add")
    step = plan(AddQueueMember(queue="support@default", agent="1003", penalty=0))[0]
    assert isinstance(step, Api) and as_wire(step) == line
    # the domain is added when the queue is given by its short name
    assert plan(AddQueueMember(queue="support", agent="1003", penalty=2))[0] == Api(
        "callcenter_config tier add support@default 1003 2 1"
    )
    assert plan(RemoveQueueMember(queue="support", agent="1003"))[0] == Api(
        "callcenter_config tier del support@default 1003"
    )


def _vars(command: str) -> tuple[dict[str, str], str]:
    m = re.match(r"^originate \{(?P<vars>[^}]*)\}(?P<rest>.*)$", command)
    assert m, command
    return dict(v.split("=", 1) for v in m.group("vars").split(",")), m.group("rest")


def test_whisper_is_eavesdrop_on_the_caller_with_whisper_aleg_like_whisper_barge() -> None:
    line = sent_line("whisper_barge", "bgapi originate")
    lab_vars, lab_rest = _vars(line.removeprefix("bgapi "))
    caller = re.search(r"eavesdrop\(([^)]+)\)", lab_rest).group(1)  # type: ignore[union-attr]
    step = plan(
        StartSpy(supervisor_endpoint="sofia/internal/1009@127.0.0.1:5189", target="1001", mode=SpyMode.WHISPER),
        spy_uuid=caller,
        leg_uuid=lab_vars["origination_uuid"],
    )[0]
    assert isinstance(step, Api) and step.background
    got_vars, rest = _vars(step.command)
    assert rest == lab_rest  # same endpoint, &eavesdrop(<caller uuid>)
    for key in ("origination_uuid", "origination_caller_id_number", "origination_caller_id_name",
                "eavesdrop_whisper_aleg", "eavesdrop_whisper_bleg"):
        assert got_vars[key] == lab_vars[key], key
    # the lab left DTMF mode keys on; the controller locks the mode it was asked for
    assert got_vars["eavesdrop_enable_dtmf"] == "false"
    assert got_vars["cc_spy_mode"] == "whisper"


@pytest.mark.parametrize(
    ("mode", "app", "aleg"),
    [
        (SpyMode.LISTEN, "eavesdrop", "false"),
        (SpyMode.WHISPER, "eavesdrop", "true"),
        (SpyMode.BARGE, "three_way", "false"),
    ],
)
def test_spy_modes(mode: SpyMode, app: str, aleg: str) -> None:
    step = plan(StartSpy(supervisor_endpoint="user/1009@default", target=U, mode=mode))[0]
    assert isinstance(step, Api)
    got, rest = _vars(step.command)
    assert rest == f"user/1009@default &{app}({U})"  # whisper_audio: &three_way(<uuid>) in an originate
    assert got["eavesdrop_whisper_aleg"] == aleg and got["eavesdrop_whisper_bleg"] == "false"
    assert got["origination_caller_id_number"] == "1009"


def test_spy_needs_the_callers_uuid() -> None:
    with pytest.raises(ValueError, match="no call to spy on"):
        plan(StartSpy(supervisor_endpoint="user/1009", target="1001", mode=SpyMode.LISTEN))
    assert plan(StopSpy(spyer_channel=SUP)) == [Api(f"uuid_kill {SUP} NORMAL_CLEARING")]


# -- the shipped dialplan's names ----------------------------------------------------------------


def test_default_names_match_the_shipped_dialplan() -> None:
    steps = plan(RouteToQueue(queue="vip@default", priority=3), uuid=U)
    assert steps == [Execute(U, "set", "cc_base_score=10800"), Api(f"uuid_transfer {U} cc_queue_vip XML callcenter")]
    assert plan(ReleaseCall(), uuid=U) == [Api(f"uuid_transfer {U} cc_default XML callcenter")]
    assert queue_extension("sales") == queue_extension("sales@default") == "cc_queue_sales"


def test_a_higher_priority_gets_a_higher_score() -> None:
    def score(p: int) -> int:
        step = plan(RouteToQueue(queue="sales", priority=p), uuid=U)[0]
        assert isinstance(step, Execute) and step.arg is not None
        return int(step.arg.split("=")[1])

    # mod_callcenter serves the highest (waited s + base_score) first
    assert score(0) < score(1) < score(5)
    assert score(1) - score(0) == DEFAULT_NAMES.priority_step_s
    assert score(-3) == 0


def test_media_commands_run_on_the_parked_channel() -> None:
    assert plan(Answer(), uuid=U) == [Execute(U, "answer")]
    assert plan(PlayPrompt(prompt="ivr/welcome.wav"), uuid=U) == [
        Execute(U, "set", "playback_terminators=none"),
        Execute(U, "playback", "ivr/welcome.wav"),
    ]
    assert plan(PlayPrompt(prompt="ivr/menu.wav", interrupt_digits="12#"), uuid=U)[0] == Execute(
        U, "set", "playback_terminators=12#"
    )
    steps = plan(CollectDigits(prompt="ivr/menu.wav", max_digits=4, timeout_ms=8000, node="main-menu"), uuid=U)
    assert steps == [
        Execute(U, "set", "CC_NODE=main-menu"),  # the translator turns it into IvrNodeEntered
        Execute(U, "play_and_get_digits", "1 4 1 8000 # ivr/menu.wav silence_stream://250 cc_digit \\d+ 3000"),
    ]
    assert plan(SetDisplayName(name="VIP Ivanova A."), uuid=U) == [
        Execute(U, "set", "effective_caller_id_name=VIP Ivanova A.")
    ]


def test_channel_comes_from_the_command_when_not_given() -> None:
    assert plan(Answer(channel=U)) == [Execute(U, "answer")]
    with pytest.raises(ValueError, match="UUID"):
        plan(Answer())


def test_fail_open_lease_is_renewed_before_applications() -> None:
    steps = plan(CollectDigits(prompt="ivr/menu.wav", timeout_ms=5000), uuid=U, lease_s=30)
    assert steps[:2] == [Api(f"sched_del {U}"), Api(f"sched_transfer +35 {U} cc_failopen XML callcenter")]
    assert isinstance(steps[2], Execute)
    # a plan that leaves park needs none: the queue extension cancels the timer
    assert all(isinstance(s, Execute) or "sched" not in s.command
               for s in plan(RouteToQueue(queue="sales"), uuid=U, lease_s=30))
    assert plan(HangUp(), uuid=U, lease_s=30) == [Api(f"uuid_kill {U} NORMAL_CLEARING")]


def test_originate_callback() -> None:
    step = plan(
        Originate(
            endpoint="user/1001@default",
            destination="callcenter,cc_queue_sales",
            caller_id='"ACME Bank" <5550100>',
            timeout_s=25,
            variables=(("cc_callback_id", "42"),),
        ),
        leg_uuid=SUP,
    )[0]
    assert step == Api(
        "originate {origination_uuid=" + SUP + ",origination_caller_id_number=5550100,"
        "origination_caller_id_name='ACME Bank',originate_timeout=25,cc_callback_id=42}"
        "user/1001@default cc_queue_sales XML callcenter",
        background=True,
    )


# -- injection safety ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["${system(rm -rf /)}", "A\nB", 'x" y', "O'Brien", "50% off", "a\\nb", "{x=1}", "^^:x", "back`tick`"],
)
def test_free_text_cannot_expand_quote_or_break_lines(name: str) -> None:
    step = plan(SetDisplayName(name=name), uuid=U)[0]
    assert isinstance(step, Execute) and step.arg is not None
    value = step.arg.split("=", 1)[1]
    assert not set(value) & set("$'\"\\%{}^`\n\r")
    assert value == clean_text(name)


@pytest.mark.parametrize(
    "cmd",
    [
        RouteToQueue(queue="sales XML public\nuuid_kill x", channel=U),
        RouteToQueue(queue="sales@elsewhere", channel=U),  # the dialplan adds @default
        RouteToQueue(queue="Sales", channel=U),
        MoveToQueue(queue="support", channel=U, min_penalty=1),  # no such thing in mod_callcenter
        HangUp(channel="not-a-uuid"),
        HangUp(channel=U + " ; uuid_kill all"),
        SetVariable(name="x y", value="1", channel=U),
        SetVariable(name="a=b", value="1", channel=U),
        PlayPrompt(prompt="ivr/x.wav other_app", channel=U),
        PlayPrompt(prompt="${sound}", channel=U),
        PlayPrompt(prompt="ivr/x.wav", interrupt_digits="1a", channel=U),
        CollectDigits(prompt="ivr/x.wav", max_digits=0, channel=U),
        PauseAgent(agent="1001 'On Break'", paused=True),
        PauseAgent(agent="1001", paused=True, queue="sales"),  # per-queue pause does not exist
        AddQueueMember(queue="sales", agent="1001", paused=True),
        AddQueueMember(queue="sales", agent="PJSIP/1001"),
        StartSpy(supervisor_endpoint="user/1009 &hangup", target=U, mode=SpyMode.LISTEN),
        StartSpy(supervisor_endpoint="{x=1}user/1009", target=U, mode=SpyMode.LISTEN),
        StopSpy(spyer_channel="all"),
        Originate(endpoint="user/1001", destination="callcenter"),
        Originate(endpoint="user/1001", destination="callcenter,x y"),
        Originate(endpoint="user/1001", destination="a,b", variables=(("bad name", "1"),)),
    ],
)
def test_refused(cmd: object) -> None:
    with pytest.raises(ValueError):
        plan(cmd)  # type: ignore[arg-type]


def test_originate_values_cannot_add_variables_or_arguments() -> None:
    step = plan(Originate(endpoint="user/1001", destination="a,b", variables=(("note", "x,y=1 z}w"),)))[0]
    assert isinstance(step, Api)
    block = step.command.split("}", 1)[0]
    assert "note='x\\,y=1 z w'" in block  # comma escaped, space quoted, brace dropped
    assert step.command.count("}") == 1


def test_every_step_is_one_line() -> None:
    cmds = [
        Answer(channel=U),
        CollectDigits(prompt="ivr/menu.wav", node="n\r\nx", channel=U),
        SetDisplayName(name="a\r\nb", channel=U),
        RouteToQueue(queue="sales", channel=U),
        StartSpy(supervisor_endpoint="user/1009", target=U, mode=SpyMode.BARGE),
    ]
    for cmd in cmds:
        for step in plan(cmd, lease_s=10):
            text = step.command if isinstance(step, Api) else f"{step.uuid} {step.app} {step.arg}"
            assert "\n" not in text and "\r" not in text
