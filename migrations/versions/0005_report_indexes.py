"""Report indexes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

- ``ix_calls_abandoned_entered_at``: partial index of the abandoned calls by ``entered_at``
  (the abandons listing reads only those).
- ``ix_call_events_kind_at_agent``: ``(kind, at)`` with ``agent`` included, so the agents report
  counts a period's rings, answers and missed/canceled rings per agent by an index-only scan.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_calls_abandoned_entered_at', 'calls', ['entered_at'], unique=False,
                    postgresql_where=sa.text("outcome = 'abandoned'"))
    op.create_index('ix_call_events_kind_at_agent', 'call_events', ['kind', 'at'], unique=False,
                    postgresql_include=['agent'])


def downgrade() -> None:
    op.drop_index('ix_call_events_kind_at_agent', table_name='call_events', postgresql_include=['agent'])
    op.drop_index('ix_calls_abandoned_entered_at', table_name='calls',
                  postgresql_where=sa.text("outcome = 'abandoned'"))
