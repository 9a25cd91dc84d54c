"""Reading and writing ESL traces in the shared capture format.

Format (byte-exact; the one the FreeSWITCH captures in ``tests/fixtures/freeswitch`` use, and the
one ``--record`` writes)::

    #### RECV <UTC ISO time> len=<n>
    <exactly n bytes: one complete ESL message as received>
    #### SENT <UTC ISO time> len=<n>
    <exactly n bytes: one command as sent>
    #### NOTE <UTC ISO time> free text

Each payload is followed by one ``\\n`` that is not part of it. Frames are read by length,
never by searching for the next ``####``: a payload may contain anything (an api output, an
event body with blank lines, an ``api/response`` without a final newline such as
``create_uuid``'s 36 bytes).

The writer masks the password of ``auth``/``userauth`` commands (``auth ********``): a recorded
session must be shareable.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal

from callcenter.pbx.freeswitch.protocol import mask_secrets

__all__ = ["TraceFormatError", "TraceFrame", "TraceWriter", "iter_trace", "read_trace", "read_trace_bytes"]

Direction = Literal["recv", "send", "note"]

_HEADER = re.compile(rb"^#### (?:(?P<dir>RECV|SENT) (?P<t>\S+) len=(?P<n>\d+)|NOTE (?P<nt>\S+)(?: (?P<note>.*))?)$")


class TraceFormatError(ValueError):
    """The file is not in the shared ESL trace format; the message names the line."""


@dataclass(frozen=True, slots=True)
class TraceFrame:
    at: datetime
    direction: Direction  # "recv" = RECV (from FreeSWITCH), "send" = SENT (to it), "note"
    data: bytes  # the raw ESL message for recv/send, the note text (UTF-8) for notes

    @property
    def note(self) -> str:
        return self.data.decode("utf-8", "replace") if self.direction == "note" else ""


def _parse_time(raw: bytes, where: str) -> datetime:
    text = raw.decode("ascii", "replace")
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise TraceFormatError(f"{where}: bad timestamp {text!r}") from exc
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
            raise TraceFormatError(f"{name}:{lineno}: expected a '#### ...' frame header, got {stripped[:80]!r}")
        where = f"{name}:{lineno}"
        if m.group("dir") is None:
            yield TraceFrame(_parse_time(m.group("nt"), where), "note", m.group("note") or b"")
            continue
        at = _parse_time(m.group("t"), where)
        n = int(m.group("n"))
        data = stream.read(n)
        if len(data) != n:
            raise TraceFormatError(f"{where}: frame announces {n} bytes, file ends after {len(data)}")
        sep = stream.read(1)
        if sep not in (b"\n", b""):
            raise TraceFormatError(f"{where}: {n} bytes of payload not followed by a newline (got {sep!r})")
        lineno += data.count(b"\n") + 1
        yield TraceFrame(at, "recv" if m.group("dir") == b"RECV" else "send", data)


def read_trace(path: str | os.PathLike[str]) -> list[TraceFrame]:
    p = Path(path)
    with p.open("rb") as fh:
        return list(iter_trace(fh, name=str(p)))


def read_trace_bytes(data: bytes, name: str = "<trace>") -> list[TraceFrame]:
    return list(iter_trace(io.BytesIO(data), name=name))


def _now() -> bytes:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()


class TraceWriter:
    """Append-only recorder of raw ESL traffic (``callcenter run --record FILE``).

    ``recv(data)`` for one received message, ``send(data)`` for one command (the password of
    an ``auth`` command is masked here, whoever calls it), ``note(text)`` for annotations.
    """

    def __init__(self, path: str | os.PathLike[str] | BinaryIO) -> None:
        if isinstance(path, str | os.PathLike):
            self._fh: BinaryIO = Path(path).open("ab", buffering=64 * 1024)
            self._owned = True
        else:
            self._fh = path
            self._owned = False

    def recv(self, data: bytes) -> None:
        self._fh.write(b"#### RECV " + _now() + b" len=%d\n" % len(data) + data + b"\n")

    def send(self, data: bytes) -> None:
        data = mask_secrets(data)
        self._fh.write(b"#### SENT " + _now() + b" len=%d\n" % len(data) + data + b"\n")

    def note(self, text: str) -> None:
        line = text.replace("\r", " ").replace("\n", " ").encode("utf-8")
        self._fh.write(b"#### NOTE " + _now() + (b" " + line if line else b"") + b"\n")

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        if self._owned:
            self._fh.close()
        else:
            self._fh.flush()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
