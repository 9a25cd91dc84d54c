"""The HTTP API application: ``create_app(ctx)``.

A thin shell: handlers read the controller's live registry and send domain commands through
``controller.execute``; the database holds tokens, organisation, CRM and the audit trail.
Routes are declared once (``callcenter.api.router``) and served under ``/api/v1``, plus
``/healthz``, ``/readyz``, ``/metrics`` and the wallboard page.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError

from callcenter.api.context import ApiContext, ApiOptions
from callcenter.api.metrics import ApiMetrics, LiveCollector
from callcenter.api.ports import RulesPort
from callcenter.api.problems import ApiProblem
from callcenter.api.router import ROUTES, Route, wrap
from callcenter.api.spies import SpyTracker
from callcenter.api.webhooks import WebhookDispatcher

__all__ = ["ApiContext", "ApiOptions", "ApiState", "RulesPort", "create_app"]

log = logging.getLogger(__name__)
API_PREFIX = "/api/v1"


@dataclass
class ApiState:
    """Per-app runtime state (not configuration)."""

    metrics: ApiMetrics
    spies: SpyTracker
    webhooks: WebhookDispatcher
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    openapi: dict[str, Any] | None = None


CTX = web.AppKey("ctx", ApiContext)
STATE = web.AppKey("state", ApiState)


def _load_handlers() -> list[Route]:
    # Importing the modules registers their routes (in this order: it is the OpenAPI order).
    from callcenter.api import admin, crm, events, live, reports, system  # noqa: F401

    return ROUTES


@web.middleware
async def problems(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error leaves as problem details; no stack trace ever reaches a client."""
    try:
        limit = request.app[CTX].settings.http.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise ApiProblem(413, f"the body is larger than {limit} bytes", kind="body-too-large")
        return await handler(request)
    except ApiProblem as p:
        return p.response(request.path)
    except web.HTTPRequestEntityTooLarge:
        return ApiProblem(413, f"the body is larger than {request.app[CTX].settings.http.max_body_bytes} bytes",
                          kind="body-too-large").response(request.path)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        detail = {404: "no such resource", 405: f"{request.method} is not allowed here"}.get(exc.status, exc.reason)
        return ApiProblem(exc.status, detail, headers={k: v for k, v in exc.headers.items()
                                                        if k.lower() == "allow"}).response(request.path)
    except IntegrityError as exc:
        return ApiProblem(409, f"conflicts with existing data: {_pg_message(exc)}", kind="conflict").response(
            request.path)
    except DataError as exc:  # a value validation let through that PostgreSQL refuses
        log.warning("api: %s %s: database refused a value: %s", request.method, request.path, exc)
        return ApiProblem(422, f"a value was refused: {_pg_message(exc)}", kind="validation-error",
                          errors=[]).response(request.path)
    except (OperationalError, InterfaceError, OSError, TimeoutError) as exc:
        request.app[STATE].metrics.http_errors.inc()
        log.warning("api: %s %s: database or network unavailable: %s", request.method, request.path, exc)
        return ApiProblem(503, "a backing service (database) is unavailable; try again",
                          kind="unavailable").response(request.path)
    except asyncio.CancelledError:
        raise
    except Exception:
        request.app[STATE].metrics.http_errors.inc()
        log.exception("api: %s %s failed", request.method, request.path)
        return ApiProblem(500, "internal error (logged)", kind="internal").response(request.path)


def _pg_message(exc: Exception) -> str:
    orig = getattr(exc, "orig", None)
    text_ = str(orig if orig is not None else exc).splitlines()[0]
    return text_.split("DETAIL:")[0].strip()[:300]


def create_app(ctx: ApiContext) -> web.Application:
    metrics = ApiMetrics()
    metrics.registry.register(LiveCollector(ctx, metrics))
    state = ApiState(metrics=metrics, spies=SpyTracker(),
                     webhooks=WebhookDispatcher(ctx.database, ctx.options, metrics))
    app = web.Application(middlewares=[problems], client_max_size=ctx.settings.http.max_body_bytes)
    app[CTX] = ctx
    app[STATE] = state
    for r in _load_handlers():
        app.router.add_route(r.method, r.path, wrap(r))

    async def startup(app: web.Application) -> None:
        ctx.controller.listeners.append(state.spies.on_event)
        await state.webhooks.start()
        ctx.controller.bus.hooks.append(state.webhooks.hook)

    async def shutdown(app: web.Application) -> None:
        # Open event streams end first (they watch this event), or the server would wait for
        # them until its shutdown timeout.
        state.stopping.set()

    async def cleanup(app: web.Application) -> None:
        if state.webhooks.hook in ctx.controller.bus.hooks:
            ctx.controller.bus.hooks.remove(state.webhooks.hook)
        if state.spies.on_event in ctx.controller.listeners:
            ctx.controller.listeners.remove(state.spies.on_event)
        await state.webhooks.stop()

    app.on_startup.append(startup)
    app.on_shutdown.append(shutdown)
    app.on_cleanup.append(cleanup)
    return app
