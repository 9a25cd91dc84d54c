"""API: team queues (supervisor scope), agent groups (overflow), agent forwarding, webhooks

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

- ``team_queues``: the queues a team owns. A supervisor acts on the calls waiting in the
  queues of the teams they supervise (and on those teams' agents).
- ``agent_groups`` / ``agent_group_members``: named groups of agents a supervisor adds to a
  queue as overflow helpers (one queue member per agent endpoint on the queue's PBX, with the
  group's penalty).
- ``agent_forwards``: an agent forwarded to their mobile (``agents.mobile``): whether it is on,
  the queue member interface standing for the mobile, and the queues it was added to (so that
  turning it off removes exactly those memberships).
- ``webhooks``: URLs that receive screen pops and call ends, signed with their own secret.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('team_queues',
    sa.Column('team_id', sa.BigInteger(), nullable=False),
    sa.Column('queue', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_team_queues_team_id_teams'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('team_id', 'queue', name=op.f('pk_team_queues'))
    )
    op.create_index(op.f('ix_team_queues_queue'), 'team_queues', ['queue'], unique=False)
    op.create_table('agent_groups',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('penalty', sa.Integer(), server_default=sa.text('0'), nullable=False,
              comment='queue member penalty of the members when added as overflow'),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agent_groups')),
    sa.UniqueConstraint('name', name=op.f('uq_agent_groups_name'))
    )
    op.create_table('agent_group_members',
    sa.Column('group_id', sa.BigInteger(), nullable=False),
    sa.Column('agent_id', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_agent_group_members_agent_id_agents'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['group_id'], ['agent_groups.id'],
                            name=op.f('fk_agent_group_members_group_id_agent_groups'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('group_id', 'agent_id', name=op.f('pk_agent_group_members'))
    )
    op.create_index(op.f('ix_agent_group_members_agent_id'), 'agent_group_members', ['agent_id'], unique=False)
    op.create_table('agent_forwards',
    sa.Column('agent_id', sa.BigInteger(), nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('interface', sa.Text(), nullable=True, comment='queue member standing for the mobile'),
    sa.Column('queues', postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'::text[]"), nullable=False,
              comment='pbx/queue pairs the interface was added to'),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_agent_forwards_agent_id_agents'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('agent_id', name=op.f('pk_agent_forwards'))
    )
    op.create_table('webhooks',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('secret', sa.Text(), nullable=False, comment='HMAC-SHA256 key of the signature header'),
    sa.Column('kinds', postgresql.ARRAY(sa.Text()), server_default=sa.text("'{screen_pop,call_ended}'::text[]"),
              nullable=False),
    sa.Column('active', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhooks'))
    )


def downgrade() -> None:
    op.drop_table('webhooks')
    op.drop_table('agent_forwards')
    op.drop_index(op.f('ix_agent_group_members_agent_id'), table_name='agent_group_members')
    op.drop_table('agent_group_members')
    op.drop_table('agent_groups')
    op.drop_index(op.f('ix_team_queues_queue'), table_name='team_queues')
    op.drop_table('team_queues')
