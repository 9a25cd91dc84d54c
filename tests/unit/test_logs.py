from __future__ import annotations

import io
import json
import logging

from callcenter.logs import call_context, redact, setup_logging


def test_json_lines_carry_the_call_id_and_hide_secrets() -> None:
    buf = io.StringIO()
    setup_logging("INFO", "json", stream=buf)
    log = logging.getLogger("callcenter.test")
    with call_context("1763824405.7"):
        log.info("login with Secret: ctlsecret to postgresql://cc:hunter2@db/cc")
    log.info("no call here", extra={"call_id": "abc"})
    log.info("plain")
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert lines[0]["call_id"] == "1763824405.7"
    assert "ctlsecret" not in lines[0]["msg"] and "hunter2" not in lines[0]["msg"]
    assert lines[1]["call_id"] == "abc"
    assert "call_id" not in lines[2]


def test_text_format_names_the_call() -> None:
    buf = io.StringIO()
    setup_logging("INFO", "text", stream=buf)
    with call_context("c-1"):
        logging.getLogger("x").warning("hello")
    assert "[call c-1] x: hello" in buf.getvalue() or "x [call c-1]: hello" in buf.getvalue()


def test_redact_patterns() -> None:
    assert redact("password=abc&user=x") == "password=***&user=x"
    assert "s3" not in redact("Secret: s3\r\n")
    assert redact("postgresql+asyncpg://u:p@h/db") == "postgresql+asyncpg://u:***@h/db"
