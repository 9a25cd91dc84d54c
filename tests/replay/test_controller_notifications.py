"""The controller shell on a real trace: live state, bus notifications and the screen pop."""

from __future__ import annotations

from pathlib import Path

from callcenter.app import Controller
from callcenter.domain.events import CallArrived
from callcenter.pbx.asterisk.protocol import AmiParser
from callcenter.pbx.asterisk.trace import read_trace
from callcenter.pbx.asterisk.translate import AsteriskTranslator

TRACES = Path(__file__).parent.parent / "fixtures" / "asterisk"


class CollectingRecorder:
    """Stands in for the PostgreSQL recorder: the shell's contract is these three calls."""

    def __init__(self) -> None:
        self.records: list = []
        self.summaries: list = []
        self.agent_events: list = []

    def submit_records(self, records, pbx):
        self.records.extend(records)

    def submit_summary(self, summary):
        self.summaries.append(summary)

    def submit_agent_event(self, event):
        self.agent_events.append(event)
        return True


async def test_screen_pop_carries_the_customer_and_reaches_only_that_agent() -> None:
    rec = CollectingRecorder()
    ctl = Controller(rec)  # type: ignore[arg-type]
    everything = ctl.bus.subscribe(size=10_000)
    alice = ctl.bus.subscribe(accept=lambda n: n.kind == "screen_pop" and n.agent == "PJSIP/1001")
    bob = ctl.bus.subscribe(accept=lambda n: n.kind == "screen_pop" and n.agent == "PJSIP/1002")
    tr = AsteriskTranslator("ast1")
    for frame in read_trace(TRACES / "answered_caller_hangup.ami.txt"):
        if frame.direction != "recv":
            continue
        for msg in AmiParser().feed(frame.data):
            for ev in tr.feed(msg, frame.at):
                ctl.on_event(ev)
                if isinstance(ev, CallArrived):
                    # routing would set this after the CRM lookup
                    ctl.live.calls[ev.call_id].customer = {"id": 7, "name": "Anna Ivanova", "tier": "vip"}
    pop = await alice.get()
    assert pop.data["customer"] == {"id": 7, "name": "Anna Ivanova", "tier": "vip"}
    assert pop.data["queue"] == "sales" and pop.data["caller"] == "2025550143"
    assert bob._queue.empty()
    kinds = []
    while not everything._queue.empty():
        kinds.append((await everything.get()).kind)
    assert kinds.index("screen_pop") < kinds.index("call_ended")
    assert {"call", "queue", "agent", "call_ended"} <= set(kinds)
    assert len(rec.summaries) == 1 and rec.summaries[0].outcome == "answered"
    assert ctl.live.calls == {} and ctl.stats.handler_errors == 0
