"""The survey shell against a scripted controller: which calls it claims, what it tells the PBX,
what it publishes. Storage is covered end to end (tests/integration/test_survey_e2e.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from callcenter.bus import Bus
from callcenter.domain.commands import Command
from callcenter.domain.events import ControllerAttached
from callcenter.pbx.port import CommandResult
from callcenter.survey import core
from callcenter.survey.service import SurveyService


@dataclass
class State:
    answered: bool
    agent: str | None = "PJSIP/1001"
    answer_queue: str | None = "sales"
    customer_id: int | None = 7


@dataclass
class Book:
    states: dict[str, State] = field(default_factory=dict)

    def state(self, call_id: str) -> State | None:
        return self.states.get(call_id)


class FakeController:
    def __init__(self, keys: list[str | None]) -> None:
        self.book = Book()
        self.bus = Bus()
        self.keys = keys  # per CollectDigits: digits, or None = the caller hung up
        self.sent: list[Command] = []

    async def execute(self, pbx: str, cmd: Command) -> CommandResult:
        self.sent.append(cmd)
        if cmd.kind == "collect_digits":
            if not self.keys or self.keys[0] is None:
                self.keys[:1] = []
                return CommandResult(cmd.command_id, False, "hangup")
            return CommandResult(cmd.command_id, True, detail={"digits": self.keys.pop(0)})
        return CommandResult(cmd.command_id, True)


def _ev(call_id: str = "c1") -> ControllerAttached:
    return ControllerAttached(pbx="ast1", call_id=call_id, channel="PJSIP/pstn-01",
                              at=datetime(2026, 11, 2, 9, 0, tzinfo=UTC))


def _service(keys: list[str | None], *, answered: bool = True,
             queues: set[str] | None = None) -> tuple[SurveyService, FakeController, list[Any]]:
    ctl = FakeController(keys)
    ctl.book.states["c1"] = State(answered=answered)
    seen: list[Any] = []
    ctl.bus.hooks.append(seen.append)
    return SurveyService(ctl, None, queues=queues), ctl, seen  # type: ignore[arg-type]


def test_only_answered_calls_are_claimed() -> None:
    svc, _, _ = _service([], answered=False)
    assert not svc.claims(_ev())
    assert not svc.claims(_ev("unknown"))
    svc, _, _ = _service([])
    assert svc.claims(_ev())


async def test_wrap_routes_new_calls_and_surveys_answered_ones() -> None:
    svc, ctl, _ = _service(["9"])
    routed: list[str | None] = []

    async def route(ev: ControllerAttached) -> None:
        routed.append(ev.call_id)

    drive = svc.wrap(route)
    await drive(_ev("new"))
    await drive(_ev("c1"))
    assert routed == ["new"]
    assert [c.kind for c in ctl.sent] == ["set_variable", "collect_digits", "play_prompt", "hang_up"]


async def test_promoter_is_thanked_and_hung_up_without_a_notification() -> None:
    svc, ctl, seen = _service(["10"])
    step = await svc.run(_ev())
    assert step == core.Answered(10)
    assert [c.kind for c in ctl.sent][-2:] == ["play_prompt", "hang_up"]
    assert [n.kind for n in seen] == []
    assert svc.stats.answered == 1


async def test_detractor_after_one_retry_publishes_call_agent_queue_customer_score() -> None:
    svc, ctl, seen = _service(["55", "3"])
    step = await svc.run(_ev())
    assert step == core.Answered(3)
    collects = [c for c in ctl.sent if c.kind == "collect_digits"]
    assert [c.prompt for c in collects] == [core.PROMPT, core.PROMPT_AGAIN]  # type: ignore[attr-defined]
    (n,) = seen
    assert n.kind == "detractor" and n.agent == "PJSIP/1001" and n.queue == "sales"
    assert n.data == {"call_id": "c1", "agent": "PJSIP/1001", "queue": "sales", "customer_id": 7, "score": 3}


async def test_hang_up_is_not_answered_and_nothing_more_is_sent() -> None:
    svc, ctl, seen = _service([None])
    step = await svc.run(_ev())
    assert step == core.NotAnswered("hangup")
    assert [c.kind for c in ctl.sent] == ["set_variable", "collect_digits"]
    assert seen == [] and svc.stats.not_answered == 1


async def test_silence_twice_is_not_answered_then_hung_up() -> None:
    svc, ctl, _ = _service(["", ""])
    assert await svc.run(_ev()) == core.NotAnswered("no_input")
    assert [c.kind for c in ctl.sent][-1] == "hang_up"
    assert "play_prompt" not in [c.kind for c in ctl.sent]


async def test_unsurveyed_queue_is_hung_up_never_routed_again() -> None:
    svc, ctl, _ = _service(["9"], queues={"support"})
    assert svc.claims(_ev())
    assert await svc.run(_ev()) is None
    assert [c.kind for c in ctl.sent] == ["hang_up"]


def test_route_commands_set_cc_survey_only_for_surveyed_queues() -> None:
    svc, _, _ = _service([], queues={"sales"})
    (cmd,) = svc.route_commands("sales", "c1", "PJSIP/pstn-01")
    assert (cmd.kind, cmd.name, cmd.value, cmd.channel) == ("set_variable", "CC_SURVEY", "1", "PJSIP/pstn-01")  # type: ignore[attr-defined]
    assert svc.route_commands("support", "c1", "PJSIP/pstn-01") == []
    assert svc.route_commands(None, "c1", None) == []
