from __future__ import annotations

from callcenter.bus import Bus


async def test_a_slow_subscriber_loses_the_oldest_and_is_told() -> None:
    bus = Bus()
    slow = bus.subscribe(size=3)
    agent_only = bus.subscribe(accept=lambda n: n.agent == "PJSIP/1001")
    for i in range(5):
        bus.publish("call", {"i": i}, agent="PJSIP/1001" if i == 2 else None)
    gap = await slow.get()
    assert gap.kind == "gap" and gap.data == {"missed": 2}
    assert [(await slow.get()).data["i"] for _ in range(3)] == [2, 3, 4]
    only = await agent_only.get()
    assert only.data == {"i": 2} and agent_only._queue.empty()
    slow.close()
    bus.publish("call", {"i": 5})
    assert bus.subscribers == 1 and bus.published == 6
