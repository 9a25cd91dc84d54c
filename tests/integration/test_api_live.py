"""Live state through the API, and supervisor actions: the commands sent to the PBX port and
the audit rows (written as ``pending`` before the command reaches the PBX, then ok/failed)."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from callcenter.domain.commands import (
    AddQueueMember,
    MoveToQueue,
    PauseAgent,
    RemoveQueueMember,
    StartSpy,
    StopSpy,
)
from callcenter.domain.events import AgentPauseChanged, SpyMode, SpyStarted, SpyStopped
from tests.integration.test_api_support import api_env, arrive, floor


async def test_calls_agents_and_queues_as_each_role_sees_them(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        floor(env)

        async def call_ids(who: str) -> list[str]:
            status, body, _ = await env.req("GET", "/api/v1/live/calls", who)
            assert status == 200
            return [c["call_id"] for c in body["calls"]]

        assert await call_ids("admin") == ["c-sales", "c-wait", "c-support"]
        assert await call_ids("sup_red") == ["c-sales", "c-wait"]
        assert await call_ids("sup_blue") == ["c-support"]
        assert await call_ids("alice") == ["c-sales"]
        assert await call_ids("bob") == []

        _, body, _ = await env.req("GET", "/api/v1/live/calls", "admin", params={"queue": "sales"})
        talking, waiting = body["calls"]
        assert (talking["stage"], talking["agent"], talking["talk_s"], talking["caller_name"]) == (
            "talking", "PJSIP/1001", 20.0, "Ivanova")
        assert (waiting["stage"], waiting["queue"], waiting["wait_s"], waiting["agent"]) == (
            "queue", "sales", 15.0, None)

        _, body, _ = await env.req("GET", "/api/v1/live/agents", "sup_red")
        (alice,) = body["agents"]
        assert alice["agent"] == "PJSIP/1001" and alice["agent_id"] == env.ids["alice"]
        assert alice["display_name"] == "Alice" and alice["state"] == "on_call" and alice["call_s"] == 20.0
        assert alice["call"]["caller_name"] == "Ivanova" and alice["answered_today"] == 1

        _, body, _ = await env.req("GET", "/api/v1/live/queues", "sup_red")
        (sales,) = body["queues"]
        assert (sales["queue"], sales["waiting"], sales["longest_wait_s"], sales["agents_busy"],
                sales["agents_available"], sales["service_level_today"]) == ("sales", 1, 15.0, 1, 0, 1.0)
        assert sales["estimated_wait_s"] > 0

        status, body, _ = await env.req("GET", "/api/v1/live/queues/sales", "sup_red")
        assert status == 200 and [c["call_id"] for c in body["calls"]] == ["c-wait"]
        assert (await env.req("GET", "/api/v1/live/queues/nowhere", "admin"))[0] == 404
        assert (await env.req("GET", "/api/v1/live/calls/nope", "admin"))[0] == 404


async def test_agent_state_words(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        floor(env)

        async def bob_state() -> str:
            _, body, _ = await env.req("GET", "/api/v1/live/agents", "bob")
            (bob,) = body["agents"]
            return str(bob["state"])

        assert await bob_state() == "available"
        for reason, word in (("break", "break"), ("dnd", "dnd"), ("lunch", "paused")):
            env.feed(AgentPauseChanged(pbx="ast1", call_id=None, at=env.clock[0], agent="PJSIP/1002", paused=True,
                                       reason=reason))
            assert await bob_state() == word
        env.feed(AgentPauseChanged(pbx="ast1", call_id=None, at=env.clock[0], agent="PJSIP/1002", paused=False))
        assert await bob_state() == "available"


async def test_whisper_is_audited_before_it_reaches_the_pbx(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        floor(env)
        seen_at_pbx: list[list[dict]] = []

        async def look(cmd: object) -> None:
            seen_at_pbx.append(await env.audit_rows())

        env.pbx.before_execute = look
        status, body, _ = await env.req("POST", "/api/v1/live/calls/c-sales/spy", "sup_red",
                                        json={"mode": "whisper", "endpoint": "PJSIP/1009"})
        assert status == 200 and body["result"] == "ok"
        (cmd,) = env.pbx.commands
        assert isinstance(cmd, StartSpy)
        assert (cmd.mode, cmd.supervisor_endpoint, cmd.target, cmd.call_id) == (
            SpyMode.WHISPER, "PJSIP/1009", "PJSIP/1001", "c-sales")
        (during,) = seen_at_pbx
        assert [(r["action"], r["result"]) for r in during] == [("whisper", "pending")]
        (row,) = await env.audit_rows()
        assert row["id"] == body["audit_id"] and row["result"] == "ok"
        assert (row["actor_token_id"], row["role"], row["target"]) == (env.ids["token:sup_red"], "supervisor",
                                                                      "call:c-sales")
        assert row["detail"]["endpoint"] == "PJSIP/1009"
        assert row["detail"]["commands"][0]["command_id"] == cmd.command_id


async def test_a_refused_command_is_a_502_problem_and_audited_failed(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        floor(env)
        env.pbx.fail_with = "Originate: Extension does not exist."
        status, body, resp = await env.req("POST", "/api/v1/live/calls/c-sales/spy", "admin",
                                           json={"mode": "barge", "endpoint": "PJSIP/1009"})
        assert status == 502 and resp.headers["Content-Type"].startswith("application/problem+json")
        assert "Extension does not exist" in body["detail"] and body["result"] == "failed"
        (row,) = await env.audit_rows()
        assert (row["id"], row["action"], row["result"]) == (body["audit_id"], "barge", "failed")
        assert row["detail"]["commands"][0]["error"] == "Originate: Extension does not exist."


async def test_the_pbx_in_observe_mode_refuses_actions(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        floor(env)
        env.controller.modes["ast1"] = "observe"
        status, body, _ = await env.req("POST", "/api/v1/live/agents/{}/pause".format(env.ids["alice"]), "admin",
                                        json={"paused": True})
        assert status == 502 and "observe mode" in body["detail"]
        assert env.pbx.commands == []


async def test_spy_on_an_agents_current_call_and_stop_it(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        floor(env)
        status, body, _ = await env.req("POST", f"/api/v1/live/agents/{env.ids['alice']}/spy", "sup_red",
                                        json={"mode": "listen", "endpoint": "PJSIP/1009"})
        assert status == 200
        (cmd,) = env.pbx.commands
        assert isinstance(cmd, StartSpy) and (cmd.target, cmd.call_id, cmd.mode) == ("PJSIP/1001", "c-sales",
                                                                                   SpyMode.LISTEN)
        status, body, _ = await env.req("POST", f"/api/v1/live/agents/{env.ids['bob']}/spy", "sup_blue",
                                        json={"mode": "listen", "endpoint": "PJSIP/1019"})
        assert status == 409 and "not on a call" in body["detail"]

        # the PBX reports the spy leg; it can then be stopped by id
        env.feed(SpyStarted(pbx="ast1", call_id="c-sales", at=env.clock[0], spyer_channel="PJSIP/1009-0000000a",
                            target_channel="PJSIP/1001-00000002", mode=SpyMode.LISTEN))
        _, body, _ = await env.req("GET", "/api/v1/live/spies", "sup_red")
        (spy,) = body["spies"]
        assert (spy["call_id"], spy["spyer_channel"], spy["mode"]) == ("c-sales", "PJSIP/1009-0000000a", "listen")
        assert (await env.req("GET", "/api/v1/live/spies", "sup_blue"))[1] == {"spies": []}
        assert (await env.req("DELETE", f"/api/v1/live/spies/{spy['id']}", "sup_blue"))[0] == 403
        status, body, _ = await env.req("DELETE", f"/api/v1/live/spies/{spy['id']}", "sup_red")
        assert status == 200
        stop = env.pbx.commands[-1]
        assert isinstance(stop, StopSpy) and stop.spyer_channel == "PJSIP/1009-0000000a"
        env.feed(SpyStopped(pbx="ast1", call_id="c-sales", at=env.clock[0], spyer_channel="PJSIP/1009-0000000a",
                            target_channel="PJSIP/1001-00000002"))
        assert (await env.req("GET", "/api/v1/live/spies", "admin"))[1] == {"spies": []}
        assert (await env.req("DELETE", f"/api/v1/live/spies/{spy['id']}", "admin"))[0] == 404
        actions = [(r["action"], r["result"]) for r in await env.audit_rows()]
        assert actions == [("listen", "ok"), ("stop_spy", "ok")]


async def test_spying_on_a_call_without_an_agent_is_a_conflict(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        floor(env)
        status, body, _ = await env.req("POST", "/api/v1/live/calls/c-wait/spy", "admin",
                                        json={"mode": "listen", "endpoint": "PJSIP/1009"})
        assert status == 409 and body["status"] == 409
        assert env.pbx.commands == [] and await env.audit_rows() == []


async def test_status_available_break_dnd_are_queue_pauses(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        floor(env)
        url = f"/api/v1/live/agents/{env.ids['alice']}/status"
        for status_word in ("break", "do-not-disturb", "available"):
            status, body, _ = await env.req("PUT", url, "sup_red", json={"status": status_word})
            assert status == 200, body
        got = [(c.agent, c.paused, c.reason, c.queue) for c in env.pbx.commands if isinstance(c, PauseAgent)]
        assert got == [("PJSIP/1001", True, "break", None), ("PJSIP/1001", True, "dnd", None),
                       ("PJSIP/1001", False, None, None)]
        rows = await env.audit_rows()
        assert [(r["action"], r["detail"]["status"], r["result"]) for r in rows] == [
            ("status", "break", "ok"), ("status", "dnd", "ok"), ("status", "available", "ok")]
        status, body, _ = await env.req("PUT", url, "sup_red", json={"status": "lunch"})
        assert status == 422 and body["errors"][0]["path"] == "status"


async def test_pause_with_reason_in_one_queue(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        floor(env)
        status, _, _ = await env.req("POST", f"/api/v1/live/agents/{env.ids['bob']}/pause", "sup_blue",
                                     json={"paused": True, "reason": "coaching", "queue": "support"})
        assert status == 200
        (cmd,) = env.pbx.commands
        assert (cmd.agent, cmd.paused, cmd.reason, cmd.queue) == ("PJSIP/1002", True, "coaching", "support")
        status, _, _ = await env.req("POST", f"/api/v1/live/agents/{env.ids['bob']}/pause", "sup_blue",
                                     json={"paused": False, "reason": "ignored when unpausing"})
        assert status == 200
        assert (env.pbx.commands[-1].paused, env.pbx.commands[-1].reason) == (False, None)
        assert [r["action"] for r in await env.audit_rows()] == ["pause", "unpause"]


async def _wait_rows(env, sql: str, n: int) -> list:
    async with asyncio.timeout(10):
        while True:
            async with env.engine.connect() as conn:
                rows = (await conn.execute(text(sql))).all()
            if len(rows) >= n:
                return rows
            await asyncio.sleep(0.05)


async def test_redistribute_moves_the_oldest_waiting_calls_and_notes_the_move(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        floor(env)
        arrive(env, "c-later", "sales", "+12025550109", "Later")
        env.tick(3)
        arrive(env, "c-last", "sales", "+12025550110", "Last")
        async with env.engine.begin() as conn:
            await conn.execute(text("INSERT INTO team_queues (team_id, queue) VALUES (:t, 'sales-overflow')"),
                               {"t": env.ids["red"]})
        url = "/api/v1/live/queues/sales/redistribute"
        status, body, _ = await env.req("POST", url, "sup_red", json={"to_queue": "sales-overflow", "count": 2})
        assert status == 200 and body["result"] == "ok"
        moves = [(c.call_id, c.queue) for c in env.pbx.commands if isinstance(c, MoveToQueue)]
        assert moves == [("c-wait", "sales-overflow"), ("c-later", "sales-overflow")]
        # the journey records a controller move (not an abandon) for each call moved
        rows = await _wait_rows(env, "SELECT call_id, detail FROM call_events WHERE kind = 'move_requested' "
                                     "ORDER BY call_id", 2)
        assert [(r.call_id, r.detail["to_queue"]) for r in rows] == [("c-later", "sales-overflow"),
                                                                     ("c-wait", "sales-overflow")]
        (row,) = await env.audit_rows()
        assert (row["action"], row["target"], row["detail"]["call_ids"]) == ("redistribute", "queue:sales",
                                                                             ["c-wait", "c-later"])
        # all (no count): the three still waiting (the fake PBX did not really move them)
        env.pbx.commands.clear()
        status, body, _ = await env.req("POST", url, "admin", json={"to_queue": "support"})
        assert status == 200 and len(body["commands"]) == 3
        # scope: sam does not own support; same queue is pointless
        status, body, _ = await env.req("POST", url, "sup_red", json={"to_queue": "support"})
        assert status == 403
        status, body, _ = await env.req("POST", url, "admin", json={"to_queue": "sales"})
        assert status == 422 and body["errors"][0]["path"] == "to_queue"


async def test_partial_failure_is_recorded_as_partial(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        floor(env)
        arrive(env, "c-2", "sales", "+12025550111", "Two")
        calls = 0

        async def second_fails(cmd: object) -> None:
            nonlocal calls
            calls += 1
            env.pbx.fail_with = "Redirect: No such channel" if calls == 2 else None

        env.pbx.before_execute = second_fails
        status, body, _ = await env.req("POST", "/api/v1/live/queues/sales/redistribute", "admin",
                                        json={"to_queue": "support"})
        assert status == 200 and body["result"] == "partial"
        assert [c["ok"] for c in body["commands"]] == [True, False]
        assert (await env.audit_rows())[0]["result"] == "partial"


async def test_overflow_group_added_to_and_removed_from_a_queue(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        floor(env)
        status, group, _ = await env.req("PUT", "/api/v1/groups/helpers", "admin",
                                         json={"agent_ids": [env.ids["bob"]], "penalty": 3})
        assert status == 200 and group["agent_ids"] == [env.ids["bob"]] and group["penalty"] == 3
        status, _body, _ = await env.req("POST", "/api/v1/live/queues/sales/groups/helpers", "sup_red")
        assert status == 200
        (add,) = env.pbx.commands
        assert isinstance(add, AddQueueMember)
        assert (add.queue, add.agent, add.penalty, add.member_name) == ("sales", "PJSIP/1002", 3, "Bob")
        status, _, _ = await env.req("DELETE", "/api/v1/live/queues/sales/groups/helpers", "sup_red")
        assert status == 200
        remove = env.pbx.commands[-1]
        assert isinstance(remove, RemoveQueueMember) and (remove.queue, remove.agent) == ("sales", "PJSIP/1002")
        assert [(r["action"], r["target"]) for r in await env.audit_rows()] == [
            ("group_add", "queue:sales"), ("group_remove", "queue:sales")]
        assert (await env.req("POST", "/api/v1/live/queues/sales/groups/nobody", "admin"))[0] == 404
        assert (await env.req("POST", "/api/v1/live/queues/sales/groups/helpers", "sup_blue"))[0] == 403


async def test_forward_to_mobile_joins_the_agents_queues_and_leaves_them(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        floor(env)
        url = f"/api/v1/agents/{env.ids['alice']}/forward"
        status, body, _ = await env.req("GET", url, "alice")
        assert status == 200 and body["enabled"] is False and body["mobile"] is None
        status, body, _ = await env.req("PUT", url, "sup_red", json={"enabled": True, "mobile": "(202) 555-0177"})
        assert status == 200, body
        assert (body["enabled"], body["mobile"], body["interface"], body["queues"]) == (
            True, "+12025550177", "Local/+12025550177@cc-forward", ["ast1/sales"])
        (add,) = env.pbx.commands
        assert isinstance(add, AddQueueMember)
        assert (add.queue, add.agent, add.member_name) == ("sales", "Local/+12025550177@cc-forward", "Alice (mobile)")
        status, body, _ = await env.req("PUT", url, "sup_red", json={"enabled": False})
        assert status == 200 and body["enabled"] is False and body["queues"] == [] and body["mobile"] == "+12025550177"
        remove = env.pbx.commands[-1]
        assert isinstance(remove, RemoveQueueMember)
        assert (remove.queue, remove.agent) == ("sales", "Local/+12025550177@cc-forward")
        assert [(r["action"], r["detail"]["enabled"]) for r in await env.audit_rows()] == [
            ("forward", True), ("forward", False)]
        status, body, _ = await env.req("PUT", url, "sup_red", json={"enabled": True, "mobile": "12"})
        assert status == 422 and body["errors"][0]["path"] == "mobile"


async def test_forward_without_queues_and_a_refused_forward(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        # sam (a supervisor, not in any queue): only the setting changes, audited
        url = f"/api/v1/agents/{env.ids['sam']}/forward"
        status, body, _ = await env.req("PUT", url, "admin", json={"enabled": True, "mobile": "+12025550166"})
        assert status == 200 and body["enabled"] is True and body["queues"] == [] and body["commands"] == []
        assert [(r["action"], r["result"]) for r in await env.audit_rows()] == [("forward", "ok")]
        # the PBX refuses: 502, audited failed, the stored setting is unchanged
        floor(env)
        env.pbx.fail_with = "QueueAdd: Unable to add interface"
        url = f"/api/v1/agents/{env.ids['alice']}/forward"
        status, body, _ = await env.req("PUT", url, "admin", json={"enabled": True, "mobile": "+12025550177"})
        assert status == 502
        status, body, _ = await env.req("GET", url, "admin")
        assert (body["enabled"], body["mobile"]) == (False, None)
        assert [(r["action"], r["result"]) for r in await env.audit_rows()] == [
            ("forward", "ok"), ("forward", "failed")]
