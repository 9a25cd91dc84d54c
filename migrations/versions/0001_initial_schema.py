"""initial schema: CRM, organisation, calls, events, callbacks, surveys, API tokens, audit

Revision ID: 0001
Revises: 
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('agents',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('extension', sa.Text(), nullable=True),
    sa.Column('mobile', sa.Text(), nullable=True, comment='E.164; used when the agent is forwarded'),
    sa.Column('skills', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False, comment='skill name -> level 1..10'),
    sa.Column('active', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agents'))
    )
    op.create_table('call_events',
    sa.Column('call_id', sa.Text(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False, comment='PBX time of the step'),
    sa.Column('controller_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('pbx', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('ivr_node', sa.Text(), nullable=True),
    sa.Column('queue', sa.Text(), nullable=True),
    sa.Column('agent', sa.Text(), nullable=True),
    sa.Column('detail', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('rules_version', sa.Text(), nullable=True),
    sa.Column('rule_id', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('call_id', 'seq', 'at', name=op.f('pk_call_events'))
    )
    op.create_index('ix_call_events_at', 'call_events', ['at'], unique=False)
    op.create_index('ix_call_events_kind_at', 'call_events', ['kind', 'at'], unique=False)
    op.create_table('teams',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_teams')),
    sa.UniqueConstraint('name', name=op.f('uq_teams_name'))
    )
    op.create_table('agent_endpoints',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('agent_id', sa.BigInteger(), nullable=False),
    sa.Column('pbx', sa.Text(), nullable=False),
    sa.Column('interface', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_agent_endpoints_agent_id_agents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agent_endpoints')),
    sa.UniqueConstraint('pbx', 'interface', name='uq_agent_endpoints_pbx_interface')
    )
    op.create_index(op.f('ix_agent_endpoints_agent_id'), 'agent_endpoints', ['agent_id'], unique=False)
    op.create_table('agent_state_events',
    sa.Column('event_key', sa.UUID(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('pbx', sa.Text(), nullable=False),
    sa.Column('agent', sa.Text(), nullable=False, comment='PBX interface'),
    sa.Column('agent_id', sa.BigInteger(), nullable=True),
    sa.Column('kind', sa.Text(), nullable=False, comment='status | pause | member'),
    sa.Column('status', sa.Text(), nullable=True),
    sa.Column('paused', sa.Boolean(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('queue', sa.Text(), nullable=True),
    sa.Column('detail', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_agent_state_events_agent_id_agents'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('event_key', 'at', name=op.f('pk_agent_state_events'))
    )
    op.create_index('ix_agent_state_events_agent_at', 'agent_state_events', ['agent', 'at'], unique=False)
    op.create_table('api_tokens',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('token_hash', sa.Text(), nullable=False, comment='sha256 hex of the token'),
    sa.Column('role', sa.Text(), nullable=False),
    sa.Column('agent_id', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("role IN ('admin', 'supervisor', 'analyst', 'agent')", name=op.f('ck_api_tokens_role')),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_api_tokens_agent_id_agents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash'))
    )
    op.create_table('customers',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('tier', sa.Text(), server_default=sa.text("'standard'"), nullable=False),
    sa.Column('segment', sa.Text(), nullable=True),
    sa.Column('language', sa.Text(), nullable=True),
    sa.Column('tags', postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'::text[]"), nullable=False),
    sa.Column('assigned_agent_id', sa.BigInteger(), nullable=True),
    sa.Column('stage', sa.Text(), nullable=True, comment='pipeline stage, e.g. lead, customer, churned'),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('do_not_call', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['assigned_agent_id'], ['agents.id'], name=op.f('fk_customers_assigned_agent_id_agents'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customers'))
    )
    op.create_index(op.f('ix_customers_assigned_agent_id'), 'customers', ['assigned_agent_id'], unique=False)
    op.create_index('ix_customers_lower_name', 'customers', [sa.literal_column('lower(name)')], unique=False, postgresql_ops={'lower(name)': 'text_pattern_ops'})
    op.create_index('ix_customers_tier', 'customers', ['tier'], unique=False)
    op.create_table('team_members',
    sa.Column('team_id', sa.BigInteger(), nullable=False),
    sa.Column('agent_id', sa.BigInteger(), nullable=False),
    sa.Column('role', sa.Text(), server_default=sa.text("'agent'"), nullable=False),
    sa.CheckConstraint("role IN ('agent', 'supervisor')", name=op.f('ck_team_members_role')),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_team_members_agent_id_agents'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_team_members_team_id_teams'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('team_id', 'agent_id', name=op.f('pk_team_members'))
    )
    op.create_index(op.f('ix_team_members_agent_id'), 'team_members', ['agent_id'], unique=False)
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('actor_token_id', sa.BigInteger(), nullable=True),
    sa.Column('actor', sa.Text(), nullable=False),
    sa.Column('role', sa.Text(), nullable=False),
    sa.Column('action', sa.Text(), nullable=False, comment='listen | whisper | barge | pause | ...'),
    sa.Column('target', sa.Text(), nullable=True),
    sa.Column('detail', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('result', sa.Text(), server_default=sa.text("'pending'"), nullable=False),
    sa.ForeignKeyConstraint(['actor_token_id'], ['api_tokens.id'], name=op.f('fk_audit_log_actor_token_id_api_tokens'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    op.create_index('ix_audit_log_at', 'audit_log', ['at'], unique=False)
    op.create_table('callbacks',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('call_id', sa.Text(), nullable=True, comment='call that asked for it, if any'),
    sa.Column('customer_id', sa.BigInteger(), nullable=True),
    sa.Column('phone', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('topic', sa.Text(), nullable=True),
    sa.Column('source', sa.Text(), nullable=False, comment='ivr | queue | api | rule'),
    sa.Column('queue', sa.Text(), nullable=True),
    sa.Column('responsible_agent_id', sa.BigInteger(), nullable=True),
    sa.Column('status', sa.Text(), server_default=sa.text("'open'"), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deadline_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('last_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('open', 'scheduled', 'dialing', 'completed', 'failed', 'canceled', 'expired')", name=op.f('ck_callbacks_status')),
    sa.CheckConstraint('(closed_at IS NULL) = (outcome IS NULL)', name=op.f('ck_callbacks_closed_with_outcome')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_callbacks_customer_id_customers'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['responsible_agent_id'], ['agents.id'], name=op.f('fk_callbacks_responsible_agent_id_agents'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_callbacks'))
    )
    op.create_index(op.f('ix_callbacks_call_id'), 'callbacks', ['call_id'], unique=False)
    op.create_index('ix_callbacks_status_due_at', 'callbacks', ['status', 'due_at'], unique=False)
    op.create_table('calls',
    sa.Column('call_id', sa.Text(), nullable=False),
    sa.Column('pbx', sa.Text(), nullable=False),
    sa.Column('caller', sa.Text(), nullable=True),
    sa.Column('did', sa.Text(), nullable=True),
    sa.Column('customer_id', sa.BigInteger(), nullable=True),
    sa.Column('vip', sa.Boolean(), nullable=True),
    sa.Column('entered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.Text(), nullable=False),
    sa.Column('abandon_stage', sa.Text(), nullable=True),
    sa.Column('abandon_node', sa.Text(), nullable=True),
    sa.Column('short_abandon', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('answered_via_ivr', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('queue', sa.Text(), nullable=True, comment='last queue the call was in'),
    sa.Column('agent', sa.Text(), nullable=True, comment='PBX interface of the agent who answered'),
    sa.Column('agent_id', sa.BigInteger(), nullable=True),
    sa.Column('ivr_s', sa.Float(), nullable=True),
    sa.Column('queue_wait_s', sa.Float(), nullable=True),
    sa.Column('ring_s', sa.Float(), nullable=True),
    sa.Column('talk_s', sa.Float(), nullable=True),
    sa.Column('stints', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.Column('overflows', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('offered_agents', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('missed_rings', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('hung_up_by', sa.Text(), nullable=True),
    sa.Column('repeat_of', sa.Text(), nullable=True, comment='earlier answered call of the same customer'),
    sa.Column('first_contact_resolved', sa.Boolean(), nullable=True),
    sa.Column('rules_version', sa.Text(), nullable=True),
    sa.Column('rule_id', sa.Text(), nullable=True),
    sa.Column('recorded_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("(outcome = 'abandoned') = (abandon_stage IS NOT NULL)", name=op.f('ck_calls_abandon_stage_iff_abandoned')),
    sa.CheckConstraint("abandon_stage IS NULL OR abandon_stage IN ('pre_answer', 'ivr', 'queue', 'ringing')", name=op.f('ck_calls_abandon_stage')),
    sa.CheckConstraint("hung_up_by IS NULL OR hung_up_by IN ('caller', 'agent', 'system', 'unknown')", name=op.f('ck_calls_hung_up_by')),
    sa.CheckConstraint("outcome IN ('answered', 'abandoned', 'callback', 'closed', 'voicemail', 'failed')", name=op.f('ck_calls_outcome')),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_calls_agent_id_agents'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_calls_customer_id_customers'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('call_id', name=op.f('pk_calls'))
    )
    op.create_index('ix_calls_agent_entered_at', 'calls', ['agent', 'entered_at'], unique=False)
    op.create_index('ix_calls_customer_entered_at', 'calls', ['customer_id', 'entered_at'], unique=False)
    op.create_index('ix_calls_entered_at', 'calls', ['entered_at'], unique=False)
    op.create_index('ix_calls_queue_entered_at', 'calls', ['queue', 'entered_at'], unique=False)
    op.create_table('customer_phones',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('e164', sa.Text(), nullable=False),
    sa.Column('label', sa.Text(), nullable=True),
    sa.CheckConstraint("e164 ~ '^\\+[1-9][0-9]{1,14}$'", name=op.f('ck_customer_phones_e164')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_phones_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_phones')),
    sa.UniqueConstraint('e164', name=op.f('uq_customer_phones_e164'))
    )
    op.create_index(op.f('ix_customer_phones_customer_id'), 'customer_phones', ['customer_id'], unique=False)
    op.create_table('interactions',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('channel', sa.Text(), server_default=sa.text("'phone'"), nullable=False),
    sa.Column('direction', sa.Text(), server_default=sa.text("'inbound'"), nullable=False),
    sa.Column('call_id', sa.Text(), nullable=True),
    sa.Column('outcome', sa.Text(), nullable=True),
    sa.Column('agent_id', sa.BigInteger(), nullable=True),
    sa.Column('summary', sa.Text(), nullable=True),
    sa.CheckConstraint("direction IN ('inbound', 'outbound')", name=op.f('ck_interactions_direction')),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_interactions_agent_id_agents'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_interactions_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_interactions'))
    )
    op.create_index(op.f('ix_interactions_call_id'), 'interactions', ['call_id'], unique=False)
    op.create_index('ix_interactions_customer_at', 'interactions', ['customer_id', sa.literal_column('at DESC')], unique=False)
    op.create_table('survey_responses',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('call_id', sa.Text(), nullable=False),
    sa.Column('customer_id', sa.BigInteger(), nullable=True),
    sa.Column('agent', sa.Text(), nullable=True),
    sa.Column('queue', sa.Text(), nullable=True),
    sa.Column('score', sa.SmallInteger(), nullable=True, comment='0..10; NULL when the caller did not answer'),
    sa.Column('answered', sa.Boolean(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('answered = (score IS NOT NULL)', name=op.f('ck_survey_responses_answered_has_score')),
    sa.CheckConstraint('score IS NULL OR score BETWEEN 0 AND 10', name=op.f('ck_survey_responses_score')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_survey_responses_customer_id_customers'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_survey_responses'))
    )
    op.create_index(op.f('ix_survey_responses_call_id'), 'survey_responses', ['call_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_survey_responses_call_id'), table_name='survey_responses')
    op.drop_table('survey_responses')
    op.drop_index('ix_interactions_customer_at', table_name='interactions')
    op.drop_index(op.f('ix_interactions_call_id'), table_name='interactions')
    op.drop_table('interactions')
    op.drop_index(op.f('ix_customer_phones_customer_id'), table_name='customer_phones')
    op.drop_table('customer_phones')
    op.drop_index('ix_calls_queue_entered_at', table_name='calls')
    op.drop_index('ix_calls_entered_at', table_name='calls')
    op.drop_index('ix_calls_customer_entered_at', table_name='calls')
    op.drop_index('ix_calls_agent_entered_at', table_name='calls')
    op.drop_table('calls')
    op.drop_index('ix_callbacks_status_due_at', table_name='callbacks')
    op.drop_index(op.f('ix_callbacks_call_id'), table_name='callbacks')
    op.drop_table('callbacks')
    op.drop_index('ix_audit_log_at', table_name='audit_log')
    op.drop_table('audit_log')
    op.drop_index(op.f('ix_team_members_agent_id'), table_name='team_members')
    op.drop_table('team_members')
    op.drop_index('ix_customers_tier', table_name='customers')
    op.drop_index('ix_customers_lower_name', table_name='customers', postgresql_ops={'lower(name)': 'text_pattern_ops'})
    op.drop_index(op.f('ix_customers_assigned_agent_id'), table_name='customers')
    op.drop_table('customers')
    op.drop_table('api_tokens')
    op.drop_index('ix_agent_state_events_agent_at', table_name='agent_state_events')
    op.drop_table('agent_state_events')
    op.drop_index(op.f('ix_agent_endpoints_agent_id'), table_name='agent_endpoints')
    op.drop_table('agent_endpoints')
    op.drop_table('teams')
    op.drop_index('ix_call_events_kind_at', table_name='call_events')
    op.drop_index('ix_call_events_at', table_name='call_events')
    op.drop_table('call_events')
    op.drop_table('agents')
