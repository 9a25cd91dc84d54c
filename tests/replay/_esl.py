"""ESL traces for the FreeSWITCH tests, read with the project's own wire layer.

``callcenter.pbx.freeswitch.trace`` reads the shared capture format, ``EslParser`` frames every
received message (as the live client does), ``decode_event`` decodes plain and JSON events alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from callcenter.pbx.freeswitch.message import EslEvent, EslFrame
from callcenter.pbx.freeswitch.protocol import CT_EVENT_JSON, CT_EVENT_PLAIN, EslParser, decode_event
from callcenter.pbx.freeswitch.trace import TraceFrame, read_trace

__all__ = ["events", "read_frames", "replies"]


def read_frames(path: str | Path) -> list[TraceFrame]:
    """Every frame (``direction`` recv / send / note) of a trace."""
    return read_trace(path)


def events(path: str | Path) -> Iterator[tuple[EslEvent, datetime]]:
    """Every event received in a trace, with its capture time."""
    parser = EslParser()
    for frame in read_trace(path):
        if frame.direction != "recv":
            continue
        for msg in parser.feed(frame.data):
            if msg.content_type in (CT_EVENT_PLAIN, CT_EVENT_JSON):
                yield decode_event(msg), frame.at
    assert parser.pending == b"", f"{path}: a message was cut"


def replies(path: str | Path) -> Iterator[tuple[str, EslFrame]]:
    """(command sent, its reply frame) for every api/response and command/reply of a trace."""
    parser = EslParser()
    last = ""
    for frame in read_trace(path):
        if frame.direction == "send":
            last = frame.data.decode().strip()
        elif frame.direction == "recv":
            for msg in parser.feed(frame.data):
                if msg.content_type in ("api/response", "command/reply"):
                    yield last, msg
