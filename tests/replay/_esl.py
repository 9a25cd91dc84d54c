"""Private ESL trace reader for the FreeSWITCH tests (until the shared ESL wire layer lands).

Trace format (tests/fixtures/freeswitch/TRACES_README.md): ``#### SENT|RECV <UTC ISO time> len=N``
then exactly N raw bytes and ``\\n``; ``#### NOTE ...`` lines are driver annotations. Each RECV
is one complete ESL message: an envelope header block, a blank line, ``Content-Length`` bytes of
body. ``text/event-plain`` bodies are themselves URL-encoded header blocks (plus an optional
body of their own); ``text/event-json`` bodies are one flat JSON object (``_body`` = body).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote

from callcenter.pbx.freeswitch.message import EslEvent, EslFrame

_HEADER = re.compile(rb"^#### (SENT|RECV) (\S+) len=(\d+)$")


@dataclass(frozen=True)
class Frame:
    direction: str  # "sent" | "recv" | "note"
    at: datetime
    data: bytes


def _time(raw: str) -> datetime:
    return datetime.fromisoformat(raw.replace("Z", "+00:00"))


def read_frames(path: str | Path) -> Iterator[Frame]:
    with Path(path).open("rb") as fh:
        while True:
            line = fh.readline()
            if not line:
                return
            stripped = line.rstrip(b"\n")
            if not stripped:
                continue
            if stripped.startswith(b"#### NOTE "):
                _, _, rest = stripped.partition(b"#### NOTE ")
                stamp, _, text = rest.partition(b" ")
                yield Frame("note", _time(stamp.decode()), text)
                continue
            m = _HEADER.match(stripped)
            if m is None:
                raise ValueError(f"{path}: not a frame header: {stripped[:80]!r}")
            n = int(m.group(3))
            data = fh.read(n)
            assert len(data) == n, "truncated frame"
            assert fh.read(1) == b"\n"
            yield Frame(m.group(1).decode().lower(), _time(m.group(2).decode()), data)


def _headers(block: str, decode: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in block.split("\n"):
        if not line:
            continue
        key, _, value = line.partition(": ")
        out[key] = unquote(value) if decode else value
    return out


def parse_frame(data: bytes) -> EslFrame:
    head, _, body = data.partition(b"\n\n")
    return EslFrame(_headers(head.decode(), decode=False), body)


def decode_event(frame: EslFrame) -> EslEvent | None:
    ctype = frame.content_type
    if ctype == "text/event-plain":
        head, sep, rest = frame.body.decode().partition("\n\n")
        headers = _headers(head, decode=True)
        body = rest if sep and "Content-Length" in headers else None
        return EslEvent(headers, body)
    if ctype == "text/event-json":
        obj = json.loads(frame.body)
        body = obj.pop("_body", None)
        return EslEvent({k: str(v) for k, v in obj.items()}, body)
    return None


def events(path: str | Path) -> Iterator[tuple[EslEvent, datetime]]:
    """Every event received in a trace, with its capture time."""
    for frame in read_frames(path):
        if frame.direction == "recv":
            ev = decode_event(parse_frame(frame.data))
            if ev is not None:
                yield ev, frame.at


def replies(path: str | Path) -> Iterator[tuple[str, EslFrame]]:
    """(command sent, its reply frame) for every api/response and command/reply of a trace."""
    last = ""
    for frame in read_frames(path):
        if frame.direction == "sent":
            last = frame.data.decode().strip()
        elif frame.direction == "recv":
            parsed = parse_frame(frame.data)
            if parsed.content_type in ("api/response", "command/reply"):
                yield last, parsed
