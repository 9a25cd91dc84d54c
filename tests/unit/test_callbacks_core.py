"""The callback request core: retries and their spacing, calling hours, deadline -> expired and
escalated, dispatch order keeps the caller's place, a request closes only with an outcome."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter.callbacks.core import (
    ATTEMPT_RESULTS,
    TERMINAL_STATUSES,
    CallbackPolicy,
    CallingWindow,
    Dispatch,
    Escalate,
    Expire,
    Request,
    Retry,
    figures,
    is_overdue,
    next_actions,
    on_result,
    start_attempt,
)

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday
MIN = timedelta(minutes=1)
POLICY = CallbackPolicy(max_attempts=3, spacing=(5 * MIN, 15 * MIN), deadline=timedelta(hours=2),
                        warn_before=30 * MIN)


def req(i: int, queue: str | None = "sales", *, at: datetime = T0, entered: datetime | None = None, **kw) -> Request:
    return Request(id=i, queue=queue, status=kw.pop("status", "open"), requested_at=at, due_at=kw.pop("due_at", at),
                   entered_at=entered, **kw)


def test_due_request_goes_to_a_free_agent_of_its_queue() -> None:
    actions = next_actions([req(1)], {"sales": ["PJSIP/1001"]}, T0, POLICY)
    assert actions == [Dispatch(1, "sales", "PJSIP/1001", 1)]


def test_no_agent_no_dispatch_and_nothing_is_lost() -> None:
    assert next_actions([req(1)], {"support": ["PJSIP/1001"]}, T0, POLICY) == []


def test_dispatch_order_keeps_the_callers_place_across_queues() -> None:
    # request 2 was filed first, but its caller entered the queue later than request 3's caller
    r1 = req(1, "sales", entered=T0 - 10 * MIN)
    r2 = req(2, "sales", at=T0 - 20 * MIN, entered=T0 - 5 * MIN)
    r3 = req(3, "support", entered=T0 - 8 * MIN)
    actions = next_actions([r2, r3, r1], {"sales": ["PJSIP/1001", "PJSIP/1002"], "support": ["PJSIP/1001"]},
                           T0, POLICY)
    # the shared agent goes to the oldest caller (r1), support's caller waits for another agent
    assert actions == [Dispatch(1, "sales", "PJSIP/1001", 1), Dispatch(2, "sales", "PJSIP/1002", 1)]


def test_a_later_request_never_overtakes_the_waiting_one_in_its_queue() -> None:
    old = req(1, "sales", entered=T0 - 10 * MIN)
    young = req(2, "sales", entered=T0 - 1 * MIN)
    # the only free agent is already taken by another queue's older caller
    other = req(3, "vip", entered=T0 - 20 * MIN)
    actions = next_actions([old, young, other], {"vip": ["PJSIP/1001"], "sales": ["PJSIP/1001"]}, T0, POLICY)
    assert actions == [Dispatch(3, "vip", "PJSIP/1001", 1)]


def test_future_due_and_dialing_requests_wait() -> None:
    later = req(1, due_at=T0 + MIN)
    dialing = start_attempt(req(2), T0 - MIN)
    assert next_actions([later, dialing], {"sales": ["PJSIP/1001", "PJSIP/1002"]}, T0, POLICY) == []


def test_calling_hours_hold_dispatch_until_the_window_opens() -> None:
    policy = CallbackPolicy(hours=CallingWindow(time(9), time(18), frozenset(range(5)), "Europe/Berlin"),
                            deadline=timedelta(days=3))
    night = datetime(2026, 3, 2, 20, 0, tzinfo=UTC)  # 21:00 in Berlin
    assert next_actions([req(1, at=night)], {"sales": ["PJSIP/1001"]}, night, policy) == []
    morning = datetime(2026, 3, 3, 8, 30, tzinfo=UTC)  # 09:30 in Berlin
    assert next_actions([req(1, at=night)], {"sales": ["PJSIP/1001"]}, morning, policy)[0] == Dispatch(
        1, "sales", "PJSIP/1001", 1)
    saturday = datetime(2026, 3, 7, 10, 0, tzinfo=UTC)
    friday_night = datetime(2026, 3, 6, 20, 0, tzinfo=UTC)
    assert next_actions([req(1, at=friday_night)], {"sales": ["PJSIP/1001"]}, saturday, policy) == []


def test_retries_are_spaced_and_agent_no_answer_retries_at_once() -> None:
    r = start_attempt(req(1), T0)
    t = on_result(r, "customer_no_answer", T0 + MIN, POLICY)
    assert (t.status, t.due_at, t.outcome, t.closed_at) == ("open", T0 + 6 * MIN, None, None)
    r = start_attempt(t.apply(r), T0 + 6 * MIN)
    t = on_result(r, "busy", T0 + 7 * MIN, POLICY)
    assert t.due_at == T0 + 22 * MIN  # second spacing
    t2 = on_result(r, "agent_no_answer", T0 + 7 * MIN, POLICY)
    assert t2.status == "open" and t2.due_at == T0 + 7 * MIN  # the customer was never dialled


def test_completed_closes_with_its_outcome() -> None:
    t = on_result(start_attempt(req(1), T0), "completed", T0 + MIN, POLICY)
    assert (t.status, t.outcome, t.closed_at, t.escalate) == ("completed", "completed", T0 + MIN, None)


def test_attempts_exhausted_fail_and_escalate() -> None:
    r = req(1, attempts=2)
    r = start_attempt(r, T0)
    assert r.attempts == 3
    t = on_result(r, "customer_no_answer", T0 + MIN, POLICY)
    assert (t.status, t.outcome, t.escalate) == ("failed", "attempts_exhausted", "attempts_exhausted")


def test_a_retry_past_the_deadline_expires() -> None:
    r = start_attempt(req(1, deadline_at=T0 + 10 * MIN), T0 + 4 * MIN)
    t = on_result(r, "customer_no_answer", T0 + 5 * MIN, POLICY)  # next try at +10: the deadline
    assert (t.status, t.outcome, t.escalate) == ("expired", "deadline_passed", "expired")


def test_deadline_expires_and_escalates_once() -> None:
    r = req(1, deadline_at=T0 + 10 * MIN)
    acts = next_actions([r], {"sales": ["PJSIP/1001"]}, T0 + 10 * MIN, POLICY)
    assert [type(a) for a in acts] == [Expire, Escalate]
    assert acts[1] == Escalate(1, "sales", "expired", T0 + 10 * MIN)
    assert acts[0].transition.outcome == "deadline_passed"  # type: ignore[union-attr]
    again = next_actions([r.__class__(**{**_fields(r), "escalated": frozenset({"expired"})})], {}, T0 + 11 * MIN,
                         POLICY)
    assert [type(a) for a in again] == [Expire]


def _fields(r: Request) -> dict:
    return {f: getattr(r, f) for f in r.__dataclass_fields__}


def test_overdue_is_escalated_before_the_deadline_and_the_request_still_dispatches() -> None:
    r = req(1, deadline_at=T0 + 20 * MIN)
    assert is_overdue(r, T0, POLICY)
    acts = next_actions([r], {"sales": ["PJSIP/1001"]}, T0, POLICY)
    assert acts == [Escalate(1, "sales", "overdue", T0 + 20 * MIN), Dispatch(1, "sales", "PJSIP/1001", 1)]
    r2 = req(2, deadline_at=T0 + 20 * MIN, escalated=frozenset({"overdue"}))
    assert next_actions([r2], {}, T0, POLICY) == []


def test_a_stale_dialing_request_is_retried_not_forgotten() -> None:
    r = start_attempt(req(1), T0)
    assert next_actions([r], {}, T0 + 4 * MIN, POLICY) == []
    acts = next_actions([r], {}, T0 + 5 * MIN, POLICY)
    assert len(acts) == 1 and isinstance(acts[0], Retry) and acts[0].transition.status == "open"


def test_unknown_result_is_refused() -> None:
    with pytest.raises(ValueError):
        on_result(req(1), "maybe", T0, POLICY)


def test_figures() -> None:
    rs = [
        Request(1, "sales", "completed", T0, T0, attempts=2, outcome="completed", closed_at=T0 + MIN),
        Request(2, "sales", "completed", T0, T0, attempts=1, outcome="completed", closed_at=T0 + timedelta(hours=3)),
        Request(3, "sales", "expired", T0, T0, attempts=3, outcome="deadline_passed", closed_at=T0 + 3 * MIN),
        Request(4, "sales", "open", T0, T0),
    ]
    f = figures(rs, POLICY)
    assert (f.requested, f.completed, f.within_deadline, f.expired, f.open) == (4, 2, 1, 1, 1)
    assert f.attempts_per_success == 1.5 and f.within_deadline_pct == 25.0


# -- properties ------------------------------------------------------------------------------------
@st.composite
def scenario(draw):
    n = draw(st.integers(1, 8))
    reqs = [req(i, draw(st.sampled_from(["sales", "support", None])),
                at=T0 + draw(st.integers(0, 30)) * MIN,
                deadline_at=T0 + draw(st.integers(5, 300)) * MIN) for i in range(1, n + 1)]
    steps = draw(st.lists(st.tuples(st.integers(1, 40), st.lists(st.sampled_from(ATTEMPT_RESULTS), max_size=8),
                                    st.integers(0, 3)), min_size=1, max_size=30))
    return reqs, steps


@settings(max_examples=300, deadline=None)
@given(scenario())
def test_no_request_is_ever_dropped(sc) -> None:
    """Drive the core as the shell does: every request stays open/dialing or ends in exactly
    one terminal status with an outcome; terminal requests never change again."""
    reqs, steps = sc
    state = {r.id: r for r in reqs}
    now = T0
    agents = ["PJSIP/1001", "PJSIP/1002", "PJSIP/1003"]
    closed: dict[int, tuple[str, str | None]] = {}
    for minutes, results, free in steps:
        now += minutes * MIN
        pool = {q: agents[:free] for q in ("sales", "support", None)}
        results_iter = iter(results)
        for a in next_actions(list(state.values()), pool, now, POLICY):
            r = state[a.request_id]
            if isinstance(a, Dispatch):
                assert r.status in ("open", "scheduled")
                r = start_attempt(r, now)
                result = next(results_iter, None)
                if result is not None:
                    r = on_result(r, result, now, POLICY).apply(r)
            elif isinstance(a, Retry | Expire):
                r = a.transition.apply(r)
            elif isinstance(a, Escalate):
                r = Request(**{**_fields(r), "escalated": r.escalated | {a.reason}})
            state[r.id] = r
        for r in state.values():
            if r.id in closed:
                assert (r.status, r.outcome) == closed[r.id], "a closed request changed"
            if r.status in TERMINAL_STATUSES:
                assert r.outcome and r.closed_at is not None
                closed[r.id] = (r.status, r.outcome)
            else:
                assert r.outcome is None and r.closed_at is None
                assert r.status in ("open", "scheduled", "dialing")
    assert set(state) == {r.id for r in reqs}
