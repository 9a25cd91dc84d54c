"""Survey indexes; webhooks scoped to a team

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

- ``ix_survey_responses_customer_at``: ``(customer_id, at DESC, id DESC)``, the customer card's
  newest scores (``WHERE customer_id = :id ORDER BY at DESC, id DESC LIMIT n``) read in index
  order, without sorting the customer's responses.
- ``ix_survey_responses_at``: ``(at)``, the NPS reports' period (``at >= :start AND at < :end``).
- ``webhooks.team_id``: a receiver of one team gets only the notifications that team's
  supervisors get on the event stream; NULL (the existing receivers) keeps all teams. Deleting
  the team deletes its receivers.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_survey_responses_customer_at', 'survey_responses',
                    ['customer_id', sa.literal_column('at DESC'), sa.literal_column('id DESC')], unique=False)
    op.create_index('ix_survey_responses_at', 'survey_responses', ['at'], unique=False)
    op.add_column('webhooks', sa.Column(
        'team_id', sa.BigInteger(), nullable=True,
        comment="only the notifications this team's supervisors get on the event stream; NULL: all teams"))
    op.create_foreign_key(op.f('fk_webhooks_team_id_teams'), 'webhooks', 'teams', ['team_id'], ['id'],
                          ondelete='CASCADE')


def downgrade() -> None:
    op.drop_constraint(op.f('fk_webhooks_team_id_teams'), 'webhooks', type_='foreignkey')
    op.drop_column('webhooks', 'team_id')
    op.drop_index('ix_survey_responses_at', table_name='survey_responses')
    op.drop_index('ix_survey_responses_customer_at', table_name='survey_responses')
