"""PBX-neutral call events.

Every PBX adapter (Asterisk AMI, FreeSWITCH ESL) translates its wire traffic into these
typed, frozen events at the edge; nothing past the adapter sees a raw PBX message.

Conventions shared by every event:
- ``pbx``: the configured PBX node name (e.g. ``"asterisk-1"``), so several nodes can feed one
  controller.
- ``call_id``: the id of the *call* (every leg linked to the caller's leg carries it: Asterisk
  ``Linkedid``, FreeSWITCH the caller's channel UUID). ``None`` for events that belong to no
  call (an agent pausing, a queue member being added).
- ``at``: when the PBX says it happened (timezone-aware UTC). Asterisk only sends a timestamp
  with ``timestampevents=yes``; otherwise the adapter stamps the time the frame was read.
- ``channel``: the PBX channel the event is about (caller leg, agent leg, spy leg), if any.

Agents are named by their PBX interface (``PJSIP/1001`` on Asterisk, the mod_callcenter agent
name on FreeSWITCH); ``agent_name`` carries the display name the PBX knows, if any. Mapping an
interface to a row of the ``agents`` table is the shell's job.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar


class QueueLeaveReason(enum.StrEnum):
    ANSWERED = "answered"
    ABANDON = "abandon"
    TIMEOUT = "timeout"
    EXIT_KEY = "exit_key"
    REDIRECT = "redirect"


class HangupParty(enum.StrEnum):
    CALLER = "caller"
    AGENT = "agent"
    SYSTEM = "system"
    UNKNOWN = "unknown"


class SpyMode(enum.StrEnum):
    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"


class AgentStatus(enum.StrEnum):
    """Device/agent availability as the PBX reports it."""

    AVAILABLE = "available"
    IN_USE = "in_use"
    RINGING = "ringing"
    ON_HOLD = "on_hold"
    UNAVAILABLE = "unavailable"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every PBX-neutral event."""

    type: ClassVar[str] = "event"
    pbx: str
    call_id: str | None
    at: datetime
    channel: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``type`` first, enums as values, datetimes as ISO 8601."""
        out: dict[str, Any] = {"type": self.type}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, enum.Enum):
                value = value.value
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, dict):
                value = dict(value)
            out[f.name] = value
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class CallArrived(Event):
    """A new inbound call reached the PBX (the caller's leg was created)."""

    type: ClassVar[str] = "call_arrived"
    unique_id: str
    caller_number: str | None
    caller_name: str | None
    did: str | None
    context: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallAnswered(Event):
    """The PBX answered the caller's leg (IVR/queue start); not an agent answering."""

    type: ClassVar[str] = "call_answered"


@dataclass(frozen=True, slots=True, kw_only=True)
class ControllerAttached(Event):
    """The call is waiting for the controller to drive it (AsyncAGI start / park)."""

    type: ClassVar[str] = "controller_attached"
    caller_number: str | None = None
    caller_name: str | None = None
    did: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ControllerReleased(Event):
    """The controller no longer drives the call (AsyncAGI end / unpark)."""

    type: ClassVar[str] = "controller_released"


@dataclass(frozen=True, slots=True, kw_only=True)
class IvrNodeEntered(Event):
    """The call entered an IVR node: the controller's node id, a ``CC_NODE`` the dialplan set,
    or, for observed calls, the dialplan ``context,exten``."""

    type: ClassVar[str] = "ivr_node_entered"
    node: str
    # False for a place where the caller only waits (music on hold while parked for the
    # controller): still an IVR-stage place for abandons, but not a menu for "served via IVR".
    interactive: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class DigitsCollected(Event):
    """Digits the caller keyed. ``digits`` is empty on timeout; ``hangup`` when the caller
    hung up while the collection ran."""

    type: ClassVar[str] = "digits_collected"
    digits: str
    command_id: str | None = None
    hangup: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfReceived(Event):
    """A single DTMF digit seen on the channel (outside a controller collection too)."""

    type: ClassVar[str] = "dtmf_received"
    digit: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptFinished(Event):
    """A prompt/command the controller started on the call has finished. Not for a control
    command that only set channel state and succeeded (Asterisk ``SET VARIABLE``, ``ASYNCAGI
    BREAK``; FreeSWITCH ``set``...): the adapters drop those acknowledgements, they are no step of
    the caller's journey. A failed or cut-off one is reported."""

    type: ClassVar[str] = "prompt_finished"
    command_id: str | None = None
    result: str | None = None
    hangup: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class VariableSet(Event):
    """A channel variable the controller cares about changed (e.g. ``CC_NODE``)."""

    type: ClassVar[str] = "variable_set"
    name: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueJoined(Event):
    type: ClassVar[str] = "queue_joined"
    queue: str
    position: int | None = None
    count: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentOffered(Event):
    """An agent's phone starts ringing for a queued call."""

    type: ClassVar[str] = "agent_offered"
    queue: str | None
    agent: str
    agent_name: str | None = None
    agent_channel: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRingNoAnswer(Event):
    """An offered agent did not take the call (timeout, busy, rejected)."""

    type: ClassVar[str] = "agent_ring_no_answer"
    queue: str | None
    agent: str
    agent_name: str | None = None
    ring_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRingCanceled(Event):
    """The ringing of an agent stopped because the call went elsewhere or the caller left."""

    type: ClassVar[str] = "agent_ring_canceled"
    queue: str | None
    agent: str
    agent_name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentConnected(Event):
    type: ClassVar[str] = "agent_connected"
    queue: str | None
    agent: str
    agent_name: str | None = None
    hold_s: int | None = None
    ring_s: int | None = None
    agent_channel: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentCompleted(Event):
    """The conversation between caller and agent ended; ``ended_by`` is who hung up."""

    type: ClassVar[str] = "agent_completed"
    queue: str | None
    agent: str
    agent_name: str | None = None
    hold_s: int | None = None
    talk_s: int | None = None
    ended_by: HangupParty = HangupParty.UNKNOWN


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueLeft(Event):
    type: ClassVar[str] = "queue_left"
    queue: str
    reason: QueueLeaveReason
    position: int | None = None
    hold_s: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded(Event):
    """The caller's leg is gone: the end of the call."""

    type: ClassVar[str] = "call_ended"
    cause: int | None
    cause_text: str | None = None
    hung_up_by: HangupParty = HangupParty.UNKNOWN


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStatusChanged(Event):
    type: ClassVar[str] = "agent_status_changed"
    agent: str
    status: AgentStatus
    agent_name: str | None = None
    queue: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentPauseChanged(Event):
    type: ClassVar[str] = "agent_pause_changed"
    agent: str
    paused: bool
    reason: str | None = None
    agent_name: str | None = None
    queue: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueMemberChanged(Event):
    """An agent was added to or removed from a queue."""

    type: ClassVar[str] = "queue_member_changed"
    agent: str
    queue: str
    added: bool
    agent_name: str | None = None
    penalty: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SpyStarted(Event):
    """A supervisor started listening/whispering/barging. ``call_id`` is the spied call."""

    type: ClassVar[str] = "spy_started"
    spyer_channel: str
    target_channel: str
    mode: SpyMode | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SpyStopped(Event):
    type: ClassVar[str] = "spy_stopped"
    spyer_channel: str
    target_channel: str
    mode: SpyMode | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OriginateResult(Event):
    """Result of an ``Originate`` command (callbacks, spy legs)."""

    type: ClassVar[str] = "originate_result"
    request_id: str
    success: bool
    reason: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackDialed(Event):
    """The customer leg of an agent-first callback ended: what dialling the customer gave.

    ``dial_status`` uses Asterisk's ``DIALSTATUS`` words whatever the PBX (``ANSWER``,
    ``NOANSWER``, ``BUSY``, ``CANCEL`` = the agent hung up before the customer answered,
    ``CONGESTION``, ``CHANUNAVAIL``...). ``call_id`` is None: the callback call is not a caller's
    journey; ``callback_call_id`` is its id on the PBX (Asterisk Linkedid, FreeSWITCH the agent
    leg's UUID), stored with the attempt."""

    type: ClassVar[str] = "callback_dialed"
    callback_id: int
    attempt: int
    dial_status: str
    callback_call_id: str | None = None


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (
        CallArrived,
        CallAnswered,
        ControllerAttached,
        ControllerReleased,
        IvrNodeEntered,
        DigitsCollected,
        DtmfReceived,
        PromptFinished,
        VariableSet,
        QueueJoined,
        AgentOffered,
        AgentRingNoAnswer,
        AgentRingCanceled,
        AgentConnected,
        AgentCompleted,
        QueueLeft,
        CallEnded,
        AgentStatusChanged,
        AgentPauseChanged,
        QueueMemberChanged,
        SpyStarted,
        SpyStopped,
        OriginateResult,
        CallbackDialed,
    )
}
