"""One decoded AMI message, as the sans-I/O parser yields it.

AMI frames are ``Key: Value`` lines ended by CRLF, a message ends with an empty line. Keys are
kept with the PBX's own spelling; lookups are exact first and case-insensitive as a fallback
because Asterisk is not consistent (``CommandID`` in the AGI action, ``CommandId`` in
AsyncAGIExec; ``Privilege: Call`` vs ``call``).

A key that repeats inside one message (``Output:`` lines of ``Response: Follows``,
``ChanVariable:`` lines of ``Status``) keeps every value: ``get`` returns the first one,
``get_all`` all of them in order.

Lazy headers: the parser hands over the decoded text of the frame and the ``headers`` dict is
only built on first use. Why: building the dict costs ~40 string objects per message (a
Newchannel has ~15 lines), which alone caps a Python parser well below the event rate a busy
PBX produces, while most messages are only ever asked for ``Event`` and one or two ids
(VarSet/Newexten are >60 % of the real traces and are mostly dropped by the translator).
``get``/``event``/``action_id`` on a lazy message search the text and never build the dict;
``headers``, ``repeated``, ``get_all``, ``==`` build it once and cache it. Messages built from
dicts (``AmiMessage(headers, repeated)``) behave exactly as before.
"""

from __future__ import annotations

from typing import Any


def parse_header_lines(lines: list[str]) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """Build ``(headers, repeated)`` from the lines of one message (no line ends).

    Lines without ``": "`` are kept as ``Output`` values (old ``Response: Follows`` output,
    stray CLI text) - never dropped; a bare ``Key:`` is a key with an empty value.
    """
    # Fast path: every line is ``Key: value`` and no key repeats (true for every message of
    # the real traces except Status with Variables and Command output).
    try:
        headers = dict([line.split(": ", 1) for line in lines])
    except ValueError:
        pass
    else:
        if len(headers) == len(lines):
            return headers, {}
    headers = {}
    multi: dict[str, list[str]] = {}
    for line in lines:
        key, sep, value = line.partition(": ")
        if not sep:
            if line.endswith(":") and " " not in line:
                key, value = line[:-1], ""
            else:
                key, value = "Output", line
        if key in headers:
            if key in multi:
                multi[key].append(value)
            else:
                multi[key] = [headers[key], value]
        else:
            headers[key] = value
    return headers, {k: tuple(v) for k, v in multi.items()}


_NEEDLES: dict[str, tuple[str, str, int]] = {}


def _needles(key: str) -> tuple[str, str, int]:
    """``("Key: ", "\\r\\nKey: ", len("Key: "))``, cached for the keys code asks for."""
    found = _NEEDLES.get(key)
    if found is None:
        head = key + ": "
        found = (head, "\r\n" + head, len(head))
        if len(_NEEDLES) < 4096:  # keys come from code, but never let odd input grow it
            _NEEDLES[key] = found
    return found


class AmiMessage:
    """An AMI message: ``AmiMessage(headers, repeated)`` or lazily from the frame text.

    ``raw`` holds the bytes as received (terminator included) when the parser was asked to
    keep them (trace recording); ``b""`` otherwise. It takes no part in ``==``.
    """

    __slots__ = ("_event", "_h", "_r", "_text", "raw")

    def __init__(
        self,
        headers: dict[str, str],
        repeated: dict[str, tuple[str, ...]] | None = None,
        raw: bytes = b"",
    ) -> None:
        self._h: dict[str, str] | None = headers
        self._r: dict[str, tuple[str, ...]] | None = {} if repeated is None else repeated
        self._text: str | None = None
        self._event: str | None = headers.get("Event")
        self.raw = raw

    @classmethod
    def from_text(cls, text: str, raw: bytes = b"", event: str | None = None) -> AmiMessage:
        """A lazy message over the decoded frame: CRLF-separated lines, no final blank line.

        ``event``: the ``Event`` value if the caller already knows it (the parser does, from
        the first line); otherwise it is looked up here.
        """
        msg = _new(cls)
        msg._h = None
        msg._r = None
        msg._text = text
        msg.raw = raw
        msg._event = event if event is not None else msg.get_exact("Event")
        return msg

    # -- materialisation --------------------------------------------------------------------
    def _build(self) -> dict[str, str]:
        text = self._text
        assert text is not None
        h, r = parse_header_lines(text.split("\r\n"))
        self._h, self._r = h, r
        return h

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
    def text(self) -> str:
        """The message as CRLF-separated ``Key: value`` lines (without the final blank line)."""
        if self._text is not None:
            return self._text
        lines: list[str] = []
        h = self.headers
        r = self.repeated
        for k, v in h.items():
            if k in r:
                lines.extend(f"{k}: {x}" for x in r[k])
            else:
                lines.append(f"{k}: {v}")
        return "\r\n".join(lines)

    def get_exact(self, key: str) -> str | None:
        """Value of ``key`` spelled exactly so (first one if repeated); no case folding.

        The hot-path lookup of the client (Linkedid, ActionID, CommandId): a miss costs one
        substring search instead of the case-insensitive fallback of ``get``.
        """
        h = self._h
        if h is not None:
            return h.get(key)
        text: str = self._text  # type: ignore[assignment]  # lazy messages always have text
        head, mid, n = _NEEDLES.get(key) or _needles(key)
        if text.startswith(head):
            start = n
        else:
            i = text.find(mid)
            if i < 0:
                return None
            start = i + n + 2
        end = text.find("\r\n", start)
        return text[start:] if end < 0 else text[start:end]

    # -- classification -------------------------------------------------------------------
    # Order matters: OriginateResponse is an *event* that also carries ``Response:`` and the
    # ActionID of the Originate (seen in the whisper_barge trace), so ``Event:`` wins.
    @property
    def event(self) -> str | None:
        return self._event

    @property
    def response(self) -> str | None:
        if self._event is not None:
            return None
        return self.get_exact("Response")

    @property
    def is_event(self) -> bool:
        return self._event is not None

    @property
    def is_response(self) -> bool:
        return self.response is not None

    @property
    def action_id(self) -> str | None:
        return self.get_exact("ActionID")

    @property
    def banner(self) -> str | None:
        """``Asterisk Call Manager/11.0.0`` for the greeting line the parser reports first."""
        return self.get_exact("Banner")

    @property
    def output(self) -> str:
        """Command output (``Output:`` lines, or raw lines of ``Response: Follows``), joined by \\n."""
        return "\n".join(self.get_all("Output"))

    # -- access ---------------------------------------------------------------------------
    def get(self, key: str, default: str | None = None) -> str | None:
        h = self._h
        if h is not None:
            value = h.get(key)
            if value is not None:
                return value
        else:
            # get_exact inlined: this is what translators call for every field they read.
            text: str = self._text  # type: ignore[assignment]
            head, mid, n = _NEEDLES.get(key) or _needles(key)
            if text.startswith(head):
                start = n
            else:
                i = text.find(mid)
                start = i + n + 2 if i >= 0 else -1
            if start >= 0:
                end = text.find("\r\n", start)
                return text[start:] if end < 0 else text[start:end]
            # Case-insensitive search in the text; only valid while lower() keeps every index
            # (some non-ASCII letters change length when lowered, e.g. in a caller name).
            low = text.lower()
            if len(low) == len(text):
                head, mid, n = _needles(key.lower())
                if low.startswith(head):
                    start = n
                else:
                    i = low.find(mid)
                    if i < 0:
                        return default
                    start = i + n + 2
                end = text.find("\r\n", start)
                return text[start:] if end < 0 else text[start:end]
        lower = key.lower()
        for k, v in self.headers.items():
            if k.lower() == lower:
                return v
        return default

    def get_all(self, key: str) -> tuple[str, ...]:
        repeated = self.repeated
        if key in repeated:
            return repeated[key]
        value = self.get(key)
        return () if value is None else (value,)

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    # -- value semantics (as the former frozen dataclass) ---------------------------------
    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, AmiMessage)
        return (self.headers, self.repeated) == (other.headers, other.repeated)

    # Unhashable (dict-valued), like the frozen dataclass was; ``headers``/``repeated`` are
    # read-only properties.
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"AmiMessage(headers={self.headers!r}, repeated={self.repeated!r})"

    def call_key(self) -> str:
        """The call this message belongs to, for ordering: Linkedid, else Uniqueid, else the
        ids of legs that carry no own snapshot (Originate Dial* events have only Dest*
        fields; ChanSpy* have Spyer*/Spyee*), else ``""`` (queue/device events)."""
        text = self._text
        if text is not None:
            # Fast path: the channel snapshot's Linkedid sits near the end of the message and
            # appears once (Dest*/Spyer* variants have a prefix), so search from the end.
            i = text.rfind("\r\nLinkedid: ")
            if i >= 0:
                i += 12
                end = text.find("\r\n", i)
                return text[i:] if end < 0 else text[i:end]
            # No snapshot at all (DeviceStateChange, QueueMemberStatus: ~13 % of the traffic):
            # two scans decide it instead of five misses below.
            if "niqueid: " not in text and "inkedid: " not in text:
                return ""
        get = self.get_exact
        return (
            get("Linkedid")
            or get("Uniqueid")
            or get("DestLinkedid")
            or get("DestUniqueid")
            or get("SpyerLinkedid")
            or ""
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (AmiMessage, (self.headers, self.repeated, self.raw))


_new = object.__new__
