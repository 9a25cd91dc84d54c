"""The traffic model: arrival statistics, determinism, and what caller patience and agent
behaviour do to calls in the simulator (stepped virtual time, no sockets)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
import os
import random
import statistics
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from callcenter.pbx.asterisk.translate import AsteriskTranslator
from callcenter.sim.asterisk import AsteriskSim
from callcenter.sim.traffic import DEMO_SHAPE, AgentProfile, Dist, Traffic, TrafficModel

MIDNIGHT = 1_795_305_600.0  # a UTC midnight: the daily shape's hour 0

pytestmark = pytest.mark.timeout(30)


@asynccontextmanager
async def stepped(seed: int = 1, epoch: float = MIDNIGHT, **kw: object) -> AsyncIterator[AsteriskSim]:
    sim = AsteriskSim(seed=seed, speed=math.inf, epoch=epoch, **kw)  # type: ignore[arg-type]
    await sim.start(listen=False)
    try:
        yield sim
    finally:
        await sim.close()
    assert sim.kernel.errors == []


def test_distributions_have_their_means() -> None:
    rng = random.Random(3)
    for dist, mean in (
        (Dist.exp(60), 60),
        (Dist.uniform(2, 6), 4),
        (Dist.lognormal(180, 0.5), 180),
        (Dist.const(7), 7),
    ):
        xs = [dist.sample(rng) for _ in range(20_000)]
        assert statistics.fmean(x for x in xs if x is not None) == pytest.approx(mean, rel=0.03), dist
        assert dist.mean == mean
    assert Dist.never().sample(rng) is None and Dist.never().mean == math.inf


def test_poisson_arrival_rate_over_a_long_period() -> None:
    traffic = Traffic(None, TrafficModel(rate_per_hour=120), seed=5)  # type: ignore[arg-type]
    hours = 500
    times = traffic.arrival_times(MIDNIGHT, hours * 3600)
    expected = 120 * hours
    assert abs(len(times) - expected) < 4 * math.sqrt(expected)  # Poisson: sd = sqrt(mean)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert statistics.fmean(gaps) == pytest.approx(30.0, rel=0.02)
    assert statistics.pstdev(gaps) / statistics.fmean(gaps) == pytest.approx(1.0, abs=0.03)  # exponential gaps
    assert all(MIDNIGHT <= t < MIDNIGHT + hours * 3600 for t in times) and times == sorted(times)


def test_daily_shape_modulates_the_rate_by_hour() -> None:
    model = TrafficModel(rate_per_hour=100, daily_shape=DEMO_SHAPE)
    days = 50
    times = Traffic(None, model, seed=9).arrival_times(MIDNIGHT, days * 86400)  # type: ignore[arg-type]
    by_hour = Counter(int((t - MIDNIGHT) % 86400 // 3600) for t in times)
    for hour, factor in enumerate(DEMO_SHAPE):
        expected = 100 * factor * days
        assert abs(by_hour[hour] - expected) < 5 * math.sqrt(expected), (hour, by_hour[hour], expected)
    with pytest.raises(ValueError):
        TrafficModel(daily_shape=(1.0,) * 23)


def test_same_seed_same_arrivals_and_callers() -> None:
    model = TrafficModel.demo()
    a, b, c = (Traffic(None, model, seed=s) for s in (4, 4, 5))  # type: ignore[arg-type]
    assert a.arrival_times(MIDNIGHT, 86400) == b.arrival_times(MIDNIGHT, 86400)
    assert a.arrival_times(MIDNIGHT, 86400) != c.arrival_times(MIDNIGHT, 86400)
    assert [a.script(i) for i in range(50)] == [b.script(i) for i in range(50)]


async def test_patience_produces_abandons_by_stage() -> None:
    model = TrafficModel(
        rate_per_hour=60,
        controller_share=0.0,  # the static IVR: the caller keys 1 after 3 s, then sales
        ivr_choices=(("1", 1.0),),
        key_delay=Dist.const(3.0),
        ivr_patience=Dist.exp(10.0),
        queue_patience=Dist.exp(90.0),
        ring_patience=Dist.const(3.0),
        talk=Dist.never(),
        agents=(
            AgentProfile(
                "1001",
                "Alice",
                queues=("sales",),
                answer_delay=Dist.uniform(0.5, 4.5),
                ring_no_answer_p=0.0,
                handle_time=Dist.exp(60.0),
                hangs_up_p=1.0,
            ),
        ),
    )
    async with stepped(lab=False, record_events=True) as sim:
        traffic = Traffic(sim, model, seed=2)
        traffic.start(duration_s=5 * 3600)  # ~300 calls: the IVR share's sd is ~0.025
        await sim.advance(5 * 3600 + 1200)
        calls = traffic.calls
        outcomes = Counter(c.outcome for c in calls)
        assert set(outcomes) == {"answered", "abandon_ivr", "abandon_queue", "abandon_ringing"}, outcomes
        assert min(outcomes.values()) >= 5, outcomes
        # IVR: the caller reaches the queue 3.014 s after the answer; exponential patience, mean 10
        assert outcomes["abandon_ivr"] / len(calls) == pytest.approx(1 - math.exp(-3.014 / 10), abs=0.08)
        rang_out: list[bool] = []
        for c in calls:
            kinds = c.kinds()
            if c.outcome == "abandon_ivr":
                assert "queue" not in kinds and c.hung_up_by == "caller"
            elif c.outcome == "abandon_queue":
                assert "queue" in kinds and "connected" not in kinds
            elif c.outcome == "abandon_ringing":
                # gave up while an agent's phone rang: 3 s into it (ring patience) or earlier,
                # when the queue patience ran out first
                t_ring = max(t for t, k, _ in c.history if k == "ringing")
                assert c.ended_at is not None and c.ended_at - t_ring <= 3.0 + 1e-6
                rang_out.append(c.ended_at - t_ring == pytest.approx(3.0, abs=1e-6))
            else:
                assert "connected" in kinds and c.hung_up_by == "agent"
        assert sum(rang_out) > len(rang_out) / 2
        # the same stages as the controller sees them through the translator
        tr = AsteriskTranslator("sim")
        events = [e for m, at in sim.logged_messages() for e in tr.feed(m, at)]
        left = Counter(e.reason for e in events if e.type == "queue_left")  # type: ignore[attr-defined]
        assert left["abandon"] == outcomes["abandon_queue"] + outcomes["abandon_ringing"]
        assert left["answered"] == outcomes["answered"]
        canceled = sum(1 for e in events if e.type == "agent_ring_canceled")
        assert canceled == outcomes["abandon_ringing"]
        ended = Counter(e.hung_up_by for e in events if e.type == "call_ended")  # type: ignore[attr-defined]
        assert ended["agent"] == outcomes["answered"]


async def test_agents_ring_no_answer_rejects_and_pauses() -> None:
    model = TrafficModel(
        rate_per_hour=40,
        controller_share=1.0,  # no controller: every call fails open into support after 10 s
        ivr_patience=Dist.never(),
        queue_patience=Dist.never(),
        talk=Dist.const(60.0),
        agents=(
            AgentProfile("2001", "Ann", queues=("support",), ring_no_answer_p=0.3, reject_p=0.1, pauses_per_hour=3.0),
            AgentProfile("2002", "Ben", queues=("support",), pause_duration=Dist.const(120.0), pauses_per_hour=3.0),
        ),
    )
    async with stepped(lab=False) as sim:
        traffic = Traffic(sim, model, seed=8)
        traffic.start(duration_s=6 * 3600)  # ~150 offers to Ann: sd 0.037 (timeouts), 0.024 (busy)
        await sim.advance(6 * 3600 + 900)
        stats = traffic.stats()
        assert stats["failopen"] == stats["calls"] and stats["outcomes"] == {"answered": stats["calls"]}
        ann = [x.split("|")[4:] for x in sim.queue_log if "|Ann|" in x]
        offers = sum(1 for x in ann if x[0] in ("RINGNOANSWER", "CONNECT"))
        timeouts = sum(1 for x in ann if x == ["RINGNOANSWER", "15000"])
        busy = sum(1 for x in ann if x == ["RINGNOANSWER", "0"])
        assert timeouts / offers == pytest.approx(0.3, abs=0.12) and busy / offers == pytest.approx(0.1, abs=0.08)
        assert len(traffic.pauses) >= 6 and all(p.end is not None for p in traffic.pauses)
        paused = [x for x in sim.queue_log if x.split("|")[4] == "PAUSEALL"]
        assert len(paused) == len(traffic.pauses)


async def run_demo(seed: int) -> tuple[list[bytes], dict[str, object]]:
    async with stepped(seed=seed, epoch=MIDNIGHT + 10 * 3600, record_events=True) as sim:  # the morning peak
        traffic = Traffic(sim, TrafficModel.demo(), seed=seed)
        traffic.start(duration_s=1800)
        await sim.advance(1800 + 900)
        return [data for _, data in sim.event_log or ()], traffic.stats()


def digest(events: list[bytes]) -> str:
    return hashlib.sha256(b"".join(events)).hexdigest()


async def test_traffic_is_deterministic_for_a_seed() -> None:
    first, second, other = await run_demo(6), await run_demo(6), await run_demo(7)
    assert len(first[0]) > 1000 and first[1]["calls"] > 10  # type: ignore[operator]
    assert first == second
    assert first[0] != other[0]
    # and in another interpreter with another str-hash seed: nothing may depend on hash()/id()
    code = (
        "import asyncio, sys; sys.path.insert(0, sys.argv[1]); import test_sim_traffic as t; "
        "print(t.digest(asyncio.run(t.run_demo(6))[0]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, str(Path(__file__).parent), env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0 and out.decode().strip() == digest(first[0])
