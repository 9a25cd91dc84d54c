"""dialplans/asterisk: lint clean with asterisklint (Asterisk 22 rules), consistent with what
the actions/translator code expects, and a manager.conf user with exactly the privileges the
adapter needs."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from callcenter.domain import commands as c
from callcenter.domain.events import SpyMode
from callcenter.pbx.asterisk.actions import DEFAULT_NAMES, AgiCommand, AmiAction, plan
from callcenter.pbx.asterisk.trace import read_trace
from callcenter.pbx.asterisk.translate import HANDLED_EVENTS, spy_mode_from_options
from callcenter.pbx.replay import decode_frame

ROOT = Path(__file__).resolve().parents[2]
DIALPLANS = ROOT / "dialplans" / "asterisk"
FIXTURES = ROOT / "tests" / "fixtures" / "asterisk"
DIALPLAN = DIALPLANS / "extensions_callcenter.conf"


def _asterisklint() -> list[str]:
    script = Path(sys.executable).with_name("asterisklint")
    found = str(script) if script.exists() else shutil.which("asterisklint")
    assert found, "asterisklint (asterisklint-jjs) must be installed in the test environment"
    return [sys.executable, found]


def lint(tmp_path: Path, text: str, command: str = "dialplan-check") -> subprocess.CompletedProcess[str]:
    """asterisklint needs an extensions.conf; ours is include-able, so include it like an admin."""
    (tmp_path / "extensions_callcenter.conf").write_text(text)
    (tmp_path / "extensions.conf").write_text(
        "[general]\nstatic=yes\nwriteprotect=yes\n\n[globals]\nCC_DEFAULT_QUEUE=support\n\n"
        "#include extensions_callcenter.conf\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALINT_")}  # suppress nothing
    return subprocess.run(
        [*_asterisklint(), command, "--asterisk-version", "22", str(tmp_path / "extensions.conf")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_dialplan_is_lint_clean(tmp_path: Path) -> None:
    result = lint(tmp_path, DIALPLAN.read_text())
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_lint_would_catch_a_broken_dialplan(tmp_path: Path) -> None:
    broken = DIALPLAN.read_text().replace("Goto(cc-ivr-main,s,1)", "Goto(cc-ivr-mian,s,1)", 1)
    broken = broken.replace("WaitExten(5)", "WaitExtn(5", 1)
    result = lint(tmp_path, broken)
    assert result.returncode == 1
    assert "E_DP_GOTO_NOCONTEXT" in result.stderr and "E_APP_MISSING" in result.stderr


@pytest.fixture(scope="module")
def shown(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, list[str]]]:
    """``dialplan show`` as asterisklint parses it: context -> extension -> [app(data), ...]."""
    result = lint(tmp_path_factory.mktemp("show"), DIALPLAN.read_text(), "dialplan-show")
    assert result.returncode == 0, result.stderr
    contexts: dict[str, dict[str, list[str]]] = {}
    context = exten = ""
    for line in result.stdout.splitlines():
        if m := re.match(r"\[ Context '([^']+)'", line):
            context = m.group(1)
            contexts[context] = {}
            continue
        # "[label]" before the priority marks a labelled step, as in Asterisk's "dialplan show"
        m = re.match(r"\s+(?:'([^']+)' =>)?\s+(?:\[[\w-]+\]\s+)?\d+\.\s+(.*?)\s+\[pbx_config\]$", line)
        if m:
            exten = m.group(1) or exten
            contexts[context].setdefault(exten, []).append(m.group(2))
    return contexts


def test_inbound_context_has_the_measured_fail_open_guard(shown: dict[str, dict[str, list[str]]]) -> None:
    steps = shown["cc-inbound"]["controller"]
    agi = steps.index("AGI(agi:async)")
    # Set(TIMEOUT(absolute)=N) right before the AGI, cleared right after, T in the same context.
    assert steps[agi - 1].startswith("Set(TIMEOUT(absolute)=")
    assert steps[agi + 1] == "Set(TIMEOUT(absolute)=0)"
    assert any(f"${{{DEFAULT_NAMES.queue_variable}}}" in s for s in steps[agi + 1 :])
    t = shown["cc-inbound"]["T"]
    assert "Set(TIMEOUT(absolute)=0)" in t and "Set(CC_FAILOPEN=controller-timeout)" in t
    assert t[-1].startswith(f"Goto({DEFAULT_NAMES.queue_context},")


def test_queue_context_matches_what_redirect_and_route_send(shown: dict[str, dict[str, list[str]]]) -> None:
    queue = shown[DEFAULT_NAMES.queue_context]
    pattern = next(e for e in queue if e.startswith("_"))
    assert pattern == "_[a-z]."  # actions.py validates queue names against the same shape
    steps = queue[pattern]
    assert steps[1] == "Set(TIMEOUT(absolute)=0)"  # a Redirect out of AGI keeps the timer running
    assert any(f"${{{DEFAULT_NAMES.priority_variable}}}" in s and "QUEUE_PRIO" in s for s in steps)
    assert any(s.startswith("Queue(${EXTEN}") for s in steps)
    # sticky routing: the agent alone first, then the queue; cleared so an overflow skips it
    dial = next(i for i, s in enumerate(steps) if s.startswith("Dial(${CC_STICKY_DIAL}"))
    assert steps[dial - 1] == "Set(CC_STICKY_AGENT=)"
    assert dial < next(i for i, s in enumerate(steps) if s.startswith("Queue(${EXTEN}"))
    assert "i" in queue  # unknown queue name -> default queue, not a hangup
    (redirect,) = [s for s in plan(c.MoveToQueue(queue="sales", channel="PJSIP/x-00000001")) if s.name == "Redirect"]
    assert redirect.header("Context") == DEFAULT_NAMES.queue_context


@pytest.mark.parametrize("mode", list(SpyMode))
def test_spy_context_serves_every_mode(shown: dict[str, dict[str, list[str]]], mode: SpyMode) -> None:
    (originate,) = plan(c.StartSpy(supervisor_endpoint="PJSIP/1009", target="PJSIP/1001", mode=mode))
    assert isinstance(originate, AmiAction)
    steps = shown[DEFAULT_NAMES.spy_context][originate.header("Exten") or ""]
    (spy,) = [s for s in steps if s.startswith("ChanSpy(")]
    target, _, options = spy[len("ChanSpy(") : -1].rpartition(",")
    assert target == "${CC_SPY_TARGET}"
    # The translator reads the mode back from exactly this AppData.
    assert spy_mode_from_options(options) == mode
    assert any("CC_SPY_TARGET" in s and "notarget" in s for s in steps)  # never ChanSpy on everyone


def test_static_ivr_names_its_nodes(shown: dict[str, dict[str, list[str]]]) -> None:
    assert shown["cc-ivr-main"]["s"][0] == "Set(CC_NODE=ivr-main)"
    assert shown["cc-inbound-static"]["_X."][-1] == "Goto(cc-ivr-main,s,1)"


# -- manager.conf -----------------------------------------------------------------------------
# Privileges Asterisk registers each action with (manager.c, app_queue.c, res_agi.c); the user
# needs one of them. 0 = none required.
ACTION_PRIVILEGES: dict[str, set[str]] = {
    "AGI": {"agi"},
    "Redirect": {"call"},
    "Setvar": {"call"},
    "Hangup": {"system", "call"},
    "Originate": {"originate"},
    "QueuePause": {"agent"},
    "QueueAdd": {"agent"},
    "QueueRemove": {"agent"},
    "CoreShowChannels": {"system", "reporting"},
    "QueueStatus": set(),
}


def _manager_user() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, inline_comment_prefixes=(";",), comment_prefixes=(";",))
    parser.read_string(re.sub(r"(?m)^(\w+)\s*=>", r"\1 =", (DIALPLANS / "manager.conf.sample").read_text()))
    return parser["callcenter"]


def _every_command() -> list[c.Command]:
    ch = "PJSIP/pstn-00000001"
    return [
        c.Answer(channel=ch),
        c.PlayPrompt(prompt="hello-world", channel=ch),
        c.CollectDigits(prompt="hello-world", channel=ch),
        c.SetDisplayName(name="x", channel=ch),
        c.SetVariable(name="X", value="1", channel=ch),
        c.RouteToQueue(queue="sales", channel=ch),
        c.ReleaseCall(channel=ch),
        c.MoveToQueue(queue="sales", min_penalty=1, channel=ch),
        c.HangUp(channel=ch),
        c.StartSpy(supervisor_endpoint="PJSIP/1009", target="PJSIP/1001", mode=SpyMode.WHISPER),
        c.StopSpy(spyer_channel="PJSIP/1009-00000002"),
        c.PauseAgent(agent="PJSIP/1001", paused=True),
        c.AddQueueMember(queue="sales", agent="PJSIP/1003"),
        c.RemoveQueueMember(queue="sales", agent="PJSIP/1003"),
        c.Originate(endpoint="PJSIP/1001", destination="cc-queue,sales"),
    ]


def test_every_command_kind_is_covered() -> None:
    kinds = {type(cmd) for cmd in _every_command()}
    assert kinds == {cls for cls in vars(c).values() if isinstance(cls, type) and issubclass(cls, c.Command)} - {
        c.Command
    }


def test_manager_user_can_send_every_action_and_nothing_more() -> None:
    user = _manager_user()
    write = {p.strip() for p in user["write"].split(",")}
    used = {"CoreShowChannels", "QueueStatus"}  # the adapter's resync after each connect
    for cmd in _every_command():
        for step in plan(cmd):
            used.add("AGI" if isinstance(step, AgiCommand) else step.name)
    assert used <= set(ACTION_PRIVILEGES), used - set(ACTION_PRIVILEGES)
    for action in used:
        needed = ACTION_PRIVILEGES[action]
        assert not needed or needed & write, f"{action} needs one of {needed}"
    # Least privilege: every granted class is needed by some action, nothing system-wide.
    assert write == {next(iter(ACTION_PRIVILEGES[a] & write)) for a in used if ACTION_PRIVILEGES[a]}
    assert not write & {"system", "command", "config", "all", "user"}


def test_manager_user_reads_every_translated_event_class() -> None:
    user = _manager_user()
    read = {p.strip() for p in user["read"].split(",")}
    classes: dict[str, str] = {}
    for trace in FIXTURES.glob("*.ami.txt"):
        for frame in read_trace(trace):
            msg = decode_frame(frame.data) if frame.direction == "recv" else None
            if msg is not None and msg.event in HANDLED_EVENTS and msg.get("Privilege"):
                classes[msg.event] = msg["Privilege"].split(",")[0].lower()
    assert len(classes) >= 25  # every translated event the traces contain
    missing = {event: cls for event, cls in classes.items() if cls not in read}
    assert not missing
    assert "all" not in read


def test_manager_listens_on_loopback_only() -> None:
    text = (DIALPLANS / "manager.conf.sample").read_text()
    assert re.search(r"(?m)^bindaddr = 127\.0\.0\.1$", text)
    user = _manager_user()
    assert user["deny"] == "0.0.0.0/0.0.0.0" and user["permit"] == "127.0.0.1/255.255.255.255"


def test_queue_sample_avoids_the_measured_gotchas() -> None:
    text = (DIALPLANS / "queues.conf.sample").read_text()
    sections = re.split(r"(?m)^\[", text)
    template = next(s for s in sections if s.startswith("cc-template]"))
    assert not re.search(r"(?m)^strategy", template)  # app_queue reads the first occurrence
    assert not re.search(r"(?m)^(eventwhencalled|eventmemberstatus)", text)  # not in Asterisk 22
    for name in re.findall(r"(?m)^\[([^\]]+)\]\(cc-template\)", text):
        assert re.fullmatch(r"[a-z].+", name)  # reachable through cc-queue's _[a-z].
