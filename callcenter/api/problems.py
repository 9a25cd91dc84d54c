"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error the API returns has ``type``, ``title``, ``status`` and ``detail``; validation errors
add ``errors``: one entry per failing field with where it was (``in``: body, query or path), a
dotted ``path``, a JSON ``pointer`` into the body and the reason, so a client can put the
message next to the right form field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

from aiohttp import web
from pydantic import ValidationError

PROBLEM_TYPE = "application/problem+json"
TYPE_BASE = "urn:callcenter:problem:"  # stable identifiers (RFC 9457 allows any URI), not pages


class ApiProblem(Exception):
    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        kind: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.kind = kind or self.title.lower().replace(" ", "-")
        self.errors = errors
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def to_dict(self, instance: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": TYPE_BASE + self.kind,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            out["instance"] = instance
        if self.errors is not None:
            out["errors"] = self.errors
        out.update(self.extra)
        return out

    def response(self, instance: str | None = None) -> web.Response:
        return web.Response(
            status=self.status,
            body=json.dumps(self.to_dict(instance), ensure_ascii=False).encode(),
            content_type=PROBLEM_TYPE,
            headers=self.headers,
        )


def field_errors(err: ValidationError, where: str) -> list[dict[str, Any]]:
    return list(_errors(err.errors(include_url=False, include_context=False), where))


def _errors(items: Iterable[Any], where: str) -> Iterable[dict[str, Any]]:
    for e in items:
        loc = [str(p) for p in e.get("loc", ())]
        yield {
            "in": where,
            "path": ".".join(loc),
            "pointer": "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in loc),
            "detail": e.get("msg", "invalid"),
            "type": e.get("type", "value_error"),
        }


def validation_problem(err: ValidationError, where: str) -> ApiProblem:
    errors = field_errors(err, where)
    first = errors[0] if errors else {"path": "", "detail": "invalid"}
    where_txt = f"{where} field {first['path']!r}" if first["path"] else where
    return ApiProblem(422, f"{where_txt}: {first['detail']}", title="Unprocessable Content",
                      kind="validation-error", errors=errors)


def unauthorized(detail: str) -> ApiProblem:
    return ApiProblem(401, detail, kind="unauthorized",
                      headers={"WWW-Authenticate": 'Bearer realm="callcenter"'})


def forbidden(detail: str) -> ApiProblem:
    return ApiProblem(403, detail, kind="forbidden")


def not_found(detail: str) -> ApiProblem:
    return ApiProblem(404, detail, kind="not-found")


def conflict(detail: str) -> ApiProblem:
    return ApiProblem(409, detail, kind="conflict")
