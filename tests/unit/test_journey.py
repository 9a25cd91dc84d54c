"""Journey reducer + attribution, scenario by scenario.

The event sequences are hand-built from what really happened in each lab scenario of
tests/fixtures/asterisk/TRACES_README.md (times in seconds after the caller's INVITE, taken
from the traces where it matters: e.g. Asterisk reports QueueCallerLeave *before*
AgentConnect, cancels a ringing member *before* QueueCallerAbandon, and reports a Redirect out
of a queue as an abandon). Every summary is compared field by field.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from callcenter.analytics.attribution import (
    FcrMark,
    first_call_resolution,
    summarize,
    summarize_events,
)
from callcenter.calls.journey import JourneyBook, JourneyRecord, step
from callcenter.domain import events as ev
from callcenter.domain.events import HangupParty, QueueLeaveReason

T0 = datetime(2026, 11, 22, 15, 13, 10, tzinfo=UTC)
PBX = "asterisk-1"
ALICE, BOB, CAROL = "PJSIP/1001", "PJSIP/1002", "PJSIP/1003"


def t(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def iso(s: float) -> str:
    return t(s).isoformat()


class Calls:
    """Builds the PBX-neutral events of one call, in order."""

    def __init__(self, call_id: str = "1795360390.0") -> None:
        self.call_id = call_id
        self.events: list[ev.Event] = []

    def _add(self, cls: type[ev.Event], s: float, **kw: Any) -> Calls:
        self.events.append(cls(pbx=PBX, call_id=self.call_id, at=t(s), **kw))
        return self

    def arrived(self, s: float = 0.0, caller: str = "2025550143", did: str = "5550100") -> Calls:
        return self._add(
            ev.CallArrived,
            s,
            unique_id=self.call_id,
            caller_number=caller,
            caller_name=None,
            did=did,
            context="from-pstn",
            channel="PJSIP/pstn-00000000",
        )

    def answered(self, s: float) -> Calls:
        return self._add(ev.CallAnswered, s)

    def node(self, s: float, node: str) -> Calls:
        return self._add(ev.IvrNodeEntered, s, node=node)

    def dtmf(self, s: float, digit: str) -> Calls:
        return self._add(ev.DtmfReceived, s, digit=digit)

    def attached(self, s: float) -> Calls:
        return self._add(ev.ControllerAttached, s)

    def released(self, s: float) -> Calls:
        return self._add(ev.ControllerReleased, s)

    def digits(self, s: float, digits: str, hangup: bool = False) -> Calls:
        return self._add(ev.DigitsCollected, s, digits=digits, hangup=hangup)

    def join(self, s: float, queue: str) -> Calls:
        return self._add(ev.QueueJoined, s, queue=queue, position=1, count=1)

    def offer(self, s: float, queue: str, agent: str) -> Calls:
        return self._add(ev.AgentOffered, s, queue=queue, agent=agent)

    def rna(self, s: float, queue: str, agent: str, ring_ms: int) -> Calls:
        return self._add(ev.AgentRingNoAnswer, s, queue=queue, agent=agent, ring_ms=ring_ms)

    def cancel(self, s: float, queue: str, agent: str) -> Calls:
        return self._add(ev.AgentRingCanceled, s, queue=queue, agent=agent)

    def connect(self, s: float, queue: str, agent: str) -> Calls:
        return self._add(ev.AgentConnected, s, queue=queue, agent=agent)

    def complete(self, s: float, queue: str, agent: str, by: HangupParty) -> Calls:
        return self._add(ev.AgentCompleted, s, queue=queue, agent=agent, ended_by=by)

    def leave(self, s: float, queue: str, reason: QueueLeaveReason) -> Calls:
        return self._add(ev.QueueLeft, s, queue=queue, reason=reason)

    def ended(self, s: float, cause: int | None = 0, by: HangupParty = HangupParty.CALLER) -> Calls:
        return self._add(ev.CallEnded, s, cause=cause, hung_up_by=by)


def run(calls: Calls, **kw: Any) -> tuple[dict[str, Any], list[JourneyRecord]]:
    book = JourneyBook(**kw)
    records: list[JourneyRecord] = []
    summaries = []
    for e in calls.events:
        update = book.feed(e, e.at + timedelta(milliseconds=3))
        records.extend(update.records)
        if update.summary is not None:
            summaries.append(update.summary)
    assert len(summaries) == 1
    assert len(book) == 0
    return summaries[0].to_dict(), records


def expected(call_id: str, **fields: Any) -> dict[str, Any]:
    """A calls row with neutral defaults; each test states every field that matters."""
    base: dict[str, Any] = {
        "call_id": call_id,
        "pbx": PBX,
        "outcome": None,
        "abandon_stage": None,
        "abandon_node": None,
        "short_abandon": False,
        "answered_via_ivr": False,
        "vip": None,
        "customer_id": None,
        "did": "5550100",
        "caller": "2025550143",
        "entered_at": iso(0),
        "answered_at": None,
        "ended_at": None,
        "ivr_s": None,
        "queue_wait_s": None,
        "ring_s": None,
        "talk_s": None,
        "stints": [],
        "overflows": 0,
        "queue": None,
        "agent": None,
        "hung_up_by": "caller",
        "offered_agents": 0,
        "missed_rings": 0,
        "rules_version": None,
        "rule_id": None,
        "ivr_path": [],
        "end_cause": 0,
        "partial": False,
    }
    unknown = set(fields) - set(base)
    assert not unknown, unknown
    base.update(fields)
    return base


def assert_row(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert set(got) == set(want)
    diffs = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    assert not diffs, diffs


def stint(queue: str, joined: float, left: float, outcome: str, agent: str | None = None, moved_to: str | None = None):
    return {
        "queue": queue,
        "joined_at": iso(joined),
        "left_at": iso(left),
        "wait_s": round(left - joined, 3),
        "outcome": outcome,
        "agent": agent,
        "moved_to": moved_to,
    }


# -- scenarios of the lab traces -----------------------------------------------------------------


def test_ivr_abandon() -> None:
    # caller -> 5550100, presses nothing, BYE 3 s after the 200 OK during Background/WaitExten;
    # unbridged BYE -> final Hangup Cause 0.
    c = Calls("1795360381.0").arrived(0).node(0.002, "from-pstn,5550100").answered(0.005)
    c.node(0.02, "ivr-main,s").ended(3.005, cause=0)
    row, records = run(c)
    assert_row(
        row,
        expected(
            "1795360381.0",
            outcome="abandoned",
            abandon_stage="ivr",
            abandon_node="ivr-main,s",
            short_abandon=True,
            ended_at=iso(3.005),
            ivr_s=3.0,
            ivr_path=["from-pstn,5550100", "ivr-main,s"],
        ),
    )
    assert [r.kind for r in records] == ["arrived", "ivr_node", "answered_by_pbx", "ivr_node", "ended"]
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert records[-1].detail == {"cause": 0, "cause_text": None, "hung_up_by": "caller", "location": "ivr"}
    assert records[-1].ivr_node == "ivr-main,s"


def test_queue_abandon_with_busy_agents_is_a_queue_abandon_not_ringing() -> None:
    # Both members answer with 486: Asterisk 22 reports AgentRingNoAnswer RingTime 0 each time
    # (no busy event), tries again after retry=5 s; the caller hangs up 8 s after the digit,
    # during the retry pause: no phone is ringing.
    c = Calls().arrived(0).answered(0.001).node(0.017, "ivr-main,s").dtmf(1.007, "2").join(1.012, "support")
    c.offer(1.012, "support", ALICE).rna(1.015, "support", ALICE, 0)
    c.offer(1.016, "support", BOB).rna(1.017, "support", BOB, 0)
    c.offer(6.019, "support", ALICE).rna(6.021, "support", ALICE, 0)
    c.offer(6.023, "support", BOB).rna(6.025, "support", BOB, 0)
    c.leave(9.014, "support", QueueLeaveReason.ABANDON).ended(9.015, cause=0)
    row, records = run(c)
    assert_row(
        row,
        expected(
            "1795360390.0",
            outcome="abandoned",
            abandon_stage="queue",
            abandon_node="support",
            ended_at=iso(9.015),
            ivr_s=1.011,
            queue_wait_s=8.002,
            ring_s=0.008,
            stints=[stint("support", 1.012, 9.014, "abandoned")],
            queue="support",
            offered_agents=2,
            missed_rings=4,
            ivr_path=["ivr-main,s"],
        ),
    )
    leave = next(r for r in records if r.kind == "queue_leave")
    assert leave.detail["provisional"] is True  # until the call ends, it may still be a move
    assert leave.detail["outcome"] == "abandoned"


def _answered(by: HangupParty, end_cause: int) -> Calls:
    # caller presses 1 (sales), 1001 rings 2 s and answers. Asterisk order: DialEnd ANSWER,
    # QueueCallerLeave, *then* AgentConnect; AgentComplete before the caller's Hangup.
    c = Calls("1795360405.0").arrived(0).answered(0.002).node(0.016, "ivr-main,s").dtmf(1.008, "1")
    c.join(1.013, "sales").offer(1.014, "sales", ALICE)
    c.leave(3.026, "sales", QueueLeaveReason.ANSWERED).connect(3.027, "sales", ALICE)
    c.complete(9.015, "sales", ALICE, by).ended(9.021, cause=end_cause, by=HangupParty.UNKNOWN)
    return c


@pytest.mark.parametrize("by", [HangupParty.CALLER, HangupParty.AGENT])
def test_answered_call_hung_up_by_caller_or_agent(by: HangupParty) -> None:
    row, records = run(_answered(by, 16))
    assert_row(
        row,
        expected(
            "1795360405.0",
            outcome="answered",
            answered_via_ivr=True,
            answered_at=iso(3.026),  # QueueCallerLeave(answered) is the first sign, 1 ms before
            ended_at=iso(9.021),
            ivr_s=1.011,
            queue_wait_s=2.013,
            ring_s=2.012,
            talk_s=5.989,  # to AgentComplete, not to the caller leg's Hangup
            stints=[stint("sales", 1.013, 3.026, "answered", ALICE)],
            queue="sales",
            agent=ALICE,
            hung_up_by=by.value,  # AgentComplete reason wins over CallEnded's unknown
            offered_agents=1,
            ivr_path=["ivr-main,s"],
            end_cause=16,
        ),
    )
    kinds = [r.kind for r in records]
    assert kinds[-4:] == ["queue_leave", "agent_connect", "agent_complete", "ended"]
    connect = records[kinds.index("agent_connect")]
    assert (connect.queue, connect.agent) == ("sales", ALICE)


def test_agent_connect_before_queue_leave_gives_the_same_row() -> None:
    c = Calls("x").arrived(0).answered(0.002).join(1.0, "sales").offer(1.0, "sales", ALICE)
    c.connect(3.0, "sales", ALICE).leave(3.001, "sales", QueueLeaveReason.ANSWERED)
    c.complete(8.0, "sales", ALICE, HangupParty.CALLER).ended(8.01, cause=16)
    row, records = run(c)
    assert row["outcome"] == "answered"
    assert row["answered_at"] == iso(3.0)
    assert row["stints"] == [stint("sales", 1.0, 3.0, "answered", ALICE)]
    assert row["talk_s"] == 5.0
    assert row["ivr_s"] == 0.998
    assert row["answered_via_ivr"] is False
    assert records[-3].kind == "queue_leave" and records[-3].detail.get("unmatched") is True


def test_ring_no_answer_then_abandon_while_the_next_agent_rings() -> None:
    # queue_timeout_ringnoanswer: 180 and never answer. 1001 rings 15 s (RingTime 15000 ms),
    # retry 5 s, 1002 rings, the caller leaves 20 s after the digit: Asterisk cancels 1002's
    # ringing (RINGCANCELED) *before* QueueCallerAbandon -> abandoned while ringing.
    c = Calls("q").arrived(0).answered(0.002).node(0.02, "ivr-main,s").dtmf(1.0, "2").join(1.005, "support")
    c.offer(1.006, "support", ALICE).rna(16.006, "support", ALICE, 15000)
    c.offer(21.01, "support", BOB).cancel(21.2, "support", BOB)
    c.leave(21.203, "support", QueueLeaveReason.ABANDON).ended(21.204, cause=0)
    row, _ = run(c)
    assert_row(
        row,
        expected(
            "q",
            outcome="abandoned",
            abandon_stage="ringing",
            abandon_node="support",
            ended_at=iso(21.204),
            ivr_s=1.003,
            queue_wait_s=20.198,
            ring_s=15.19,
            stints=[stint("support", 1.005, 21.203, "abandoned")],
            queue="support",
            offered_agents=2,
            missed_rings=1,
            ivr_path=["ivr-main,s"],
        ),
    )


def test_abandon_during_retry_pause_after_timeout_is_queue_stage() -> None:
    c = Calls("q2").arrived(0).answered(0.002).join(1.0, "support")
    c.offer(1.0, "support", ALICE).rna(16.0, "support", ALICE, 15000)
    c.leave(18.0, "support", QueueLeaveReason.ABANDON).ended(18.001)
    row, _ = run(c)
    assert (row["outcome"], row["abandon_stage"], row["abandon_node"]) == ("abandoned", "queue", "support")
    assert row["ring_s"] == 15.0


def _overflow_redirect(call_id: str = "1795360811.0") -> Calls:
    # caller presses 1 (sales); 1001 rings for 10 s; the controller sets QUEUE_MIN_PENALTY and
    # Redirects to cc-queue,support. Asterisk: DialEnd CANCEL, QueueCallerAbandon (sales,
    # HoldTime 10), QueueCallerLeave, QueueCallerJoin support 2 ms later; Carol answers after 1 s.
    c = Calls(call_id).arrived(0, caller="2025550194").answered(0.001).node(0.017, "ivr-main,s")
    c.dtmf(1.008, "1").join(1.009, "sales").offer(1.010, "sales", ALICE)
    c.cancel(11.013, "sales", ALICE).leave(11.016, "sales", QueueLeaveReason.ABANDON)
    c.join(11.018, "support").offer(11.019, "support", CAROL)
    c.leave(12.023, "support", QueueLeaveReason.ANSWERED).connect(12.024, "support", CAROL)
    c.complete(15.513, "support", CAROL, HangupParty.CALLER).ended(15.517, cause=16)
    return c


def _overflow_row(call_id: str) -> dict[str, Any]:
    return expected(
        call_id,
        caller="2025550194",
        outcome="answered",
        answered_via_ivr=True,
        answered_at=iso(12.023),
        ended_at=iso(15.517),
        ivr_s=1.008,
        queue_wait_s=11.012,
        ring_s=11.007,
        talk_s=3.49,
        stints=[
            stint("sales", 1.009, 11.016, "moved", moved_to="support"),
            stint("support", 11.018, 12.023, "answered", CAROL),
        ],
        overflows=1,
        queue="support",
        agent=CAROL,
        offered_agents=2,
        ivr_path=["ivr-main,s"],
        end_cause=16,
    )


def test_observed_overflow_redirect_is_one_answered_call_never_an_abandon_in_sales() -> None:
    row, records = run(_overflow_redirect())
    assert_row(row, _overflow_row("1795360811.0"))
    leave = next(r for r in records if r.kind == "queue_leave")
    assert leave.queue == "sales"
    assert leave.detail["provisional"] is True and leave.detail["outcome"] == "abandoned"
    overflow = next(r for r in records if r.kind == "overflow")
    assert overflow.detail == {
        "from_queue": "sales",
        "to_queue": "support",
        "by": "observed",
        "rewrites_seq": leave.seq,
        "stint_outcome": "moved",
    }
    assert records.index(overflow) == records.index(leave) + 1  # right before the new queue_join
    assert records[records.index(overflow) + 1].kind == "queue_join"


def test_controller_move_is_moved_from_the_start() -> None:
    c = _overflow_redirect("m1")
    book = JourneyBook()
    records: list[JourneyRecord] = []
    summary = None
    for e in c.events:
        if isinstance(e, ev.AgentRingCanceled):  # the controller notes the move before Redirect
            records += book.note_controller_move("m1", "sales", "support", now=e.at, rules_version="v7", rule_id="ovf")
        update = book.feed(e, e.at)
        records += update.records
        summary = update.summary or summary
    assert summary is not None
    assert_row(summary.to_dict(), _overflow_row("m1") | {"rules_version": "v7", "rule_id": "ovf"})
    move = next(r for r in records if r.kind == "move_requested")
    assert (move.queue, move.detail["to_queue"], move.rules_version, move.rule_id) == ("sales", "support", "v7", "ovf")
    assert move.pbx_at == t(1.010)  # latest PBX time seen for the call (keeps (at, seq) in order)
    leave = next(r for r in records if r.kind == "queue_leave")
    assert leave.detail["outcome"] == "moved" and leave.detail["provisional"] is False
    overflow = next(r for r in records if r.kind == "overflow")
    assert overflow.detail["by"] == "controller"


def test_controller_move_noted_after_the_pbx_reported_the_abandon() -> None:
    c = _overflow_redirect("m2")
    book = JourneyBook()
    summary = None
    move_records: list[JourneyRecord] = []
    for e in c.events:
        update = book.feed(e, e.at)
        if isinstance(e, ev.QueueLeft) and e.queue == "sales":
            move_records = book.note_controller_move("m2", "sales", "support", now=e.at)
        summary = update.summary or summary
    assert summary is not None
    assert_row(summary.to_dict(), _overflow_row("m2"))
    assert move_records[0].detail["rewrites_seq"] is not None


def test_abandon_in_sales_stands_when_the_call_ends_without_rejoining() -> None:
    c = Calls("a").arrived(0).answered(0.001).dtmf(1.0, "1").join(1.001, "sales").offer(1.002, "sales", ALICE)
    c.cancel(11.0, "sales", ALICE).leave(11.001, "sales", QueueLeaveReason.ABANDON).ended(11.002)
    row, _ = run(c)
    assert (row["outcome"], row["abandon_stage"], row["abandon_node"]) == ("abandoned", "ringing", "sales")
    assert row["stints"] == [stint("sales", 1.001, 11.001, "abandoned")]
    assert row["overflows"] == 0
    assert row["ivr_s"] == 1.0  # no IVR node, but the PBX answered 1 s before the queue


def test_pre_answer_abandon() -> None:
    # Dialplan priorities run before Answer(): the node alone doesn't mean answered.
    c = Calls("p").arrived(0).node(0.001, "from-pstn,5550100").ended(2.0, cause=0)
    row, _ = run(c)
    assert_row(
        row,
        expected(
            "p",
            outcome="abandoned",
            abandon_stage="pre_answer",
            short_abandon=True,
            ended_at=iso(2.0),
            ivr_path=["from-pstn,5550100"],
        ),
    )


@pytest.mark.parametrize(
    ("end_s", "threshold", "short"),
    [(3.0, 5.0, True), (5.0, 5.0, True), (5.001, 5.0, False), (3.0, 2.0, False), (30.0, 60.0, True)],
)
def test_short_abandon_threshold(end_s: float, threshold: float, short: bool) -> None:
    c = Calls("s").arrived(0).answered(0.0).node(0.0, "ivr-main,s").ended(end_s)
    row, _ = run(c, short_abandon_s=threshold)
    assert row["outcome"] == "abandoned"
    assert row["short_abandon"] is short
    events_rows = summarize_events(c.events, short_abandon_s=threshold)
    assert [r["short_abandon"] for r in events_rows] == [short]


def test_answered_calls_are_never_short_abandons() -> None:
    c = Calls("s").arrived(0).answered(0.0).join(0.1, "sales").connect(1.0, "sales", ALICE).ended(2.0, cause=16)
    row, _ = run(c)
    assert (row["outcome"], row["short_abandon"]) == ("answered", False)


def test_direct_call_parked_then_redirected_is_not_via_ivr() -> None:
    # redirect_flow: 5550199 answers and plays MOH (no menu); the controller Redirects it to
    # cc-queue,sales; 1001 answers; the caller hangs up at 16 s.
    c = Calls("r").arrived(0, caller="2025550177", did="5550199").answered(0.003)
    c.join(1.2, "sales").offer(1.201, "sales", ALICE).leave(3.2, "sales", QueueLeaveReason.ANSWERED)
    c.connect(3.201, "sales", ALICE).complete(16.0, "sales", ALICE, HangupParty.CALLER).ended(16.004, cause=16)
    row, _ = run(c)
    assert_row(
        row,
        expected(
            "r",
            caller="2025550177",
            did="5550199",
            outcome="answered",
            answered_via_ivr=False,
            answered_at=iso(3.2),
            ended_at=iso(16.004),
            ivr_s=1.197,
            queue_wait_s=2.0,
            ring_s=1.999,
            talk_s=12.8,
            stints=[stint("sales", 1.2, 3.2, "answered", ALICE)],
            queue="sales",
            agent=ALICE,
            offered_agents=1,
            end_cause=16,
        ),
    )


def test_controller_ivr_digits_count_as_via_ivr() -> None:
    # asyncagi_ivr: AsyncAGIStart, GET DATA (caller keys 1), SET VARIABLE..., ASYNCAGI BREAK,
    # Queue(sales), 1001 answers after 1 s, caller BYE after ~4.4 s of talk.
    c = Calls("g").arrived(0, caller="2025550188", did="5550110").answered(0.002).attached(0.01)
    c.digits(3.5, "1").released(5.0).join(5.002, "sales").offer(5.003, "sales", ALICE)
    c.leave(6.004, "sales", QueueLeaveReason.ANSWERED).connect(6.005, "sales", ALICE)
    c.complete(10.4, "sales", ALICE, HangupParty.CALLER).ended(10.41, cause=16)
    row, records = run(c)
    assert row["answered_via_ivr"] is True
    assert row["ivr_path"] == []
    assert row["ivr_s"] == 5.0
    assert (row["outcome"], row["agent"], row["talk_s"]) == ("answered", ALICE, 4.396)
    digits = next(r for r in records if r.kind == "digits")
    assert digits.detail == {"digits": "1", "timeout": False, "hangup": False, "command_id": None}


def test_caller_hangup_during_controller_menu_is_an_ivr_abandon() -> None:
    # asyncagi_hangup_in_ivr: GET DATA 10000, BYE 4 s after answer: AsyncAGIExec result=-1.
    c = Calls("h").arrived(0, did="5550110").answered(0.002).attached(0.01).node(0.011, "main-menu")
    c.digits(4.0, "", hangup=True).released(4.0).ended(4.001, cause=0)
    row, _ = run(c)
    assert (row["outcome"], row["abandon_stage"], row["abandon_node"]) == ("abandoned", "ivr", "main-menu")
    assert row["short_abandon"] is True


def test_queue_timeout_then_next_queue_is_an_overflow() -> None:
    c = Calls("o").arrived(0).answered(0.0).join(1.0, "sales").leave(31.0, "sales", QueueLeaveReason.TIMEOUT)
    c.join(31.001, "support").connect(40.0, "support", BOB).ended(50.0, cause=16)
    row, records = run(c)
    assert row["stints"] == [
        stint("sales", 1.0, 31.0, "timeout", moved_to="support"),
        stint("support", 31.001, 40.0, "answered", BOB),
    ]
    assert row["overflows"] == 1
    assert next(r for r in records if r.kind == "overflow").detail["by"] == "timeout"


def test_back_to_ivr_after_a_redirect_out_of_the_queue() -> None:
    c = Calls("b").arrived(0).answered(0.0).node(0.1, "ivr-main,s").join(1.0, "sales")
    c.leave(5.0, "sales", QueueLeaveReason.ABANDON).node(5.002, "ivr-closed,s").ended(9.0)
    row, records = run(c)
    assert row["stints"] == [stint("sales", 1.0, 5.0, "moved")]
    assert (row["outcome"], row["abandon_stage"], row["abandon_node"]) == ("abandoned", "ivr", "ivr-closed,s")
    assert row["ivr_s"] == 4.998  # 0..1 before the queue, 5.002..9 back in the menu
    assert any(r.kind == "moved_to_ivr" for r in records)
    assert row["overflows"] == 0


# -- outcomes other than answered / abandoned ------------------------------------------------------


def _book_with(call: Calls, notes: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    book = JourneyBook()
    summary = None
    for i, e in enumerate(call.events):
        update = book.feed(e, e.at)
        if i == 0:
            for kind, detail in notes:
                book.note(call.call_id, kind, now=e.at, detail=detail, rules_version="v1", rule_id=kind)
        summary = update.summary or summary
    assert summary is not None
    return summary.to_dict()


def _ivr_call(call_id: str) -> Calls:
    return Calls(call_id).arrived(0).answered(0.0).node(0.0, "ivr-main,s").ended(20.0, cause=16)


@pytest.mark.parametrize(
    ("notes", "outcome"),
    [
        ([("closed", {})], "closed"),
        ([("routing", {"closed": True})], "closed"),
        ([("callback", {"at": "2026-11-23T09:00"})], "callback"),
        ([("voicemail", {})], "voicemail"),
        ([("closed", {}), ("voicemail", {})], "voicemail"),
        ([("closed", {}), ("callback", {})], "callback"),
        ([("routing", {"closed": "yes"})], "abandoned"),  # flags must be real booleans
    ],
)
def test_routing_markers(notes: list[tuple[str, dict[str, Any]]], outcome: str) -> None:
    row = _book_with(_ivr_call("k"), notes)
    assert row["outcome"] == outcome
    assert (row["abandon_stage"] is None) == (outcome != "abandoned")
    assert row["rules_version"] == "v1"


def test_answered_beats_a_callback_marker() -> None:
    c = Calls("k2").arrived(0).answered(0.0).join(1.0, "sales").connect(2.0, "sales", ALICE).ended(9.0, cause=16)
    assert _book_with(c, [("callback", {})])["outcome"] == "answered"


@pytest.mark.parametrize(
    ("cause", "by", "outcome"),
    [
        (0, HangupParty.UNKNOWN, "abandoned"),  # Asterisk: unbridged caller BYE
        (16, HangupParty.CALLER, "abandoned"),
        (127, HangupParty.UNKNOWN, "abandoned"),
        (38, HangupParty.UNKNOWN, "failed"),  # network out of order
        (34, HangupParty.UNKNOWN, "failed"),  # no circuit available
        (16, HangupParty.SYSTEM, "failed"),  # the PBX hung up on the caller
    ],
)
def test_failed_vs_abandoned(cause: int, by: HangupParty, outcome: str) -> None:
    c = Calls("f").arrived(0).ended(0.5, cause=cause, by=by)
    row, _ = run(c)
    assert row["outcome"] == outcome
    assert row["abandon_stage"] == ("pre_answer" if outcome == "abandoned" else None)
    assert row["hung_up_by"] == by.value


def test_vip_customer_from_the_crm_at_call_time() -> None:
    c = _ivr_call("v")
    book = JourneyBook()
    book.feed(c.events[0], t(0))
    recs = book.note_customer("v", customer_id=42, vip=True, tier="vip", now=t(0.01))
    assert recs[0].kind == "customer" and recs[0].detail == {"customer_id": 42, "vip": True, "tier": "vip"}
    summary = None
    for e in c.events[1:]:
        summary = book.feed(e, e.at).summary or summary
    assert summary is not None
    assert (summary.vip, summary.customer_id) == (True, 42)
    rows = summarize_events(_ivr_call("w").events, customers={"2025550143": (7, False)})
    assert (rows[0]["vip"], rows[0]["customer_id"]) == (False, 7)
    assert summarize_events(_ivr_call("u").events)[0]["vip"] is None


# -- book mechanics --------------------------------------------------------------------------------


def test_book_ignores_agent_state_and_callless_events_and_late_legs() -> None:
    book = JourneyBook()
    assert book.feed(ev.AgentPauseChanged(pbx=PBX, call_id=None, at=t(0), agent=ALICE, paused=True), t(0)).records == []
    assert (
        book.feed(ev.SpyStarted(pbx=PBX, call_id="zz", at=t(0), spyer_channel="a", target_channel="b"), t(0)).records
        == []
    )
    assert len(book) == 0
    c = _answered(HangupParty.CALLER, 16)
    for e in c.events:
        book.feed(e, e.at)
    assert len(book) == 0
    # the agent leg's Hangup comes after the caller's: must not resurrect the call
    late = ev.CallEnded(pbx=PBX, call_id=c.call_id, at=t(9.03), cause=16)
    update = book.feed(late, t(9.03))
    assert update.records == [] and update.summary is None and len(book) == 0
    assert book.late_events == 1


def test_spy_records_on_a_live_call() -> None:
    c = _answered(HangupParty.CALLER, 16)
    book = JourneyBook()
    kinds = []
    for e in c.events:
        if isinstance(e, ev.AgentCompleted):
            spy = ev.SpyStarted(
                pbx=PBX,
                call_id=c.call_id,
                at=e.at,
                spyer_channel="PJSIP/1009-1",
                target_channel="PJSIP/1001-1",
                mode=ev.SpyMode.WHISPER,
            )
            kinds += [r.kind for r in book.feed(spy, e.at).records]
        kinds += [r.kind for r in book.feed(e, e.at).records]
    assert "spy_start" in kinds


def test_records_are_deterministic_and_seq_strictly_increasing() -> None:
    c = _overflow_redirect()
    _, first = run(c)
    _, second = run(c)
    assert [r.to_dict() for r in first] == [r.to_dict() for r in second]
    assert [r.seq for r in first] == list(range(1, len(first) + 1))
    assert all(r.pbx_at is not None and r.rules_version is None for r in first)


def test_step_is_pure_and_rejects_foreign_events() -> None:
    c = _overflow_redirect()
    state, _ = step(None, c.events[0], t(0))
    before = state
    state2, recs = step(state, c.events[1], t(1))
    assert state is before and state2 is not state and recs[0].seq == 2
    other = ev.CallAnswered(pbx=PBX, call_id="other", at=t(1))
    with pytest.raises(ValueError):
        step(state, other, t(1))
    with pytest.raises(ValueError):
        step(None, ev.CallAnswered(pbx=PBX, call_id=None, at=t(1)), t(1))


def test_summary_of_a_live_journey_and_unfinished_calls_in_summarize_events() -> None:
    c = Calls("live").arrived(0).answered(0.0).join(1.0, "sales")
    state = None
    for e in c.events:
        state, _ = step(state, e, e.at)
    assert state is not None
    s = summarize(state)
    assert s.ended_at is None and s.stints[0].left_at is None
    # a trace cut mid-call reports nothing for that call (no fake abandon)
    assert summarize_events(c.events) == []
    assert len(summarize_events(c.events + _ivr_call("done").events)) == 1


# -- first-call resolution -----------------------------------------------------------------------


def test_first_call_resolution() -> None:
    h = timedelta(hours=1)
    calls = [
        (1, T0, "answered", "a1"),
        (1, T0 + 10 * h, "abandoned", "a2"),  # a retry within 72 h: a1 not resolved
        (1, T0 + 20 * h, "answered", "a3"),
        (1, T0 + 100 * h, "answered", "a4"),  # 80 h after a3: a3 resolved, a4 is no repeat
        (2, T0, "answered", "b1"),
        (2, T0 + 72 * h, "answered", "b2"),  # exactly at the window edge: counts
        (3, T0, "abandoned", "c1"),
        (3, T0 + h, "answered", "c2"),  # after an unanswered call only: no repeat_of
        (None, T0, "answered", "n1"),
        (4, T0, "answered", "d1"),
        (4, T0, "answered", "d2"),  # same instant: neither repeats the other
    ]
    marks = first_call_resolution(calls, as_of=T0 + 1000 * h)
    assert marks == {
        "a1": FcrMark(None, False),
        "a2": FcrMark("a1", None),
        "a3": FcrMark("a1", True),
        "a4": FcrMark(None, True),
        "b1": FcrMark(None, False),
        "b2": FcrMark("b1", True),
        "c1": FcrMark(None, None),
        "c2": FcrMark(None, True),
        "n1": FcrMark(None, None),
        "d1": FcrMark(None, True),
        "d2": FcrMark(None, True),
    }


def test_first_call_resolution_window_and_open_window() -> None:
    h = timedelta(hours=1)
    calls = [("x", T0, "answered", "x1"), ("x", T0 + 5 * h, "answered", "x2")]
    assert first_call_resolution(calls, window=timedelta(hours=4)) == {
        "x1": FcrMark(None, True),
        "x2": FcrMark(None, True),
    }
    marks = first_call_resolution(calls, as_of=T0 + 10 * h)
    assert marks["x1"] == FcrMark(None, False)
    assert marks["x2"] == FcrMark("x1", None)  # its 72 h are not over yet


# -- menus vs hold nodes ---------------------------------------------------------------------------


def _parked(call_id: str, answered: bool) -> Calls:
    # redirect_flow as the translator sees it: the caller waits in MusicOnHold in park-like,s
    # (an IVR-stage place) until the controller Redirects it into a queue.
    c = Calls(call_id).arrived(0, caller="2025550177", did="5550199").answered(0.002).node(0.017, "park-like,s")
    if not answered:
        return c.ended(4.0, cause=0)
    c.join(1.02, "sales").offer(1.022, "sales", ALICE).leave(3.04, "sales", QueueLeaveReason.ANSWERED)
    return c.connect(3.041, "sales", ALICE).complete(16.0, "sales", ALICE, HangupParty.CALLER).ended(16.002, cause=16)


def test_hold_nodes_are_not_menus_but_still_ivr_stage_places() -> None:
    held = _parked("h1", answered=True)
    assert run(held)[0]["answered_via_ivr"] is True  # without configuration a node is a menu
    row, _ = run(held, hold_nodes={"park-like,s"})
    assert (row["outcome"], row["answered_via_ivr"], row["ivr_path"]) == ("answered", False, ["park-like,s"])
    rows = summarize_events(held.events, hold_nodes=["park-like,s"])
    assert rows[0]["answered_via_ivr"] is False
    gone, _ = run(_parked("h2", answered=False), hold_nodes={"park-like,s"})
    assert (gone["outcome"], gone["abandon_stage"], gone["abandon_node"]) == ("abandoned", "ivr", "park-like,s")


def test_a_menu_after_the_agent_is_not_via_ivr() -> None:
    # post-call survey: the node comes after the conversation
    c = Calls("sv").arrived(0).answered(0.0).join(0.5, "sales").connect(2.0, "sales", ALICE)
    c.complete(10.0, "sales", ALICE, HangupParty.AGENT).node(10.01, "survey,s").ended(20.0, cause=16)
    row, _ = run(c)
    assert (row["answered_via_ivr"], row["ivr_path"], row["ivr_s"]) == (False, ["survey,s"], 0.5)
    assert row["hung_up_by"] == "agent"


def test_a_move_that_loses_the_race_to_an_agent_is_used_up() -> None:
    c = Calls("race").arrived(0).answered(0.0).join(1.0, "sales").offer(1.0, "sales", ALICE)
    book = JourneyBook()
    for e in c.events:
        book.feed(e, e.at)
    book.note_controller_move("race", "sales", "support", now=t(5.0))
    # Alice answered just before the Redirect was carried out: answered, not moved
    tail = Calls("race").leave(5.0, "sales", QueueLeaveReason.ANSWERED).connect(5.001, "sales", ALICE)
    tail.complete(9.0, "sales", ALICE, HangupParty.AGENT)
    # later the caller is sent to sales again and hangs up there: a real abandon
    tail.join(9.5, "sales").leave(12.0, "sales", QueueLeaveReason.ABANDON).ended(12.001)
    summary = None
    for e in tail.events:
        summary = book.feed(e, e.at).summary or summary
    assert summary is not None
    assert [(s.queue, s.outcome) for s in summary.stints] == [("sales", "answered"), ("sales", "abandoned")]
    assert (summary.outcome, summary.agent, summary.overflows) == ("answered", ALICE, 0)
