"""Sticky routing rings the customer's own agent with Dial() before the queue. No capture has
a plain Dial(), but app_queue's member dials publish the same DialBegin/DialEnd through the
same dial API: the answered_caller_hangup trace with app_queue's own events removed is what a
caller's Dial() to that agent looks like on AMI."""

from __future__ import annotations

from pathlib import Path

from callcenter.analytics.attribution import summarize_events
from callcenter.domain.events import AgentConnected, AgentOffered, AgentRingNoAnswer, Event
from callcenter.pbx.asterisk.protocol import AmiParser
from callcenter.pbx.asterisk.trace import read_trace
from callcenter.pbx.asterisk.translate import AsteriskTranslator

TRACES = Path(__file__).parent.parent / "fixtures" / "asterisk"
QUEUE_ONLY = {b"QueueCallerJoin", b"QueueCallerLeave", b"AgentCalled", b"AgentConnect", b"AgentComplete",
              b"QueueMemberStatus", b"QueueCallerAbandon", b"AgentRingNoAnswer"}


def direct_dial_events(name: str, *, rewrite: tuple[bytes, bytes] | None = None) -> list[Event]:
    tr = AsteriskTranslator("ast1")
    out: list[Event] = []
    for frame in read_trace(TRACES / f"{name}.ami.txt"):
        if frame.direction != "recv":
            continue
        data = frame.data
        if data.startswith(b"Event: ") and data[7:].split(b"\r\n", 1)[0] in QUEUE_ONLY:
            continue
        if rewrite is not None:
            data = data.replace(*rewrite)
        for msg in AmiParser().feed(data):
            out.extend(tr.feed(msg, frame.at))
    return out


def test_a_direct_dial_that_is_answered_is_an_answered_call_without_queue() -> None:
    events = direct_dial_events("answered_caller_hangup")
    offered = [e for e in events if isinstance(e, AgentOffered)]
    connected = [e for e in events if isinstance(e, AgentConnected)]
    assert [(e.agent, e.queue, e.agent_channel) for e in offered] == [("PJSIP/1001", None, "PJSIP/1001-00000001")]
    assert [(e.agent, e.queue) for e in connected] == [("PJSIP/1001", None)]
    assert connected[0].ring_s == 2  # the agent's phone rang ~2 s (scenario description)
    (row,) = summarize_events(events)
    assert (row["outcome"], row["agent"], row["hung_up_by"]) == ("answered", "PJSIP/1001", "caller")
    assert row["stints"] == [] and row["talk_s"] is not None and row["talk_s"] > 4


def test_a_direct_dial_nobody_answers_is_a_missed_ring_then_the_queue() -> None:
    # The same dial, ended by Dial()'s own timeout instead of an answer.
    events = direct_dial_events("answered_caller_hangup", rewrite=(b"DialStatus: ANSWER", b"DialStatus: NOANSWER"))
    missed = [e for e in events if isinstance(e, AgentRingNoAnswer)]
    assert [(e.agent, e.queue) for e in missed] == [("PJSIP/1001", None)]
    assert missed[0].ring_ms is not None and 1500 < missed[0].ring_ms < 3000
    assert not any(isinstance(e, AgentConnected) for e in events)
