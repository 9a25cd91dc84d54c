"""ESL (FreeSWITCH Event Socket) messages, as the sans-I/O parser yields them.

Two layers, as on the wire:
- ``EslFrame``: the outer envelope: ``Content-Type`` (``auth/request``, ``command/reply``,
  ``api/response``, ``text/event-plain``, ``text/event-json``, ``text/disconnect-notice``...),
  other envelope headers (``Reply-Text``, ``Job-UUID``, ``Content-Length``) and the raw body.
- ``EslEvent``: an event decoded from a ``text/event-plain`` body (URL-decoded headers, plus
  its own body after ``Content-Length`` if any, e.g. BACKGROUND_JOB results) or from a
  ``text/event-json`` body (same header names; ``_body`` becomes ``body``).

Header lookups are exact: FreeSWITCH spells its headers consistently.

Why ``EslEvent`` is lazy: a FreeSWITCH channel event carries 60-200 headers (~4.3 KB plain,
~4.9 KB JSON in the captures) and a consumer reads a handful of them. Building the whole dict
costs ~50 us (``json.loads``) to ~85 us (plain + URL-decoding) per event on a small core, more
than the whole per-event budget at 50k events/s. So an event from the wire keeps its decoded
text; ``get()``/``[]``/``in`` find one header in it (a substring search plus, for plain, one
URL-decode), and ``headers``/``repeated``/``body`` build everything on first use. Both kinds
compare equal when their headers, body and repeated headers are equal.

Same values from both formats (checked against the twin captures of one scenario):
- plain values are URL-decoded (``Caller%202125550123`` -> ``Caller 2125550123``);
- FreeSWITCH array headers (``variable_DP_MATCH``) are ``ARRAY::queue_1|:1`` in plain and a JSON
  list ``["queue_1","1"]`` in JSON; both give the plain spelling as the value, and
  ``get_all()`` splits it into the items;
- the inner ``Content-Length`` of an event with a body is a header in both formats.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

__all__ = ["EslDecodeError", "EslEvent", "EslFrame", "url_decode"]


class EslDecodeError(ValueError):
    """An event body that is neither valid plain ``Key: value`` text nor a JSON object."""


@dataclass(frozen=True, slots=True)
class EslFrame:
    headers: dict[str, str]
    body: bytes = b""
    # The bytes as received (envelope + body) when the parser keeps them, for byte-exact
    # trace recording; b"" otherwise. Not part of equality.
    raw: bytes = field(default=b"", compare=False, repr=False)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    @property
    def reply_text(self) -> str | None:
        return self.headers.get("Reply-Text")

    @property
    def job_uuid(self) -> str | None:
        return self.headers.get("Job-UUID")

    @property
    def command(self) -> str | None:
        """The command line of a frame parsed in command mode (the fake server's side)."""
        return self.headers.get("Command")

    @property
    def text(self) -> str:
        """The body as text (api/response output, disconnect notice)."""
        return self.body.decode("utf-8", "replace")

    @property
    def ok(self) -> bool:
        """A ``command/reply`` that is not ``-ERR ...`` (FreeSWITCH's error convention)."""
        return not (self.headers.get("Reply-Text") or "").startswith("-ERR")

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.headers.get(key, default)


_PLAIN = 1
_JSON = 2
_ARRAY = "ARRAY::"
_ARRAY_SEP = "|:"
_scan_json = json.JSONDecoder().raw_decode
_new = object.__new__
_MISSING: Any = object()
_NEEDLES: dict[str, tuple[str, str, str | None, int]] = {}


_JSON_NEEDLES: dict[str, tuple[str | None, int]] = {}


def _json_needle(key: str) -> tuple[str | None, int]:
    """``('"Key":', len('"Key":'))``, the JSON needle of ``_needles`` and where the value starts
    after a match, in a dict of its own: ``get``'s JSON path reads it with one subscript."""
    _, _, needle, n = _needles(key)
    found = (needle, n + 3)
    if len(_JSON_NEEDLES) < 4096:
        _JSON_NEEDLES[key] = found
    return found


def _needles(key: str) -> tuple[str, str, str | None, int]:
    """``("\\nKey: ", "Key: ", '"Key":', len(key))``: the needles that find header ``key``, cached
    for the keys code asks for.

    With the separator in front, a match is the header itself, never the tail of a longer name
    (``Caller-Unique-ID`` ends with ``Unique-ID``), so one reverse search finds the last one
    (measured: no slower than without it). Plain: a header line starts after a line feed, or
    is the first line (``"Key: "`` at 0). JSON: in valid JSON a quote inside a string is
    escaped, so ``"Key":`` can only be a key of the (flat) object. A key with a quote or a
    backslash has no JSON needle (None: looked up in the decoded object).
    """
    found = _NEEDLES.get(key)
    if found is None:
        json_needle = None if ('"' in key or "\\" in key) else f'"{key}":'
        found = ("\n" + key + ": ", key + ": ", json_needle, len(key))
        if len(_NEEDLES) < 4096:  # keys come from code, but never let odd input grow it
            _NEEDLES[key] = found
    return found


# "%XX" -> character for every ASCII code, upper and lower case hex (FreeSWITCH writes upper).
_HEX_ASCII: dict[str, str] = {}
for _code in range(128):
    for _hi in {f"{_code >> 4:X}", f"{_code >> 4:x}"}:
        for _lo in {f"{_code & 15:X}", f"{_code & 15:x}"}:
            _HEX_ASCII[_hi + _lo] = chr(_code)
_DECODED: dict[str, str] = {}
_DECODED_MAX = 16384


def url_decode(value: str) -> str:
    """FreeSWITCH's URL-encoding undone (``%20`` -> space; no ``+`` convention).

    ``urllib.parse.unquote`` costs ~5 us per value; here ASCII escapes (nearly all of them:
    space, ':', '@', '%') take a split and table lookups, and decoded values are cached - the
    same caller names, channel names and dates recur in every event of a call. Anything else
    (UTF-8 sequences, a bare '%') goes to the stdlib, which is the reference.
    """
    if "%" not in value:
        return value
    done = _DECODED.get(value)
    if done is not None:
        return done
    parts = value.split("%")
    out = [parts[0]]
    table = _HEX_ASCII
    for part in parts[1:]:
        char = table.get(part[:2])
        if char is None:
            out = None  # type: ignore[assignment]
            break
        out.append(char)
        out.append(part[2:])
    done = "".join(out) if out is not None else unquote(value)
    if len(_DECODED) >= _DECODED_MAX:
        _DECODED.clear()
    _DECODED[value] = done
    return done


def _json_value(value: Any) -> str:
    if value.__class__ is str:
        return value  # type: ignore[no-any-return]
    if isinstance(value, list):
        # FreeSWITCH serialises an array header as a JSON list; plain spells it ARRAY::a|:b.
        return _ARRAY + _ARRAY_SEP.join(v if isinstance(v, str) else json.dumps(v) for v in value)
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


class EslEvent:
    """A FreeSWITCH event: ``EslEvent(headers, body, repeated)`` or lazily from wire text.

    Repeated header names are real: CODEC carries ``Channel-Write-Codec-Name`` twice,
    CHANNEL_HANGUP_COMPLETE ``Hangup-Cause`` twice, and a PRIVATE_COMMAND made from a
    uuid_broadcast COMMAND event carries the whole standard block twice - ``Event-Name:
    COMMAND`` first, ``Event-Name: PRIVATE_COMMAND`` last (park_controller_flow), because
    FreeSWITCH appends the delivery-time headers. The **last** value is the one describing the
    delivered event, and the one ``json.loads`` keeps for cJSON's duplicate keys, so ``headers``
    holds the last value in both formats; ``repeated`` holds every value in order.
    Arrays are one header with an ``ARRAY::`` value, see ``get_all``.
    """

    __slots__ = ("_body", "_fmt", "_h", "_hend", "_memo", "_name", "_r", "_text")

    def __init__(
        self,
        headers: dict[str, str],
        body: str | None = None,
        repeated: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        self._h: dict[str, str] | None = headers
        self._r: dict[str, tuple[str, ...]] | None = {} if repeated is None else repeated
        self._body = body
        self._text: str | None = None
        self._fmt = 0
        self._hend = 0
        self._memo: dict[str, str | None] | None = None
        self._name: str | None = headers.get("Event-Name")

    # -- construction from the wire -----------------------------------------------------------
    @classmethod
    def from_plain(cls, text: str) -> EslEvent:
        """A lazy event over a ``text/event-plain`` body (``Key: url-encoded value`` lines, a
        blank line, then the event's own body if it has a ``Content-Length``)."""
        ev = _new(cls)
        ev._h = ev._r = ev._body = ev._name = ev._memo = None
        ev._text = text
        ev._fmt = _PLAIN
        ev._hend = -1  # end of the header block: found on demand (see _header_end)
        return ev

    @classmethod
    def from_json(cls, text: str) -> EslEvent:
        """A lazy event over a ``text/event-json`` body (one flat object in cJSON's compact
        form ``{"Key":"value",...}``; CUSTOM events start with Event-Subclass)."""
        return _json_event(text)

    # -- lazy single-header lookups -------------------------------------------------------------
    def _header_end(self) -> int:
        """Index of the blank line that ends the header block of a plain event.

        Not a search for "\n\n": that two-character needle matches at every line end and costs
        ~17 us on a 12 KB CHANNEL_ANSWER. An event has a body only with an inner
        ``Content-Length`` header, which FreeSWITCH writes last; header values never contain
        ": " (URL-encoded), so the first "Content-Length: " at a line start is that header.
        Without it the event ends with the blank line.
        """
        hend = self._hend
        if hend >= 0:
            return hend
        text: str = self._text  # type: ignore[assignment]
        # Most events have no body: one reverse search says so (faster than a forward one).
        if text.rfind("\nContent-Length: ") < 0 and not text.startswith("Content-Length: "):
            i = -1
        else:
            i = text.find("Content-Length: ")
            while i > 0 and text[i - 1] != "\n":
                i = text.find("Content-Length: ", i + 1)  # a longer name ending in Content-Length
        if i >= 0:
            hend = text.find("\n\n", i)
        elif text.endswith("\n\n"):
            hend = len(text) - 2
        else:
            hend = text.find("\n\n")
        if hend < 0:
            hend = len(text)
        self._hend = hend
        return hend

    def _json_slow(self, key: str, start: int) -> str:
        """A value that is not a plain string: escapes, an array header, a number."""
        try:
            obj, _ = _scan_json(self._text or "", start)
        except ValueError as exc:
            raise EslDecodeError(f"bad JSON value for {key!r}: {exc}") from None
        return _json_value(obj)

    # -- materialisation ------------------------------------------------------------------------
    def _build(self) -> dict[str, str]:
        if self._fmt == _PLAIN:
            self._build_plain()
        else:
            self._build_json()
        assert self._h is not None
        return self._h

    def _build_plain(self) -> None:
        text: str = self._text  # type: ignore[assignment]
        hend = self._header_end()
        lines = text[:hend].split("\n")
        rest = text[hend + 2 :]
        headers: dict[str, str] | None
        try:
            headers = dict([line.split(": ", 1) for line in lines])  # type: ignore[misc]
        except ValueError:
            headers = None
        else:
            if len(headers) != len(lines):
                headers = None  # a repeated name: collect every value below
        repeated: dict[str, tuple[str, ...]] = {}
        if headers is not None:
            # Decode per value (cached, see url_decode): half of the captured events carry an
            # SDP with encoded CR/LF, so decoding the whole block at once rarely applies.
            for key, value in headers.items():
                if "%" in value:
                    headers[key] = url_decode(value)
        else:
            headers = {}
            multi: dict[str, list[str]] = {}
            for line in lines:
                if not line:
                    continue
                key, sep, value = line.partition(": ")
                if not sep:
                    if line.endswith(":"):
                        key, value = line[:-1], ""
                    else:
                        raise EslDecodeError(f"text/event-plain line is not 'Key: value': {line[:80]!r}")
                if "%" in value:
                    value = url_decode(value)
                if key in headers:
                    multi.setdefault(key, [headers[key]]).append(value)
                headers[key] = value  # the last one wins (see the class doc)
            repeated = {k: tuple(v) for k, v in multi.items()}
        self._h = headers
        self._r = repeated
        # The event's own body exists when it declares one (BACKGROUND_JOB, RECV_INFO...).
        self._body = rest if (rest or "Content-Length" in headers) else None

    def _build_json(self) -> None:
        text: str = self._text  # type: ignore[assignment]
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise EslDecodeError(f"text/event-json body is not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise EslDecodeError("text/event-json body is not a JSON object")
        repeated: dict[str, tuple[str, ...]] = {}
        # cJSON writes duplicate keys as they are (CODEC, CHANNEL_HANGUP_COMPLETE); json.loads
        # keeps the last. '":' ends every key, and inside a string a quote is escaped, so fewer
        # '":' than keys is impossible and more means a duplicate (or an escaped quote before
        # a colon in a value): only then decode again keeping every pair.
        if text.count('":') > len(obj):
            pairs = json.loads(text, object_pairs_hook=list)
            multi: dict[str, list[Any]] = {}
            for key, value in pairs:
                multi.setdefault(key, []).append(value)
            repeated = {k: tuple(_json_value(v) for v in vs) for k, vs in multi.items() if len(vs) > 1}
            repeated.pop("_body", None)
        body = obj.pop("_body", None)
        # FreeSWITCH writes every value as a string except array headers (JSON lists): rebuild
        # the dict only when some value is not a string.
        for value in obj.values():
            if value.__class__ is not str:
                obj = {k: _json_value(v) for k, v in obj.items()}
                break
        self._h = obj
        self._r = repeated
        self._body = body if body is None or isinstance(body, str) else _json_value(body)

    @property
    def headers(self) -> dict[str, str]:
        h = self._h
        return h if h is not None else self._build()

    @property
    def repeated(self) -> dict[str, tuple[str, ...]]:
        if self._r is None:
            self._build()
        assert self._r is not None
        return self._r

    @property
    def body(self) -> str | None:
        if self._h is None:
            self._build()
        return self._body

    @property
    def format(self) -> str | None:
        """``"plain"``/``"json"`` for an event from the wire, None for one built from a dict."""
        return "plain" if self._fmt == _PLAIN else "json" if self._fmt == _JSON else None

    @property
    def text(self) -> str | None:
        """The decoded wire body (event-plain or event-json text), None if built from a dict."""
        return self._text

    # -- access -----------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        name = self._name
        if name is None:
            text = self._text
            if text is not None and self._fmt == _JSON:
                # get()'s JSON path for one key, without the memo: half of an ALL stream is
                # events a consumer drops by name.
                i = text.rfind('"Event-Name":')
                if i >= 0 and text[i + 13 : i + 14] == '"':
                    end = text.find('"', i + 14)
                    if end > 0:
                        name = text[i + 14 : end]
                        if "\\" not in name:
                            self._name = name
                            return name
            name = self._name = self.get("Event-Name") or ""
        return name

    @property
    def subclass(self) -> str | None:
        return self.get("Event-Subclass")

    @property
    def unique_id(self) -> str | None:
        return self.get("Unique-ID")

    @property
    def call_id(self) -> str | None:
        """The channel this event is about (``Unique-ID``, else ``Channel-Call-UUID``)."""
        return self.get("Unique-ID") or self.get("Channel-Call-UUID")

    @property
    def job_uuid(self) -> str | None:
        return self.get("Job-UUID")

    def get(self, key: str, default: str | None = None) -> str | None:
        h = self._h
        if h is not None:
            return h.get(key, default)
        # Each lookup is a search of the event; a translator may read a header more than once
        # per event: remember the answers.
        memo = self._memo
        if memo is None:
            memo = self._memo = {}
        elif key in memo:
            found = memo[key]
            return default if found is None else found
        # _json_get / _plain_get inlined (on a small core a call costs as much as a short
        # search): this is what translators call for every field they read.
        text: str = self._text  # type: ignore[assignment]
        value: str | None
        if self._fmt != _PLAIN:
            try:
                needle, skip = _JSON_NEEDLES[key]
            except KeyError:
                needle, skip = _json_needle(key)
            if needle is None:
                value = self.headers.get(key)
            else:
                i = text.rfind(needle)
                if i < 0:
                    memo[key] = None
                    return default
                # The value of '"Key":"value"' without a slice to look at the first quote (a
                # found closing quote also means text[start] exists).
                start = i + skip
                end = text.find('"', start + 1)
                value = text[start + 1 : end]
                if end < 0 or text[start] != '"' or "\\" in value:
                    value = self._json_slow(key, start)  # escapes, an array header, a number
            memo[key] = value
            return default if value is None else value
        # The last occurrence (see the class doc) at a line start, inside the header block: the
        # event's own body may contain anything, e.g. "Unique-ID: " in an api result. The block
        # is only looked for on a hit (a header on the first line, like Event-Name, needs no
        # bound: a text starting with "Key: " has no blank line before it ends).
        needle, first, _, n = _NEEDLES.get(key) or _needles(key)
        i = text.rfind(needle)
        if i >= 0:
            hend = self._hend if self._hend >= 0 else self._header_end()
            if i + n + 3 > hend:
                i = text.rfind(needle, 0, hend)
        if i >= 0:
            start = i + n + 3
        elif text.startswith(first):
            start = n + 2
        else:
            memo[key] = None
            return default
        end = text.find("\n", start)
        value = text[start:] if end < 0 else text[start:end]
        if "%" in value:
            value = url_decode(value)
        memo[key] = value
        return value

    def items(self) -> list[tuple[str, str]]:
        """Every header line in wire order, repeated names included (what re-rendering needs)."""
        text = self._text
        if text is not None and self._fmt == _PLAIN:
            out = []
            for line in text[: self._header_end()].split("\n"):
                key, sep, value = line.partition(": ")
                if sep or line.endswith(":"):
                    out.append((key if sep else line[:-1], url_decode(value)))
            return out
        if text is not None and self._fmt == _JSON:
            pairs = json.loads(text, object_pairs_hook=list)
            return [(k, _json_value(v)) for k, v in pairs if k != "_body"]
        out = []
        repeated = self.repeated
        for key, value in self.headers.items():
            out.extend((key, v) for v in repeated.get(key, (value,)))
        return out

    def get_all(self, key: str) -> tuple[str, ...]:
        """Every value of ``key``: repeated header lines, or the items of an ``ARRAY::`` value."""
        repeated = self.repeated
        if key in repeated:
            return repeated[key]
        value = self.get(key)
        if value is None:
            return ()
        if value.startswith(_ARRAY):
            return tuple(value[len(_ARRAY) :].split(_ARRAY_SEP))
        return (value,)

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    # -- value semantics (as the former frozen dataclass) -----------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EslEvent):
            return NotImplemented
        return (self.headers, self.body, self.repeated) == (other.headers, other.body, other.repeated)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"EslEvent(headers={self.headers!r}, body={self.body!r}, repeated={self.repeated!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (EslEvent, (self.headers, self.body, self.repeated))


_EVENT_NAME_HEAD = '{"Event-Name":"'
_EVENT_NAME_KEY = '"Event-Name":'
_SUBCLASS_HEAD = '{"Event-Subclass":"'
_SUBCLASS_KEY = '"Event-Subclass":'
_THEN_NAME = ',"Event-Name":"'
_COMPACT_SEPS = ('":"', '":[')


def _json_event(text: str) -> EslEvent:
    """``EslEvent.from_json``, and what the framer calls for every JSON event.

    FreeSWITCH starts an event with its name, a CUSTOM one with ``Event-Subclass`` and then its
    name. Every consumer reads the name first (and a CUSTOM event's subclass), so they are
    taken here, where the check that the text is cJSON's compact form has found them anyway -
    provided no later occurrence follows (the last one wins, see the class doc: one reverse
    search from the end down to the value, the same search a lookup would make). Otherwise
    ``name``/``get`` find the last one themselves.
    """
    ev = _new(EslEvent)
    ev._h = ev._r = ev._body = ev._memo = ev._name = None
    ev._text = text
    ev._fmt = _JSON
    ev._hend = 0
    if text.startswith(_EVENT_NAME_HEAD):
        end = text.find('"', 15)
        if end > 0 and text.rfind(_EVENT_NAME_KEY, end) < 0:
            name = text[15:end]
            if "\\" not in name:
                ev._name = name
        return ev
    if text.startswith(_SUBCLASS_HEAD):
        end = text.find('"', 19)
        if end > 0 and text.startswith(_THEN_NAME, end + 1):
            subclass = text[19:end]
            if "\\" not in subclass and text.rfind(_SUBCLASS_KEY, end) < 0:
                ev._memo = {"Event-Subclass": subclass}
            start = end + 16
            end = text.find('"', start)
            if end > 0 and text.rfind(_EVENT_NAME_KEY, end) < 0:
                name = text[start:end]
                if "\\" not in name:
                    ev._name = name
        return ev
    first = text.find('"', 2) if text.startswith('{"') else -1
    if first < 0 or not text.startswith(_COMPACT_SEPS, first):
        # Not cJSON's compact form (whitespace after ':'): the substring lookups assume
        # '"Key":value', so decode the whole object now instead.
        ev._build_json()
    return ev
