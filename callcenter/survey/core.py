"""Post-call NPS survey, pure: which calls get it, the commands that ask, how keys become a
score, and the NPS arithmetic.

Entering 0..10 on a phone keypad: one ``CollectDigits`` of up to two digits. ``10`` ends the
entry by itself; a single digit ends with ``#`` (GET DATA's terminator, so ``#`` never reaches
us) or the timeout; ``*`` alone means 10 for callers who read "press star for ten" in the
prompt. Anything else (``11``, ``55``) is invalid and asked once more. Silence is asked once
more too; silence again, or a hang-up, is *not answered* (score NULL) and never a 0: a 0 is a
detractor and would page a supervisor for a caller who simply left.

NPS = %promoters (9-10) - %detractors (0-6) over the *answered* responses; passives (7-8)
count in the denominator only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from callcenter.domain.commands import CollectDigits, Command, SetVariable

PROMPT = "cc/survey-nps"  # "How likely are you to recommend us, 0 to 10? For 10 press 1 0 or star."
PROMPT_AGAIN = "cc/survey-nps-again"
THANKS = "cc/survey-thanks"
TIMEOUT_MS = 6000
MAX_TRIES = 2


@dataclass(frozen=True, slots=True)
class SurveyPolicy:
    """Which calls get the survey: every queue (``all_queues``) or the listed ones."""

    queues: frozenset[str] = frozenset()
    all_queues: bool = False

    def wants(self, queue: str | None) -> bool:
        return self.all_queues or (queue is not None and queue in self.queues)


def parse_score(digits: str | None) -> int | None:
    """Keys -> 0..10, or None when they are not a score."""
    if digits is None:
        return None
    keys = digits.strip().rstrip("#")
    if keys == "*":
        return 10
    if not keys.isdigit() or len(keys) > 2:
        return None
    score = int(keys)
    if len(keys) == 2 and keys[0] == "0":
        return None  # "05": more likely a slip than a 5; ask again
    return score if 0 <= score <= 10 else None


@dataclass(frozen=True, slots=True)
class Ask:
    tries: int
    prompt: str


@dataclass(frozen=True, slots=True)
class Answered:
    score: int


@dataclass(frozen=True, slots=True)
class NotAnswered:
    reason: str  # hangup | no_input | invalid


Step = Ask | Answered | NotAnswered


def first_step() -> Ask:
    return Ask(1, PROMPT)


def survey_next(step: Ask, digits: str | None, *, hung_up: bool = False) -> Step:
    if hung_up:
        return NotAnswered("hangup")
    score = parse_score(digits)
    if score is not None:
        return Answered(score)
    if step.tries >= MAX_TRIES:
        return NotAnswered("no_input" if not digits else "invalid")
    return Ask(step.tries + 1, PROMPT_AGAIN)


def ask_commands(step: Ask, call_id: str, channel: str | None) -> list[Command]:
    return [
        SetVariable(name="CC_NODE", value="survey", call_id=call_id, channel=channel),
        CollectDigits(prompt=step.prompt, max_digits=2, timeout_ms=TIMEOUT_MS, node="survey",
                      call_id=call_id, channel=channel),
    ]


def category(score: int) -> str:
    return "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"


def is_detractor(score: int | None) -> bool:
    return score is not None and score <= 6


@dataclass(frozen=True, slots=True)
class Nps:
    responses: int  # offered surveys, answered or not
    answered: int
    promoters: int
    passives: int
    detractors: int

    @property
    def score(self) -> float | None:
        if not self.answered:
            return None
        return 100.0 * (self.promoters - self.detractors) / self.answered

    @property
    def response_rate(self) -> float | None:
        return 100.0 * self.answered / self.responses if self.responses else None


def nps(scores: Iterable[int | None]) -> Nps:
    """Over stored scores, ``None`` meaning not answered."""
    n = ans = pro = pas = det = 0
    for s in scores:
        n += 1
        if s is None:
            continue
        ans += 1
        c = category(s)
        pro += c == "promoter"
        pas += c == "passive"
        det += c == "detractor"
    return Nps(n, ans, pro, pas, det)
