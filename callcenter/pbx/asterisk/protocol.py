"""Sans-I/O AMI codec: bytes in, :class:`AmiMessage` out; actions out as bytes. No sockets here.

Framing (what the Asterisk 22 captures in ``tests/fixtures/asterisk`` show, and why the code
is shaped as it is):

* The server greets with one line, ``Asterisk Call Manager/11.0.0\\r\\n``, that is *not* ended
  by a blank line; the parser reports it as a message whose only header is ``Banner``.
* Every other message is ``Key: value`` lines ended by CRLF plus one empty line. Bytes are
  split on ``\\r\\n\\r\\n`` *first* and each complete message is decoded as UTF-8 *after*, so a
  multi-byte character cut by a TCP read boundary ('Jürgen' across two reads) is whole again
  (panoramisk decodes every read and loses it). Undecodable bytes become U+FFFD and are
  counted (``decode_errors``); the message is still delivered.
* A peer that ends lines with a bare ``\\n`` is tolerated (slow path, taken only when
  ``\\n\\n`` appears in the stream, which CRLF framing never produces).
* ``Response: Follows`` (Command on older Asterisk) carries raw output lines and ends with
  ``--END COMMAND--``; its output may contain blank lines, so such a message runs until the
  marker. Asterisk 22 instead sends ``Response: Success`` with repeated ``Output:`` lines
  (status_queries trace) - plain repeated keys.
* A frame whose first line is not a ``Key: value`` header is malformed: it is reported to
  ``on_malformed`` and counted, and parsing continues with the next frame.

Speed: the decoded text of a whole read is split in C (``bytes.rfind``/``str.split``); per
message the parser only creates one lazy :class:`AmiMessage` (headers are built on demand, see
``message.py``). No per-line regex anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import repeat
from urllib.parse import unquote

from callcenter.pbx.asterisk.message import AmiMessage, parse_header_lines

__all__ = [
    "AgiResult",
    "AmiParser",
    "agi_result",
    "encode_action",
    "encode_fields",
    "parse_agi_env",
    "parse_agi_result",
]

_BANNER_MAX = 512
_END_COMMAND = "--END COMMAND--"
_lazy = AmiMessage.from_text
_new = object.__new__

MalformedCallback = Callable[[bytes, str], None]


class AmiParser:
    """Incremental AMI parser. ``feed(bytes) -> list[AmiMessage]``; keeps partial messages.

    ``expect_banner``: the first line may be the server greeting (client side). The fake
    server parses actions with ``expect_banner=False``.
    ``keep_raw``: set ``AmiMessage.raw`` to the received bytes (terminator included), for
    byte-exact trace recording.
    ``max_message_size``: a message that grows beyond this without a terminator is reported
    as malformed and discarded (a PBX never sends one; it protects memory).
    """

    def __init__(
        self,
        *,
        expect_banner: bool = True,
        keep_raw: bool = False,
        max_message_size: int = 8 << 20,
        on_malformed: MalformedCallback | None = None,
    ) -> None:
        self._buf = b""
        self._want_banner = expect_banner
        self._keep_raw = keep_raw
        self._max = max_message_size
        self._on_malformed = on_malformed
        self._follows: list[str] | None = None  # frames of an unfinished Response: Follows
        self._follows_raw: list[bytes] = []
        self.banner: str | None = None
        self.messages = 0
        self.decode_errors = 0
        self.malformed = 0
        self.bytes_in = 0

    @property
    def pending(self) -> bytes:
        """Bytes received but not yet part of a complete message."""
        return self._buf

    # -- feeding ------------------------------------------------------------------------------
    def feed(self, data: bytes) -> list[AmiMessage]:
        self.bytes_in += len(data)
        prev = self._buf
        if prev:
            buf = prev + data
            start = len(prev)
        else:
            buf = data
            start = 0
        out: list[AmiMessage] = []
        if self._want_banner:
            buf = self._take_banner(buf, out)
            start = 0
            if self._want_banner:
                self._buf = buf
                return out
        # The residual never holds a terminator, so only the new bytes (plus the 1-3 bytes a
        # terminator can straddle) need searching: keeps a big message fed in small reads O(n).
        if buf.find(b"\n\n", max(0, start - 1)) >= 0:
            self._feed_lf(buf, out)
        else:
            end = buf.rfind(b"\r\n\r\n", max(0, start - 3))
            if end < 0:
                self._buf = buf
                if len(buf) > self._max:
                    self._overflow()
                return out
            block = buf[:end]
            self._buf = buf[end + 4 :]
            try:
                texts = block.decode("utf-8").split("\r\n\r\n")
                raws: list[bytes] | None = block.split(b"\r\n\r\n") if self._keep_raw else None
            except UnicodeDecodeError:
                raws = block.split(b"\r\n\r\n")
                texts = [self._decode(r) for r in raws]
                if not self._keep_raw:
                    raws = None
            self._frames(texts, raws, b"\r\n\r\n", out)
        self.messages += len(out)
        return out

    def _feed_lf(self, buf: bytes, out: list[AmiMessage]) -> None:
        # Bare-LF peer (or a stray blank line): normalise, then the same frame logic.
        norm = buf.replace(b"\r\n", b"\n")
        end = norm.rfind(b"\n\n")
        if end < 0:
            self._buf = norm
            if len(norm) > self._max:
                self._overflow()
            return
        block = norm[:end]
        self._buf = norm[end + 2 :]
        raws = block.split(b"\n\n")
        texts = [self._decode(r).replace("\n", "\r\n") for r in raws]
        self._frames(texts, raws if self._keep_raw else None, b"\n\n", out)

    def _decode(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.decode_errors += 1
            return raw.decode("utf-8", "replace")

    def _take_banner(self, buf: bytes, out: list[AmiMessage]) -> bytes:
        i = buf.find(b"\n")
        if i < 0:
            if len(buf) > _BANNER_MAX:
                self._want_banner = False
            return buf
        self._want_banner = False
        line = buf[: i + 1]
        text = line.rstrip(b"\r\n").decode("utf-8", "replace")
        if not text or ": " in text:
            return buf  # no greeting: a message starts right away
        self.banner = text
        out.append(AmiMessage({"Banner": text}, {}, line))
        return buf[i + 1 :]

    # -- per frame ----------------------------------------------------------------------------
    def _frames(self, texts: list[str], raws: list[bytes] | None, term: bytes, out: list[AmiMessage]) -> None:
        append = out.append
        lazy = _lazy
        new = _new
        cls = AmiMessage
        raw_iter: Iterable[bytes] = (r + term for r in raws) if raws is not None else repeat(b"")
        for text, raw in zip(texts, raw_iter, strict=False):
            if self._follows is not None:
                if self._follows_add(text, raw, out):
                    continue
            if text.startswith("Event: "):
                # The common case, inlined (this loop runs for every event the PBX sends): an
                # event needs no checks, and its name is right here on the first line.
                eol = text.find("\r\n", 7)
                msg = new(cls)
                msg._h = msg._r = None
                msg._text = text
                msg._event = text[7:eol] if eol >= 0 else text[7:]
                msg.raw = raw
                append(msg)
                continue
            if not text:
                continue
            if text.startswith("\r\n"):
                text = text.lstrip("\r\n")  # extra blank lines between messages
                if not text:
                    continue
            colon = text.find(": ")
            eol = text.find("\r\n")
            if colon <= 0 or (0 <= eol < colon):
                if text.endswith(":") and eol < 0 and " " not in text:
                    append(lazy(text, raw))  # a lone ``Key:`` (empty value, no space)
                    continue
                self._report(raw or text.encode("utf-8", "replace"), "first line is not a 'Key: value' header")
                continue
            if text.startswith("Response: Follows"):
                if _END_COMMAND in text:
                    append(_follows_message(text, raw))
                else:
                    self._follows = [text]
                    self._follows_raw = [raw]
                continue
            append(lazy(text, raw))

    def _follows_add(self, text: str, raw: bytes, out: list[AmiMessage]) -> bool:
        """Continue an unfinished ``Response: Follows``; False if ``text`` is not part of it."""
        assert self._follows is not None
        if text.startswith(("Event: ", "Response: ")):
            # A new message although the marker never came: deliver what we have, flag it.
            self._report(b"".join(self._follows_raw), "Response: Follows without --END COMMAND--")
            self._flush_follows(out)
            return False
        self._follows.append(text)
        self._follows_raw.append(raw)
        if _END_COMMAND in text:
            self._flush_follows(out)
        elif sum(map(len, self._follows)) > self._max:
            self._report(b"".join(self._follows_raw), "Response: Follows output too large")
            self._flush_follows(out)
        return True

    def _flush_follows(self, out: list[AmiMessage]) -> None:
        assert self._follows is not None
        out.append(_follows_message("\r\n\r\n".join(self._follows), b"".join(self._follows_raw)))
        self._follows = None
        self._follows_raw = []

    def _overflow(self) -> None:
        self._report(self._buf[:256], f"message exceeds {self._max} bytes without a terminator")
        self._buf = b""

    def _report(self, raw: bytes, reason: str) -> None:
        self.malformed += 1
        if self._on_malformed is not None:
            self._on_malformed(raw, reason)


# The only headers Asterisk puts before the raw output of ``Response: Follows``; everything
# after them is output, even lines that look like ``Key: value`` (CLI output often does).
_FOLLOWS_HEADERS = frozenset(("Response", "Privilege", "ActionID", "Message"))


def _follows_message(text: str, raw: bytes) -> AmiMessage:
    """``Response: Follows``: its few headers, then raw output lines up to ``--END COMMAND--``."""
    # Old Asterisk wrote the CLI output with bare \n line ends inside the CRLF frame.
    lines = text.replace("\r\n", "\n").split("\n")
    n = 0
    for line in lines:
        key, sep, _ = line.partition(": ")
        if not sep or key not in _FOLLOWS_HEADERS:
            break
        n += 1
    headers, repeated = parse_header_lines(lines[:n])
    output: list[str] = []
    for line in lines[n:]:
        if line.endswith(_END_COMMAND):
            line = line[: -len(_END_COMMAND)]
            if line:
                output.append(line)
            break
        output.append(line)
    while output and not output[-1]:
        output.pop()
    if output:
        headers.setdefault("Output", output[0])
        repeated = dict(repeated)
        repeated["Output"] = tuple(output)
    return AmiMessage(headers, repeated, raw)


# -- encoding --------------------------------------------------------------------------------
Fields = Mapping[str, str | int] | Iterable[tuple[str, str | int]]


def _field_lines(fields: Fields) -> list[str]:
    items = fields.items() if isinstance(fields, Mapping) else fields
    lines = []
    for key, value in items:
        if not isinstance(key, str) or not key or key != key.strip() or ":" in key or _has_eol(key):
            raise ValueError(f"invalid AMI header name {key!r}")
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise TypeError(f"AMI header {key!r}: value must be str or int, not {type(value).__name__}")
        text = str(value)
        if _has_eol(text):
            # A CR/LF in a value would end the header (or the whole action) early and let the
            # rest be read as headers/actions of the caller's choosing: header injection.
            raise ValueError(f"AMI header {key!r}: value must not contain CR, LF or NUL")
        lines.append(f"{key}: {text}")
    return lines


def _has_eol(text: str) -> bool:
    return "\r" in text or "\n" in text or "\0" in text


def encode_fields(fields: Fields) -> bytes:
    """One AMI message (``Key: value`` CRLF lines + blank line) from ordered fields."""
    return ("\r\n".join(_field_lines(fields)) + "\r\n\r\n").encode("utf-8")


def encode_action(name: str, headers: Fields = (), action_id: str | None = None) -> bytes:
    """``Action: name``, ``ActionID`` (if given), then ``headers`` in order.

    Raises ``ValueError`` for CR/LF/NUL in any name or value (header injection) and for an
    ``ActionID`` inside ``headers`` when ``action_id`` is given (two ids: which one answers?).
    """
    fields: list[tuple[str, str]] = [("Action", name)]
    if action_id is not None:
        fields.append(("ActionID", action_id))
    items = list(headers.items() if isinstance(headers, Mapping) else headers)
    if action_id is not None and any(isinstance(k, str) and k.lower() == "actionid" for k, _ in items):
        raise ValueError("ActionID given twice (argument and header)")
    if any(isinstance(k, str) and k.lower() == "action" for k, _ in items):
        raise ValueError("'Action' must not be repeated in the headers")
    fields.extend(items)
    return encode_fields(fields)


# -- AsyncAGI helpers ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AgiResult:
    """An AGI reply line, URL-decoded from AsyncAGIExec ``Result``.

    ``200 result=0 endpos=11360`` -> code 200, result "0", data "endpos=11360";
    GET DATA with digit 1 -> result "1"; cut off by a hangup or the absolute timeout -> "-1"
    (both look the same, see the asyncagi traces); ``510 Invalid or unknown command`` ->
    code 510, result None.
    """

    code: int
    result: str | None
    data: str
    text: str

    @property
    def ok(self) -> bool:
        return self.code == 200

    @property
    def value(self) -> int | None:
        """``result`` as an int, or None if absent/not numeric (GET DATA returns digits)."""
        try:
            return int(self.result) if self.result else None
        except ValueError:
            return None


def parse_agi_result(encoded: str) -> AgiResult:
    # Asterisk URL-encodes the reply (ast_uri_encode, http flavour: space is %20, '+' stays
    # literal), so unquote, not unquote_plus.
    text = unquote(encoded)
    first = text.split("\n", 1)[0].strip()
    code_txt = first[:3]
    code = int(code_txt) if code_txt.isdigit() else 0
    rest = first[4:].strip() if len(first) > 3 else ""
    if rest.startswith("result="):
        result, _, data = rest[len("result=") :].partition(" ")
        return AgiResult(code, result, data.strip(), text)
    return AgiResult(code, None, rest, text)


def agi_result(msg: AmiMessage) -> AgiResult:
    """The decoded result of an AsyncAGIExec event."""
    return parse_agi_result(msg.get("Result") or "")


_ENV_LINE = re.compile(r"^([A-Za-z0-9_]+): ?(.*)$")


def parse_agi_env(encoded: str) -> dict[str, str]:
    """AsyncAGIStart ``Env`` (URL-encoded ``agi_key: value`` lines) -> dict."""
    env: dict[str, str] = {}
    for line in unquote(encoded).split("\n"):
        m = _ENV_LINE.match(line)
        if m:
            env[m.group(1)] = m.group(2)
    return env
