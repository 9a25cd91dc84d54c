"""Reading and writing AMI traces in the shared capture format.

Format (byte-exact; the one the lab's captures use, and the one ``--record`` writes)::

    ### <UTC ISO time> +<seconds since connect>s <<< RECV|>>> SEND <n> bytes
    <exactly n bytes of one AMI message, CRLF kept>
    ### <UTC ISO time> +<seconds>s --- NOTE free text

The header line is ended by a single ``\\n``; the payload follows immediately. Frames are
read by length, never by searching for the next ``###``, because a payload may contain
anything.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Literal

Direction = Literal["recv", "send", "note"]

_HEADER = re.compile(
    rb"^### (?P<t>\S+) \+(?P<rel>[0-9.]+)s (?:(?P<dir><<< RECV|>>> SEND) (?P<n>\d+) bytes|--- NOTE ?(?P<note>.*))$"
)


class TraceFormatError(ValueError):
    """The file is not in the shared AMI trace format; the message names the line."""


@dataclass(frozen=True, slots=True)
class TraceFrame:
    at: datetime
    rel: float
    direction: Direction
    data: bytes  # the raw AMI message for recv/send, the note text (UTF-8) for notes

    @property
    def note(self) -> str:
        return self.data.decode("utf-8", "replace") if self.direction == "note" else ""


def _parse_time(raw: bytes, lineno: int) -> datetime:
    text = raw.decode("ascii")
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise TraceFormatError(f"line {lineno}: bad timestamp {text!r}") from exc
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def iter_trace(stream: BinaryIO, name: str = "<trace>") -> Iterator[TraceFrame]:
    lineno = 0
    while True:
        line = stream.readline()
        if not line:
            return
        lineno += 1
        stripped = line.rstrip(b"\r\n")
        if not stripped:
            continue  # tolerate blank lines between frames
        m = _HEADER.match(stripped)
        if m is None:
            raise TraceFormatError(f"{name}:{lineno}: expected a '### ...' frame header, got {stripped[:80]!r}")
        at = _parse_time(m.group("t"), lineno)
        rel = float(m.group("rel"))
        if m.group("dir") is None:
            yield TraceFrame(at, rel, "note", m.group("note") or b"")
            continue
        n = int(m.group("n"))
        data = stream.read(n)
        if len(data) != n:
            raise TraceFormatError(f"{name}:{lineno}: frame announces {n} bytes, file ends after {len(data)}")
        lineno += data.count(b"\n")
        direction: Direction = "recv" if m.group("dir").startswith(b"<<<") else "send"
        yield TraceFrame(at, rel, direction, data)


def read_trace(path: str | os.PathLike[str]) -> list[TraceFrame]:
    p = Path(path)
    with p.open("rb") as fh:
        return list(iter_trace(fh, name=str(p)))


def read_trace_bytes(data: bytes, name: str = "<trace>") -> list[TraceFrame]:
    return list(iter_trace(io.BytesIO(data), name=name))


class TraceWriter:
    """Append-only recorder of raw AMI traffic (``callcenter run --record FILE``)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._fh = Path(path).open("ab", buffering=64 * 1024)
        self._t0 = time.monotonic()

    def _header(self, tail: bytes) -> bytes:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
        rel = f"+{time.monotonic() - self._t0:.6f}s".encode()
        return b"### " + now + b" " + rel + b" " + tail + b"\n"

    def recv(self, data: bytes) -> None:
        self._fh.write(self._header(b"<<< RECV %d bytes" % len(data)) + data)

    def send(self, data: bytes) -> None:
        self._fh.write(self._header(b">>> SEND %d bytes" % len(data)) + data)

    def note(self, text: str) -> None:
        self._fh.write(self._header(b"--- NOTE " + text.replace("\n", " ").encode()))

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()
