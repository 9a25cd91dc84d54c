"""dialplans/freeswitch: well-formed, shaped the way FreeSWITCH reads it, every application and
API command provided by a module the README tells admins to load, and the paths the controller
relies on (park + fail-open, queue extensions, default queue, supervisor modes) route where the
adapter's DialplanNames send calls.

Which module provides what: the applications the lab's FreeSWITCH ran in the traces
(CHANNEL_EXECUTE of answer, set, park, transfer, playback, play_and_get_digits, eavesdrop,
three_way, callcenter - tests/fixtures/freeswitch) and mod_dptools' own registrations for
sched_transfer / sched_cancel / unset / bridge (not in the traces).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from callcenter.domain.commands import (
    Answer,
    CollectDigits,
    HangUp,
    MoveToQueue,
    PauseAgent,
    PlayPrompt,
    ReleaseCall,
    RouteToQueue,
    SetDisplayName,
    StartSpy,
)
from callcenter.domain.events import SpyMode
from callcenter.pbx.freeswitch.actions import DEFAULT_NAMES, Api, Execute, plan, queue_extension
from callcenter.pbx.freeswitch.translate import DEFAULT_WATCHED_VARIABLES, NODE_VARIABLE
from callcenter.sim.freeswitch import FsDialplan
from tests.replay._esl import events as trace_events

ROOT = Path(__file__).resolve().parents[2] / "dialplans" / "freeswitch"
DIALPLAN = ROOT / "dialplan" / "callcenter.xml"
CALLCENTER_CONF = ROOT / "autoload_configs" / "callcenter.conf.xml"
EVENT_SOCKET_CONF = ROOT / "autoload_configs" / "event_socket.conf.xml"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "freeswitch"

APP_MODULES: dict[str, str] = {
    "answer": "mod_dptools",
    "set": "mod_dptools",
    "export": "mod_dptools",
    "park": "mod_dptools",
    "transfer": "mod_dptools",
    "playback": "mod_dptools",
    "play_and_get_digits": "mod_dptools",
    "sched_transfer": "mod_dptools",
    "sched_cancel": "mod_dptools",
    "eavesdrop": "mod_dptools",
    "three_way": "mod_dptools",
    "hangup": "mod_dptools",
    "unset": "mod_dptools",
    "bridge": "mod_dptools",
    "callcenter": "mod_callcenter",
}
API_MODULES: dict[str, str] = {
    "uuid_transfer": "mod_commands",
    "uuid_kill": "mod_commands",
    "uuid_setvar": "mod_commands",
    "sched_del": "mod_commands",
    "sched_transfer": "mod_commands",
    "originate": "mod_commands",
    "show": "mod_commands",
    "callcenter_config": "mod_callcenter",
}
U = "2fcc1294-e632-4ebe-9bee-e3a33ed7346e"


def readme_modules() -> set[str]:
    text = (ROOT / "README.md").read_text()
    return set(re.findall(r"^\s*\|\s*`(mod_[a-z_]+)`\s*\|", text, re.MULTILINE))


def preprocess_vars() -> dict[str, str]:
    root = ET.parse(DIALPLAN).getroot()
    out = {}
    for pp in root.iter("X-PRE-PROCESS"):
        assert pp.get("cmd") == "set"
        name, _, value = (pp.get("data") or "").partition("=")
        out[name] = value
    return out


def expand(text: str, pre: dict[str, str]) -> str:
    return re.sub(r"\$\$\{([^}]+)\}", lambda m: pre[m.group(1)], text)


def route(context: str, destination: str, **variables: str) -> list[tuple[str, str]]:
    """The actions a channel with this destination (and channel ``variables``) gets, hunted by
    the simulator's model of mod_dialplan_xml (break attributes, anti-actions, $1.., continue);
    $${} is expanded as the pre-processor does."""
    values = {"destination_number": destination, **{f"${{{k}}}": v for k, v in variables.items()}}
    found = FsDialplan([DIALPLAN], {}).hunt(context, lambda f: values.get(f, ""))
    return found or []


# -- well-formed and shaped as FreeSWITCH expects --------------------------------------------------


@pytest.mark.parametrize("path", [DIALPLAN, CALLCENTER_CONF, EVENT_SOCKET_CONF], ids=lambda p: p.name)
def test_xml_is_well_formed(path: Path) -> None:
    ET.parse(path)
    assert path.read_text().startswith('<?xml version="1.0" encoding="utf-8"?>')


def test_dialplan_structure() -> None:
    root = ET.parse(DIALPLAN).getroot()
    assert root.tag == "include"  # conf/dialplan/*.xml are included into the dialplan section
    assert {child.tag for child in root} == {"X-PRE-PROCESS", "context"}
    names = [c.get("name") for c in root.findall("context")]
    assert names == ["callcenter_inbound", "callcenter", "cc-callback", "callcenter_supervisor"]
    allowed = {"include", "X-PRE-PROCESS", "context", "extension", "condition", "action", "anti-action"}
    assert {el.tag for el in root.iter()} <= allowed
    for ctx in root.findall("context"):
        assert {c.tag for c in ctx} == {"extension"}
        ext_names = [e.get("name") for e in ctx.findall("extension")]
        assert all(ext_names) and len(set(ext_names)) == len(ext_names)
        for ext in ctx.findall("extension"):
            conds = ext.findall("condition")
            assert conds and {c.tag for c in ext} == {"condition"}
            assert conds[0].get("field") == "destination_number"  # what the extension is for
            for cond in conds:
                assert cond.get("field") and cond.get("expression") is not None
                assert cond.get("break", "on-false") in ("on-false", "never")
                re.compile(cond.get("expression") or "")  # PCRE subset Python reads too
                for act in cond:
                    assert act.tag in ("action", "anti-action") and act.get("application")


def test_pre_processor_variables_are_defined_before_use() -> None:
    text = DIALPLAN.read_text()
    pre = preprocess_vars()
    assert set(re.findall(r"\$\$\{([^}]+)\}", text)) <= set(pre)
    assert pre == {"cc_queue_domain": "default", "cc_default_queue": "support", "cc_controller_timeout": "10",
                   "cc_callback_gateway": "pstn"}


# -- every application / API command comes from a module the README lists ------------------------


def test_every_application_is_provided_by_a_listed_module() -> None:
    root = ET.parse(DIALPLAN).getroot()
    apps = {a.get("application") for a in root.iter("action")}
    assert apps <= set(APP_MODULES), apps - set(APP_MODULES)
    assert {APP_MODULES[a] for a in apps if a} <= readme_modules()


def test_the_module_table_agrees_with_the_traces() -> None:
    """Every application the lab's FreeSWITCH ran exists; ours that it did not run (sched_*)
    are mod_dptools registrations."""
    ran: set[str] = set()
    for trace in FIXTURES.glob("*.esl.txt"):
        for ev, _ in trace_events(trace):
            if ev.name == "CHANNEL_EXECUTE" and ev.get("Application") not in (None, "uuid_bridge"):
                ran.add(ev.get("Application") or "")
    assert ran <= set(APP_MODULES) | {"sleep"}
    assert set(APP_MODULES) - ran == {"export", "sched_transfer", "sched_cancel", "hangup", "unset", "bridge"}


def test_everything_the_adapter_sends_is_provided_by_a_listed_module() -> None:
    cmds = [
        Answer(channel=U),
        PlayPrompt(prompt="ivr/welcome.wav", channel=U),
        CollectDigits(prompt="ivr/menu.wav", node="main", channel=U),
        SetDisplayName(name="VIP", channel=U),
        RouteToQueue(queue="sales", channel=U),
        ReleaseCall(channel=U),
        MoveToQueue(queue="support", channel=U),
        HangUp(channel=U),
        StartSpy(supervisor_endpoint="user/1009", target=U, mode=SpyMode.WHISPER),
        StartSpy(supervisor_endpoint="user/1009", target=U, mode=SpyMode.BARGE),
        PauseAgent(agent="1001", paused=True),
    ]
    apps: set[str] = set()
    apis: set[str] = {"show"}  # resync: show channels as json
    for cmd in cmds:
        for step in plan(cmd, lease_s=30):
            if isinstance(step, Execute):
                apps.add(step.app)
            else:
                assert isinstance(step, Api)
                apis.add(step.command.split(" ", 1)[0])
                inline = re.search(r"&([a-z_]+)\(", step.command)
                if inline:
                    apps.add(inline.group(1))
    assert apps <= set(APP_MODULES) and apis <= set(API_MODULES)
    assert {APP_MODULES[a] for a in apps} | {API_MODULES[a] for a in apis} <= readme_modules()
    assert {"mod_event_socket", "mod_dialplan_xml", "mod_sofia"} <= readme_modules()


# -- the paths the controller relies on ------------------------------------------------------------


def test_inbound_calls_are_parked_with_a_fail_open_timer_first() -> None:
    actions = route("callcenter_inbound", "5550100")
    apps = [a for a, _ in actions]
    assert apps[-2:] == ["sched_transfer", "park"]  # armed before the park, park last
    assert "answer" in apps and apps.index("answer") < apps.index("park")
    assert dict(actions)["sched_transfer"] == (
        f"+10 {DEFAULT_NAMES.failopen_extension} XML {DEFAULT_NAMES.context}"
    )
    assert route("callcenter_inbound", "cc_queue_vip") == []  # queues are not reachable from outside
    assert route("callcenter_inbound", "*1" + U) == []


def test_queue_extensions_match_the_adapters_names() -> None:
    for queue in ("sales", "support", "vip", "junior", "billing", "sales@default"):
        actions = route(DEFAULT_NAMES.context, queue_extension(queue))
        assert actions[0] == ("sched_cancel", "")  # the fail-open timer of this channel
        assert actions[-1] == ("callcenter", queue.split("@")[0] + "@" + DEFAULT_NAMES.queue_domain)
        assert ("set", "hangup_after_bridge=true") in actions
        assert not any(a == "set" and d.startswith("transfer_after_bridge") for a, d in actions)
        # the post-call survey: the controller's CC_SURVEY=1 (set before the transfer) makes the
        # caller go to cc_survey when the agent hangs up, set before mod_callcenter takes the call
        surveyed = route(DEFAULT_NAMES.context, queue_extension(queue), CC_SURVEY="1")
        after = surveyed.index(("set", "transfer_after_bridge=cc_survey:XML:callcenter"))
        assert after < len(surveyed) - 1 and surveyed[-1] == actions[-1]
    assert route(DEFAULT_NAMES.context, "cc_queue_Sales") == []


def test_the_survey_parks_for_the_controller_and_fails_open_to_a_hang_up() -> None:
    actions = route(DEFAULT_NAMES.context, "cc_survey")
    assert ("set", "cc_entry=survey") in actions
    assert actions[-2:] == [("sched_transfer", f"+10 {DEFAULT_NAMES.failopen_extension} XML {DEFAULT_NAMES.context}"),
                            ("park", "")]
    # the controller's lease renewals point at cc_failopen too: for a survey caller it hangs up
    assert route(DEFAULT_NAMES.context, DEFAULT_NAMES.failopen_extension, cc_entry="survey") == [
        ("hangup", "NORMAL_CLEARING")]
    assert route("callcenter_inbound", "cc_survey") == []  # not reachable from outside


def test_release_and_fail_open_end_in_the_default_queue() -> None:
    default = route(DEFAULT_NAMES.context, DEFAULT_NAMES.default_extension)
    assert default == [("transfer", f"cc_queue_support XML {DEFAULT_NAMES.context}")]
    failopen = route(DEFAULT_NAMES.context, DEFAULT_NAMES.failopen_extension)
    name, _, value = dict(failopen)["set"].partition("=")
    assert name in DEFAULT_WATCHED_VARIABLES and value == "controller-timeout"  # reported as VariableSet
    assert failopen[-1] == ("transfer", f"{DEFAULT_NAMES.default_extension} XML {DEFAULT_NAMES.context}")


@pytest.mark.parametrize(
    ("prefix", "app", "whisper_aleg"),
    [("*0", "eavesdrop", False), ("*1", "eavesdrop", True), ("*2", "three_way", False)],
)
def test_supervisor_extensions(prefix: str, app: str, whisper_aleg: bool) -> None:
    actions = route("callcenter_supervisor", prefix + U)
    assert actions[-1] == (app, U)
    assert (("set", "eavesdrop_whisper_aleg=true") in actions) is whisper_aleg
    if app == "eavesdrop":
        assert ("set", "eavesdrop_enable_dtmf=false") in actions  # the asked-for mode stays
    assert route("callcenter_supervisor", prefix + "not-a-uuid") == []
    assert route("callcenter", prefix + U) == []  # only in the supervisor context


def test_callbacks_ring_the_agent_then_bridge_to_the_customer_through_the_gateway() -> None:
    from callcenter.callbacks.service import CONTEXT

    actions = route(CONTEXT, "+12025550143")
    assert ("set", "hangup_after_bridge=true") in actions and ("set", "continue_on_fail=true") in actions
    assert ("bridge", "{originate_timeout=45}sofia/gateway/pstn/+12025550143") in actions
    assert route(CONTEXT, "12025550143") == []  # E.164 only, as the service files them
    assert route("callcenter_inbound", "cc-callback") == [] and route("callcenter", "+12025550143") == []


def test_node_variable_is_the_translators() -> None:
    assert DEFAULT_NAMES.node_variable == NODE_VARIABLE


# -- mod_callcenter sample -------------------------------------------------------------------------


def test_callcenter_conf_queues_agents_tiers() -> None:
    root = ET.parse(CALLCENTER_CONF).getroot()
    assert root.tag == "configuration" and root.get("name") == "callcenter.conf"
    settings = {p.get("name"): p.get("value") for p in root.find("settings") or []}
    assert settings["truncate-agents-on-load"] == settings["truncate-tiers-on-load"] == "true"
    queues = {q.get("name"): {p.get("name"): p.get("value") for p in q} for q in root.iter("queue")}
    domain = preprocess_vars()["cc_queue_domain"]
    assert set(queues) == {f"{q}@{domain}" for q in ("sales", "support", "vip", "junior", "billing")}
    for name, params in queues.items():
        assert params["tier-rules-apply"] == "false", name  # levels only order the offers
        assert params["agent-no-answer-status"] == "On Break", name  # reported as a pause
        assert params["strategy"] in ("longest-idle-agent", "round-robin", "ring-all", "top-down"), name
    agents = {a.get("name"): a.attrib for a in root.iter("agent")}
    for name, attrs in agents.items():
        assert attrs["type"] == "callback"
        # mod_callcenter ignores call_timeout in the contact; leg_timeout limits the ring
        assert re.match(r"^\[[^\]]*\bleg_timeout=\d+", attrs["contact"]), attrs["contact"]
        assert attrs["status"] in ("Available", "Logged Out", "On Break")
        assert re.fullmatch(r"[A-Za-z0-9_.@+-]+", name or "")  # what the adapter accepts as an agent
    for tier in root.iter("tier"):
        assert tier.get("agent") in agents and tier.get("queue") in queues
        assert int(tier.get("level") or "-1") >= 0 and int(tier.get("position") or "0") >= 1
    assert {t.get("queue") for t in root.iter("tier")} == set(queues)  # every queue has agents


def test_pre_processor_variables_of_the_sample_config_are_vanilla_ones() -> None:
    used = set(re.findall(r"\$\$\{([^}]+)\}", CALLCENTER_CONF.read_text()))
    assert used <= {"hold_music", "domain"}  # both defined by the vanilla vars.xml


# -- event socket ----------------------------------------------------------------------------------


def test_event_socket_is_loopback_with_a_placeholder_password() -> None:
    root = ET.parse(EVENT_SOCKET_CONF).getroot()
    assert root.tag == "configuration" and root.get("name") == "event_socket.conf"
    params = {p.get("name"): p.get("value") for p in root.iter("param")}
    assert params["listen-ip"] in ("127.0.0.1", "::1")
    assert params["apply-inbound-acl"] and params["apply-inbound-acl"] != "any"
    assert params["listen-port"] == "8021"
    assert params["password"] not in ("", "ClueCon") and "CHANGE" in (params["password"] or "")
