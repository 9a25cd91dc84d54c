"""Administration endpoints: agents, teams, groups, tokens, rules, audit log, webhooks."""

from __future__ import annotations

from tests.integration.test_api_support import api_env


async def test_agents_crud_with_endpoints_and_skills(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        status, body, _ = await env.req("POST", "/api/v1/agents", json={
            "name": "Dana", "endpoints": [{"pbx": "ast1", "interface": "PJSIP/1004\r\nAction: Originate"}]})
        assert status == 422 and body["errors"][0]["path"] == "endpoints.0.interface"
        status, agent, _ = await env.req("POST", "/api/v1/agents", json={
            "name": "Dana", "extension": "1004", "mobile": "202-555-0188", "skills": {"billing": 7, "fr": 3},
            "endpoints": [{"pbx": "ast1", "interface": "PJSIP/1004"}, {"pbx": "fs1", "interface": "1004@default"}]})
        assert status == 201, agent
        assert (agent["name"], agent["mobile"], agent["skills"]) == ("Dana", "+12025550188", {"billing": 7, "fr": 3})
        assert agent["endpoints"] == [{"pbx": "ast1", "interface": "PJSIP/1004"},
                                      {"pbx": "fs1", "interface": "1004@default"}]
        assert agent["teams"] == []
        aid = agent["id"]
        status, body, _ = await env.req("POST", "/api/v1/agents", json={
            "name": "Dup", "endpoints": [{"pbx": "ast1", "interface": "PJSIP/1004"}]})
        assert status == 409 and body["type"].endswith(":conflict")
        status, agent, _ = await env.req("PATCH", f"/api/v1/agents/{aid}", json={
            "skills": {"billing": 9}, "active": False, "endpoints": [{"pbx": "ast1", "interface": "PJSIP/2004"}]})
        assert status == 200
        assert (agent["skills"], agent["active"], agent["endpoints"], agent["name"]) == (
            {"billing": 9}, False, [{"pbx": "ast1", "interface": "PJSIP/2004"}], "Dana")
        status, body, _ = await env.req("PATCH", f"/api/v1/agents/{aid}", json={"name": None})
        assert status == 422 and body["errors"][0]["path"] == "name"
        status, body, _ = await env.req("PATCH", f"/api/v1/agents/{aid}", json={"skills": {"billing": 11}})
        assert status == 422 and body["errors"][0]["path"] == "skills.billing"
        status, body, _ = await env.req("GET", "/api/v1/agents", "sup_red")
        assert [a["name"] for a in body["agents"]] == ["Alice", "Sam"]
        status, body, _ = await env.req("GET", "/api/v1/agents")
        assert [a["name"] for a in body["agents"]] == ["Alice", "Bob", "Sam", "Tina", "Dana"]
        sam = next(a for a in body["agents"] if a["name"] == "Sam")
        assert sam["teams"] == [{"team_id": env.ids["red"], "name": "red", "role": "supervisor"}]
        assert (await env.req("DELETE", f"/api/v1/agents/{aid}"))[0] == 204
        assert (await env.req("GET", f"/api/v1/agents/{aid}"))[0] == 404
        assert (await env.req("DELETE", f"/api/v1/agents/{aid}"))[0] == 404


async def test_teams_members_and_queues(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        status, team, _ = await env.req("POST", "/api/v1/teams", json={
            "name": "green", "queues": ["billing", "billing-vip"],
            "members": [{"agent_id": env.ids["bob"]}, {"agent_id": env.ids["sam"], "role": "supervisor"}]})
        assert status == 201, team
        assert team["queues"] == ["billing", "billing-vip"]
        assert [(m["name"], m["role"]) for m in team["members"]] == [("Bob", "agent"), ("Sam", "supervisor")]
        # sam now supervises green too: bob and billing are in his scope
        _, me, _ = await env.req("GET", "/api/v1/me", "sup_red")
        assert me["scope"]["queues"] == ["billing", "billing-vip", "sales"]
        assert env.ids["bob"] in me["scope"]["agent_ids"]
        _, teams, _ = await env.req("GET", "/api/v1/teams", "sup_red")
        assert [t["name"] for t in teams["teams"]] == ["red", "green"]
        status, team, _ = await env.req("PATCH", f"/api/v1/teams/{team['id']}", json={"queues": ["billing"]})
        assert status == 200 and team["queues"] == ["billing"] and len(team["members"]) == 2
        status, body, _ = await env.req("PATCH", f"/api/v1/teams/{team['id']}", json={"members": [{"agent_id": 999}]})
        assert status == 422
        status, body, _ = await env.req("POST", "/api/v1/teams", json={"name": "green"})
        assert status == 409
        status, body, _ = await env.req("POST", "/api/v1/teams", json={"name": "x", "queues": ["Bad Queue"]})
        assert status == 422 and body["errors"][0]["path"] == "queues.0"
        assert (await env.req("DELETE", f"/api/v1/teams/{team['id']}"))[0] == 204
        _, me, _ = await env.req("GET", "/api/v1/me", "sup_red")
        assert me["scope"]["queues"] == ["sales"]


async def test_groups(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        status, g, _ = await env.req("PUT", "/api/v1/groups/night", json={"agent_ids": [env.ids["alice"]]})
        assert status == 200 and g["penalty"] == 0
        status, g, _ = await env.req("PUT", "/api/v1/groups/night",
                                     json={"agent_ids": [env.ids["bob"], env.ids["bob"]], "penalty": 2})
        assert status == 200 and (g["agent_ids"], g["penalty"]) == ([env.ids["bob"]], 2)
        _, body, _ = await env.req("GET", "/api/v1/groups", "sup_blue")
        assert [x["name"] for x in body["groups"]] == ["night"]
        status, body, _ = await env.req("PUT", "/api/v1/groups/night", json={"agent_ids": [12345]})
        assert status == 422
        assert (await env.req("DELETE", "/api/v1/groups/night"))[0] == 204
        assert (await env.req("DELETE", "/api/v1/groups/night"))[0] == 404


async def test_tokens_are_shown_once_listed_without_secret_and_revocable(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        status, created, _ = await env.req("POST", "/api/v1/tokens", json={"name": "wall", "role": "supervisor",
                                                                          "agent_id": env.ids["sam"],
                                                                          "expires_days": 1})
        assert status == 201 and created["token"].startswith("cc_") and created["expires_at"]
        token = created["token"]
        status, me, _ = await env.req("GET", "/api/v1/me", token)
        assert (status, me["role"], me["agent_id"]) == (200, "supervisor", env.ids["sam"])
        _, listing, _ = await env.req("GET", "/api/v1/tokens")
        assert token not in str(listing) and "token_hash" not in str(listing)
        row = next(t for t in listing["tokens"] if t["id"] == created["id"])
        assert row["name"] == "wall" and row["revoked_at"] is None
        status, revoked, _ = await env.req("DELETE", f"/api/v1/tokens/{created['id']}")
        assert status == 200 and revoked["revoked_at"]
        assert (await env.req("GET", "/api/v1/me", token))[0] == 401
        assert (await env.req("DELETE", "/api/v1/tokens/99999"))[0] == 404
        status, body, _ = await env.req("POST", "/api/v1/tokens", json={"name": "a", "role": "agent"})
        assert status == 422 and body["errors"][0]["path"] == "agent_id"
        status, body, _ = await env.req("POST", "/api/v1/tokens", json={"name": "a", "role": "root"})
        assert status == 422 and body["errors"][0]["path"] == "role"
        actions = [r["action"] for r in await env.audit_rows()]
        assert actions == ["token_create", "token_revoke", "token_revoke"]


async def test_rules_current_validate_reload(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        status, body, _ = await env.req("GET", "/api/v1/rules")
        assert status == 200 and body["version"] == "v1" and body["text"] == "rules: []\n"
        status, body, _ = await env.req("POST", "/api/v1/rules/validate", data=b"rules:\n  - bad\n",
                                        headers={"Content-Type": "text/yaml"})
        assert status == 200 and body["valid"] is False
        assert body["problems"] == [{"line": 1, "column": 1, "path": "rules", "message": "bad rule"}]
        status, body, _ = await env.req("POST", "/api/v1/rules/validate", json={"text": "rules: []"})
        assert (status, body) == (200, {"valid": True, "problems": []})
        env.ctx.rules.reload_problems = [{"line": 3, "column": 5, "path": "rules.0.when", "message": "unknown key"}]
        status, body, _ = await env.req("POST", "/api/v1/rules/reload")
        assert status == 422 and body["errors"][0]["path"] == "rules.0.when" and body["errors"][0]["line"] == 3
        env.ctx.rules.reload_problems = []
        status, body, _ = await env.req("POST", "/api/v1/rules/reload")
        assert status == 200 and body["version"] == "v2"
        assert [(r["action"], r["result"]) for r in await env.audit_rows()] == [
            ("rules_reload", "failed"), ("rules_reload", "ok")]
        env.ctx.rules = None
        status, body, _ = await env.req("GET", "/api/v1/rules")
        assert status == 503 and body["type"].endswith(":rules-unavailable")


async def test_audit_log_is_readable_by_admins_newest_first(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        for _ in range(3):
            await env.req("POST", "/api/v1/tokens", json={"name": "t", "role": "analyst"})
        await env.req("DELETE", f"/api/v1/tokens/{env.ids['token:bob']}")
        _, body, _ = await env.req("GET", "/api/v1/audit?limit=2")
        assert [e["action"] for e in body["entries"]] == ["token_revoke", "token_create"]
        assert body["entries"][0]["actor"] == f"token:{env.ids['token:admin']}:admin"
        _, body, _ = await env.req("GET", "/api/v1/audit?action=token_create")
        assert len(body["entries"]) == 3
        before = body["entries"][0]["id"]
        _, body, _ = await env.req("GET", f"/api/v1/audit?action=token_create&before_id={before}")
        assert len(body["entries"]) == 2


async def test_webhooks_crud_shows_the_secret_once(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        status, hook, _ = await env.req("POST", "/api/v1/webhooks", json={"url": "https://crm.example/hook",
                                                                          "kinds": ["screen_pop"]})
        assert status == 201 and len(hook["secret"]) >= 32 and hook["kinds"] == ["screen_pop"]
        _, listing, _ = await env.req("GET", "/api/v1/webhooks")
        assert hook["secret"] not in str(listing) and listing["webhooks"][0]["url"] == "https://crm.example/hook"
        status, body, _ = await env.req("POST", "/api/v1/webhooks", json={"url": "ftp://x", "kinds": ["nope"]})
        assert status == 422 and {e["path"] for e in body["errors"]} == {"url", "kinds.0"}
        assert (await env.req("DELETE", f"/api/v1/webhooks/{hook['id']}"))[0] == 204
        assert (await env.req("GET", "/api/v1/webhooks"))[1]["webhooks"] == []
