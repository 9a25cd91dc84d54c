"""Health, readiness, metrics, the OpenAPI document, who-am-I and the wallboard page."""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

from aiohttp import web
from sqlalchemy import text

from callcenter import __version__
from callcenter.api.metrics import render
from callcenter.api.router import ALL_ROLES, ROUTES, Call, Reply, openapi, route

STATIC = resources.files("callcenter.api") / "static"


@route("GET", "/healthz", roles=None, summary="Liveness: the process answers", tag="system")
async def healthz(c: Call) -> Any:
    """No token. 200 as long as the event loop runs."""
    return {"status": "ok"}


@route("GET", "/readyz", roles=None, summary="Readiness: database reachable and every PBX connected", tag="system")
async def readyz(c: Call) -> Any:
    """No token. 503 (with the failing checks) when the database does not answer or a PBX
    link is down, so a load balancer or orchestrator stops sending traffic."""
    checks: dict[str, Any] = {}
    try:
        async with asyncio.timeout(c.ctx.options.readyz_timeout_s):
            async with c.ctx.database.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
    for name, adapter in sorted(c.ctx.controller.adapters.items()):
        checks[f"pbx:{name}"] = "ok" if adapter.connected else "disconnected"
    ready = all(v == "ok" for v in checks.values())
    return Reply({"status": "ready" if ready else "not ready", "checks": checks}, 200 if ready else 503)


@route("GET", "/metrics", roles={"admin", "analyst"}, summary="Prometheus metrics", tag="system",
       produces=("text/plain",))
async def metrics(c: Call) -> Any:
    """Prometheus text format. Token-protected like the API (give the scraper an analyst token:
    ``authorization: {credentials: ...}`` in the scrape config)."""
    return web.Response(body=render(c.state.metrics), content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


@route("GET", "/api/v1/openapi.json", roles=ALL_ROLES, summary="This API's OpenAPI 3.1 document", tag="system")
async def openapi_document(c: Call) -> Any:
    if c.state.openapi is None:
        c.state.openapi = openapi(ROUTES, title="callcenter API", version=__version__)
    return c.state.openapi


@route("GET", "/api/v1/me", roles=ALL_ROLES, summary="The caller's token, role and scope", tag="system")
async def me(c: Call) -> Any:
    """What the token may see: the wallboard uses it to show or hide supervisor controls."""
    s = await c.scope()
    return {"token_id": c.me.token_id, "name": c.me.name, "role": c.me.role, "agent_id": c.me.agent_id,
            "scope": {"everything": s.everything, "agent_ids": sorted(s.agent_ids), "queues": sorted(s.queues),
                      "interfaces": sorted(s.interfaces), "own_interfaces": sorted(s.own_interfaces)}}


async def _wallboard(request: web.Request) -> web.StreamResponse:
    body = (STATIC / "wallboard.html").read_bytes()
    return web.Response(body=body, content_type="text/html", charset="utf-8", headers=_PAGE_HEADERS)


async def _asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    types = {"js": "application/javascript", "css": "text/css"}
    ext = name.rsplit(".", 1)[-1]
    if ext not in types or "/" in name or name.startswith("."):
        raise web.HTTPNotFound()
    path = STATIC / name
    if not path.is_file():
        raise web.HTTPNotFound()
    return web.Response(body=path.read_bytes(), content_type=types[ext], charset="utf-8", headers=_PAGE_HEADERS)


# The page holds no data (it fetches everything with the token), so it is served without one;
# a strict CSP keeps injected markup from running scripts or sending the token elsewhere.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@route("GET", "/wallboard", roles=None, summary="The live wallboard page (HTML; data needs a token)",
       tag="wallboard", produces=("text/html",))
async def wallboard(c: Call) -> Any:
    """No token for the page itself: it contains no data. It asks for a token (login form or
    ``?token=`` once), keeps it in sessionStorage and uses it for every request."""
    return await _wallboard(c.request)


@route("GET", "/wallboard/static/{name}", roles=None, summary="Wallboard script and style sheet",
       tag="wallboard", produces=("application/javascript", "text/css"))
async def wallboard_asset(c: Call) -> Any:
    return await _asset(c.request)
