"""The PBX port: what the controller core needs from any PBX adapter.

An adapter (Asterisk AMI/AsyncAGI, FreeSWITCH ESL) owns its connection, translates the PBX's
traffic into ``callcenter.domain.events`` and carries out ``callcenter.domain.commands``. The
core only ever talks to this protocol, so it runs unchanged against either PBX, a replayed
trace or a simulator.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from callcenter.domain.commands import Command
from callcenter.domain.events import Event

__all__ = ["CommandResult", "EventHandler", "PbxPort"]

EventHandler = Callable[[Event], Awaitable[None] | None]
"""Receives every domain event, in PBX order. May be sync or async (awaited in order)."""


@dataclass(frozen=True, slots=True)
class CommandResult:
    """Outcome of ``PbxPort.execute``.

    ``ok`` is False when the PBX refused or could not run the command (bad channel, call not
    under controller, link down, timeout); ``error`` says why in words. ``detail`` carries what
    the PBX answered, PBX-neutral keys only (e.g. ``result`` of an AGI command, ``digits``).
    """

    command_id: str
    ok: bool
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class PbxPort(Protocol):
    @property
    def name(self) -> str:
        """The configured PBX node name (``pbx`` of every event it emits)."""
        ...

    @property
    def connected(self) -> bool:
        """True while the control link to the PBX is up."""
        ...

    async def start(self) -> None:
        """Connect (and keep reconnecting) in the background; returns once started."""
        ...

    async def close(self) -> None:
        """Disconnect and stop reconnecting."""
        ...

    def subscribe(self, handler: EventHandler) -> None:
        """Register a receiver of domain events."""
        ...

    async def execute(self, cmd: Command) -> CommandResult:
        """Carry out one command; commands for the same call run in submission order."""
        ...
