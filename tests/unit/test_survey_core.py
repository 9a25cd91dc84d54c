"""Survey core: keys to scores (10 and *), not answered is never 0, NPS arithmetic."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter.domain.commands import CollectDigits
from callcenter.survey.core import (
    Answered,
    Ask,
    NotAnswered,
    SurveyPolicy,
    ask_commands,
    category,
    first_step,
    is_detractor,
    nps,
    parse_score,
    survey_next,
)


def test_keys_to_scores() -> None:
    assert [parse_score(d) for d in ("0", "7", "9#", "10", "*", "*#")] == [0, 7, 9, 10, 10, 10]
    assert [parse_score(d) for d in ("", None, "11", "55", "05", "1*", "#", "123")] == [None] * 8


def test_asks_twice_then_not_answered_never_zero() -> None:
    s = first_step()
    nxt = survey_next(s, "")
    assert isinstance(nxt, Ask) and nxt.tries == 2
    assert survey_next(nxt, "") == NotAnswered("no_input")
    assert survey_next(nxt, "42") == NotAnswered("invalid")
    assert survey_next(s, "0", hung_up=True) == NotAnswered("hangup")
    assert survey_next(s, "10") == Answered(10)
    assert survey_next(nxt, "0") == Answered(0)


def test_ask_commands_collect_two_digits() -> None:
    cmds = ask_commands(first_step(), "c1", "PJSIP/x")
    collect = cmds[-1]
    assert isinstance(collect, CollectDigits) and collect.max_digits == 2 and collect.call_id == "c1"


def test_policy() -> None:
    assert SurveyPolicy(frozenset({"sales"})).wants("sales")
    assert not SurveyPolicy(frozenset({"sales"})).wants("support")
    assert not SurveyPolicy(frozenset({"sales"})).wants(None)
    assert SurveyPolicy(all_queues=True).wants(None)


def test_categories() -> None:
    assert [category(s) for s in range(11)] == ["detractor"] * 7 + ["passive"] * 2 + ["promoter"] * 2
    assert is_detractor(6) and not is_detractor(7) and not is_detractor(None)


def test_nps_hand_computed() -> None:
    # 10, 9, 9 promoters; 8 passive; 6, 0 detractors; two not answered -> (3 - 2) / 6 = 16.67
    f = nps([10, 9, 9, 8, 6, 0, None, None])
    assert (f.responses, f.answered, f.promoters, f.passives, f.detractors) == (8, 6, 3, 1, 2)
    assert round(f.score or 0, 2) == 16.67 and f.response_rate == 75.0
    assert nps([None]).score is None and nps([]).response_rate is None


@settings(max_examples=300)
@given(st.lists(st.one_of(st.none(), st.integers(0, 10)), max_size=60))
def test_nps_against_a_hand_count(scores) -> None:
    answered = [s for s in scores if s is not None]
    pro = sum(1 for s in answered if s in (9, 10))
    det = sum(1 for s in answered if s <= 6)
    f = nps(scores)
    assert f.promoters + f.passives + f.detractors == f.answered == len(answered)
    if answered:
        assert f.score is not None and abs(f.score - (pro * 100 / len(answered) - det * 100 / len(answered))) < 1e-9
        assert -100 <= f.score <= 100
    else:
        assert f.score is None
