"""Authorization matrix: every route x every kind of caller.

Callers: admin; sam, supervisor of team red (owns queue sales, agent alice); tina, supervisor of
team blue (another team); an analyst; alice, the agent concerned ("self"); bob, another team's
agent. The objects acted on belong to team red. Allowed means any 2xx; refused means 403 (right
token, wrong role or scope). Separately, every protected route answers 401 with
``WWW-Authenticate`` to a missing, malformed, unknown, revoked or expired token.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from sqlalchemy import text

from callcenter.api.app import _load_handlers
from callcenter.domain.events import SpyMode, SpyStarted
from tests.integration.test_api_support import Env, api_env, floor

WHO = ("admin", "sup_red", "sup_blue", "analyst", "alice", "bob")
Y, N = "2xx", 403
KPI = "?from=2026-11-01&to=2026-11-02"

# method, path (placeholders filled per request), body, expected for WHO in order
MATRIX: list[tuple[str, str, Any, tuple[Any, ...]]] = [
    ("GET", "/healthz", None, (Y, Y, Y, Y, Y, Y)),
    ("GET", "/readyz", None, (Y, Y, Y, Y, Y, Y)),
    ("GET", "/wallboard", None, (Y, Y, Y, Y, Y, Y)),
    ("GET", "/wallboard/static/wallboard.js", None, (Y, Y, Y, Y, Y, Y)),
    ("GET", "/metrics", None, (Y, N, N, Y, N, N)),
    ("GET", "/api/v1/openapi.json", None, (Y, Y, Y, Y, Y, Y)),
    ("GET", "/api/v1/me", None, (Y, Y, Y, Y, Y, Y)),
    # rules
    ("GET", "/api/v1/rules", None, (Y, N, N, N, N, N)),
    ("POST", "/api/v1/rules/validate", {"text": "rules: []"}, (Y, N, N, N, N, N)),
    ("POST", "/api/v1/rules/reload", None, (Y, N, N, N, N, N)),
    # agents, teams, groups
    ("GET", "/api/v1/agents", None, (Y, Y, Y, N, N, N)),
    ("POST", "/api/v1/agents", {"name": "New", "endpoints": [{"pbx": "ast1", "interface": "PJSIP/{uniq}"}]},
     (Y, N, N, N, N, N)),
    ("GET", "/api/v1/agents/{alice}", None, (Y, Y, N, N, Y, N)),
    ("PATCH", "/api/v1/agents/{alice}", {"skills": {"billing": 5}}, (Y, N, N, N, N, N)),
    ("DELETE", "/api/v1/agents/{fresh_agent}", None, (Y, N, N, N, N, N)),
    ("GET", "/api/v1/teams", None, (Y, Y, Y, N, N, N)),
    ("POST", "/api/v1/teams", {"name": "team-{uniq}", "queues": ["q{uniq}"]}, (Y, N, N, N, N, N)),
    ("GET", "/api/v1/teams/{red}", None, (Y, Y, N, N, N, N)),
    ("PATCH", "/api/v1/teams/{red}", {"name": "red"}, (Y, N, N, N, N, N)),
    ("DELETE", "/api/v1/teams/{fresh_team}", None, (Y, N, N, N, N, N)),
    ("GET", "/api/v1/groups", None, (Y, Y, Y, N, N, N)),
    ("PUT", "/api/v1/groups/helpers", {"agent_ids": ["{bob_id}"], "penalty": 5}, (Y, N, N, N, N, N)),
    ("DELETE", "/api/v1/groups/{fresh_group}", None, (Y, N, N, N, N, N)),
    # tokens, audit, webhooks
    ("GET", "/api/v1/tokens", None, (Y, N, N, N, N, N)),
    ("POST", "/api/v1/tokens", {"name": "x", "role": "analyst"}, (Y, N, N, N, N, N)),
    ("DELETE", "/api/v1/tokens/{fresh_token}", None, (Y, N, N, N, N, N)),
    ("GET", "/api/v1/audit", None, (Y, N, N, N, N, N)),
    ("GET", "/api/v1/webhooks", None, (Y, Y, Y, N, N, N)),  # supervisors: their teams' only
    ("POST", "/api/v1/webhooks", {"url": "http://127.0.0.1:9/hook"}, (Y, N, N, N, N, N)),
    ("DELETE", "/api/v1/webhooks/{fresh_webhook}", None, (Y, N, N, N, N, N)),
    # CRM and callbacks (the customer base is shared by all teams)
    ("GET", "/api/v1/customers?name=Iv", None, (Y, Y, Y, N, Y, Y)),
    ("POST", "/api/v1/customers", {"name": "Ivanova", "phones": [{"number": "+1202555{uniq4}"}]},
     (Y, Y, Y, N, Y, Y)),
    ("GET", "/api/v1/customers/{customer}", None, (Y, Y, Y, N, Y, Y)),
    ("PATCH", "/api/v1/customers/{customer}", {"notes": "called"}, (Y, Y, Y, N, Y, Y)),
    ("POST", "/api/v1/callbacks", {"phone": "+12025550142", "topic": "billing"}, (Y, Y, Y, N, Y, Y)),
    ("GET", "/api/v1/callbacks", None, (Y, Y, Y, N, N, N)),
    # live state
    ("GET", "/api/v1/live/calls", None, (Y, Y, Y, N, Y, Y)),
    ("GET", "/api/v1/live/calls/c-sales", None, (Y, Y, N, N, Y, N)),
    ("GET", "/api/v1/live/agents", None, (Y, Y, Y, N, Y, Y)),
    ("GET", "/api/v1/live/queues", None, (Y, Y, Y, N, N, N)),
    ("GET", "/api/v1/live/queues/sales", None, (Y, Y, N, N, N, N)),
    ("GET", "/api/v1/live/spies", None, (Y, Y, Y, N, N, N)),
    ("GET", "/api/v1/events?snapshot=false", None, (Y, Y, Y, N, Y, Y)),
    # supervisor actions
    ("POST", "/api/v1/live/calls/c-sales/spy", {"mode": "listen", "endpoint": "PJSIP/1009"}, (Y, Y, N, N, N, N)),
    ("POST", "/api/v1/live/agents/{alice}/spy", {"mode": "whisper", "endpoint": "PJSIP/1009"}, (Y, Y, N, N, N, N)),
    ("DELETE", "/api/v1/live/spies/{fresh_spy}", None, (Y, Y, N, N, N, N)),
    ("POST", "/api/v1/live/agents/{alice}/pause", {"paused": True, "reason": "coaching"}, (Y, Y, N, N, N, N)),
    ("PUT", "/api/v1/live/agents/{alice}/status", {"status": "break"}, (Y, Y, N, N, N, N)),
    ("GET", "/api/v1/agents/{alice}/forward", None, (Y, Y, N, N, Y, N)),
    ("PUT", "/api/v1/agents/{alice}/forward", {"enabled": True, "mobile": "+12025550177"}, (Y, Y, N, N, N, N)),
    ("POST", "/api/v1/live/queues/sales/redistribute", {"to_queue": "sales-overflow", "count": 1},
     (Y, Y, N, N, N, N)),
    ("POST", "/api/v1/live/queues/sales/groups/helpers", None, (Y, Y, N, N, N, N)),
    ("DELETE", "/api/v1/live/queues/sales/groups/helpers", None, (Y, Y, N, N, N, N)),
    # reports
    ("GET", "/api/v1/reports/kpi" + KPI, None, (Y, N, N, Y, N, N)),
    ("GET", "/api/v1/reports/abandons" + KPI, None, (Y, N, N, Y, N, N)),
    ("GET", "/api/v1/reports/agents" + KPI, None, (Y, N, N, Y, N, N)),
    ("GET", "/api/v1/reports/nps" + KPI, None, (Y, N, N, Y, N, N)),
    ("GET", "/api/v1/reports/callbacks" + KPI, None, (Y, N, N, Y, N, N)),
]

_uniq = itertools.count(100)


async def prepare(env: Env) -> None:
    floor(env)
    async with env.engine.begin() as conn:
        await conn.execute(text("INSERT INTO team_queues (team_id, queue) VALUES (:t, 'sales-overflow')"),
                           {"t": env.ids["red"]})
        gid = (await conn.execute(text("INSERT INTO agent_groups (name, penalty) VALUES ('helpers', 5) RETURNING id")))
        await conn.execute(text("INSERT INTO agent_group_members (group_id, agent_id) VALUES (:g, :a)"),
                           {"g": gid.scalar_one(), "a": env.ids["bob"]})
        env.ids["customer"] = (await conn.execute(text(
            "INSERT INTO customers (name) VALUES ('Ivanova') RETURNING id"))).scalar_one()


async def fill(env: Env, value: Any) -> Any:
    """Placeholders: fixed ids, or a fresh object per request for the destructive routes."""
    if isinstance(value, dict):
        return {k: await fill(env, v) for k, v in value.items()}
    if isinstance(value, list):
        return [await fill(env, v) for v in value]
    if not isinstance(value, str) or "{" not in value:
        return value
    if value == "{bob_id}":
        return env.ids["bob"]
    n = next(_uniq)
    subs = {"alice": env.ids["alice"], "red": env.ids["red"], "customer": env.ids["customer"], "uniq": n,
            "uniq4": f"{n:04d}"}
    async with env.engine.begin() as conn:
        if "{fresh_agent}" in value:
            subs["fresh_agent"] = (await conn.execute(text(
                "INSERT INTO agents (name) VALUES ('tmp') RETURNING id"))).scalar_one()
        if "{fresh_team}" in value:
            subs["fresh_team"] = (await conn.execute(text(
                "INSERT INTO teams (name) VALUES (:n) RETURNING id"), {"n": f"tmp{n}"})).scalar_one()
        if "{fresh_group}" in value:
            await conn.execute(text("INSERT INTO agent_groups (name) VALUES (:n)"), {"n": f"g{n}"})
            subs["fresh_group"] = f"g{n}"
        if "{fresh_token}" in value:
            subs["fresh_token"] = (await conn.execute(text(
                "INSERT INTO api_tokens (name, token_hash, role) VALUES ('t', :h, 'analyst') RETURNING id"),
                {"h": f"{n:064x}"})).scalar_one()
        if "{fresh_webhook}" in value:
            subs["fresh_webhook"] = (await conn.execute(text(
                "INSERT INTO webhooks (url, secret) VALUES ('http://127.0.0.1:9/', 'x') RETURNING id"))).scalar_one()
    if "{fresh_spy}" in value:
        channel = f"PJSIP/1009-{n:08x}"
        env.feed(SpyStarted(pbx="ast1", call_id="c-sales", at=env.clock[0], spyer_channel=channel,
                            target_channel="PJSIP/1001-00000001", mode=SpyMode.LISTEN))
        subs["fresh_spy"] = next(s.id for s in env.state.spies.all() if s.spyer_channel == channel)
    return value.format(**subs)


async def call(env: Env, method: str, path: str, body: Any, headers: dict[str, str]) -> int:
    if "/events" in path:  # a stream: the status is enough
        async with env.http.get(env.base + path, headers=headers) as resp:
            return resp.status
    async with env.http.request(method, env.base + path, json=body, headers=headers) as resp:
        await resp.read()
        return resp.status


async def test_every_route_by_every_role(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        await prepare(env)
        wrong = []
        for method, template, body, expected in MATRIX:
            for who, want in zip(WHO, expected, strict=True):
                path = await fill(env, template)
                status = await call(env, method, path, await fill(env, body),
                                    {"Authorization": f"Bearer {env.tokens[who]}"})
                ok = 200 <= status < 300 if want == Y else status == want
                if not ok:
                    wrong.append(f"{method} {path} as {who}: {status}, expected {want}")
        assert not wrong, "\n".join(wrong)


async def test_the_matrix_covers_every_route() -> None:
    declared = {(r.method, r.path) for r in _load_handlers()}
    covered = set()
    for method, template, _, _ in MATRIX:
        path = template.split("?")[0]
        for r in _load_handlers():
            pattern = "^" + re.sub(r"\{[a-z_]+\}", "[^/]+", r.path) + "$"
            if r.method == method and re.match(pattern, re.sub(r"\{[a-z_0-9]+\}", "1", path)):
                covered.add((r.method, r.path))
                break
    assert declared - covered == set()


async def test_missing_bad_revoked_and_expired_tokens_get_401(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        await prepare(env)
        variants: dict[str, dict[str, str]] = {
            "missing": {},
            "not bearer": {"Authorization": f"Basic {env.tokens['admin']}"},
            "empty bearer": {"Authorization": "Bearer "},
            "unknown": {"Authorization": "Bearer cc_not-a-real-token"},
            "revoked": {"Authorization": f"Bearer {env.tokens['revoked']}"},
            "expired": {"Authorization": f"Bearer {env.tokens['expired']}"},
        }
        wrong = []
        for method, template, body, expected in MATRIX:
            public = all(w == Y for w in expected) and not template.startswith("/api/v1/")
            for name, headers in variants.items():
                path = await fill(env, template)
                status = await call(env, method, path, await fill(env, body), headers)
                if public:
                    if not 200 <= status < 300:
                        wrong.append(f"{method} {path} ({name}): public route answered {status}")
                elif status != 401:
                    wrong.append(f"{method} {path} ({name}): {status}, expected 401")
        assert not wrong, "\n".join(wrong)


async def test_401_says_how_to_authenticate_and_is_a_problem(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        status, body, resp = await env.req("GET", "/api/v1/live/calls", who=None)
        assert status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert resp.headers["Content-Type"].startswith("application/problem+json")
        assert body["status"] == 401 and body["title"] == "Unauthorized" and body["type"].endswith(":unauthorized")
        status, body, resp = await env.req("GET", "/api/v1/tokens", who="analyst")
        assert status == 403 and body["type"].endswith(":forbidden") and "WWW-Authenticate" not in resp.headers


async def test_the_token_may_be_in_the_query_on_the_event_stream_only(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        token = env.tokens["admin"]
        async with env.http.get(f"{env.base}/api/v1/live/calls?access_token={token}") as resp:
            assert resp.status == 401
        async with env.http.get(f"{env.base}/api/v1/events?snapshot=false&access_token={token}") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/event-stream")


async def test_a_supervisor_token_without_an_agent_supervises_nothing(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        floor(env)
        status, body, _ = await env.req("POST", "/api/v1/tokens", json={"name": "website", "role": "supervisor"})
        assert status == 201
        website = body["token"]
        status, body, _ = await env.req("GET", "/api/v1/live/calls", who=website)
        assert (status, body) == (200, {"calls": []})
        status, _, _ = await env.req("POST", "/api/v1/live/calls/c-sales/spy", who=website,
                                     json={"mode": "listen", "endpoint": "PJSIP/1009"})
        assert status == 403
        status, _, _ = await env.req("POST", "/api/v1/callbacks", who=website, json={"phone": "+12025550142"})
        assert status == 201


async def test_team_changes_apply_without_new_tokens(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        floor(env)
        assert (await env.req("GET", "/api/v1/live/calls/c-support", "sup_red"))[0] == 403
        async with env.engine.begin() as conn:
            await conn.execute(text("INSERT INTO team_queues (team_id, queue) VALUES (:t, 'support')"),
                               {"t": env.ids["red"]})
        assert (await env.req("GET", "/api/v1/live/calls/c-support", "sup_red"))[0] == 200


async def test_last_used_is_recorded(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        await env.req("GET", "/api/v1/me", "analyst")
        async with env.engine.connect() as conn:
            used = await conn.scalar(text("SELECT last_used_at FROM api_tokens WHERE id = :id"),
                                     {"id": env.ids["token:analyst"]})
        assert used is not None
