"""Request bodies and query parameters (pydantic), also the source of the OpenAPI schemas.

Identifiers that end up in PBX actions (endpoints, queues) are checked here with the same
shapes the Asterisk action planner accepts, so a bad value is a 422 with a field path instead
of a failed command later.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, HttpUrl

# Row ids are PostgreSQL bigints: a larger number must be a 422 here, not a driver error (the
# fuzzer found ``before_id`` = 10^24 reaching asyncpg as a 500).
DbId = Annotated[int, Field(ge=1, le=2**63 - 1)]

ENDPOINT = r"^[A-Za-z][A-Za-z0-9_]*/[A-Za-z0-9_.@:+#*;/-]+$"
QUEUE = r"^[a-z][A-Za-z0-9_.-]+$"

Endpoint = Annotated[str, Field(pattern=ENDPOINT, max_length=200, examples=["PJSIP/1009"])]
QueueName = Annotated[str, Field(pattern=QUEUE, max_length=80, examples=["sales"])]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]
Role = Literal["admin", "supervisor", "analyst", "agent"]
SpyModeName = Literal["listen", "whisper", "barge"]
NotificationKind = Literal["call", "call_ended", "agent", "queue", "screen_pop", "callback", "callback_overdue",
                           "detractor"]


def _no_control(value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("control characters are not allowed")
    return value


CleanText = Annotated[str, AfterValidator(_no_control)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- supervisor actions ------------------------------------------------------------------------


class SpyBody(_Body):
    mode: SpyModeName
    endpoint: Endpoint = Field(description="the supervisor's own phone, rung first (e.g. PJSIP/1009)")


class PauseBody(_Body):
    paused: bool
    reason: Annotated[CleanText, Field(max_length=64)] | None = None
    queue: QueueName | None = Field(default=None, description="only this queue (default: all)")


class StatusBody(_Body):
    status: Literal["available", "break", "dnd", "do-not-disturb"] = Field(
        description="available = unpaused; break and dnd (do-not-disturb) = paused with reason 'break' / 'dnd'")


class ForwardBody(_Body):
    enabled: bool
    mobile: Annotated[str, Field(min_length=3, max_length=40)] | None = Field(
        default=None, description="any phone form, stored as E.164 (default: the agent's stored mobile)")


class RedistributeBody(_Body):
    to_queue: QueueName
    count: Annotated[int, Field(ge=1, le=10_000)] | None = Field(
        default=None, description="how many of the oldest waiting calls (default: all)")


# --- admin: agents, teams, groups -------------------------------------------------------------


class EndpointIn(_Body):
    pbx: Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.-]+$")]
    # Asterisk queue member interface (PJSIP/1001) or FreeSWITCH mod_callcenter agent (1001@default):
    # no spaces or control characters, so it can never break a PBX command line.
    interface: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@:+#*;/-]*$", max_length=200)]


class AgentIn(_Body):
    name: Annotated[CleanText, Field(min_length=1, max_length=200)]
    extension: Annotated[str, Field(max_length=40, pattern=r"^[0-9A-Za-z*#+]+$")] | None = None
    mobile: Annotated[str, Field(min_length=3, max_length=40)] | None = None
    skills: dict[Annotated[str, Field(min_length=1, max_length=60)], Annotated[int, Field(ge=1, le=10)]] = {}
    active: bool = True
    endpoints: Annotated[list[EndpointIn], Field(max_length=20)] = []


class AgentPatch(_Body):
    name: Annotated[CleanText, Field(min_length=1, max_length=200)] | None = None
    extension: Annotated[str, Field(max_length=40, pattern=r"^[0-9A-Za-z*#+]+$")] | None = None
    mobile: Annotated[str, Field(min_length=3, max_length=40)] | None = None
    skills: dict[Annotated[str, Field(min_length=1, max_length=60)], Annotated[int, Field(ge=1, le=10)]] | None = None
    active: bool | None = None
    endpoints: Annotated[list[EndpointIn], Field(max_length=20)] | None = None


class TeamMemberIn(_Body):
    agent_id: DbId
    role: Literal["agent", "supervisor"] = "agent"


class TeamIn(_Body):
    name: Annotated[CleanText, Field(min_length=1, max_length=200)]
    members: Annotated[list[TeamMemberIn], Field(max_length=1000)] = []
    queues: Annotated[list[QueueName], Field(max_length=200)] = []


class TeamPatch(_Body):
    name: Annotated[CleanText, Field(min_length=1, max_length=200)] | None = None
    members: Annotated[list[TeamMemberIn], Field(max_length=1000)] | None = None
    queues: Annotated[list[QueueName], Field(max_length=200)] | None = None


class GroupIn(_Body):
    agent_ids: Annotated[list[DbId], Field(max_length=1000)]
    penalty: Annotated[int, Field(ge=0, le=1000)] = 0


# --- admin: rules, tokens, webhooks ----------------------------------------------------------


class RulesText(_Body):
    text: Annotated[str, Field(max_length=2_000_000)]


class TokenIn(_Body):
    name: Annotated[CleanText, Field(min_length=1, max_length=200)]
    role: Role
    agent_id: DbId | None = None
    expires_days: Annotated[float, Field(gt=0, le=3650)] | None = None


class WebhookIn(_Body):
    url: HttpUrl
    kinds: Annotated[list[NotificationKind], Field(min_length=1, max_length=len(get_args(NotificationKind)))] = [
        "screen_pop", "call_ended"]
    secret: Annotated[str, Field(min_length=16, max_length=200)] | None = Field(
        default=None, description="HMAC key; generated (and returned once) if absent")
    active: bool = True
    team_id: DbId | None = Field(
        default=None, description="only the notifications this team's supervisors get on the event stream; "
                                  "required for supervisors (their own teams); none: all teams (admins only)")


class AuditQuery(BaseModel):
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    action: Annotated[str, Field(max_length=40)] | None = None
    before_id: DbId | None = None


# --- CRM, callbacks ----------------------------------------------------------------------------


class PhoneIn(_Body):
    number: Annotated[str, Field(min_length=3, max_length=40)]
    label: Annotated[CleanText, Field(max_length=40)] | None = None


class CustomerIn(_Body):
    name: Annotated[CleanText, Field(min_length=1, max_length=200)]
    tier: Annotated[str, Field(min_length=1, max_length=40)] = "standard"
    segment: Annotated[CleanText, Field(max_length=80)] | None = None
    language: Annotated[str, Field(max_length=16)] | None = None
    tags: Annotated[list[Annotated[CleanText, Field(max_length=60)]], Field(max_length=50)] = []
    stage: Annotated[CleanText, Field(max_length=40)] | None = None
    notes: Annotated[str, Field(max_length=10_000)] | None = None
    do_not_call: bool = False
    assigned_agent_id: DbId | None = None
    phones: Annotated[list[PhoneIn], Field(max_length=20)] = []


class CustomerPatch(_Body):
    name: Annotated[CleanText, Field(min_length=1, max_length=200)] | None = None
    tier: Annotated[str, Field(min_length=1, max_length=40)] | None = None
    segment: Annotated[CleanText, Field(max_length=80)] | None = None
    language: Annotated[str, Field(max_length=16)] | None = None
    tags: Annotated[list[Annotated[CleanText, Field(max_length=60)]], Field(max_length=50)] | None = None
    stage: Annotated[CleanText, Field(max_length=40)] | None = None
    notes: Annotated[str, Field(max_length=10_000)] | None = None
    do_not_call: bool | None = None
    assigned_agent_id: DbId | None = None
    phones: Annotated[list[PhoneIn], Field(max_length=20)] | None = None


class CustomerQuery(BaseModel):
    phone: Annotated[str, Field(min_length=1, max_length=40)] | None = None
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 20


class CustomerCardQuery(BaseModel):
    history: Annotated[int, Field(ge=0, le=200)] = 20
    surveys: Annotated[int, Field(ge=0, le=200)] = Field(
        default=10, description="how many recent survey scores (newest first)")


class CallbackIn(_Body):
    phone: Annotated[str, Field(min_length=3, max_length=40)]
    name: Annotated[CleanText, Field(max_length=200)] | None = None
    topic: Annotated[CleanText, Field(max_length=500)] | None = None
    queue: QueueName | None = None
    preferred_at: AwareDatetime | None = Field(default=None, description="when to call back (default: now)")


class CallbackQuery(BaseModel):
    status: Literal["open", "scheduled", "dialing", "completed", "failed", "canceled", "expired"] | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 100


# --- reports -------------------------------------------------------------------------------------


class _ReportQuery(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    start: datetime = Field(alias="from", description="period start, inclusive (ISO; without offset: in tz)")
    end: datetime = Field(alias="to", description="period end, exclusive")
    queue: QueueName | None = None
    tz: Annotated[str, Field(max_length=64)] = "UTC"
    format: Literal["json", "csv"] | None = Field(default=None, description="default: from the Accept header")


class KpiQuery(_ReportQuery):
    by: Literal["day", "hour", "total"] = "day"
    sl_seconds: Annotated[float, Field(ge=0, le=86400)] = 20.0
    short_abandon_s: Annotated[float, Field(ge=0, le=86400)] | None = None


class AbandonsQuery(_ReportQuery):
    stage: list[Literal["pre_answer", "ivr", "queue", "ringing"]] | None = None
    by_node: bool = False
    exclude_short: bool = False
    sl_seconds: Annotated[float, Field(ge=0, le=86400)] = 20.0
    short_abandon_s: Annotated[float, Field(ge=0, le=86400)] | None = None
    limit: Annotated[int, Field(ge=1, le=100_000)] | None = None


class AgentsReportQuery(_ReportQuery):
    agent: Annotated[str, Field(pattern=ENDPOINT, max_length=200)] | None = None
    by: Literal["day", "total"] = "day"


class NpsReportQuery(_ReportQuery):
    by: Literal["queue", "agent", "team", "period", "total"] = "queue"
    period: Literal["day", "week", "month"] = Field(default="day", description="the period of by=period")
    agent: Annotated[str, Field(pattern=ENDPOINT, max_length=200)] | None = Field(
        default=None, description="only this agent's responses (PBX interface, e.g. PJSIP/1001)")


class CallbacksReportQuery(_ReportQuery):
    by: Literal["period", "queue", "period_queue", "total"] = "period"
    period: Literal["day", "week", "month"] = Field(default="day", description="the period of by=period|period_queue")
    deadline_minutes: Annotated[float, Field(gt=0, le=525_600)] | None = Field(
        default=None, description="deadline of requests filed without their own (default: the callback policy's, 120)")


# --- live, events ---------------------------------------------------------------------------


class LiveQuery(BaseModel):
    queue: QueueName | None = None


class EventsQuery(BaseModel):
    kinds: list[NotificationKind] | None = Field(default=None, description="comma-separated or repeated")
    queue: QueueName | None = None
    agent: Annotated[str, Field(pattern=ENDPOINT, max_length=200)] | None = Field(
        default=None, description="agent interface, e.g. PJSIP/1001")
    snapshot: bool = Field(default=True, description="start with a 'snapshot' event of the live state in scope")
