"""ORM classes of migration 0004 (callback attempts and escalations), on the shared ``Base``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Integer, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from callcenter.storage.models import TS, Base

ATTEMPT_RESULTS = ("agent_no_answer", "customer_no_answer", "busy", "completed", "failed")


class CallbackAttempt(Base):
    """One try at a callback: which agent, when, the outbound call and how it ended."""

    __tablename__ = "callback_attempts"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    callback_id: Mapped[int] = mapped_column(ForeignKey("callbacks.id", ondelete="CASCADE"), nullable=False)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
    started_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    ended_at: Mapped[datetime | None] = mapped_column(TS)
    agent: Mapped[str] = mapped_column(Text, nullable=False, comment="PBX interface rung first")
    command_id: Mapped[str | None] = mapped_column(Text, comment="Originate command id (OriginateResult)")
    call_id: Mapped[str | None] = mapped_column(Text, index=True, comment="the outbound call")
    result: Mapped[str | None] = mapped_column(Text, comment="NULL while the attempt is in progress")
    __table_args__ = (
        UniqueConstraint("callback_id", "attempt"),
        CheckConstraint(
            "result IS NULL OR result IN ('agent_no_answer', 'customer_no_answer', 'busy', 'completed', 'failed')",
            name="result",
        ),
        CheckConstraint("(ended_at IS NULL) = (result IS NULL)", name="ended_with_result"),
    )


class CallbackEscalation(Base):
    """An escalation sent for a request (once per reason: overdue, expired, attempts_exhausted)."""

    __tablename__ = "callback_escalations"
    callback_id: Mapped[int] = mapped_column(ForeignKey("callbacks.id", ondelete="CASCADE"), primary_key=True)
    reason: Mapped[str] = mapped_column(Text, primary_key=True)
    at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
