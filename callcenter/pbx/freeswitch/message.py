"""ESL (FreeSWITCH Event Socket) messages, as the sans-I/O parser yields them.

Two layers, as on the wire:
- ``EslFrame``: the outer envelope: ``Content-Type`` (``auth/request``, ``command/reply``,
  ``api/response``, ``text/event-plain``, ``text/event-json``, ``text/disconnect-notice``...),
  other envelope headers (``Reply-Text``, ``Job-UUID``, ``Content-Length``) and the raw body.
- ``EslEvent``: an event decoded from a ``text/event-plain`` body (URL-decoded headers, plus
  its own body after ``Content-Length`` if any, e.g. BACKGROUND_JOB results) or from a
  ``text/event-json`` body (same header names; ``_body`` becomes ``body``).

Header lookups are exact: FreeSWITCH spells its headers consistently.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class EslFrame:
    headers: dict[str, str]
    body: bytes = b""

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    @property
    def reply_text(self) -> str | None:
        return self.headers.get("Reply-Text")

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.headers.get(key, default)


@dataclass(frozen=True, slots=True)
class EslEvent:
    headers: dict[str, str]
    body: str | None = None
    # repeated header names are rare in events; kept in order if they occur
    repeated: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.headers.get("Event-Name", "")

    @property
    def subclass(self) -> str | None:
        return self.headers.get("Event-Subclass")

    @property
    def unique_id(self) -> str | None:
        return self.headers.get("Unique-ID")

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.headers.get(key, default)

    def __getitem__(self, key: str) -> str:
        return self.headers[key]

    def __contains__(self, key: object) -> bool:
        return key in self.headers
