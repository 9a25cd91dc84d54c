"""Sans-I/O ESL codec: bytes in, :class:`EslFrame`/:class:`EslEvent` out; commands out as bytes.

Framing (what the FreeSWITCH 1.10.12 captures in ``tests/fixtures/freeswitch`` show, and why the
code is shaped as it is):

* Every message is a header block of ``Key: value`` lines ended by ``\\n`` plus one empty line
  (FreeSWITCH never writes CR), then exactly ``Content-Length`` bytes of body if that header is
  present: ``auth/request`` and ``command/reply`` have no body, ``api/response`` has the command
  output (``create_uuid`` answers 36 bytes *without* a final newline), events and
  ``text/disconnect-notice`` have a body. The body is counted, never searched: an api output or
  an event body may contain blank lines.
* One socket carries everything interleaved: events, replies to our commands and the
  BACKGROUND_JOB results of ``bgapi`` (sendmsg_ivr trace: the API event of ``create_uuid``
  arrives *after* its ``api/response``, between two ``sendmsg`` replies).
* A body may span any number of reads; bytes are framed first and decoded as UTF-8 only once a
  whole message is there (``decode_event``), so a multi-byte character cut by a read boundary
  is whole again. The parser keeps the chunks of a long body in a list and joins them once
  (no re-copying of a 1 MB ``show channels as json`` reply on every read).
* Stray line ends between messages are skipped (FreeSWITCH's own reader does the same).
* An unparsable ``Content-Length`` or a header block that never ends loses the framing for
  good: ``EslProtocolError`` is raised and the connection must be dropped (the client
  reconnects).

Events (``decode_event``): ``text/event-plain`` bodies are ``Key: value`` lines whose values
FreeSWITCH URL-encodes (``Caller%202125550123``, ``Application-Data`` with ``%25(200,0,800)``),
then a blank line and, for events that have one (BACKGROUND_JOB: ``+OK <uuid>\\n``; RECV_INFO),
the event's own body after an inner ``Content-Length``. ``text/event-json`` bodies are one flat
cJSON object with decoded values and the body in ``_body``. Both become the same lazy
:class:`EslEvent` (see ``message.py``).

Commands (``encode_*``): one command line, optional ``Key: value`` lines, one empty line.
FreeSWITCH handles the commands of one socket strictly one after another and answers each with
exactly one reply, so the *n*-th reply belongs to the *n*-th command. A CR or LF inside any part
(the command line, a header name or value, the password) would end the command early and let
the rest be read as further commands of the caller's choosing, which also shifts every later
reply onto the wrong command: every encoder refuses CR, LF and NUL (C strings end at NUL). A
caller-supplied ``Content-Length`` header is refused too (FreeSWITCH would swallow the next
command as its body).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence

from callcenter.pbx.freeswitch.message import EslDecodeError, EslEvent, EslFrame, _json_event

__all__ = [
    "CT_API_RESPONSE",
    "CT_AUTH_REQUEST",
    "CT_COMMAND_REPLY",
    "CT_DISCONNECT_NOTICE",
    "CT_EVENT_JSON",
    "CT_EVENT_PLAIN",
    "CT_RUDE_REJECTION",
    "EslDecodeError",
    "EslParser",
    "EslProtocolError",
    "decode_event",
    "encode_api",
    "encode_auth",
    "encode_bgapi",
    "encode_command",
    "encode_event_subscription",
    "encode_execute",
    "encode_exit",
    "encode_filter",
    "encode_sendmsg",
    "mask_secrets",
    "split_api",
]

CT_AUTH_REQUEST = "auth/request"
CT_COMMAND_REPLY = "command/reply"
CT_API_RESPONSE = "api/response"
CT_EVENT_PLAIN = "text/event-plain"
CT_EVENT_JSON = "text/event-json"
CT_DISCONNECT_NOTICE = "text/disconnect-notice"
CT_RUDE_REJECTION = "text/rude-rejection"  # inbound ACL refused us (mod_event_socket)

_MAX_HEAD = 64 * 1024
_JSON_LINE = b"Content-Type: text/event-json\n\n"
_PLAIN_LINE = b"Content-Type: text/event-plain\n\n"
_from_plain = EslEvent.from_plain
# The envelope of every event (group 2 set for JSON); at most 12 digits here, a longer or
# malformed length takes the general path below, which refuses it.
_EVENT_HEAD = re.compile(rb"Content-Length: ([0-9]{1,12})\nContent-Type: text/event-(?:(json)|plain)\n\n").match
_new = object.__new__
_set = object.__setattr__

FieldsIn = Mapping[str, str] | Iterable[tuple[str, str]]


class EslProtocolError(ValueError):
    """The byte stream is not ESL any more (framing lost); drop the connection."""


class EslParser:
    """Incremental ESL framer. ``feed(bytes) -> list[EslFrame]``; keeps partial messages.

    ``commands``: parse the *client's* side (the fake server): the first line of a message is a
    command (``api status``, ``sendmsg <uuid>``; it may contain ``:``, e.g. in a bgapi
    originate string), reported as header ``Command``; header names are matched like
    FreeSWITCH does (``content-length`` in any case, value after ``:`` and spaces).
    ``keep_raw``: set ``EslFrame.raw`` to the received bytes, for trace recording.
    ``max_frame_size``: a larger announced body is a protocol error (FreeSWITCH's own limit
    for what it reads is 10 MB; its replies can be bigger, e.g. ``show channels``).
    """

    def __init__(
        self,
        *,
        commands: bool = False,
        keep_raw: bool = False,
        max_frame_size: int = 256 << 20,
        on_malformed: Callable[[bytes, str], None] | None = None,
    ) -> None:
        self._buf = b""
        self._chunks: list[bytes] = []  # a body still arriving: its message start + later reads
        self._have = 0
        self._want = 0  # bytes the pending message needs in total (0: not waiting for a body)
        self._commands = commands
        self._keep_raw = keep_raw
        self._max = max_frame_size
        self._on_malformed = on_malformed
        self.frames = 0
        self.bytes_in = 0
        self.decode_errors = 0  # feed_events: bodies that were not valid UTF-8 (U+FFFD used)
        self.malformed = 0  # feed_events: event bodies that could not be decoded (skipped)

    @property
    def pending(self) -> bytes:
        """Bytes received but not yet part of a complete message."""
        if self._chunks:
            return b"".join(self._chunks)
        return self._buf

    def feed(self, data: bytes) -> list[EslFrame]:
        """Every complete message in ``data`` (and what came before) as an ``EslFrame``."""
        return self._feed(data, False)  # type: ignore[return-value]

    def feed_events(self, data: bytes) -> list[EslFrame | EslEvent]:
        """Like ``feed``, but event messages come back as lazy ``EslEvent`` (decoded straight
        from the read buffer, no ``EslFrame`` in between): the client's hot path. Undecodable
        bytes become U+FFFD (``decode_errors``); a body that is no event at all is skipped and
        reported to ``on_malformed`` (``malformed``). With ``keep_raw`` use ``feed``."""
        return self._feed(data, True)

    def _feed(self, data: bytes, events: bool) -> list[EslFrame | EslEvent]:
        self.bytes_in += len(data)
        out: list[EslFrame | EslEvent] = []
        if self._want:
            # A body we already know the size of: collect reads until it is complete, then
            # parse that one message and go on in this read *in place* (no re-copy of it).
            self._chunks.append(data)
            self._have += len(data)
            if self._have < self._want:
                return out
            need = len(data) - (self._have - self._want)
            chunks = self._chunks
            chunks[-1] = data[:need]
            self._chunks = []
            self._want = self._have = 0
            self._scan(b"".join(chunks), 0, out, events)
            buf, pos = data, need
        elif self._buf:
            buf, pos = self._buf + data, 0  # the rest of a header block: small
            self._buf = b""
        else:
            buf, pos = data, 0
        self._scan(buf, pos, out, events)
        self.frames += len(out)
        return out

    def _scan(self, buf: bytes, pos: int, out: list[EslFrame | EslEvent], events: bool) -> None:
        append = out.append
        find = buf.find
        startswith = buf.startswith
        keep_raw = self._keep_raw
        commands = self._commands
        event_head = None if commands else _EVENT_HEAD
        limit = self._max
        n = len(buf)
        while pos < n:
            # Every event envelope is exactly "Content-Length: %d\nContent-Type:
            # text/event-%s\n\n" (mod_event_socket): one C-level match reads it in place (on a
            # small core each Python-level call costs ~0.2 us; reading it took six).
            m = event_head(buf, pos) if event_head is not None else None
            if m is not None:
                clen = int(m[1])
                if clen > limit:
                    raise EslProtocolError(f"Content-Length {clen} exceeds the limit of {limit} bytes")
                start = m.end()
                stop = start + clen
                if stop > n:
                    self._wait(buf, pos, stop)
                    return
                if events:
                    # A bytes slice decoded is cheaper than decoding a memoryview slice.
                    body = buf[start:stop]
                    try:
                        text = body.decode()
                    except UnicodeDecodeError:
                        self.decode_errors += 1
                        text = body.decode("utf-8", "replace")
                    try:
                        append(_json_event(text) if m.lastindex == 2 else _from_plain(text))
                    except EslDecodeError as exc:
                        self.malformed += 1
                        if self._on_malformed is not None:
                            self._on_malformed(body[:200], str(exc))
                else:
                    frame = _new(EslFrame)
                    ctype = CT_EVENT_JSON if m.lastindex == 2 else CT_EVENT_PLAIN
                    _set(frame, "headers", {"Content-Length": m[1].decode(), "Content-Type": ctype})
                    _set(frame, "body", buf[start:stop])
                    _set(frame, "raw", buf[pos:stop] if keep_raw else b"")
                    append(frame)
                pos = stop
                continue
            if not commands and startswith(b"Content-Length: ", pos):
                # An event envelope whose length is not digits: refused here, as before.
                nl = find(b"\n", pos + 16)
                if nl > 0 and (startswith(_JSON_LINE, nl + 1) or startswith(_PLAIN_LINE, nl + 1)):
                    digits = buf[pos + 16 : nl]
                    if not digits.isdigit():
                        raise EslProtocolError(f"bad Content-Length {digits!r}")
            end = find(b"\n\n", pos)
            if end < 0:
                if n - pos > _MAX_HEAD:
                    raise EslProtocolError(f"no end of header block within {_MAX_HEAD} bytes: {buf[pos : pos + 80]!r}")
                break
            if end == pos:
                # A stray blank line between messages (a lone line end before a header block
                # is dropped by _head as an empty line).
                pos += 2
                continue
            head = buf[pos:end]
            if commands:
                headers, clen = _command_head(head)
            else:
                headers, clen = _head(head)
            if clen:
                if clen > self._max:
                    raise EslProtocolError(f"Content-Length {clen} exceeds the limit of {self._max} bytes")
                stop = end + 2 + clen
                if stop > n:
                    self._wait(buf, pos, stop)
                    return
                body = buf[end + 2 : stop]
            else:
                stop = end + 2
                body = b""
            frame = _new(EslFrame)
            _set(frame, "headers", headers)
            _set(frame, "body", body)
            _set(frame, "raw", buf[pos:stop] if keep_raw else b"")
            append(frame)
            pos = stop
        if pos < n:
            self._buf = buf[pos:]

    def _wait(self, buf: bytes, pos: int, stop: int) -> None:
        """Incomplete body: keep the message so far and how long it will be."""
        self._chunks = [buf[pos:]]
        self._have = len(buf) - pos
        self._want = stop - pos
        self._buf = b""


def _content_length(value: str) -> int:
    value = value.strip()
    if not value.isdigit() or not value.isascii():
        raise EslProtocolError(f"bad Content-Length {value!r}")
    return int(value)


def _head(head: bytes) -> tuple[dict[str, str], int]:
    """Envelope headers from FreeSWITCH: ``Key: value`` lines, values not encoded."""
    text = head.decode("utf-8", "replace")
    lines = text.split("\n")
    try:
        headers = dict([line.split(": ", 1) for line in lines])
        if len(headers) != len(lines):
            raise ValueError("repeated header")
    except ValueError:
        headers = {}
        for line in lines:
            line = line.rstrip("\r")
            if not line:
                continue
            key, sep, value = line.partition(":")
            if not sep:
                raise EslProtocolError(f"header line without ':': {line[:80]!r}") from None
            headers.setdefault(key, value.lstrip(" "))
    clen = headers.get("Content-Length")
    return headers, (_content_length(clen) if clen is not None else 0)


def _command_head(head: bytes) -> tuple[dict[str, str], int]:
    """A command as FreeSWITCH's read_packet sees it: first line = ``Command``, then headers
    split at the first ``:`` with leading spaces dropped; ``content-length`` in any case."""
    # FreeSWITCH's reader drops line ends before a command, so a lone "\n" ahead of it is
    # no empty command.
    text = head.lstrip(b"\r\n").decode("utf-8", "replace")
    lines = text.split("\n")
    headers = {"Command": lines[0].rstrip("\r")}
    clen = 0
    for line in lines[1:]:
        line = line.rstrip("\r")
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue  # FreeSWITCH ignores a line without ':' too
        value = value.lstrip(" ")
        headers.setdefault(key, value)
        if key.lower() == "content-length":
            clen = _content_length(value)
    return headers, clen


# -- events ----------------------------------------------------------------------------------------
def decode_event(frame: EslFrame, *, lazy: bool = True) -> EslEvent:
    """The event carried by a ``text/event-plain`` or ``text/event-json`` frame.

    ``lazy=False`` builds every header at once (and so raises ``EslDecodeError`` here for a
    malformed body instead of on first access).
    """
    ct = frame.headers.get("Content-Type")
    try:
        text = frame.body.decode("utf-8")
    except UnicodeDecodeError:
        text = frame.body.decode("utf-8", "replace")
    if ct == CT_EVENT_JSON:
        event = EslEvent.from_json(text)
    elif ct == CT_EVENT_PLAIN:
        event = EslEvent.from_plain(text)
    else:
        raise EslDecodeError(f"not an event frame: Content-Type {ct!r}")
    if not lazy:
        event.headers  # noqa: B018 - materialise now
    return event


# -- commands --------------------------------------------------------------------------------------
_BAD = re.compile(r"[\r\n\0]")
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # visible ASCII except ':' (fullmatch: '$' would allow a final LF)


def _check(what: str, text: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"{what} must be str, not {type(text).__name__}")
    if _BAD.search(text):
        raise ValueError(f"{what} must not contain CR, LF or NUL (command injection): {text[:60]!r}")
    return text


def encode_command(line: str, headers: FieldsIn = (), body: str | bytes | None = None) -> bytes:
    """One command: ``line``, ``Key: value`` headers in order, blank line (+ body).

    With ``body``, ``Content-Length`` is added here (FreeSWITCH then reads exactly that many
    bytes); a ``Content-Length`` among ``headers`` is refused.
    """
    _check("command", line)
    if not line.strip():
        raise ValueError("empty command")
    items = headers.items() if isinstance(headers, Mapping) else headers
    out = [line]
    for key, value in items:
        if not isinstance(key, str) or not _HEADER_NAME.fullmatch(key):
            raise ValueError(f"invalid ESL header name {key!r}")
        if key.lower() == "content-length":
            raise ValueError("Content-Length is set from the body, not given as a header")
        out.append(f"{key}: {_check(f'header {key!r}', value)}")
    if body is None:
        return ("\n".join(out) + "\n\n").encode("utf-8")
    data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    out.append(f"Content-Length: {len(data)}")
    return ("\n".join(out) + "\n\n").encode("utf-8") + data


def encode_auth(password: str) -> bytes:
    """``auth <password>`` (the whole rest of the line is the password, spaces included)."""
    _check("password", password)
    if not password:
        raise ValueError("empty password")
    return f"auth {password}\n\n".encode()


_FORMATS = ("plain", "json", "xml")


def encode_event_subscription(fmt: str, names: Sequence[str]) -> bytes:
    """``event <plain|json|xml> NAME ...``; after ``CUSTOM`` the names are subclasses
    (``CUSTOM callcenter::info``), FreeSWITCH's own rule."""
    if fmt not in _FORMATS:
        raise ValueError(f"event format must be one of {_FORMATS}, not {fmt!r}")
    if not names:
        raise ValueError("no event names (FreeSWITCH answers '-ERR no keywords supplied')")
    for name in names:
        _check("event name", name)
        if not name or any(c.isspace() for c in name):
            raise ValueError(f"invalid event name {name!r}")
    return encode_command(f"event {fmt} {' '.join(names)}")


def encode_filter(header: str, value: str) -> bytes:
    """``filter <header> <value>``: FreeSWITCH then only sends events matching *some* filter
    (``-value`` excludes, ``/regex/`` matches by regex)."""
    _check("filter header", header)
    _check("filter value", value)
    if not header or any(c.isspace() for c in header) or not value:
        raise ValueError(f"invalid filter {header!r} {value!r}")
    return encode_command(f"filter {header} {value}")


def encode_api(command: str) -> bytes:
    """``api <command> [args]``: runs in FreeSWITCH's listener thread, answered by
    ``api/response`` with the output as body."""
    return encode_command(f"api {_check('api command', command).strip()}")


def encode_bgapi(command: str, job_uuid: str | None = None) -> bytes:
    """``bgapi <command>`` with our own ``Job-UUID`` (FreeSWITCH uses it instead of a random
    one, so the BACKGROUND_JOB result can be matched without waiting for the reply)."""
    headers = [("Job-UUID", job_uuid)] if job_uuid is not None else []
    return encode_command(f"bgapi {_check('bgapi command', command).strip()}", headers)


def encode_sendmsg(uuid: str, headers: FieldsIn = (), body: str | bytes | None = None) -> bytes:
    """``sendmsg <uuid>`` with ``call-command`` etc. headers (queued on the channel as a
    private event; FreeSWITCH answers ``+OK`` or ``-ERR invalid session id [<uuid>]``)."""
    _check("uuid", uuid)
    if not uuid or any(c.isspace() for c in uuid):
        raise ValueError(f"invalid channel uuid {uuid!r}")
    return encode_command(f"sendmsg {uuid}", headers, body)


def encode_execute(
    uuid: str,
    app: str,
    arg: str | None = None,
    *,
    event_lock: bool = False,
    event_uuid: str | None = None,
    loops: int | None = None,
) -> bytes:
    """``sendmsg`` ``call-command: execute`` of a dialplan application.

    ``event_lock``: the channel finishes this application before taking its next queued
    private event (sendmsg_ivr: the ``set`` queued behind a locked play_and_get_digits ran only
    after it completed; without the lock it ran *nested inside* it, checks/sendmsg_no_event_lock).
    ``event_uuid``: sent as ``Event-UUID``; CHANNEL_EXECUTE and CHANNEL_EXECUTE_COMPLETE of this
    application then carry it as ``Application-UUID`` (otherwise a random one).
    """
    _check("application", app)
    if not app or any(c.isspace() for c in app):
        raise ValueError(f"invalid application name {app!r}")
    fields: list[tuple[str, str]] = [("call-command", "execute"), ("execute-app-name", app)]
    if arg is not None:
        fields.append(("execute-app-arg", arg))
    if loops is not None:
        fields.append(("loops", str(int(loops))))
    if event_lock:
        fields.append(("event-lock", "true"))
    if event_uuid is not None:
        fields.append(("Event-UUID", event_uuid))
    return encode_sendmsg(uuid, fields)


def encode_exit() -> bytes:
    """``exit``: FreeSWITCH answers ``+OK bye``, sends a disconnect notice and closes."""
    return b"exit\n\n"


_AUTH_LINE = re.compile(rb"^(auth |userauth [^:\n]*:)([^\n]*)", re.IGNORECASE)


def mask_secrets(data: bytes, mask: bytes = b"********") -> bytes:
    """``data`` with the password of an ``auth``/``userauth`` command replaced (for traces)."""
    if data[:4].lower() != b"auth" and data[:8].lower() != b"userauth":
        return data
    return _AUTH_LINE.sub(lambda m: m.group(1) + mask, data, count=1)


# Used by the fake server and the tests: FreeSWITCH's own split of an api line.
def split_api(command: str) -> tuple[str, str | None]:
    """``"uuid_setvar <uuid> x 1"`` -> ``("uuid_setvar", "<uuid> x 1")`` (first space)."""
    name, sep, arg = command.strip().partition(" ")
    return name, (arg if sep else None)
