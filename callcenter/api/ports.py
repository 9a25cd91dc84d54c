"""What the HTTP API needs from the rest of the process, as protocols.

The routing shell owns the rules file; the API only shows, checks and reloads it through this
port, so the API never parses or holds routing rules itself.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class RulesPort(Protocol):
    def current(self) -> dict[str, Any]:
        """The rules in force: ``{"version": str, "path": str | None, "text": str}``."""
        ...

    def validate(self, text: str, /) -> list[dict[str, Any]]:
        """Problems of a candidate rules text, each ``{"line", "column", "path", "message"}``
        (line/column 1-based, may be None); an empty list means the text is valid."""
        ...

    def reload(self) -> dict[str, Any]:
        """Re-read the rules file: ``{"ok": True, "version": str}`` or
        ``{"ok": False, "problems": [...]}`` (the rules in force stay unchanged then)."""
        ...
