"""Errors are RFC 9457 problem details: type, title, status, detail; validation errors list
every failing field with its location and path; large bodies are refused with 413."""

from __future__ import annotations

from tests.integration.test_api_support import api_env

PROBLEM = "application/problem+json"


def assert_problem(status: int, body: dict, resp, want: int) -> None:
    assert status == want, body
    assert resp.headers["Content-Type"].startswith(PROBLEM)
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == want and isinstance(body["detail"], str)
    assert body["type"].startswith("urn:callcenter:problem:")


async def test_validation_errors_carry_field_paths(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        status, body, resp = await env.req("POST", "/api/v1/customers", json={
            "name": "", "phones": [{"number": "+12025550101"}, {"label": "x"}], "tags": ["ok", 5], "bogus": 1})
        assert_problem(status, body, resp, 422)
        paths = {(e["in"], e["path"]) for e in body["errors"]}
        assert {("body", "name"), ("body", "phones.1.number"), ("body", "tags.1"), ("body", "bogus")} <= paths
        pointer = next(e["pointer"] for e in body["errors"] if e["path"] == "phones.1.number")
        assert pointer == "#/phones/1/number"
        assert all(e["detail"] and e["type"] for e in body["errors"])


async def test_phone_numbers_are_checked_with_their_field_path(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        status, body, resp = await env.req("POST", "/api/v1/customers", json={
            "name": "A", "phones": [{"number": "+12025550101"}, {"number": "not a phone"}]})
        assert_problem(status, body, resp, 422)
        assert body["errors"][0]["path"] == "phones.1.number"


async def test_query_and_path_parameters_are_validated(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        status, body, resp = await env.req("GET", "/api/v1/reports/kpi?from=yesterday&to=2026-11-02&by=week",
                                           "analyst")
        assert_problem(status, body, resp, 422)
        assert {(e["in"], e["path"]) for e in body["errors"]} == {("query", "from"), ("query", "by")}
        status, body, resp = await env.req("GET", "/api/v1/agents/abc")
        assert_problem(status, body, resp, 422)
        assert body["errors"] == [{"in": "path", "path": "agent_id", "pointer": "#/agent_id",
                                   "detail": "must be a positive integer", "type": "int_parsing"}]
        status, body, resp = await env.req("GET", "/api/v1/audit?limit=0")
        assert_problem(status, body, resp, 422)
        assert body["errors"][0]["path"] == "limit"


async def test_bad_json_wrong_media_type_unknown_route_and_method(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        status, body, resp = await env.req("POST", "/api/v1/callbacks", data=b"{not json",
                                           headers={"Content-Type": "application/json"})
        assert_problem(status, body, resp, 400)
        status, body, resp = await env.req("POST", "/api/v1/callbacks", data=b"phone=1",
                                           headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert_problem(status, body, resp, 415)
        status, body, resp = await env.req("POST", "/api/v1/callbacks", json=[1, 2])
        assert_problem(status, body, resp, 422)
        status, body, resp = await env.req("GET", "/api/v1/nothing-here")
        assert_problem(status, body, resp, 404)
        status, body, resp = await env.req("PATCH", "/api/v1/live/calls")
        assert_problem(status, body, resp, 405)
        assert "GET" in resp.headers["Allow"]


async def test_bodies_over_the_limit_are_refused_with_413(database, tmp_path) -> None:
    async with api_env(database, tmp_path, max_body=4096) as env:
        big = {"phone": "+12025550142", "topic": "x" * 5000}
        status, body, resp = await env.req("POST", "/api/v1/callbacks", json=big)
        assert_problem(status, body, resp, 413)
        assert "4096" in body["detail"]

        # without a Content-Length (chunked), the limit still holds while reading
        async def chunks():
            for _ in range(10):
                yield b"x" * 1000

        status, body, resp = await env.req("POST", "/api/v1/callbacks", data=chunks(),
                                           headers={"Content-Type": "application/json"})
        assert_problem(status, body, resp, 413)
        # just under the limit is fine
        status, body, _ = await env.req("POST", "/api/v1/callbacks", json={"phone": "+12025550142",
                                                                           "topic": "x" * 400})
        assert status == 201


async def test_an_internal_error_is_a_500_problem_without_internals(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        def broken() -> dict:
            raise RuntimeError("secret internal detail")

        env.ctx.rules.current = broken  # type: ignore[union-attr, method-assign]
        status, body, resp = await env.req("GET", "/api/v1/rules")
        assert_problem(status, body, resp, 500)
        assert "secret" not in str(body) and "Traceback" not in str(body)
        assert 'callcenter_http_server_errors_total 1.0' in (await env.req("GET", "/metrics"))[1]


async def test_the_database_being_down_is_a_503(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        await database.engine.dispose()
        from sqlalchemy.ext.asyncio import create_async_engine

        # point the API at a server that is not there
        env.ctx.database.engine = create_async_engine("postgresql+asyncpg://u:p@127.0.0.1:1/none",
                                                      connect_args={"timeout": 1})
        try:
            status, body, resp = await env.req("GET", "/api/v1/me")
            assert_problem(status, body, resp, 503)
            status, body, _ = await env.req("GET", "/readyz", who=None)
            assert status == 503 and body["checks"]["database"].startswith("unavailable")
            status, body, _ = await env.req("GET", "/healthz", who=None)
            assert status == 200
        finally:
            await env.ctx.database.engine.dispose()


async def test_nul_characters_are_refused_with_their_path(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        status, body, resp = await env.req("POST", "/api/v1/customers", json={"name": "A", "notes": "x\u0000y"})
        assert_problem(status, body, resp, 422)
        assert body["errors"][0]["path"] == "notes"
        status, body, resp = await env.req("GET", "/api/v1/customers?name=a%00b")
        assert_problem(status, body, resp, 422)
        assert body["errors"][0] == {"in": "query", "path": "name", "pointer": "#/name",
                                     "detail": "NUL characters are not allowed", "type": "string_nul"}
        status, body, resp = await env.req("DELETE", "/api/v1/groups/a%00b")
        assert_problem(status, body, resp, 422)
        assert body["errors"][0]["in"] == "path"
