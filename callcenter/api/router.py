"""The route table: one declaration per endpoint, read by aiohttp *and* by the OpenAPI builder.

Each handler is declared with ``@route(method, path, roles=..., body=Model, query=Model)``; the
wrapper authenticates, checks the role, validates path parameters, query and body with pydantic
and turns the handler's return value into JSON. ``openapi()`` walks the same table, so the
document cannot drift from what the server does (a test checks every aiohttp route is in it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from callcenter.api.auth import Principal, Scope, authenticate, load_scope
from callcenter.api.problems import ApiProblem, forbidden, unauthorized, validation_problem

if TYPE_CHECKING:
    from callcenter.api.app import ApiState
    from callcenter.api.context import ApiContext

ALL_ROLES = frozenset({"admin", "supervisor", "analyst", "agent"})
Handler = Callable[["Call"], Awaitable[Any]]

# Path parameters that are integers (database ids); everything else is a string.
INT_PARAMS = frozenset({"agent_id", "team_id", "customer_id", "token_id", "webhook_id", "spy_id"})
_PARAM = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    roles: frozenset[str] | None  # None: public (no token)
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    text_body: bool = False  # also accepts a text/yaml body (rules)
    produces: tuple[str, ...] = ("application/json",)
    query_token: bool = False  # ?access_token= accepted (EventSource cannot set headers)
    description: str = ""

    @property
    def path_params(self) -> list[str]:
        return _PARAM.findall(self.path)


ROUTES: list[Route] = []


def route(method: str, path: str, *, roles: frozenset[str] | set[str] | None, summary: str, tag: str,
          **kw: Any) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        ROUTES.append(Route(method, path, fn, frozenset(roles) if roles is not None else None, summary, tag,
                            description=(fn.__doc__ or "").strip(), **kw))
        return fn

    return deco


@dataclass
class Reply:
    data: Any
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Call:
    """One request as the handlers see it."""

    request: web.Request
    ctx: ApiContext
    state: ApiState
    principal: Principal | None
    path: dict[str, Any]
    query: Any = None
    body: Any = None
    text: str | None = None
    _scope: Scope | None = None

    async def scope(self) -> Scope:
        if self._scope is None:
            assert self.principal is not None
            self._scope = await load_scope(self.ctx.database.engine, self.principal)
        return self._scope

    @property
    def me(self) -> Principal:
        assert self.principal is not None
        return self.principal


def json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=json.dumps(data, default=json_default, ensure_ascii=False).encode(),
                        content_type="application/json", headers=headers)


def bearer(request: web.Request, query_token: bool) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if query_token:
        return request.query.get("access_token") or None
    return None


def _query_dict(request: web.Request, model: type[BaseModel]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, f in model.model_fields.items():
        key = f.alias or name
        values = request.query.getall(key, [])
        if not values:
            continue
        ann = str(f.annotation)
        # list parameters: repeated (?stage=a&stage=b) or comma-separated (?kinds=a,b)
        if ann.startswith("list[") or "list[" in ann:
            out[key] = [v for item in values for v in item.split(",") if v]
        else:
            out[key] = values[-1]
    return out


def wrap(r: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        from callcenter.api.app import CTX, STATE

        ctx = request.app[CTX]
        state = request.app[STATE]
        principal = None
        if r.roles is not None:
            token = bearer(request, r.query_token)
            if token is None:
                raise unauthorized("a bearer token is required (Authorization: Bearer <token>)")
            principal = await authenticate(ctx.database.engine, token)
            if principal is None:
                raise unauthorized("the token is unknown, revoked or expired")
            if principal.role not in r.roles:
                raise forbidden(f"role {principal.role!r} may not use {r.method} {r.path}")
        path: dict[str, Any] = {}
        errors = []
        for name in r.path_params:
            raw = request.match_info.get(name, "")
            if "\x00" in raw:
                errors.append(_nul_error("path", name))
                continue
            if name in INT_PARAMS:
                if not raw.isdigit() or len(raw) > 18:
                    errors.append({"in": "path", "path": name, "pointer": f"#/{name}",
                                   "detail": "must be a positive integer", "type": "int_parsing"})
                    continue
                path[name] = int(raw)
            else:
                path[name] = raw
        if errors:
            raise ApiProblem(422, f"path parameter {errors[0]['path']!r}: {errors[0]['detail']}",
                             title="Unprocessable Content", kind="validation-error", errors=errors)
        call = Call(request, ctx, state, principal, path)
        bad = next((k for k, v in request.query.items() if "\x00" in v or "\x00" in k), None)
        if bad is not None:
            raise _nul_problem("query", bad)
        if r.query is not None:
            try:
                call.query = r.query.model_validate(_query_dict(request, r.query))
            except ValidationError as exc:
                raise validation_problem(exc, "query") from None
        if r.body is not None or r.text_body:
            await _read_body(request, r, call)
        result = await r.handler(call)
        if isinstance(result, web.StreamResponse):
            return result
        if isinstance(result, Reply):
            return json_response(result.data, result.status or r.status, result.headers)
        return json_response(result, r.status)

    return handler


async def _read_body(request: web.Request, r: Route, call: Call) -> None:
    ctype = request.content_type
    raw = await request.read()  # bounded by client_max_size: larger bodies raise 413
    if r.text_body and ctype in ("text/yaml", "application/yaml", "application/x-yaml", "text/plain"):
        try:
            call.text = raw.decode()
        except UnicodeDecodeError:
            raise ApiProblem(400, "the body is not UTF-8 text", kind="bad-body") from None
        if "\x00" in call.text:
            raise _nul_problem("body", "")
        return
    if raw and ctype not in ("application/json", "application/octet-stream", "") and not ctype.endswith("+json"):
        raise ApiProblem(415, f"send application/json, not {ctype}", kind="unsupported-media-type")
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiProblem(400, f"the body is not valid JSON: {exc}", kind="malformed-json") from None
    if r.body is None:
        raise ApiProblem(415, "this endpoint takes a text/yaml body", kind="unsupported-media-type")
    nul = _nul_path(data)
    if nul is not None:
        raise _nul_problem("body", nul)
    try:
        call.body = r.body.model_validate(data)
    except ValidationError as exc:
        raise validation_problem(exc, "body") from None


# PostgreSQL text cannot hold NUL; no field of this API has a use for it. Refused up front, with
# the field's path, instead of surfacing later as a database error.
def _nul_path(value: Any, path: str = "") -> str | None:
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for k, v in value.items():
            sub = f"{path}.{k}" if path else str(k)
            if "\x00" in str(k):
                return sub
            found = _nul_path(v, sub)
            if found is not None:
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = _nul_path(v, f"{path}.{i}" if path else str(i))
            if found is not None:
                return found
    return None


def _nul_error(where: str, path: str) -> dict[str, Any]:
    return {"in": where, "path": path, "pointer": "#/" + path.replace(".", "/"),
            "detail": "NUL characters are not allowed", "type": "string_nul"}


def _nul_problem(where: str, path: str) -> ApiProblem:
    return ApiProblem(422, f"{where} field {path!r}: NUL characters are not allowed", title="Unprocessable Content",
                      kind="validation-error", errors=[_nul_error(where, path)])


# --- OpenAPI ---------------------------------------------------------------------------------


def _problem_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "errors": {"type": "array", "items": {"type": "object", "properties": {
                "in": {"type": "string", "enum": ["body", "query", "path"]},
                "path": {"type": "string"}, "pointer": {"type": "string"},
                "detail": {"type": "string"}, "type": {"type": "string"}}}},
        },
    }


def openapi(routes: list[Route], *, title: str, version: str) -> dict[str, Any]:
    models: list[type[BaseModel]] = []
    for r in routes:
        for m in (r.body, r.query, r.response):
            if m is not None and m not in models:
                models.append(m)
    keyed: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [(m, "validation") for m in models]
    _, top = models_json_schema(keyed, ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    schemas["Problem"] = _problem_schema()
    problem = {"description": "problem details (RFC 9457)",
               "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    paths: dict[str, Any] = {}
    for r in routes:
        op: dict[str, Any] = {
            "operationId": r.handler.__name__,
            "summary": r.summary,
            "tags": [r.tag],
            "parameters": [],
            "responses": {},
        }
        if r.description:
            op["description"] = r.description
        for name in r.path_params:
            schema = {"type": "integer", "minimum": 0} if name in INT_PARAMS else {"type": "string", "minLength": 1}
            op["parameters"].append({"name": name, "in": "path", "required": True, "schema": schema})
        if r.query is not None:
            qs = r.query.model_json_schema(ref_template="#/components/schemas/{model}")
            required = set(qs.get("required", []))
            for key, schema in qs.get("properties", {}).items():
                explode = "array" in json.dumps(schema)
                param = {"name": key, "in": "query", "required": key in required, "schema": schema}
                if explode:
                    param["style"], param["explode"] = "form", True
                op["parameters"].append(param)
            for key, sub in qs.get("$defs", {}).items():
                schemas.setdefault(key, sub)
        if r.query_token:
            op["parameters"].append({"name": "access_token", "in": "query", "required": False,
                                     "schema": {"type": "string"},
                                     "description": "the bearer token, for EventSource (no headers)"})
        if r.body is not None or r.text_body:
            content: dict[str, Any] = {}
            if r.body is not None:
                content["application/json"] = {"schema": {"$ref": f"#/components/schemas/{r.body.__name__}"}}
            if r.text_body:
                content["text/yaml"] = {"schema": {"type": "string"}}
            op["requestBody"] = {"required": True, "content": content}
        ok: dict[str, Any] = {"description": "success"}
        if r.status != 204:
            schema = ({"$ref": f"#/components/schemas/{r.response.__name__}"} if r.response is not None
                      else {"type": "object"} if "application/json" in r.produces else {"type": "string"})
            ok["content"] = {media: {"schema": schema if media == "application/json" else {"type": "string"}}
                             for media in r.produces}
        op["responses"][str(r.status)] = ok
        if r.roles is not None:
            op["security"] = [{"bearer": []}]
            op["x-roles"] = sorted(r.roles)
            op["responses"]["401"] = problem
            op["responses"]["403"] = problem
        else:
            op["security"] = []
        if r.path_params or r.query is not None or r.body is not None:
            op["responses"]["422"] = problem
        if r.body is not None:
            op["responses"]["413"] = problem
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
