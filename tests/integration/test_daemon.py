"""The daemon end to end: a loopback AMI server speaking real Asterisk traffic (frames of the
captured traces), `run_daemon` with a real PostgreSQL, and the rows analysts will read."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from callcenter.app import run_daemon
from callcenter.settings import Settings
from callcenter.sim.ami_server import FakeAmiServer, trace_messages
from callcenter.storage import db as dbmod

TRACES = Path(__file__).parent.parent / "fixtures" / "asterisk"


def settings_for(server: FakeAmiServer, dsn: str, tmp_path: Path, monkeypatch, mode: str = "observe") -> Settings:
    monkeypatch.setenv("TEST_AMI_SECRET", server.secret)
    return Settings.model_validate({
        "database": {"dsn": dsn},
        "pbx": [{"name": "ast1", "type": "asterisk", "host": "127.0.0.1", "port": server.port,
                 "username": server.username, "secret_env": "TEST_AMI_SECRET", "mode": mode}],
        "journey": {"spill_dir": str(tmp_path / "spill")},
        "http": {"port": 0},
    })


async def wait_rows(dsn: str, sql: str, n: int, timeout: float = 10.0) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(**dbmod.asyncpg_dsn(dsn))
    try:
        async with asyncio.timeout(timeout):
            while True:
                rows = await conn.fetch(sql)
                if len(rows) >= n:
                    return rows
                await asyncio.sleep(0.05)
    finally:
        await conn.close()


@pytest.fixture
async def ami():
    server = FakeAmiServer(username="cc", secret="s3cret")
    await server.start()
    yield server
    await server.close()


async def _run(settings: Settings, stop: asyncio.Event, **kw) -> asyncio.Task[int]:
    task = asyncio.create_task(run_daemon(settings, stop=stop, **kw))
    return task


async def test_observed_calls_land_in_postgresql(ami, db_dsn, tmp_path, monkeypatch) -> None:
    settings = settings_for(ami, db_dsn, tmp_path, monkeypatch)
    stop = asyncio.Event()
    record = tmp_path / "rec.ami.txt"
    ready: list = []
    task = await _run(settings, stop, record=record, on_ready=lambda ctl, db: ready.append(ctl))
    await ami.wait_for(lambda: any(s.authenticated for s in ami.sessions))
    async with asyncio.timeout(10):
        while not ready:
            await asyncio.sleep(0.01)
    import aiohttp

    async with aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{ready[0].http_port}"
        async with http.get(f"{base}/healthz") as r:
            assert r.status == 200
        async with http.get(f"{base}/api/v1/live/calls") as r:
            assert r.status == 401  # every endpoint but health needs a token
    for name in ("answered_caller_hangup", "queue_abandon", "ivr_abandon"):
        for frame in trace_messages(TRACES / f"{name}.ami.txt"):
            ami.push_raw(frame)
    rows = await wait_rows(db_dsn, "SELECT * FROM calls ORDER BY entered_at", 3)
    stop.set()
    assert await asyncio.wait_for(task, 15) == 0

    by_outcome = {(r["outcome"], r["abandon_stage"]): r for r in rows}
    answered = by_outcome[("answered", None)]
    assert answered["queue"] == "sales" and answered["agent"] == "PJSIP/1001"
    assert answered["hung_up_by"] == "caller" and answered["answered_via_ivr"] is True
    queue_ab = by_outcome[("abandoned", "queue")]
    assert queue_ab["abandon_node"] == "support" and queue_ab["missed_rings"] == 4
    ivr_ab = by_outcome[("abandoned", "ivr")]
    assert ivr_ab["abandon_node"].startswith("ivr-main")
    events = await wait_rows(db_dsn, "SELECT kind FROM call_events", 10)
    kinds = {r["kind"] for r in events}
    assert {"arrived", "queue_join", "agent_ring", "agent_connect", "ended"} <= kinds
    # the daemon recorded its raw AMI traffic in the replayable trace format
    from callcenter.pbx.asterisk.trace import read_trace

    frames = read_trace(record)
    assert any(f.direction == "send" and b"Action: Login" in f.data for f in frames)
    assert not any(b"s3cret" in f.data for f in frames)
    assert sum(1 for f in frames if f.direction == "recv") > 100


async def test_a_bad_ami_login_stops_the_daemon_with_a_clear_error(ami, db_dsn, tmp_path, monkeypatch, caplog) -> None:
    settings = settings_for(ami, db_dsn, tmp_path, monkeypatch)
    monkeypatch.setenv("TEST_AMI_SECRET", "wrong")
    ami.login_failure_delay = 0.0
    rc = await asyncio.wait_for(run_daemon(settings, stop=asyncio.Event()), 15)
    assert rc == 2
    assert "Authentication failed" in caplog.text


async def test_the_daemon_follows_a_freeswitch_call_into_postgresql(db_dsn, tmp_path, monkeypatch) -> None:
    """The same daemon on FreeSWITCH: a loopback Event Socket server replays the captured
    answered call (event json), the journey lands in the same calls table."""
    from callcenter.sim.esl_server import FakeEslServer, trace_events

    esl = FakeEslServer(password="s3cret")
    await esl.start()
    monkeypatch.setenv("TEST_ESL_SECRET", "s3cret")
    settings = Settings.model_validate({
        "database": {"dsn": db_dsn},
        "pbx": [{"name": "fs1", "type": "freeswitch", "host": "127.0.0.1", "port": esl.port,
                 "secret_env": "TEST_ESL_SECRET", "mode": "observe"}],
        "journey": {"spill_dir": str(tmp_path / "spill")},
        "http": {"port": 0},
    })
    stop = asyncio.Event()
    task = asyncio.create_task(run_daemon(settings, stop=stop))
    try:
        async with asyncio.timeout(10):
            while not any(s.authenticated and s.format is not None for s in esl.sessions):
                await asyncio.sleep(0.02)
        trace = Path(__file__).parent.parent / "fixtures" / "freeswitch" / "answered_caller_hangup.esl.txt"
        for ev in trace_events(trace):
            esl.push_event(ev)
        rows = await wait_rows(db_dsn, "SELECT * FROM calls", 1)
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 15) == 0
        await esl.close()
    assert (rows[0]["outcome"], rows[0]["pbx"], rows[0]["hung_up_by"]) == ("answered", "fs1", "caller")
