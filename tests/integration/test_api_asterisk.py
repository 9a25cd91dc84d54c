"""End to end over real AMI: the API, a Controller with a real AsteriskAdapter connected to the
loopback FakeAmiServer, and a real answered call (frames of a captured Asterisk trace). A
supervisor's whisper on the agent's call must reach the PBX as the Originate the shipped
dialplan expects: the supervisor's phone into [cc-spy], extension ``whisper``,
CC_SPY_MODE=whisper and the agent's interface as the spy target."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from callcenter.pbx.asterisk.adapter import AsteriskAdapter
from callcenter.sim.ami_server import FakeAmiServer, trace_messages
from tests.integration.test_api_support import api_env

TRACE = Path(__file__).parent.parent / "fixtures" / "asterisk" / "answered_caller_hangup.ami.txt"


@pytest.fixture
async def ami():
    server = FakeAmiServer(username="cc", secret="s3cret")
    await server.start()
    yield server
    await server.close()


def originates(ami: FakeAmiServer) -> list:
    return [m for m in ami.received if (m.get("Action") or "").lower() == "originate"]


async def test_whisper_on_an_agents_call_originates_the_supervisor_into_cc_spy(ami, database, tmp_path) -> None:
    adapter = AsteriskAdapter.connect("ast1", "127.0.0.1", ami.port, "cc", "s3cret", action_timeout=5.0)
    async with api_env(database, tmp_path, adapter=adapter, clock_fn=lambda: datetime.now(UTC)) as env:
        await adapter.start()
        try:
            frames = trace_messages(TRACE)
            cut = next(i for i, f in enumerate(frames) if f.startswith(b"Event: HangupRequest"))
            for frame in frames[:cut]:  # the call up to the agent answering; nobody hangs up
                ami.push_raw(frame)
            async with asyncio.timeout(10):
                while "PJSIP/1001" not in env.controller.live.agents or not env.controller.live.agents[
                        "PJSIP/1001"].call_id:
                    await asyncio.sleep(0.02)
            call_id = env.controller.live.agents["PJSIP/1001"].call_id
            status, body, _ = await env.req("GET", "/api/v1/live/calls", "sup_red")
            assert [(c["call_id"], c["stage"], c["agent"], c["queue"]) for c in body["calls"]] == [
                (call_id, "talking", "PJSIP/1001", "sales")]

            status, body, _ = await env.req("POST", f"/api/v1/live/agents/{env.ids['alice']}/spy", "sup_red",
                                            json={"mode": "whisper", "endpoint": "PJSIP/1009"})
            assert status == 200, body
            (orig,) = originates(ami)
            assert orig.get("Channel") == "PJSIP/1009"
            assert (orig.get("Context"), orig.get("Exten"), orig.get("Priority")) == ("cc-spy", "whisper", "1")
            assert orig.get("Async") == "true"
            variables = orig.get_all("Variable")
            assert "CC_SPY_MODE=whisper" in variables
            assert "CC_SPY_TARGET=PJSIP/1001-" in variables  # the agent's channels only (ChanSpy prefix)
            assert "CC_SUPERVISOR=1009" in variables
            (row,) = await env.audit_rows()
            assert (row["action"], row["target"], row["result"], row["role"]) == (
                "whisper", f"agent:{env.ids['alice']}", "ok", "supervisor")
            assert row["detail"]["call_id"] == call_id and row["detail"]["endpoint"] == "PJSIP/1009"

            # the link goes down: the action fails cleanly, audited as failed
            ami.drop_all()
            async with asyncio.timeout(5):
                while adapter.connected:
                    await asyncio.sleep(0.02)
            status, body, _ = await env.req("POST", f"/api/v1/live/agents/{env.ids['alice']}/spy", "sup_red",
                                            json={"mode": "barge", "endpoint": "PJSIP/1009"})
            assert status == 502 and "AMI link is down" in body["detail"]
            assert [r["result"] for r in await env.audit_rows()] == ["ok", "failed"]
            status, body, _ = await env.req("GET", "/readyz", who=None)
            assert status == 503 and body["checks"]["pbx:ast1"] == "disconnected"
        finally:
            await adapter.close()
