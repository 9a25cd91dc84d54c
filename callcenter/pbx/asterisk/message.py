"""One decoded AMI message, as the sans-I/O parser yields it.

AMI frames are ``Key: Value`` lines ended by CRLF, a message ends with an empty line. Keys are
kept with the PBX's own spelling; lookups are exact first and case-insensitive as a fallback
because Asterisk is not consistent (``CommandID`` in the AGI action, ``CommandId`` in
AsyncAGIExec; ``Privilege: Call`` vs ``call``).

A key that repeats inside one message (``Output:`` lines of ``Response: Follows``,
``ChanVariable:`` lines of ``Status``) keeps every value: ``get`` returns the first one,
``get_all`` all of them in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class AmiMessage:
    headers: dict[str, str]
    repeated: dict[str, tuple[str, ...]] = field(default_factory=dict)

    # -- classification -------------------------------------------------------------------
    # Order matters: OriginateResponse is an *event* that also carries ``Response:`` and the
    # ActionID of the Originate (seen in the whisper_barge trace), so ``Event:`` wins.
    @property
    def event(self) -> str | None:
        return self.headers.get("Event")

    @property
    def response(self) -> str | None:
        if "Event" in self.headers:
            return None
        return self.headers.get("Response")

    @property
    def is_event(self) -> bool:
        return "Event" in self.headers

    @property
    def is_response(self) -> bool:
        return "Event" not in self.headers and "Response" in self.headers

    @property
    def action_id(self) -> str | None:
        return self.headers.get("ActionID")

    # -- access ---------------------------------------------------------------------------
    def get(self, key: str, default: str | None = None) -> str | None:
        value = self.headers.get(key)
        if value is not None:
            return value
        lower = key.lower()
        for k, v in self.headers.items():
            if k.lower() == lower:
                return v
        return default

    def get_all(self, key: str) -> tuple[str, ...]:
        if key in self.repeated:
            return self.repeated[key]
        value = self.get(key)
        return () if value is None else (value,)

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None
