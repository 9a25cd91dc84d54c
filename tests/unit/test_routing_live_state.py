"""The routing service's live state: queues read on demand, the same decisions as all at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from callcenter.calls.live import LiveRegistry, QueueStats
from callcenter.domain.events import QueueJoined
from callcenter.routing.decide import CallInfo, LiveState, QueueLive, decide
from callcenter.routing.loader import parse_rules
from callcenter.routing.service import _LiveQueues

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
RULES = parse_rules(
    """
version: live
timezone: UTC
queues:
  sales: {pbx_queue: {asterisk: sales-q}}
  support: {}
  billing: {}
  vip: {allowed_tiers: [vip]}
rules:
  - id: busy-sales
    when: {did: ["5550100"], live: [{queue: sales, waiting_over: 1}]}
    then: {queue: billing}
  - id: sales
    when: {did: ["5550100"]}
    then: {queue: sales}
fallback: {id: fallback, queue: support}
""",
    "live.yaml",
)


class CountingLive(LiveRegistry):
    def __init__(self) -> None:
        super().__init__()
        self.read: list[str] = []

    def queue_stats(self, name: str, now: datetime) -> QueueStats:
        self.read.append(name)
        return super().queue_stats(name, now)


def eager(live: LiveRegistry, now: datetime) -> LiveState:
    out = {}
    for name, q in RULES.queues.items():
        s = live.queue_stats(q.pbx_name(name, "ast1", "asterisk"), now)
        out[name] = QueueLive(s.logged_in, s.available, s.busy, s.paused, s.waiting, s.longest_wait_s,
                              s.estimated_wait_s)
    return LiveState(out)


def test_queues_are_read_when_the_decision_asks_and_decide_the_same() -> None:
    live = CountingLive()
    for i in range(3):
        live.apply(QueueJoined(pbx="ast1", call_id=f"c{i}", at=T0 - timedelta(seconds=30 - i), queue="sales-q"))
    now = T0
    for did, rule in (("5550100", "busy-sales"), ("5550199", "fallback")):
        call = CallInfo("2025550143", "+12025550143", False, did, now, "ast1", "asterisk")
        live.read.clear()
        lazy = LiveState(_LiveQueues(live, RULES, "ast1", "asterisk", now))
        d = decide(call, None, lazy, RULES, explain=False)
        assert d.rule_id == rule
        # only the queue a tried rule's live condition names, by its PBX name
        assert live.read == (["sales-q"] if did == "5550100" else [])
        assert d == decide(call, None, eager(live, now), RULES, explain=False)
    lazy_queues = _LiveQueues(live, RULES, "ast1", "asterisk", now)
    assert list(lazy_queues) == list(RULES.queues) and len(lazy_queues) == 4
    assert lazy_queues.get("nope") is None
    assert lazy_queues["sales"] is lazy_queues["sales"]  # computed once
    assert dict(lazy_queues) == dict(eager(live, now).queues)
