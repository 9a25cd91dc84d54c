"""Database schema (PostgreSQL only). Alembic migrations in ``migrations/`` must match it:
a test runs autogenerate against a migrated database and expects no difference.

Time columns are ``timestamptz``. ``call_events`` is append-only; its key ``(call_id, seq, at)``
is the idempotency key (a replayed write never duplicates a step) and includes ``at`` so the
table can be range-partitioned by month without changing keys: a step's ``at`` is the PBX
time of the event that produced it and never changes for a given ``(call_id, seq)``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

OUTCOMES = ("answered", "abandoned", "callback", "closed", "voicemail", "failed")
ABANDON_STAGES = ("pre_answer", "ivr", "queue", "ringing")
HANGUP_PARTIES = ("caller", "agent", "system", "unknown")
ROLES = ("admin", "supervisor", "analyst", "agent")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


TS = DateTime(timezone=True)


def _now() -> Any:
    return mapped_column(TS, nullable=False, server_default=func.now())


# --- Organisation ------------------------------------------------------------------------


class Agent(Base):
    __tablename__ = "agents"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    extension: Mapped[str | None] = mapped_column(Text)
    mobile: Mapped[str | None] = mapped_column(Text, comment="E.164; used when the agent is forwarded")
    skills: Mapped[dict[str, int]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb"), comment="skill name -> level 1..10"
    )
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    created_at: Mapped[datetime] = _now()


class AgentEndpoint(Base):
    """How an agent is reached on each PBX (Asterisk queue member interface ``PJSIP/1001``,
    FreeSWITCH mod_callcenter agent name)."""

    __tablename__ = "agent_endpoints"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), nullable=False, index=True)
    pbx: Mapped[str] = mapped_column(Text, nullable=False)
    interface: Mapped[str] = mapped_column(Text, nullable=False)
    __table_args__ = (UniqueConstraint("pbx", "interface", name="uq_agent_endpoints_pbx_interface"),)


class Team(Base):
    __tablename__ = "teams"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    created_at: Mapped[datetime] = _now()


class TeamMember(Base):
    __tablename__ = "team_members"
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'agent'"))
    __table_args__ = (CheckConstraint("role IN ('agent', 'supervisor')", name="role"),)


# --- CRM ---------------------------------------------------------------------------------


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    tier: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'standard'"))
    segment: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, server_default=text("'{}'::text[]"))
    assigned_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"), index=True)
    stage: Mapped[str | None] = mapped_column(Text, comment="pipeline stage, e.g. lead, customer, churned")
    notes: Mapped[str | None] = mapped_column(Text)
    do_not_call: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    __table_args__ = (
        Index("ix_customers_lower_name", func.lower(text("name")), postgresql_ops={"lower(name)": "text_pattern_ops"}),
        Index("ix_customers_tier", "tier"),
    )


class CustomerPhone(Base):
    __tablename__ = "customer_phones"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), nullable=False, index=True
    )
    e164: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    label: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (CheckConstraint("e164 ~ '^\\+[1-9][0-9]{1,14}$'", name="e164"),)


class Interaction(Base):
    """Every contact with a customer, whatever the channel ("every contact is recorded in one base")."""

    __tablename__ = "interactions"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), nullable=False)
    at: Mapped[datetime] = _now()
    channel: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'phone'"))
    direction: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'inbound'"))
    call_id: Mapped[str | None] = mapped_column(Text, index=True)
    outcome: Mapped[str | None] = mapped_column(Text)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    summary: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (
        CheckConstraint("direction IN ('inbound', 'outbound')", name="direction"),
        Index("ix_interactions_customer_at", "customer_id", text("at DESC")),
    )


# --- Calls -------------------------------------------------------------------------------


class Call(Base):
    """One summary row per call, written when the call ends (see docs/analytics.md)."""

    __tablename__ = "calls"
    call_id: Mapped[str] = mapped_column(Text, primary_key=True)
    pbx: Mapped[str] = mapped_column(Text, nullable=False)
    caller: Mapped[str | None] = mapped_column(Text)
    did: Mapped[str | None] = mapped_column(Text)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    vip: Mapped[bool | None] = mapped_column(Boolean)
    entered_at: Mapped[datetime] = mapped_column(TS, nullable=False)
    answered_at: Mapped[datetime | None] = mapped_column(TS)
    ended_at: Mapped[datetime | None] = mapped_column(TS)
    outcome: Mapped[str] = mapped_column(Text, nullable=False)
    abandon_stage: Mapped[str | None] = mapped_column(Text)
    abandon_node: Mapped[str | None] = mapped_column(Text)
    short_abandon: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    answered_via_ivr: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    queue: Mapped[str | None] = mapped_column(Text, comment="last queue the call was in")
    agent: Mapped[str | None] = mapped_column(Text, comment="PBX interface of the agent who answered")
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    ivr_s: Mapped[float | None] = mapped_column(Float)
    queue_wait_s: Mapped[float | None] = mapped_column(Float)
    ring_s: Mapped[float | None] = mapped_column(Float)
    talk_s: Mapped[float | None] = mapped_column(Float)
    stints: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False, server_default=text("'[]'::jsonb"))
    overflows: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    offered_agents: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    missed_rings: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    hung_up_by: Mapped[str | None] = mapped_column(Text)
    repeat_of: Mapped[str | None] = mapped_column(Text, comment="earlier answered call of the same customer")
    first_contact_resolved: Mapped[bool | None] = mapped_column(Boolean)
    rules_version: Mapped[str | None] = mapped_column(Text)
    rule_id: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[datetime] = _now()
    __table_args__ = (
        CheckConstraint(_in("outcome", OUTCOMES), name="outcome"),
        CheckConstraint(f"abandon_stage IS NULL OR {_in('abandon_stage', ABANDON_STAGES)}", name="abandon_stage"),
        CheckConstraint(f"hung_up_by IS NULL OR {_in('hung_up_by', HANGUP_PARTIES)}", name="hung_up_by"),
        CheckConstraint("(outcome = 'abandoned') = (abandon_stage IS NOT NULL)", name="abandon_stage_iff_abandoned"),
        Index("ix_calls_entered_at", "entered_at"),
        Index("ix_calls_queue_entered_at", "queue", "entered_at"),
        Index("ix_calls_customer_entered_at", "customer_id", "entered_at"),
        Index("ix_calls_agent_entered_at", "agent", "entered_at"),
        # The abandons listing reads only the abandoned calls of a period (~16 % of them).
        Index("ix_calls_abandoned_entered_at", "entered_at", postgresql_where=text("outcome = 'abandoned'")),
    )


class CallEvent(Base):
    """Append-only: one row per step of a call's journey."""

    __tablename__ = "call_events"
    call_id: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(TS, primary_key=True, comment="PBX time of the step")
    controller_at: Mapped[datetime] = mapped_column(TS, nullable=False)
    pbx: Mapped[str] = mapped_column(Text, nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    ivr_node: Mapped[str | None] = mapped_column(Text)
    queue: Mapped[str | None] = mapped_column(Text)
    agent: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    rules_version: Mapped[str | None] = mapped_column(Text)
    rule_id: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (
        Index("ix_call_events_at", "at"),
        Index("ix_call_events_kind_at", "kind", "at"),
        # The agents report counts a period's steps per agent from this index alone (index-only scan).
        Index("ix_call_events_kind_at_agent", "kind", "at", postgresql_include=["agent"]),
    )


class AgentStateEvent(Base):
    """Append-only: agent status, pause (with reason) and queue membership changes."""

    __tablename__ = "agent_state_events"
    event_key: Mapped[Any] = mapped_column(UUID(as_uuid=True), primary_key=True)
    at: Mapped[datetime] = mapped_column(TS, primary_key=True)
    pbx: Mapped[str] = mapped_column(Text, nullable=False)
    agent: Mapped[str] = mapped_column(Text, nullable=False, comment="PBX interface")
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(Text, nullable=False, comment="status | pause | member")
    status: Mapped[str | None] = mapped_column(Text)
    paused: Mapped[bool | None] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(Text)
    queue: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    __table_args__ = (Index("ix_agent_state_events_agent_at", "agent", "at"),)


# --- Later features (callbacks, surveys, API) ------------------------------------------------


class CallbackRequest(Base):
    __tablename__ = "callbacks"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    call_id: Mapped[str | None] = mapped_column(Text, index=True, comment="call that asked for it, if any")
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    phone: Mapped[str] = mapped_column(Text, nullable=False)
    name: Mapped[str | None] = mapped_column(Text)
    topic: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text, nullable=False, comment="ivr | queue | api | rule")
    queue: Mapped[str | None] = mapped_column(Text)
    responsible_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'open'"))
    due_at: Mapped[datetime] = mapped_column(TS, nullable=False)
    deadline_at: Mapped[datetime | None] = mapped_column(TS)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    last_attempt_at: Mapped[datetime | None] = mapped_column(TS)
    outcome: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    closed_at: Mapped[datetime | None] = mapped_column(TS)
    __table_args__ = (
        CheckConstraint(
            "status IN ('open', 'scheduled', 'dialing', 'completed', 'failed', 'canceled', 'expired')", name="status"
        ),
        CheckConstraint("(closed_at IS NULL) = (outcome IS NULL)", name="closed_with_outcome"),
        Index("ix_callbacks_status_due_at", "status", "due_at"),
    )


class SurveyResponse(Base):
    __tablename__ = "survey_responses"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    call_id: Mapped[str] = mapped_column(Text, nullable=False, index=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    agent: Mapped[str | None] = mapped_column(Text)
    queue: Mapped[str | None] = mapped_column(Text)
    score: Mapped[int | None] = mapped_column(SmallInteger, comment="0..10; NULL when the caller did not answer")
    answered: Mapped[bool] = mapped_column(Boolean, nullable=False)
    at: Mapped[datetime] = _now()
    __table_args__ = (
        CheckConstraint("score IS NULL OR score BETWEEN 0 AND 10", name="score"),
        CheckConstraint("answered = (score IS NOT NULL)", name="answered_has_score"),
        # the customer card's newest scores (ORDER BY at DESC, id DESC LIMIT n); the NPS reports' period
        Index("ix_survey_responses_customer_at", "customer_id", text("at DESC"), text("id DESC")),
        Index("ix_survey_responses_at", "at"),
    )


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    token_hash: Mapped[str] = mapped_column(Text, nullable=False, unique=True, comment="sha256 hex of the token")
    role: Mapped[str] = mapped_column(Text, nullable=False)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime | None] = mapped_column(TS)
    revoked_at: Mapped[datetime | None] = mapped_column(TS)
    last_used_at: Mapped[datetime | None] = mapped_column(TS)
    __table_args__ = (CheckConstraint(_in("role", ROLES), name="role"),)


class AuditLog(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = _now()
    actor_token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(Text, nullable=False)
    role: Mapped[str] = mapped_column(Text, nullable=False)
    action: Mapped[str] = mapped_column(Text, nullable=False, comment="listen | whisper | barge | pause | ...")
    target: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    result: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'pending'"))
    __table_args__ = (Index("ix_audit_log_at", "at"),)


# --- API: scopes, overflow groups, forwarding, webhooks (migration 0003) -------------------


class TeamQueue(Base):
    """Queues a team owns: its supervisors act on the calls waiting there (API scope)."""

    __tablename__ = "team_queues"
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    queue: Mapped[str] = mapped_column(Text, primary_key=True, index=True)


class AgentGroup(Base):
    """A named group of agents a supervisor adds to a queue as overflow helpers."""

    __tablename__ = "agent_groups"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    penalty: Mapped[int] = mapped_column(
        Integer, nullable=False, server_default=text("0"),
        comment="queue member penalty of the members when added as overflow",
    )
    created_at: Mapped[datetime] = _now()


class AgentGroupMember(Base):
    __tablename__ = "agent_group_members"
    group_id: Mapped[int] = mapped_column(ForeignKey("agent_groups.id", ondelete="CASCADE"), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True, index=True)


class AgentForward(Base):
    """An agent forwarded to ``agents.mobile``: the queue member standing for the mobile and the
    queues it was added to."""

    __tablename__ = "agent_forwards"
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    interface: Mapped[str | None] = mapped_column(Text, comment="queue member standing for the mobile")
    queues: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=text("'{}'::text[]"),
        comment="pbx/queue pairs the interface was added to",
    )
    updated_at: Mapped[datetime] = _now()


class Webhook(Base):
    __tablename__ = "webhooks"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    url: Mapped[str] = mapped_column(Text, nullable=False)
    secret: Mapped[str] = mapped_column(Text, nullable=False, comment="HMAC-SHA256 key of the signature header")
    kinds: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=text("'{screen_pop,call_ended}'::text[]")
    )
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    created_at: Mapped[datetime] = _now()
    team_id: Mapped[int | None] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"),
        comment="only the notifications this team's supervisors get on the event stream; NULL: all teams",
    )


# Tables owned by feature packages, declared on the same metadata (migrations compare all of it).
import callcenter.callbacks  # noqa: E402,F401
