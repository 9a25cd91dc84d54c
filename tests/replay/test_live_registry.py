"""The live registry, fed the real traces: what the wallboard and the router would see."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from callcenter.calls.live import LiveRegistry
from callcenter.domain.events import CallEnded, Event
from callcenter.pbx.asterisk.protocol import AmiParser
from callcenter.pbx.asterisk.trace import read_trace
from callcenter.pbx.asterisk.translate import AsteriskTranslator

TRACES = Path(__file__).parent.parent / "fixtures" / "asterisk"


def events(name: str) -> list[Event]:
    tr = AsteriskTranslator("ast1")
    out: list[Event] = []
    for frame in read_trace(TRACES / f"{name}.ami.txt"):
        if frame.direction != "recv":
            continue
        for msg in AmiParser().feed(frame.data):
            out.extend(tr.feed(msg, frame.at))
    return out


def feed_until(reg: LiveRegistry, evs: list[Event], stop) -> Event:
    for ev in evs:
        reg.apply(ev)
        if stop(ev):
            return ev
    raise AssertionError("stop condition never met")


def test_overflow_is_a_move_not_an_abandon_and_sl_counts_from_first_entry() -> None:
    reg = LiveRegistry(sl_threshold_s=20)
    evs = events("overflow_redirect")
    last = feed_until(reg, evs, lambda e: e.type == "agent_connected")
    now = last.at
    call = next(iter(reg.calls.values()))
    assert call.stage == "talking" and call.queue == "support" and call.agent == "PJSIP/1003"
    assert reg.queue_dict("sales", now)["abandoned_today"] == 0
    support = reg.queue_dict("support", now)
    assert support["answered_today"] == 1 and support["waiting"] == 0
    # 11 s from the first queue entry (sales) to the answer in support: within 20 s
    assert support["service_level_today"] == 1.0
    for ev in evs[evs.index(last) + 1:]:
        reg.apply(ev)
    assert reg.calls == {}
    assert reg.agents["PJSIP/1003"].call_id is None


def test_a_queue_abandon_counts_and_the_waiting_caller_is_visible_before() -> None:
    reg = LiveRegistry()
    evs = events("queue_abandon")
    ev = feed_until(reg, evs, lambda e: e.type == "queue_joined")
    snap = reg.queue_dict("support", ev.at + timedelta(seconds=3))
    assert snap["waiting"] == 1 and snap["longest_wait_s"] == 3.0
    for e in evs[evs.index(ev) + 1:]:
        reg.apply(e)
        if isinstance(e, CallEnded):
            break
    assert reg.queue_dict("support", ev.at)["abandoned_today"] == 1
    assert reg.agents["PJSIP/1001"].missed_today >= 1


def test_pause_with_reason_and_membership() -> None:
    reg = LiveRegistry()
    evs = events("queue_pause_reason")
    feed_until(reg, evs, lambda e: e.type == "agent_pause_changed" and getattr(e, "paused", False))
    alice = reg.agents["PJSIP/1001"]
    assert alice.paused and alice.pause_reason == "lunch"
    assert not alice.available
    for e in evs:
        reg.apply(e)
    assert not reg.agents["PJSIP/1001"].paused
    assert "PJSIP/1003" not in reg.queue("sales").members  # Carol was added, then removed


def test_estimated_wait_uses_staffed_agents_and_aht() -> None:
    from datetime import UTC, datetime

    from callcenter.domain.events import (
        AgentCompleted,
        AgentPauseChanged,
        AgentStatus,
        AgentStatusChanged,
        QueueJoined,
    )

    t = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    reg = LiveRegistry(default_aht_s=120, aht_weight=0.5)
    for agent in ("PJSIP/1001", "PJSIP/1002", "PJSIP/1003"):
        reg.apply(AgentStatusChanged(pbx="a", call_id=None, at=t, agent=agent, status=AgentStatus.AVAILABLE,
                                     queue="sales"))
    reg.apply(AgentPauseChanged(pbx="a", call_id=None, at=t, agent="PJSIP/1003", paused=True, reason="lunch",
                                queue="sales"))
    assert reg.queue_stats("sales", t).estimated_wait_s == 0.0  # agents free, nobody waiting
    for n in range(3):
        reg.apply(QueueJoined(pbx="a", call_id=f"c{n}", at=t + timedelta(seconds=n), queue="sales"))
    s = reg.queue_stats("sales", t + timedelta(seconds=10))
    assert (s.logged_in, s.paused, s.waiting, s.longest_wait_s) == (3, 1, 3, 10.0)
    assert s.estimated_wait_s == 240.0  # (3 + 1) * 120 / 2 staffed
    reg.apply(AgentCompleted(pbx="a", call_id="x", at=t, queue="sales", agent="PJSIP/1001", talk_s=60))
    assert reg.queue("sales").aht_s == 60  # first observation replaces the default
    reg.apply(AgentCompleted(pbx="a", call_id="y", at=t, queue="sales", agent="PJSIP/1001", talk_s=100))
    assert reg.queue("sales").aht_s == 80  # 0.5 * 60 + 0.5 * 100
    assert reg.queue_stats("sales", t + timedelta(seconds=10)).estimated_wait_s == 160.0
