"""Property tests of the journey reducer and the attribution.

Two generators:
- *chaos*: any interleaving of any event type over a few call ids (plus call-less and
  agent-state events and controller notes), random and even out-of-order times. Checks the
  invariants that must hold whatever a PBX adapter sends.
- *scripted journeys*: coherent calls built step by step (pre-answer hang-up, IVR menus,
  queue stints with rings, ring-no-answers, cancels, observed redirects, timeouts, answers),
  each with the outcome / stage / node / stints it must produce *by construction*; several
  such calls interleaved must give the same rows as each call alone.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callcenter.analytics.attribution import ABANDON_STAGES, OUTCOMES, CallSummary, default_steps, summarize
from callcenter.calls.journey import JourneyBook, JourneyRecord, step
from callcenter.domain import events as ev
from callcenter.domain.events import HangupParty, QueueLeaveReason

T0 = datetime(2026, 11, 22, 15, 0, 0, tzinfo=UTC)
PBX = "asterisk-1"
CALL_IDS = ("c1", "c2", "c3")
QUEUES = ("sales", "support", "vip")
AGENTS = ("PJSIP/1001", "PJSIP/1002", "PJSIP/1003")
NODES = ("ivr-main,s", "ivr-lang,s", "menu-2")

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- chaos --------------------------------------------------------------------------------------

times = st.floats(min_value=-5.0, max_value=600.0, allow_nan=False).map(lambda s: T0 + timedelta(seconds=s))
call_ids = st.sampled_from(CALL_IDS)
queues = st.sampled_from(QUEUES)
agents = st.sampled_from(AGENTS)
parties = st.sampled_from(list(HangupParty))
reasons = st.sampled_from(list(QueueLeaveReason))
causes = st.one_of(st.none(), st.sampled_from([0, 16, 17, 19, 21, 31, 34, 38, 127]))


def _event(cls: type[ev.Event], **fields: Any) -> st.SearchStrategy[ev.Event]:
    return st.builds(cls, pbx=st.just(PBX), call_id=call_ids, at=times, **fields)


any_event: st.SearchStrategy[ev.Event] = st.one_of(
    _event(
        ev.CallArrived,
        unique_id=st.just("u"),
        caller_number=st.just("2025550143"),
        caller_name=st.none(),
        did=st.just("5550100"),
    ),
    _event(ev.CallAnswered),
    _event(ev.ControllerAttached),
    _event(ev.ControllerReleased),
    _event(ev.IvrNodeEntered, node=st.sampled_from(NODES)),
    _event(ev.DigitsCollected, digits=st.sampled_from(["", "1", "2"]), hangup=st.booleans()),
    _event(ev.DtmfReceived, digit=st.sampled_from("12#")),
    _event(ev.PromptFinished, hangup=st.booleans()),
    _event(ev.VariableSet, name=st.just("CC_NODE"), value=st.just("x")),
    _event(ev.QueueJoined, queue=queues),
    _event(ev.AgentOffered, queue=queues, agent=agents),
    _event(ev.AgentRingNoAnswer, queue=queues, agent=agents, ring_ms=st.sampled_from([0, 15000])),
    _event(ev.AgentRingCanceled, queue=queues, agent=agents),
    _event(ev.AgentConnected, queue=st.one_of(st.none(), queues), agent=agents),
    _event(ev.AgentCompleted, queue=queues, agent=agents, ended_by=parties),
    _event(ev.QueueLeft, queue=queues, reason=reasons),
    _event(ev.CallEnded, cause=causes, hung_up_by=parties),
    _event(ev.SpyStarted, spyer_channel=st.just("s"), target_channel=st.just("t")),
    _event(ev.OriginateResult, request_id=st.just("r"), success=st.booleans()),
    st.builds(ev.AgentPauseChanged, pbx=st.just(PBX), call_id=st.none(), at=times, agent=agents, paused=st.booleans()),
    st.builds(
        ev.AgentStatusChanged,
        pbx=st.just(PBX),
        call_id=st.one_of(st.none(), call_ids),
        at=times,
        agent=agents,
        status=st.sampled_from(list(ev.AgentStatus)),
    ),
)

# A controller note between events: (call_id, kind, args)
any_note = st.one_of(
    st.tuples(call_ids, st.just("move"), st.tuples(queues, st.one_of(st.none(), queues))),
    st.tuples(call_ids, st.sampled_from(["closed", "callback", "voicemail", "routing"]), st.just(())),
    st.tuples(call_ids, st.just("customer"), st.tuples(st.integers(1, 3), st.booleans())),
)


def _feed_all(items: list[Any]) -> tuple[list[JourneyRecord], list[CallSummary], list[ev.Event]]:
    book = JourneyBook()
    records: list[JourneyRecord] = []
    summaries: list[CallSummary] = []
    fed: list[ev.Event] = []
    now = T0
    for item in items:
        now += timedelta(milliseconds=1)
        if isinstance(item, ev.Event):
            fed.append(item)
            update = book.feed(item, now)
            records += update.records
            if update.summary is not None:
                summaries.append(update.summary)
            continue
        call_id, kind, args = item
        if kind == "move":
            records += book.note_controller_move(call_id, args[0], args[1], now=now)
        elif kind == "customer":
            records += book.note_customer(call_id, customer_id=args[0], vip=args[1], now=now)
        else:
            records += book.note(call_id, kind, now=now)
    return records, summaries, fed


def _book_view(fed: list[ev.Event]) -> dict[str, list[ev.Event]]:
    """Per call, the events the book actually applies (up to and including its first CallEnded;
    spy/originate/release/variable events only once the call is known)."""
    per: dict[str, list[ev.Event]] = defaultdict(list)
    ended: set[str] = set()
    for e in fed:
        if e.call_id is None or e.call_id in ended:
            continue
        if isinstance(e, ev.AgentStatusChanged | ev.AgentPauseChanged | ev.QueueMemberChanged):
            continue
        attach_only = (ev.SpyStarted, ev.SpyStopped, ev.OriginateResult, ev.ControllerReleased, ev.VariableSet)
        if e.call_id not in per and isinstance(e, attach_only):
            continue
        per[e.call_id].append(e)
        if isinstance(e, ev.CallEnded):
            ended.add(e.call_id)
    return per


@SETTINGS
@given(st.lists(st.one_of(any_event, any_event, any_event, any_note), max_size=60))
def test_chaos_invariants(items: list[Any]) -> None:
    records, summaries, fed = _feed_all(items)
    per_call = _book_view(fed)

    # every call that ends gets exactly one summary; no other call does
    ended = [cid for cid, evs in per_call.items() if isinstance(evs[-1], ev.CallEnded)]
    assert sorted(s.call_id for s in summaries) == sorted(ended)

    # seq: 1, 2, 3... per call, in emission order (notes included)
    seqs: dict[str, list[int]] = defaultdict(list)
    for r in records:
        seqs[r.call_id].append(r.seq)
        assert r.pbx_at is not None
    for cid, got in seqs.items():
        assert got == list(range(1, len(got) + 1)), cid

    for s in summaries:
        evs = per_call[s.call_id]
        row = s.to_dict()
        assert s.outcome in OUTCOMES
        assert (s.abandon_stage is None) == (s.outcome != "abandoned")
        assert s.abandon_stage is None or s.abandon_stage in ABANDON_STAGES
        if s.abandon_stage in (None, "pre_answer"):
            assert s.abandon_node is None
        for value in (s.queue_wait_s, s.ivr_s, s.ring_s, s.talk_s):
            assert value is None or value >= 0
        assert all(st_["wait_s"] >= 0 for st_ in row["stints"])
        assert all(st_["outcome"] in ("answered", "abandoned", "moved", "timeout", "exit_key") for st_ in row["stints"])
        assert (s.queue_wait_s is None) == (not s.stints)
        assert s.short_abandon <= (s.outcome == "abandoned")
        assert not s.answered_via_ivr or s.outcome == "answered"
        assert s.offered_agents <= len(AGENTS)

        # (a QueueLeft(answered) only counts when it closes a stint, so it is not used here)
        answered_evidence = any(isinstance(e, ev.AgentConnected | ev.AgentCompleted) for e in evs)
        if s.outcome == "abandoned":
            assert not answered_evidence
        if answered_evidence:
            assert s.outcome == "answered"
        joins = [i for i, e in enumerate(evs) if isinstance(e, ev.QueueJoined)]
        if s.abandon_stage in ("queue", "ringing"):
            assert joins
        if s.abandon_stage == "ringing":
            # some agent phone was offered after the caller's last queue join
            assert any(isinstance(e, ev.AgentOffered) for e in evs[joins[-1] :])
        if s.abandon_stage == "pre_answer":
            answered_by_pbx = (ev.CallAnswered, ev.QueueJoined, ev.DigitsCollected, ev.DtmfReceived, ev.PromptFinished)
            assert not any(isinstance(e, answered_by_pbx) for e in evs)
        assert len(s.stints) == len(joins)


@SETTINGS
@given(st.lists(st.one_of(any_event, any_note), max_size=40))
def test_chaos_is_deterministic(items: list[Any]) -> None:
    a_records, a_summaries, _ = _feed_all(items)
    b_records, b_summaries, _ = _feed_all(items)
    assert [r.to_dict() for r in a_records] == [r.to_dict() for r in b_records]
    assert [s.to_dict() for s in a_summaries] == [s.to_dict() for s in b_summaries]


# -- scripted journeys ---------------------------------------------------------------------------


class Script:
    """Builds one coherent call and what its row must say."""

    def __init__(self, call_id: str, start: float) -> None:
        self.call_id = call_id
        self.t = start
        self.events: list[ev.Event] = []
        self.expect: dict[str, Any] = {}
        self.stints: list[tuple[str, str]] = []  # (queue, outcome)
        self.overflows = 0
        self.wait = 0.0

    def add(self, cls: type[ev.Event], dt: float, **kw: Any) -> None:
        self.t += dt
        self.events.append(cls(pbx=PBX, call_id=self.call_id, at=T0 + timedelta(seconds=self.t), **kw))


gaps = st.floats(min_value=0.001, max_value=30.0, allow_nan=False)


@st.composite
def scripted_call(draw: st.DrawFn, call_id: str) -> Script:
    s = Script(call_id, draw(st.floats(0, 100)))
    s.add(ev.CallArrived, 0, unique_id=call_id, caller_number="2025550143", caller_name=None, did="5550100")
    if draw(st.booleans()) and draw(st.booleans()):  # 1 in 4: gone before the PBX answers
        if draw(st.booleans()):
            s.add(ev.IvrNodeEntered, draw(gaps), node="from-pstn,5550100")
        s.add(ev.CallEnded, draw(gaps), cause=0, hung_up_by=HangupParty.CALLER)
        s.expect = {"outcome": "abandoned", "abandon_stage": "pre_answer", "abandon_node": None}
        return s
    s.add(ev.CallAnswered, draw(gaps))
    node = None
    for n in draw(st.lists(st.sampled_from(NODES), max_size=3)):
        s.add(ev.IvrNodeEntered, draw(gaps), node=n)
        node = n
    via_ivr = node is not None
    if via_ivr and draw(st.booleans()):
        s.add(ev.DtmfReceived, draw(gaps), digit="1")
    n_stints = draw(st.integers(0, 3))
    if n_stints == 0:
        s.add(ev.CallEnded, draw(gaps), cause=0, hung_up_by=HangupParty.CALLER)
        s.expect = {"outcome": "abandoned", "abandon_stage": "ivr", "abandon_node": node}
        return s
    for i in range(n_stints):
        last = i == n_stints - 1
        queue = draw(st.sampled_from(QUEUES))
        s.add(ev.QueueJoined, draw(gaps), queue=queue)
        joined = s.t
        ringing: list[str] = []
        # a few ring attempts that end before the caller leaves
        for agent in draw(st.lists(st.sampled_from(AGENTS), max_size=3)):
            s.add(ev.AgentOffered, draw(gaps), queue=queue, agent=agent)
            s.add(ev.AgentRingNoAnswer, draw(gaps), queue=queue, agent=agent, ring_ms=0)
        if draw(st.booleans()):
            agent = draw(st.sampled_from(AGENTS))
            s.add(ev.AgentOffered, draw(gaps), queue=queue, agent=agent)
            ringing.append(agent)
        choices = ["abandon", "vanish", "answer"] + ([] if last else ["redirect", "timeout"])
        end = draw(st.sampled_from(choices))
        if end in ("redirect", "timeout"):
            for agent in ringing:
                if end == "redirect":
                    s.add(ev.AgentRingCanceled, draw(gaps), queue=queue, agent=agent)
                else:
                    s.add(ev.AgentRingNoAnswer, draw(gaps), queue=queue, agent=agent, ring_ms=15000)
            reason = QueueLeaveReason.ABANDON if end == "redirect" else QueueLeaveReason.TIMEOUT
            s.add(ev.QueueLeft, draw(gaps), queue=queue, reason=reason)
            s.wait += s.t - joined
            s.stints.append((queue, "moved" if end == "redirect" else "timeout"))
            s.overflows += 1
            continue
        if end == "answer":
            agent = ringing[0] if ringing else draw(st.sampled_from(AGENTS))
            if not ringing:
                s.add(ev.AgentOffered, draw(gaps), queue=queue, agent=agent)
            s.add(ev.QueueLeft, draw(gaps), queue=queue, reason=QueueLeaveReason.ANSWERED)
            s.wait += s.t - joined
            s.add(ev.AgentConnected, 0.0005, queue=queue, agent=agent)
            by = draw(st.sampled_from([HangupParty.CALLER, HangupParty.AGENT]))
            s.add(ev.AgentCompleted, draw(gaps), queue=queue, agent=agent, ended_by=by)
            s.add(ev.CallEnded, draw(gaps), cause=16, hung_up_by=HangupParty.UNKNOWN)
            s.stints.append((queue, "answered"))
            s.expect = {
                "outcome": "answered",
                "abandon_stage": None,
                "abandon_node": None,
                "hung_up_by": by.value,
                "agent": agent,
                "answered_via_ivr": via_ivr,
            }
            return s
        stage = "ringing" if ringing else "queue"
        if end == "abandon":
            for agent in ringing:  # Asterisk cancels the member before QueueCallerAbandon
                s.add(ev.AgentRingCanceled, draw(gaps), queue=queue, agent=agent)
            s.add(ev.QueueLeft, draw(gaps), queue=queue, reason=QueueLeaveReason.ABANDON)
            s.wait += s.t - joined
            s.add(ev.CallEnded, draw(gaps), cause=0, hung_up_by=HangupParty.CALLER)
        else:  # "vanish": the leg dies, no queue leave reported at all
            s.add(ev.CallEnded, draw(gaps), cause=0, hung_up_by=HangupParty.CALLER)
            s.wait += s.t - joined
        s.stints.append((queue, "abandoned"))
        s.expect = {"outcome": "abandoned", "abandon_stage": stage, "abandon_node": queue}
        return s
    raise AssertionError("unreachable")


def _check(script: Script, summary: CallSummary) -> None:
    row = summary.to_dict()
    for key, value in script.expect.items():
        assert row[key] == value, (key, row[key], value)
    assert [(x["queue"], x["outcome"]) for x in row["stints"]] == script.stints
    assert row["overflows"] == script.overflows
    if script.stints:
        assert abs(row["queue_wait_s"] - script.wait) < 0.002 * (len(script.stints) + 1)
    else:
        assert row["queue_wait_s"] is None


@SETTINGS
@given(st.data())
def test_scripted_journey_rows(data: st.DataObject) -> None:
    script = data.draw(scripted_call("c1"))
    book = JourneyBook()
    summaries = [u.summary for e in script.events if (u := book.feed(e, e.at)).summary is not None]
    assert len(summaries) == 1
    _check(script, summaries[0])


@settings(SETTINGS, max_examples=100)
@given(st.data())
def test_interleaved_calls_do_not_disturb_each_other(data: st.DataObject) -> None:
    scripts = [data.draw(scripted_call(cid)) for cid in CALL_IDS]
    queues_ = [list(s.events) for s in scripts]
    merged: list[ev.Event] = []
    while any(queues_):
        i = data.draw(st.sampled_from([k for k, q in enumerate(queues_) if q]))
        merged.append(queues_[i].pop(0))
    book = JourneyBook()
    by_id: dict[str, CallSummary] = {}
    for e in merged:
        update = book.feed(e, e.at)
        if update.summary is not None:
            assert update.summary.call_id not in by_id
            by_id[update.summary.call_id] = update.summary
    assert set(by_id) == set(CALL_IDS)
    for script in scripts:
        _check(script, by_id[script.call_id])
        alone = JourneyBook()
        single = [u.summary for e in script.events if (u := alone.feed(e, e.at)).summary is not None]
        assert single[0].to_dict() == by_id[script.call_id].to_dict()


def _fields(state: Any) -> tuple[Any, ...]:
    return tuple(getattr(state, f.name) for f in dataclasses.fields(state))


@SETTINGS
@given(st.lists(st.one_of(any_event, any_note), max_size=40))
def test_states_handed_out_never_change(items: list[Any]) -> None:
    """The reducer changes its own private copy in place while it works (see journey.replace):
    every state it has returned - to the book, to a caller of ``step`` - must stay exactly as
    it was, whatever is fed or noted afterwards."""
    book = JourneyBook()
    kept: list[tuple[Any, tuple[Any, ...]]] = []
    now = T0
    for item in items:
        now += timedelta(milliseconds=1)
        if isinstance(item, ev.Event):
            book.feed(item, now)
        else:
            call_id, kind, args = item
            if kind == "move":
                book.note_controller_move(call_id, args[0], args[1], now=now)
            elif kind == "customer":
                book.note_customer(call_id, customer_id=args[0], vip=args[1], now=now)
            else:
                book.note(call_id, kind, now=now)
        for call_id in CALL_IDS:
            state = book.state(call_id)
            if state is not None:
                kept.append((state, _fields(state)))
    for state, snapshot in kept:
        assert _fields(state) == snapshot


def test_step_leaves_its_input_alone() -> None:
    arrived = ev.CallArrived(pbx=PBX, call_id="c1", at=T0, unique_id="u", caller_number="2025550143",
                             caller_name=None, did="5550100")
    first, _ = step(None, arrived, T0)
    before = _fields(first)
    second, _ = step(first, ev.QueueJoined(pbx=PBX, call_id="c1", at=T0 + timedelta(seconds=3), queue="sales"), T0)
    assert second is not first
    assert _fields(first) == before
    assert second.location == "queue" and first.location != "queue"


def _summarize_by_copies(journey: Any) -> CallSummary:
    """The attribution pipeline as it was: every step's ``replace`` a fresh copy."""
    draft = CallSummary(call_id=journey.call_id, pbx=journey.pbx)
    for fn in default_steps():
        draft = fn(draft, journey)
    return draft


@SETTINGS
@given(st.lists(st.one_of(any_event, any_event, any_note), max_size=60))
def test_summaries_built_in_place_are_the_summaries_built_by_copies(items: list[Any]) -> None:
    """``summarize`` lets its steps change one private draft in place: the summary must be
    the one the copying pipeline gives, for ended calls and for live ones (the wallboard's)."""
    book = JourneyBook()
    now = T0
    ended: list[tuple[CallSummary, Any]] = []
    for item in items:
        now += timedelta(milliseconds=1)
        if isinstance(item, ev.Event):
            update = book.feed(item, now)
            if update.summary is not None:
                ended.append((update.summary, _fields(update.summary)))
        else:
            call_id, kind, args = item
            if kind == "customer":
                book.note_customer(call_id, customer_id=args[0], vip=args[1], now=now)
            elif kind != "move":
                book.note(call_id, kind, now=now)
        for call_id in CALL_IDS:
            state = book.state(call_id)
            if state is not None:
                assert summarize(state) == _summarize_by_copies(state)
    for summary, snapshot in ended:  # and a summary handed out never changes afterwards
        assert _fields(summary) == snapshot
