"""PBX-neutral commands: what the controller asks a PBX to do.

The pure core (routing, IVR, overflow, supervisor actions) returns these; an adapter turns
each into its PBX's actions (Asterisk: AsyncAGI commands, Redirect, Originate into ChanSpy,
QueuePause...; FreeSWITCH: sendmsg, uuid_transfer, callcenter_config...).

Calls are addressed by ``call_id`` plus the caller ``channel`` the adapter must act on; agents
by their PBX interface (``PJSIP/1001``). Every command has a ``command_id`` so its outcome can
be correlated (AsyncAGI CommandID, ActionID, Job-UUID) and logged with the call.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
from dataclasses import dataclass, field
from typing import Any, ClassVar

from callcenter.domain.events import SpyMode

_ids = itertools.count(1)


def new_command_id(prefix: str = "cc") -> str:
    """Process-unique, monotonically increasing command id (readable in PBX logs)."""
    return f"{prefix}-{next(_ids)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    kind: ClassVar[str] = "command"
    command_id: str = field(default_factory=new_command_id)
    call_id: str | None = None
    channel: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, enum.Enum):
                value = value.value
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer(Command):
    kind: ClassVar[str] = "answer"


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayPrompt(Command):
    """Play a sound prompt; ``interrupt_digits`` ends it early on one of those keys."""

    kind: ClassVar[str] = "play_prompt"
    prompt: str
    interrupt_digits: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectDigits(Command):
    """Play ``prompt`` and collect up to ``max_digits`` digits within ``timeout_ms``."""

    kind: ClassVar[str] = "collect_digits"
    prompt: str
    max_digits: int = 1
    timeout_ms: int = 5000
    node: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SetDisplayName(Command):
    """Caller name the agent's phone shows when it rings (e.g. ``VIP Ivanova A.``)."""

    kind: ClassVar[str] = "set_display_name"
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SetVariable(Command):
    kind: ClassVar[str] = "set_variable"
    name: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteToQueue(Command):
    """Release a controller-driven call into a PBX queue with a priority (higher = sooner)."""

    kind: ClassVar[str] = "route_to_queue"
    queue: str
    priority: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseCall(Command):
    """Stop driving the call: the PBX continues on its own default path (the dialplan's
    default queue). Used when there is nothing to decide, or the decision failed."""

    kind: ClassVar[str] = "release_call"


@dataclass(frozen=True, slots=True, kw_only=True)
class MoveToQueue(Command):
    """Move a call already waiting in a queue to another queue (overflow, redistribution)."""

    kind: ClassVar[str] = "move_to_queue"
    queue: str
    priority: int = 0
    min_penalty: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HangUp(Command):
    kind: ClassVar[str] = "hang_up"
    cause: int = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class StartSpy(Command):
    """Ring the supervisor's phone and, when answered, spy on ``target`` (an agent interface
    or a channel) in ``mode``."""

    kind: ClassVar[str] = "start_spy"
    supervisor_endpoint: str
    target: str
    mode: SpyMode


@dataclass(frozen=True, slots=True, kw_only=True)
class StopSpy(Command):
    kind: ClassVar[str] = "stop_spy"
    spyer_channel: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PauseAgent(Command):
    """Pause (``paused=True``) or unpause an agent, in one queue or (``queue=None``) all."""

    kind: ClassVar[str] = "pause_agent"
    agent: str
    paused: bool
    reason: str | None = None
    queue: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AddQueueMember(Command):
    kind: ClassVar[str] = "add_queue_member"
    queue: str
    agent: str
    member_name: str | None = None
    penalty: int = 0
    paused: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveQueueMember(Command):
    kind: ClassVar[str] = "remove_queue_member"
    queue: str
    agent: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Originate(Command):
    """Place a call: ring ``endpoint`` and, when answered, send it to ``destination``
    (a dialplan target the adapter understands, e.g. an agent-first callback)."""

    kind: ClassVar[str] = "originate"
    endpoint: str
    destination: str
    caller_id: str | None = None
    timeout_s: int = 30
    variables: tuple[tuple[str, str], ...] = ()
