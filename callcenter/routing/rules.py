"""The routing rules file, as validated frozen models.

An admin edits one YAML file (reference: docs/routing.md); ``loader.py`` turns it into a
``RuleSet`` or into errors that name ``file:line:column: field.path: reason``. Everything here
is plain frozen data: ``decide()``, the IVR stepper and the overflow planner only read it.

Validation happens in two layers, both reported with the location of the offending key:

- shape and types: pydantic field validation (``extra="forbid"``: a misspelt key is an error,
  not a silently ignored option);
- meaning: ``RuleSet._semantics`` checks every cross-reference (queues, menus, nodes, groups,
  calendars), id uniqueness, IVR exits, and the tier safety the router relies on. It raises a
  ``ValidationError`` whose locations are the YAML keys (``rules[3].then.queue``), so a semantic
  error points at the line just like a type error does.

Tier safety (why it is enforced here *and* in ``decide()``): a VIP must never reach a junior
agent. The queue owns the constraint (``allowed_tiers`` / ``forbidden_tiers``); ``decide()``
skips a rule whose queue excludes the caller's tier. For that skip to always end somewhere
safe, the fallback must name at least one queue that admits every tier; that queue is also the
only kind of queue a call can reach when the CRM lookup failed (the caller could be anyone).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import InitErrorDetails, PydanticCustomError, core_schema

Loc = tuple[str | int, ...]

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

# Names that end up in PBX commands, journeys and reports: no spaces, no quoting surprises.
_IDENT = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
Ident = Annotated[str, StringConstraints(pattern=_IDENT, max_length=64)]
# Sound prompts: Asterisk "cc/main-menu" (several joined with &), FreeSWITCH "ivr/welcome.wav".
# No whitespace, commas, quotes or semicolons: they would split AGI/dialplan arguments.
Prompt = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_./:@&+-]+$", max_length=200)]
Mailbox = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.@-]+$", max_length=64)]
PbxQueueName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.@-]+$", max_length=80)]
# Agent interfaces: PJSIP/1001, SIP/alice, Local/1001@agents, FreeSWITCH agent names.
Interface = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_./@:+-]+$", max_length=120)]
Digits = Annotated[str, StringConstraints(pattern=r"^[0-9*#]{1,20}$")]
Priority = Annotated[int, Field(ge=0, le=1000)]


def _err(message: str) -> PydanticCustomError:
    # No context dict: pydantic leaves the message as is (braces in templates stay literal).
    return PydanticCustomError("routing", message)


def _as_list(value: Any) -> Any:
    """``tier: vip`` means ``tier: [vip]``: single values are the common case in hand-written rules."""
    if isinstance(value, str):
        return [value]
    return value


def _folded(values: tuple[str, ...]) -> tuple[str, ...]:
    # CRM values are compared case-insensitively (the CRM holds both "vip" and "VIP").
    out: list[str] = []
    for v in values:
        f = v.strip().casefold()
        if not f:
            raise _err("empty value")
        if f not in out:
            out.append(f)
    return tuple(out)


StrList = Annotated[tuple[str, ...], BeforeValidator(_as_list, json_schema_input_type=str | list[str])]
FoldedList = Annotated[
    tuple[str, ...],
    BeforeValidator(_as_list, json_schema_input_type=str | list[str]),
    AfterValidator(_folded),
]


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise _err(f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)") from None
    return value


TimeZoneName = Annotated[str, AfterValidator(_check_timezone)]


# --- display name template ------------------------------------------------------------------------

PLACEHOLDERS: dict[str, str] = {
    "name": "the customer's name as in the CRM (empty for an unknown caller)",
    "name_short": "surname and initials: 'Anna Ivanova' -> 'Ivanova A.'; 'Ivanova, Anna Maria' -> 'Ivanova A. M.'",
    "tier": "the customer's tier as in the CRM",
    "segment": "the customer's segment",
    "caller": "the caller's number (E.164 if it could be normalised, else as received)",
}


def _check_template(value: str) -> str:
    """Only bare ``{placeholder}`` fields: no attribute access, indexing, conversions or format
    specs. A template is admin input rendered for every call; ``{name.__class__}`` must not be
    reachable, and a typo must fail at load time, not on the first VIP call."""
    try:
        parsed = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise _err(f"bad template {value!r}: {exc} (write {{{{ and }}}} for literal braces)") from None
    for _literal, field_name, spec, conversion in parsed:
        if field_name is None:
            continue
        if field_name not in PLACEHOLDERS or spec or conversion:
            raise _err(
                f"unknown placeholder {{{field_name}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}} in {value!r}; known: "
                + ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            )
    return value


Template = Annotated[str, StringConstraints(max_length=120), AfterValidator(_check_template)]


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise _err(f"invalid regular expression {value!r}: {exc}") from None
    return value


Regex = Annotated[str, AfterValidator(_check_regex)]


# --- time ranges ---------------------------------------------------------------------------------

_RANGE = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")


@dataclass(frozen=True, slots=True)
class TimeRange:
    """``HH:MM-HH:MM`` local wall-clock time, as minutes after midnight; ``end`` may be 1440
    (``24:00``). ``end < start`` wraps past midnight (allowed in rule conditions only)."""

    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> TimeRange:
        m = _RANGE.fullmatch(text.strip())
        if not m:
            raise _err(f"expected a time range HH:MM-HH:MM such as 09:00-18:00, got {text!r}")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2 != 0):
            raise _err(f"not a time of day in {text!r}")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if start == end:
            raise _err(f"empty time range {text!r}")
        return cls(start, end)

    @property
    def wraps(self) -> bool:
        return self.end < self.start

    def contains(self, minute: float) -> bool:
        """``minute`` after local midnight (fractions allowed); start inclusive, end exclusive."""
        if self.wraps:
            return minute >= self.start or minute < self.end
        return self.start <= minute < self.end

    def __str__(self) -> str:
        return f"{self.start // 60:02d}:{self.start % 60:02d}-{self.end // 60:02d}:{self.end % 60:02d}"

    @classmethod
    def _validate(cls, value: Any) -> TimeRange:
        if isinstance(value, TimeRange):
            return value
        if not isinstance(value, str):
            raise _err("expected a time range string HH:MM-HH:MM")
        return cls.parse(value)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate, serialization=core_schema.to_string_ser_schema()
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "pattern": r"^\d{1,2}:\d{2}\s*-\s*\d{1,2}:\d{2}$",
            "examples": ["09:00-18:00"],
        }


def _day_hours(value: Any) -> Any:
    if value is None or (isinstance(value, str) and value.strip().lower() == "closed"):
        return []
    return _as_list(value)


def _check_day(ranges: tuple[TimeRange, ...]) -> tuple[TimeRange, ...]:
    ordered = sorted(ranges, key=lambda r: r.start)
    for r in ordered:
        if r.wraps:
            raise _err(f"{r} wraps past midnight: split it at 24:00 across two days")
    for a, b in itertools.pairwise(ordered):
        if b.start < a.end:
            raise _err(f"opening hours {a} and {b} overlap")
    return tuple(ordered)


DayHours = Annotated[
    tuple[TimeRange, ...],
    BeforeValidator(_day_hours, json_schema_input_type=TimeRange | list[TimeRange] | Literal["closed"] | None),
    AfterValidator(_check_day),
]


# --- models --------------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Calendar(_Model):
    """Business hours in local wall-clock time of ``timezone`` (default: the file's)."""

    timezone: TimeZoneName | None = Field(default=None, description="IANA zone; default: the top-level timezone.")
    hours: dict[Weekday, DayHours] = Field(
        default_factory=dict,
        description="Opening hours per weekday (mon..sun): 'HH:MM-HH:MM' or a list of them; "
        "a missing day or 'closed' is closed.",
    )
    holidays: tuple[date, ...] = Field(default=(), description="Dates (YYYY-MM-DD, local) that are closed all day.")

    @property
    def zone(self) -> ZoneInfo:
        # ZoneInfo caches instances per key: cheap to call per decision.
        return ZoneInfo(self.timezone or "UTC")


class GroupMember(_Model):
    interface: Interface = Field(
        description="The agent as the PBX names it: an Asterisk interface (PJSIP/1010) or a "
        "mod_callcenter agent name on FreeSWITCH (1010).")
    penalty: int = Field(default=0, ge=0, le=1000, description="Queue penalty (higher = offered later).")
    name: str | None = Field(default=None, max_length=80, description="Member name shown by the PBX.")
    pbx: Ident | None = Field(
        default=None, description="Only on this PBX node, or on PBXs of this type (asterisk, freeswitch); "
        "default: every PBX.")


class AgentGroup(_Model):
    """People who join a queue only at overload (``add_group`` overflow steps)."""

    description: str | None = None
    members: tuple[GroupMember, ...] = Field(min_length=1)


class OverflowStep(_Model):
    """One step of a queue's overflow chain. Triggers (all given must hold) decide *when*;
    ``move_to`` or ``add_group`` is *what*."""

    id: Ident = Field(description="Stable id, recorded with every move (journeys name it as rule_id).")
    after_wait_s: float | None = Field(
        default=None, gt=0, description="A call has waited this long in this queue (per call)."
    )
    estimated_wait_s_over: float | None = Field(default=None, ge=0, description="The queue's estimated wait exceeds.")
    no_agents_logged_in: bool = Field(default=False, description="Nobody is logged in to the queue.")
    no_agents_available: bool = Field(default=False, description="Nobody logged in is free (all busy/paused).")
    move_to: Ident | None = Field(
        default=None, description="Move waiting calls to this queue, keeping their entry time."
    )
    priority: Priority | None = Field(default=None, description="Priority in the target queue (default: unchanged).")
    add_group: Ident | None = Field(default=None, description="Add this agent group to the queue.")
    add_above: float | None = Field(
        default=None, ge=0, description="add_group: add while waiting calls per available agent > this."
    )
    remove_below: float | None = Field(
        default=None, ge=0, description="add_group: remove when waiting calls per available agent < this."
    )

    @property
    def has_trigger(self) -> bool:
        return (
            self.after_wait_s is not None
            or self.estimated_wait_s_over is not None
            or self.no_agents_logged_in
            or self.no_agents_available
        )

    @model_validator(mode="after")
    def _shape(self) -> OverflowStep:
        if (self.move_to is None) == (self.add_group is None):
            raise _err("an overflow step needs exactly one action: move_to or add_group")
        if self.move_to is not None:
            if not self.has_trigger:
                raise _err(
                    "a move_to step needs a trigger: after_wait_s, estimated_wait_s_over, "
                    "no_agents_logged_in or no_agents_available"
                )
            if self.add_above is not None or self.remove_below is not None:
                raise _err("add_above/remove_below belong to add_group steps")
        else:
            if self.priority is not None:
                raise _err("priority belongs to move_to steps")
            if self.add_above is None or self.remove_below is None:
                raise _err("an add_group step needs add_above and remove_below (the hysteresis band)")
            if not self.remove_below < self.add_above:
                raise _err(
                    f"remove_below ({self.remove_below}) must be below add_above ({self.add_above}), "
                    "or the group would be added and removed on the same load"
                )
        return self


class CallbackOffer(_Model):
    """Virtual hold: when the queue's estimated wait is over the threshold at the moment a call
    is routed to it, the caller is offered a callback before joining the queue. A caller who
    accepts keeps their place (callbacks are dispatched in order of the original entry); one
    who declines, or keys nothing, joins the queue as usual."""

    estimated_wait_s_over: float = Field(ge=0, description="Offer when the estimated wait is over this many s.")
    prompt: Prompt = Field(default="cc/callback-offer", description="E.g. 'press 1 to be called back...'.")
    key: Annotated[str, StringConstraints(pattern=r"^[0-9*#]$")] = Field(
        default="1", description="The key that accepts the offer."
    )
    timeout_s: float = Field(default=5, gt=0, le=30, description="How long to wait for the key.")
    queue: Ident | None = Field(default=None, description="Queue that calls back (default: this queue).")


class CallbackDialog(_Model):
    """How a callback request is taken on the phone (IVR option, rule, closed hours, or an
    accepted offer): confirm the caller's number or key another, then optionally pick a topic."""

    confirm_prompt: Prompt = Field(
        default="cc/callback-confirm",
        description="'To be called back on the number you are calling from press 1, to key another press 2'.",
    )
    confirm_key: Annotated[str, StringConstraints(pattern=r"^[0-9*#]$")] = "1"
    other_key: Annotated[str, StringConstraints(pattern=r"^[0-9*#]$")] = "2"
    number_prompt: Prompt = Field(
        default="cc/callback-enter-number", description="'Key the number to call, then the hash key'."
    )
    invalid_number_prompt: Prompt = Field(default="cc/callback-invalid-number")
    max_number_digits: int = Field(default=15, ge=3, le=20)
    topic_prompt: Prompt | None = Field(default=None, description="'For billing press 1, ...' (with topics).")
    topics: dict[Annotated[str, StringConstraints(pattern=r"^[0-9]$")], Annotated[str, StringConstraints(
        min_length=1, max_length=64)]] = Field(
        default_factory=dict, description="Digit -> topic shown to the agent, e.g. {'1': billing}."
    )
    thanks_prompt: Prompt = Field(default="cc/callback-thanks", description="Played once the request is filed.")
    failed_prompt: Prompt = Field(
        default="cc/callback-failed", description="Played when no number could be taken (then the call ends)."
    )
    timeout_s: float = Field(default=6, gt=0, le=30, description="Wait this long for each answer.")
    retries: int = Field(default=2, ge=0, le=5, description="Repeats after no or invalid input.")

    @model_validator(mode="after")
    def _keys(self) -> CallbackDialog:
        if self.confirm_key == self.other_key:
            raise _err("confirm_key and other_key must differ")
        if self.topics and self.topic_prompt is None:
            raise _err("topics need a topic_prompt that tells the caller which key is which topic")
        return self


def _pbx_queue(value: Any) -> Any:
    if isinstance(value, str):
        return {"default": value}
    if not isinstance(value, dict):
        raise _err("expected a queue name, or a mapping of PBX node name / PBX type / default to queue names")
    return value


class QueueConfig(_Model):
    description: str | None = None
    pbx_queue: Annotated[
        dict[str, PbxQueueName],
        BeforeValidator(_pbx_queue, json_schema_input_type=str | dict[str, str]),
    ] = Field(
        default_factory=dict,
        description="Queue name on the PBX: one name, or per PBX node name / PBX type plus 'default' "
        "(e.g. {default: sales, freeswitch: sales@default}). Default: the logical name.",
    )
    skills: StrList = Field(default=(), description="Skills an agent needs to be a member (used by membership sync).")
    service_level_s: float = Field(default=20, gt=0, description="Service-level target: answered within this many s.")
    max_wait_s: float | None = Field(
        default=None, gt=0, description="The PBX's queue timeout (overflow must act before it)."
    )
    allowed_tiers: FoldedList = Field(default=(), description="Only callers of these tiers (empty: any tier).")
    forbidden_tiers: FoldedList = Field(default=(), description="Never callers of these tiers (e.g. vip for juniors).")
    overflow: tuple[OverflowStep, ...] = Field(default=(), description="Ordered overflow steps.")
    survey: bool = Field(
        default=False, description="Post-call NPS survey for calls answered from this queue (a rule may override)."
    )
    callback_offer: CallbackOffer | None = Field(
        default=None, description="Offer a callback instead of waiting when the estimated wait is long."
    )

    @property
    def unrestricted(self) -> bool:
        """Admits every tier, and callers whose tier is unknown."""
        return not self.allowed_tiers and not self.forbidden_tiers

    def excludes(self, tier: str | None, *, strict: bool = False) -> str | None:
        """Why this queue may not take a caller of ``tier`` (None: it may).

        ``tier=None`` is a caller the CRM does not know: not a member of any tier, so only an
        ``allowed_tiers`` list keeps them out. ``strict`` is for a failed CRM lookup: the caller
        might have any tier, so only an unrestricted queue is safe."""
        if strict:
            if self.unrestricted:
                return None
            return "the CRM lookup failed and this queue restricts tiers (the caller could be any tier)"
        if tier is None:
            if self.allowed_tiers:
                return f"unknown caller, and the queue only takes tiers {', '.join(self.allowed_tiers)}"
            return None
        t = tier.casefold()
        if self.allowed_tiers and t not in self.allowed_tiers:
            return f"tier {t!r} is not in the queue's allowed_tiers ({', '.join(self.allowed_tiers)})"
        if t in self.forbidden_tiers:
            return f"tier {t!r} is in the queue's forbidden_tiers"
        return None

    def pbx_name(self, logical: str, pbx: str | None = None, pbx_type: str | None = None) -> str:
        """The queue's name on a PBX: by PBX node name, then PBX type, then ``default``, then the
        logical name (so a missing mapping still yields a usable name, never an error)."""
        for key in (pbx, pbx_type, "default"):
            if key is not None and key in self.pbx_queue:
                return self.pbx_queue[key]
        return logical


class IvrTarget(_Model):
    """Where a digit (or the end of retries) leads: exactly one of node, queue, callback,
    voicemail, hangup; ``prompt`` is played first."""

    node: Ident | None = Field(default=None, description="Another node of the same menu.")
    queue: Ident | None = None
    priority: Priority | None = Field(default=None, description="With queue: the call's priority.")
    callback: Ident | None = Field(default=None, description="Queue that will call the caller back.")
    voicemail: Mailbox | None = Field(default=None, description="Mailbox, e.g. 100@default.")
    hangup: bool = False
    prompt: Prompt | None = Field(default=None, description="Played before acting (e.g. 'connecting you').")

    @property
    def kind(self) -> Literal["node", "queue", "callback", "voicemail", "hangup"]:
        if self.node is not None:
            return "node"
        if self.queue is not None:
            return "queue"
        if self.callback is not None:
            return "callback"
        if self.voicemail is not None:
            return "voicemail"
        return "hangup"

    @model_validator(mode="after")
    def _one(self) -> IvrTarget:
        chosen = [k for k in ("node", "queue", "callback", "voicemail") if getattr(self, k) is not None]
        if self.hangup:
            chosen.append("hangup")
        if len(chosen) != 1:
            raise _err(
                "a target needs exactly one of node, queue, callback, voicemail, hangup: true"
                + (f" (got {', '.join(chosen)})" if chosen else "")
            )
        if self.priority is not None and self.queue is None:
            raise _err("priority only applies to a queue target")
        return self


class IvrNode(_Model):
    id: Ident = Field(description="Stable node id: journeys and the abandon report name it. Unique in the file.")
    prompt: Prompt = Field(description="Played while collecting digits.")
    options: dict[Digits, IvrTarget] = Field(
        default_factory=dict, description="Digits -> target. Quote keys in YAML: '1', '0', '*', '#'."
    )
    max_digits: int = Field(default=1, ge=1, le=20)
    timeout_s: float = Field(default=5, gt=0, le=60, description="Wait this long for input after the prompt.")
    retries: int = Field(default=2, ge=0, le=10, description="Replays after a timeout or invalid input.")
    invalid_prompt: Prompt | None = Field(default=None, description="Played after invalid input, before the replay.")
    timeout_prompt: Prompt | None = Field(default=None, description="Played after no input, before the replay.")
    on_failure: IvrTarget = Field(description="Where the caller goes when the retries are used up.")


class IvrMenu(_Model):
    description: str | None = None
    start: Ident | None = Field(default=None, description="First node (default: the first in the list).")
    nodes: tuple[IvrNode, ...] = Field(min_length=1)
    _index: dict[str, IvrNode] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _build_index(self) -> IvrMenu:
        self._index = {n.id: n for n in self.nodes}
        return self

    @property
    def start_node(self) -> IvrNode:
        if self.start is not None and self.start in self._index:
            return self._index[self.start]
        return self.nodes[0]

    def node(self, node_id: str) -> IvrNode | None:
        return self._index.get(node_id)


class LiveCondition(_Model):
    """Live state of one queue; every given comparison must hold."""

    queue: Ident
    available_at_least: int | None = Field(default=None, ge=0, description="Available agents >= this.")
    available_exactly: int | None = Field(default=None, ge=0, description="Available agents == this.")
    logged_in_at_least: int | None = Field(default=None, ge=0, description="Logged-in agents >= this.")
    waiting_over: int | None = Field(default=None, ge=0, description="Waiting calls > this.")
    estimated_wait_s_over: float | None = Field(default=None, ge=0, description="Estimated wait > this.")

    @model_validator(mode="after")
    def _some(self) -> LiveCondition:
        if all(
            getattr(self, k) is None
            for k in (
                "available_at_least",
                "available_exactly",
                "logged_in_at_least",
                "waiting_over",
                "estimated_wait_s_over",
            )
        ):
            raise _err(
                "a live condition needs a comparison: available_at_least, available_exactly, "
                "logged_in_at_least, waiting_over or estimated_wait_s_over"
            )
        return self


CUSTOMER_CONDITIONS = ("tier", "segment", "language", "stage", "tags_any", "tags_all", "assigned_agent", "do_not_call")


class When(_Model):
    """Conditions of a rule; all given must hold (an empty ``when`` always matches). Checked in
    the order of the fields below; ``explain`` reports the first that fails."""

    # caller / CRM
    known: bool | None = Field(default=None, description="true: the CRM knows the caller; false: unknown caller.")
    withheld: bool | None = Field(default=None, description="The caller id is withheld/anonymous.")
    tier: FoldedList | None = Field(default=None, description="Customer tier is one of (case-insensitive).")
    segment: FoldedList | None = None
    language: FoldedList | None = None
    stage: FoldedList | None = None
    tags_any: FoldedList | None = Field(default=None, description="The customer has at least one of these tags.")
    tags_all: FoldedList | None = Field(default=None, description="The customer has all of these tags.")
    assigned_agent: bool | None = Field(default=None, description="The customer has an assigned agent.")
    do_not_call: bool | None = None
    # the call
    did: StrList | None = Field(default=None, description="The dialled number is one of (exact).")
    did_pattern: Regex | None = Field(default=None, description="The dialled number matches (regex, full match).")
    weekdays: tuple[Weekday, ...] | None = Field(
        default=None, description="Local weekday (top-level timezone) is one of."
    )
    time_of_day: TimeRange | None = Field(
        default=None, description="Local time (top-level timezone) in HH:MM-HH:MM; may wrap midnight."
    )
    calendar_open: Ident | None = Field(default=None, description="This calendar is open now.")
    calendar_closed: Ident | None = Field(default=None, description="This calendar is closed now.")
    # live state
    live: tuple[LiveCondition, ...] = Field(default=(), description="Live queue conditions.")

    def given(self) -> list[str]:
        return [k for k in type(self).model_fields if getattr(self, k) not in (None, ())]


ActionKind = Literal["queue", "ivr", "voicemail", "callback", "hangup"]


class ClosedHandling(_Model):
    """When ``calendar`` is closed at the time of the call: play ``prompt``, then exactly one of
    hangup / voicemail / callback instead of the rule's action."""

    calendar: Ident
    prompt: Prompt | None = None
    hangup: bool = False
    voicemail: Mailbox | None = None
    callback: Ident | None = Field(default=None, description="Queue that will call the caller back.")

    @property
    def kind(self) -> Literal["hangup", "voicemail", "callback"]:
        if self.voicemail is not None:
            return "voicemail"
        if self.callback is not None:
            return "callback"
        return "hangup"

    @model_validator(mode="after")
    def _one(self) -> ClosedHandling:
        n = int(self.hangup) + int(self.voicemail is not None) + int(self.callback is not None)
        if n != 1:
            raise _err("closed handling needs exactly one of hangup: true, voicemail, callback")
        return self


class Action(_Model):
    """What a matching rule does: exactly one of queue / ivr / voicemail / callback / hangup."""

    queue: Ident | None = Field(default=None, description="Straight to this queue (the IVR is skipped).")
    priority: Priority | None = Field(default=None, description="With queue: priority (higher = answered sooner).")
    ivr: Ident | None = Field(default=None, description="Play this IVR menu.")
    voicemail: Mailbox | None = None
    callback: Ident | None = Field(default=None, description="Offer a callback from this queue.")
    hangup: bool = False
    announcement: Prompt | None = Field(default=None, description="Played before the action.")
    display_name: Template | None = Field(
        default=None, description="Caller name shown on the agent's phone, e.g. 'VIP {name_short}'."
    )
    sticky_agent_s: int | None = Field(
        default=None, ge=1, le=600, description="With queue: ring the customer's assigned agent this long first."
    )
    closed: ClosedHandling | None = Field(default=None, description="Out-of-hours handling.")
    survey: bool | None = Field(
        default=None, description="Post-call survey for the calls this rule queues (default: the queue's setting)."
    )

    @property
    def kind(self) -> ActionKind:
        if self.queue is not None:
            return "queue"
        if self.ivr is not None:
            return "ivr"
        if self.voicemail is not None:
            return "voicemail"
        if self.callback is not None:
            return "callback"
        return "hangup"

    @model_validator(mode="after")
    def _one(self) -> Action:
        chosen = [k for k in ("queue", "ivr", "voicemail", "callback") if getattr(self, k) is not None]
        if self.hangup:
            chosen.append("hangup")
        if len(chosen) != 1:
            raise _err(
                "an action needs exactly one of queue, ivr, voicemail, callback, hangup: true"
                + (f" (got {', '.join(chosen)})" if chosen else "")
            )
        if self.priority is not None and self.queue is None:
            raise _err("priority only applies with queue (IVR options carry their own)")
        if self.sticky_agent_s is not None and self.queue is None:
            raise _err("sticky_agent_s only applies with queue: the assigned agent rings before that queue")
        return self


class Rule(_Model):
    id: Ident = Field(description="Stable id, recorded with every decision.")
    description: str | None = None
    when: When = Field(default_factory=When)
    then: Action


class Fallback(Action):
    """The last resort: used when no rule matches, and when the CRM lookup failed."""

    id: Ident = "fallback"
    alternatives: tuple[Ident, ...] = Field(
        default=(),
        description="Queues tried in order when the fallback's queue excludes the caller's tier. The fallback's "
        "queue or one alternative must admit every tier.",
    )

    def chain(self, first: str | None = None) -> list[str]:
        """Queues to try, in order, for a fallback (or a rescued IVR choice) towards ``first``."""
        out: list[str] = []
        for q in (first, self.queue, *self.alternatives):
            if q is not None and q not in out:
                out.append(q)
        return out


def _inject_timezone(data: Any) -> Any:
    """Calendars without a ``timezone`` take the file's, so ``is_open(calendar, at)`` needs
    nothing but the calendar."""
    if not isinstance(data, dict):
        return data
    tz = data.get("timezone", "UTC")
    cals = data.get("calendars")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return data  # reported once, at the top-level timezone; not again per calendar
    if isinstance(cals, dict) and isinstance(tz, str):
        fixed = {}
        for name, cal in cals.items():
            if isinstance(cal, dict) and cal.get("timezone") is None:
                cal = {**cal, "timezone": tz}
            fixed[name] = cal
        data = {**data, "calendars": fixed}
    return data


class RuleSet(_Model):
    """A callcenter routing rules file: queues, IVR menus, ordered rules and a fallback."""

    # ``version`` (the property) is always defined: the admin's label plus a content hash.

    admin_version: str | None = Field(
        default=None,
        alias="version",
        max_length=64,
        description="Your label for this revision; the effective version adds a content hash.",
    )
    timezone: TimeZoneName = Field(default="UTC", description="Time zone of time conditions and calendars.")
    calendars: dict[Ident, Calendar] = Field(default_factory=dict)
    groups: dict[Ident, AgentGroup] = Field(default_factory=dict, description="Agent groups for overflow.")
    queues: dict[Ident, QueueConfig] = Field(min_length=1)
    ivr: dict[Ident, IvrMenu] = Field(default_factory=dict, description="IVR menus by name.")
    callback: CallbackDialog = Field(
        default_factory=CallbackDialog, description="How callback requests are taken on the phone."
    )
    rules: tuple[Rule, ...] = Field(default=(), description="Ordered; the first match wins.")
    fallback: Fallback

    _digest: str = PrivateAttr(default="")
    _node_menu: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _tz_defaults(cls, data: Any) -> Any:
        return _inject_timezone(data)

    @property
    def version(self) -> str:
        """``<admin version>@<sha256[:12]>`` or the hash alone. The hash is over the validated
        content (not the bytes): comments and formatting do not change it, any rule does."""
        return f"{self.admin_version}@{self._digest}" if self.admin_version else self._digest

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def menu_of_node(self, node_id: str) -> str | None:
        return self._node_menu.get(node_id)

    def rule(self, rule_id: str) -> Rule | Fallback | None:
        if rule_id == self.fallback.id:
            return self.fallback
        return next((r for r in self.rules if r.id == rule_id), None)

    @model_validator(mode="after")
    def _semantics(self) -> RuleSet:
        problems = list(_semantic_problems(self))
        if problems:
            raise ValidationError.from_exception_data(
                "RuleSet",
                [InitErrorDetails(type=_err(msg), loc=loc, input=None) for loc, msg in problems],
            )
        self._node_menu = {n.id: name for name, menu in self.ivr.items() for n in menu.nodes}
        content = self.model_dump(mode="json", by_alias=True, exclude={"admin_version"})
        blob = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        self._digest = hashlib.sha256(blob.encode()).hexdigest()[:12]
        return self


# --- semantic checks -----------------------------------------------------------------------------


def _known(kind: str, name: str, pool: Mapping[str, Any]) -> str | None:
    if name in pool:
        return None
    have = ", ".join(pool) or "none defined"
    return f"unknown {kind} {name!r} (defined: {have})"


def _rule_tiers(when: When) -> list[str | None] | None:
    """The tiers a rule can match (None = unknown caller), or None when it is not restricted."""
    if when.known is False:
        return [None]
    if when.tier is not None:
        return list(when.tier)
    return None


def _action_queue_refs(action: Action, base: Loc) -> Iterator[tuple[Loc, str]]:
    if action.queue is not None:
        yield (*base, "queue"), action.queue
    if action.callback is not None:
        yield (*base, "callback"), action.callback
    if action.closed is not None and action.closed.callback is not None:
        yield (*base, "closed", "callback"), action.closed.callback


def _semantic_problems(rs: RuleSet) -> Iterator[tuple[Loc, str]]:
    queues, menus, groups = rs.queues, rs.ivr, rs.groups

    # queues: tiers, overflow references
    step_ids: dict[str, Loc] = {}
    for qname, q in queues.items():
        both = set(q.allowed_tiers) & set(q.forbidden_tiers)
        if both:
            yield ("queues", qname, "forbidden_tiers"), f"tier(s) {', '.join(sorted(both))} both allowed and forbidden"
        seen_groups: set[str] = set()
        for i, step in enumerate(q.overflow):
            base: Loc = ("queues", qname, "overflow", i)
            if step.id in step_ids:
                yield (*base, "id"), f"overflow step id {step.id!r} is already used"
            step_ids.setdefault(step.id, (*base, "id"))
            if step.move_to is not None:
                if (msg := _known("queue", step.move_to, queues)) is not None:
                    yield (*base, "move_to"), msg
                elif step.move_to == qname:
                    yield (*base, "move_to"), "a queue cannot overflow into itself"
            if step.add_group is not None:
                if (msg := _known("group", step.add_group, groups)) is not None:
                    yield (*base, "add_group"), msg
                elif step.add_group in seen_groups:
                    yield (*base, "add_group"), f"group {step.add_group!r} is already added by an earlier step"
                seen_groups.add(step.add_group)
            if step.after_wait_s is not None and q.max_wait_s is not None and step.after_wait_s >= q.max_wait_s:
                yield (*base, "after_wait_s"), (
                    f"after_wait_s {step.after_wait_s:g} is not below the queue's max_wait_s {q.max_wait_s:g}: "
                    "the PBX times the call out first"
                )
        if q.callback_offer is not None and q.callback_offer.queue is not None:
            offer_loc: Loc = ("queues", qname, "callback_offer", "queue")
            if (msg := _known("queue", q.callback_offer.queue, queues)) is not None:
                yield offer_loc, msg
            elif q.callback_offer.queue != qname:
                back = queues[q.callback_offer.queue]
                # whoever this queue admits must be admitted by the queue that calls back
                for tier in (None, *q.allowed_tiers, *back.allowed_tiers, *back.forbidden_tiers):
                    if q.excludes(tier) is None and back.excludes(tier) is not None:
                        who = "unknown callers" if tier is None else f"tier {tier!r}"
                        yield offer_loc, (
                            f"queue {q.callback_offer.queue!r} refuses {who}, which {qname!r} admits: "
                            "the callback would go to a queue the caller may not reach"
                        )
                        break

    # IVR menus: node ids unique in the file, every target exists, every node has a way out
    node_ids: dict[str, Loc] = {}
    for mname, menu in menus.items():
        ids = {n.id for n in menu.nodes}
        if menu.start is not None and menu.start not in ids:
            yield ("ivr", mname, "start"), f"unknown node {menu.start!r} in menu {mname!r}"
        for i, node in enumerate(menu.nodes):
            base = ("ivr", mname, "nodes", i)
            if node.id in node_ids:
                yield (*base, "id"), f"node id {node.id!r} is already used (node ids are unique in the file)"
            node_ids.setdefault(node.id, (*base, "id"))
            targets: list[tuple[Loc, IvrTarget]] = [((*base, "options", d), t) for d, t in node.options.items()]
            targets.append(((*base, "on_failure"), node.on_failure))
            for d in node.options:
                if len(d) > node.max_digits:
                    yield (*base, "options", d), f"option {d!r} is longer than max_digits ({node.max_digits})"
            for tloc, t in targets:
                if t.node is not None and t.node not in ids:
                    other = next((m for m, mm in menus.items() if mm.node(t.node) is not None), None)
                    hint = f" (it is in menu {other!r}; targets stay within a menu)" if other else ""
                    yield (*tloc, "node"), f"unknown node {t.node!r} in menu {mname!r}{hint}"
                for key in ("queue", "callback"):
                    ref = getattr(t, key)
                    if ref is not None and (msg := _known("queue", ref, queues)) is not None:
                        yield (*tloc, key), msg
        yield from _ivr_exits(mname, menu)

    # rules
    rule_ids: dict[str, Loc] = dict(step_ids)
    for i, rule in enumerate(rs.rules):
        base = ("rules", i)
        if rule.id in rule_ids or rule.id == rs.fallback.id:
            yield (*base, "id"), f"id {rule.id!r} is already used by another rule, overflow step or the fallback"
        rule_ids.setdefault(rule.id, (*base, "id"))
        yield from _when_problems(rule.when, (*base, "when"), rs)
        yield from _action_problems(rule.then, (*base, "then"), rs)
        # A rule that can only match tiers its own queue refuses would be skipped on every call:
        # certainly a mistake (typically a VIP rule pointing at the junior queue).
        tiers = _rule_tiers(rule.when)
        if tiers is not None:
            for loc, qname in _action_queue_refs(rule.then, (*base, "then")):
                target = queues.get(qname)
                if target is not None and all(target.excludes(t) for t in tiers):
                    who = "unknown callers" if tiers == [None] else "tier(s) " + ", ".join(str(t) for t in tiers)
                    yield loc, (
                        f"queue {qname!r} refuses {who}, the only callers this rule matches: "
                        "the rule could never route anyone"
                    )
        if rule.when.known is False:
            for k in CUSTOMER_CONDITIONS:
                if getattr(rule.when, k) is not None:
                    yield (*base, "when", k), "known: false (unknown caller) contradicts a condition on the customer"

    # fallback
    fb = rs.fallback
    if fb.id in step_ids:
        yield ("fallback", "id"), f"id {fb.id!r} is already used by an overflow step"
    yield from _action_problems(fb, ("fallback",), rs)
    for j, alt in enumerate(fb.alternatives):
        if (msg := _known("queue", alt, queues)) is not None:
            yield ("fallback", "alternatives", j), msg
    chain = [q for q in fb.chain() if q in queues]
    if chain and not any(queues[q].unrestricted for q in chain):
        yield ("fallback", "alternatives") if fb.alternatives else ("fallback",), (
            "the fallback must reach a queue that admits every tier (no allowed_tiers/forbidden_tiers): "
            "it routes callers whose rule was skipped for their tier and callers whose CRM lookup failed; "
            "add one to 'alternatives'"
        )
    if not fb.chain():
        yield ("fallback",), (
            "the fallback must name a queue that admits every tier, in 'queue' or 'alternatives' "
            "(used when an IVR choice or a callback queue excludes the caller's tier)"
        )


def _when_problems(when: When, base: Loc, rs: RuleSet) -> Iterator[tuple[Loc, str]]:
    for key in ("calendar_open", "calendar_closed"):
        ref = getattr(when, key)
        if ref is not None and (msg := _known("calendar", ref, rs.calendars)) is not None:
            yield (*base, key), msg
    for j, cond in enumerate(when.live):
        if (msg := _known("queue", cond.queue, rs.queues)) is not None:
            yield (*base, "live", j, "queue"), msg


def _action_problems(action: Action, base: Loc, rs: RuleSet) -> Iterator[tuple[Loc, str]]:
    for loc, qname in _action_queue_refs(action, base):
        if (msg := _known("queue", qname, rs.queues)) is not None:
            yield loc, msg
    if action.ivr is not None and (msg := _known("IVR menu", action.ivr, rs.ivr)) is not None:
        yield (*base, "ivr"), msg
    if action.closed is not None and (msg := _known("calendar", action.closed.calendar, rs.calendars)) is not None:
        yield (*base, "closed", "calendar"), msg


def _ivr_exits(mname: str, menu: IvrMenu) -> Iterator[tuple[Loc, str]]:
    """Every node must be able to lead out of the menu (a queue, callback, voicemail or
    hangup), or a caller could be bounced between nodes forever."""
    edges: dict[str, list[str]] = {}
    exits: set[str] = set()
    for node in menu.nodes:
        for t in (*node.options.values(), node.on_failure):
            if t.node is not None:
                edges.setdefault(node.id, []).append(t.node)
            else:
                exits.add(node.id)
    good = set(exits)
    changed = True
    while changed:
        changed = False
        for src, dsts in edges.items():
            if src not in good and any(d in good for d in dsts):
                good.add(src)
                changed = True
    for i, node in enumerate(menu.nodes):
        if node.id not in good:
            yield ("ivr", mname, "nodes", i, "on_failure"), (
                f"node {node.id!r} never leads out of menu {mname!r}: every path loops between nodes; "
                "route an option or on_failure to a queue, callback, voicemail or hangup"
            )


# --- warnings (valid, but probably not what was meant) -------------------------------------------


def lint(rs: RuleSet) -> list[tuple[Loc, str]]:
    """Things that are legal but look like mistakes; ``rules check`` prints them as warnings."""
    out: list[tuple[Loc, str]] = []
    used_menus = {a.ivr for a in (*[r.then for r in rs.rules], rs.fallback) if a.ivr is not None}
    for mname in rs.ivr:
        if mname not in used_menus:
            out.append((("ivr", mname), f"menu {mname!r} is not used by any rule or the fallback"))
    for mname, menu in rs.ivr.items():
        reach = {menu.start_node.id}
        todo = [menu.start_node]
        while todo:
            n = todo.pop()
            for t in (*n.options.values(), n.on_failure):
                if t.node is not None and t.node not in reach and (nxt := menu.node(t.node)) is not None:
                    reach.add(t.node)
                    todo.append(nxt)
        for i, node in enumerate(menu.nodes):
            if node.id not in reach:
                msg = f"node {node.id!r} cannot be reached from the menu start"
                out.append((("ivr", mname, "nodes", i, "id"), msg))
    used_groups = {s.add_group for q in rs.queues.values() for s in q.overflow if s.add_group}
    for g in rs.groups:
        if g not in used_groups:
            out.append((("groups", g), f"group {g!r} is not added by any overflow step"))
    used_cals = {r.when.calendar_open for r in rs.rules} | {r.when.calendar_closed for r in rs.rules}
    used_cals |= {a.closed.calendar for a in (*[r.then for r in rs.rules], rs.fallback) if a.closed}
    for c in rs.calendars:
        if c not in used_cals:
            out.append((("calendars", c), f"calendar {c!r} is not used"))
    # A rule after one that matches every call and can never be skipped is dead.
    for i, rule in enumerate(rs.rules):
        if rule.when.given():
            continue
        targets = [q for _loc, q in _action_queue_refs(rule.then, ())]
        if all(rs.queues[q].unrestricted for q in targets if q in rs.queues):
            for j in range(i + 1, len(rs.rules)):
                msg = f"rule {rs.rules[j].id!r} is never reached: rule {rule.id!r} matches every call"
                out.append((("rules", j, "id"), msg))
            break
    return out


def json_schema() -> dict[str, Any]:
    """JSON Schema of the rules file, for editors (YAML language servers) and docs."""
    schema = RuleSet.model_json_schema(by_alias=True, mode="validation")
    return {"title": "callcenter routing rules", **{k: v for k, v in schema.items() if k != "title"}}


def json_schema_text() -> str:
    """What ``callcenter rules schema`` prints and config/routing.schema.json holds."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


__all__ = [
    "PLACEHOLDERS",
    "WEEKDAYS",
    "Action",
    "ActionKind",
    "AgentGroup",
    "Calendar",
    "ClosedHandling",
    "Fallback",
    "GroupMember",
    "IvrMenu",
    "IvrNode",
    "IvrTarget",
    "LiveCondition",
    "Loc",
    "OverflowStep",
    "QueueConfig",
    "Rule",
    "RuleSet",
    "TimeRange",
    "When",
    "json_schema",
    "json_schema_text",
    "lint",
]
