"""Callbacks: one row per attempt, escalations sent

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

- ``callback_attempts``: every try at a callback request (agent rung first, the outbound
  call, its result), linked to the request and through it to the call that asked for it.
  ``result`` is NULL while the attempt is in progress; ``ended_at`` is set iff ``result`` is.
- ``callback_escalations``: the escalations already published for a request, at most one per
  reason (overdue, expired, attempts_exhausted), so a restart never repeats or forgets one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('callback_attempts',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('callback_id', sa.BigInteger(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('agent', sa.Text(), nullable=False, comment='PBX interface rung first'),
    sa.Column('command_id', sa.Text(), nullable=True, comment='Originate command id (OriginateResult)'),
    sa.Column('call_id', sa.Text(), nullable=True, comment='the outbound call'),
    sa.Column('result', sa.Text(), nullable=True, comment='NULL while the attempt is in progress'),
    sa.CheckConstraint(
        "result IS NULL OR result IN ('agent_no_answer', 'customer_no_answer', 'busy', 'completed', 'failed')",
        name=op.f('ck_callback_attempts_result')),
    sa.CheckConstraint('(ended_at IS NULL) = (result IS NULL)', name=op.f('ck_callback_attempts_ended_with_result')),
    sa.ForeignKeyConstraint(['callback_id'], ['callbacks.id'], name=op.f('fk_callback_attempts_callback_id_callbacks'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_callback_attempts')),
    sa.UniqueConstraint('callback_id', 'attempt', name=op.f('uq_callback_attempts_callback_id'))
    )
    op.create_index(op.f('ix_callback_attempts_call_id'), 'callback_attempts', ['call_id'], unique=False)
    op.create_table('callback_escalations',
    sa.Column('callback_id', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['callback_id'], ['callbacks.id'],
                            name=op.f('fk_callback_escalations_callback_id_callbacks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('callback_id', 'reason', name=op.f('pk_callback_escalations'))
    )


def downgrade() -> None:
    op.drop_table('callback_escalations')
    op.drop_index(op.f('ix_callback_attempts_call_id'), table_name='callback_attempts')
    op.drop_table('callback_attempts')
