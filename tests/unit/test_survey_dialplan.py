"""The survey branch of the shipped Asterisk dialplan: Queue() option ``c`` only for surveyed
calls, CONTINUE to [cc-survey], and a fail-open [cc-survey] that hangs up without a controller."""

from __future__ import annotations

import re
from pathlib import Path

DIALPLAN = Path(__file__).resolve().parents[2] / "dialplans" / "asterisk" / "extensions_callcenter.conf"


def _contexts() -> dict[str, list[str]]:
    """context -> its applications in file order (``exten =>`` and ``same =>`` lines)."""
    out: dict[str, list[str]] = {}
    context = ""
    for line in DIALPLAN.read_text().splitlines():
        line = line.split(";", 1)[0].strip()
        if m := re.fullmatch(r"\[([\w-]+)\]", line):
            context = m.group(1)
            out[context] = []
        elif m := re.match(r"(?:exten => [^,]+|same => )\s*,?\s*(?:\w+|n)(?:\([\w-]+\))?,(.*)", line):
            out[context].append(m.group(1))
    return out


def test_queue_continues_only_for_surveyed_calls_then_goes_to_the_survey() -> None:
    steps = _contexts()["cc-queue"]
    queue = next(i for i, s in enumerate(steps) if s.startswith("Queue(${EXTEN}"))
    assert steps[queue] == 'Queue(${EXTEN},${IF($["${CC_SURVEY}" != ""]?c)},,,300)'
    survey = next(i for i, s in enumerate(steps) if "cc-survey,s,1" in s)
    assert queue < survey
    assert '"${QUEUESTATUS}" = "CONTINUE"' in steps[survey] and "CC_SURVEY" in steps[survey]
    assert steps[survey + 1] == "Hangup()"  # any other QUEUESTATUS: as before


def test_survey_context_is_fail_open_and_never_queues_again() -> None:
    plan = _contexts()
    steps = plan["cc-survey"]
    agi = steps.index("AGI(agi:async)")
    assert steps[agi - 1].startswith("Set(TIMEOUT(absolute)=")
    assert steps[agi + 1:] == ["Set(TIMEOUT(absolute)=0)", "Hangup()"]
    assert "Set(CC_SURVEY=1)" in steps[:agi]
    assert not any("cc-queue" in s for s in steps)
    text = DIALPLAN.read_text()
    assert not re.search(r"^\[cc-survey\][^\[]*exten => T,", text, re.M | re.S)  # no T: timeout = hang-up
