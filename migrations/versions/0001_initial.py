"""Initial schema: every bot, rag and crm table.

Adopts a database made by the old `create_all` (before migrations existed): a table that is
already there is left as it is, so such a database upgrades cleanly without a manual stamp.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None
# what this revision creates (a database made by create_all before migrations holds some of these)
TABLES = ("audit", "crm_account", "crm_activity", "crm_contact", "crm_external_id", "crm_health_day", "crm_nudge_log",
          "crm_opportunity", "crm_stage_change", "crm_store", "crm_store_visit", "crm_sync_delivery", "crm_sync_event",
          "crm_sync_sink", "crm_task", "crm_team", "crm_write", "identity", "inbox", "kb_chunk", "kb_document", "kb_feedback",
          "kb_state", "kb_use", "kb_version", "lease", "model_usage", "outbound", "pending_user", "rep")

def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())

    def _table(name: str, *columns, indexes=()) -> None:  # noqa: ANN002
        if name in existing:
            return
        op.create_table(name, *columns)
        for ix in indexes:
            op.create_index(ix[0], name, ix[1], unique=len(ix) > 2 and ix[2])

    _table('audit', sa.Column('id', sa.Integer(), nullable=False), sa.Column('at', sa.DateTime(timezone=True), nullable=False),
           sa.Column('tenant', sa.String(length=64), nullable=False), sa.Column('actor', sa.String(length=64), nullable=False),
           sa.Column('kind', sa.String(length=32), nullable=False), sa.Column('name', sa.String(length=64), nullable=False),
           sa.Column('detail', sa.Text(), nullable=False), sa.PrimaryKeyConstraint('id'), indexes=[('ix_audit_actor', ['actor']),
           ('ix_audit_at', ['at']), ('ix_audit_kind', ['kind'])])
    _table('crm_account', sa.Column('tenant', sa.String(length=64), nullable=False), sa.Column('id', sa.String(length=64), nullable=False),
           sa.Column('name', sa.String(length=200), nullable=False), sa.Column('aliases', sa.Text(), nullable=False),
           sa.Column('industry', sa.String(length=64), nullable=False), sa.Column('region', sa.String(length=64), nullable=False),
           sa.Column('owner_id', sa.String(length=64), nullable=False), sa.Column('domain', sa.String(length=200), nullable=False),
           sa.Column('tier', sa.String(length=8), nullable=False), sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
           sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False), sa.PrimaryKeyConstraint('tenant', 'id'),
           indexes=[('ix_crm_account_domain', ['domain']), ('ix_crm_account_owner_id', ['owner_id'])])
    _table('crm_activity', sa.Column('tenant', sa.String(length=64), nullable=False),
           sa.Column('id', sa.String(length=64), nullable=False), sa.Column('account_id', sa.String(length=64), nullable=False),
           sa.Column('contact_id', sa.String(length=64), nullable=False),
           sa.Column('opportunity_id', sa.String(length=64), nullable=False), sa.Column('rep_id', sa.String(length=64), nullable=False),
           sa.Column('kind', sa.String(length=16), nullable=False), sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
           sa.Column('summary', sa.Text(), nullable=False), sa.Column('source', sa.String(length=300), nullable=False),
           sa.Column('actor', sa.String(length=64), nullable=False), sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
           sa.PrimaryKeyConstraint('tenant', 'id'), indexes=[('ix_crm_activity_account', ['tenant', 'account_id', 'occurred_at']),
           ('ix_crm_activity_opp', ['tenant', 'opportunity_id', 'occurred_at']),
           ('ix_crm_activity_rep', ['tenant', 'rep_id', 'occurred_at'])])
    _table('crm_contact', sa.Column('tenant', sa.String(length=64), nullable=False), sa.Column('id', sa.String(length=64), nullable=False),
           sa.Column('account_id', sa.String(length=64), nullable=False), sa.Column('name', sa.String(length=120), nullable=False),
           sa.Column('title', sa.String(length=120), nullable=False), sa.Column('email', sa.String(length=200), nullable=False),
           sa.Column('phone', sa.String(length=40), nullable=False), sa.Column('language', sa.String(length=8), nullable=False),
           sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
           sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False), sa.PrimaryKeyConstraint('tenant', 'id'),
           indexes=[('ix_crm_contact_account', ['tenant', 'account_id']), ('ix_crm_contact_email', ['email'])])
    _table('crm_external_id', sa.Column('sink', sa.String(length=64), nullable=False),
           sa.Column('tenant', sa.String(length=64), nullable=False), sa.Column('entity', sa.String(length=32), nullable=False),
           sa.Column('local_id', sa.String(length=64), nullable=False), sa.Column('external_id', sa.String(length=64), nullable=False),
           sa.PrimaryKeyConstraint('sink', 'tenant', 'entity', 'local_id'))
    _table('crm_health_day', sa.Column('tenant', sa.String(length=64), nullable=False),
           sa.Column('rep_id', sa.String(length=64), nullable=False), sa.Column('day', sa.Date(), nullable=False),
           sa.Column('role', sa.String(length=16), nullable=False), sa.Column('score', sa.Float(), nullable=False),
           sa.Column('below', sa.Boolean(), nullable=False), sa.Column('streak', sa.Integer(), nullable=False),
           sa.Column('streak_start', sa.Date(), nullable=True), sa.Column('metrics', sa.Text(), nullable=False),
           sa.Column('computed_at', sa.DateTime(timezone=True), nullable=False), sa.PrimaryKeyConstraint('tenant', 'rep_id', 'day'))
    _table('crm_nudge_log', sa.Column('tenant', sa.String(length=64), nullable=False),
           sa.Column('kind', sa.String(length=32), nullable=False), sa.Column('subject', sa.String(length=64), nullable=False),
           sa.Column('period', sa.String(length=64), nullable=False), sa.Column('recipient', sa.String(length=64), nullable=False),
           sa.Column('tier', sa.Integer(), nullable=False), sa.Column('detail', sa.Text(), nullable=False),
           sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
           sa.PrimaryKeyConstraint('tenant', 'kind', 'subject', 'period'),
           indexes=[('ix_crm_nudge_log_recipient', ['tenant', 'recipient', 'created_at'])])
    _table('crm_opportunity', sa.Column('tenant', sa.String(length=64), nullable=False),
           sa.Column('id', sa.String(length=64), nullable=False), sa.Column('account_id', sa.String(length=64), nullable=False),
           sa.Column('name', sa.String(length=300), nullable=False), sa.Column('stage', sa.String(length=16), nullable=False),
           sa.Column('amount', sa.Float(), nullable=False), sa.Column('currency', sa.String(length=3), nullable=False),
           sa.Column('close_date', sa.Date(), nullable=True), sa.Column('owner_id', sa.String(length=64), nullable=False),
           sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
           sa.Column('stage_changed_at', sa.DateTime(timezone=True), nullable=False), sa.Column('next_step', sa.Text(), nullable=False),
           sa.Column('competitor', sa.String(length=120), nullable=False),
           sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False), sa.PrimaryKeyConstraint('tenant', 'id'),
           indexes=[('ix_crm_opp_account', ['tenant', 'account_id']), ('ix_crm_opp_owner', ['tenant', 'owner_id', 'stage'])])
    _table('crm_stage_change', sa.Column('id', sa.Integer(), nullable=False), sa.Column('tenant', sa.String(length=64), nullable=False),
           sa.Column('opportunity_id', sa.String(length=64), nullable=False),
           sa.Column('from_stage', sa.String(length=16), nullable=False), sa.Column('to_stage', sa.String(length=16), nullable=False),
           sa.Column('at', sa.DateTime(timezone=True), nullable=False), sa.Column('actor', sa.String(length=64), nullable=False),
           sa.PrimaryKeyConstraint('id'), indexes=[('ix_crm_stage_change_opp', ['tenant', 'opportunity_id'])])
    _table('crm_store', sa.Column('tenant', sa.String(length=64), nullable=False), sa.Column('id', sa.String(length=64), nullable=False),
           sa.Column('name', sa.String(length=200), nullable=False), sa.Column('account_id', sa.String(length=64), nullable=False),
           sa.Column('region', sa.String(length=64), nullable=False), sa.Column('address', sa.String(length=300), nullable=False),
           sa.Column('supervisor_id', sa.String(length=64), nullable=False), sa.PrimaryKeyConstraint('tenant', 'id'),
           indexes=[('ix_crm_store_supervisor_id', ['supervisor_id'])])
    _table('crm_store_visit', sa.Column('tenant', sa.String(length=64), nullable=False),
           sa.Column('id', sa.String(length=64), nullable=False), sa.Column('store_id', sa.String(length=64), nullable=False),
           sa.Column('rep_id', sa.String(length=64), nullable=False), sa.Column('visited_at', sa.DateTime(timezone=True), nullable=False),
           sa.Column('display_ok', sa.Boolean(), nullable=True), sa.Column('stock_issues', sa.Text(), nullable=False),
           sa.Column('competitor_promo', sa.Text(), nullable=False), sa.Column('order_amount', sa.Float(), nullable=True),
           sa.Column('notes', sa.Text(), nullable=False), sa.Column('source', sa.String(length=300), nullable=False),
           sa.Column('actor', sa.String(length=64), nullable=False), sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
           sa.PrimaryKeyConstraint('tenant', 'id'), indexes=[('ix_crm_store_visit_rep', ['tenant', 'rep_id', 'visited_at']),
           ('ix_crm_store_visit_store', ['tenant', 'store_id', 'visited_at'])])
    _table('crm_sync_delivery', sa.Column('event_id', sa.Integer(), nullable=False),
           sa.Column('sink', sa.String(length=64), nullable=False), sa.Column('status', sa.String(length=16), nullable=False),
           sa.Column('attempts', sa.Integer(), nullable=False), sa.Column('not_before', sa.Float(), nullable=False),
           sa.Column('error', sa.Text(), nullable=False), sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
           sa.PrimaryKeyConstraint('event_id', 'sink'), indexes=[('ix_crm_sync_delivery_due', ['sink', 'status', 'event_id'])])
    _table('crm_sync_event', sa.Column('id', sa.Integer(), nullable=False), sa.Column('tenant', sa.String(length=64), nullable=False),
           sa.Column('entity', sa.String(length=32), nullable=False), sa.Column('entity_id', sa.String(length=64), nullable=False),
           sa.Column('op', sa.String(length=16), nullable=False), sa.Column('idempotency_key', sa.String(length=200), nullable=False),
           sa.Column('payload', sa.Text(), nullable=False), sa.Column('actor', sa.String(length=64), nullable=False),
           sa.Column('created_at', sa.DateTime(timezone=True), nullable=False), sa.PrimaryKeyConstraint('id'))
    _table('crm_sync_sink', sa.Column('name', sa.String(length=64), nullable=False), sa.Column('enabled', sa.Boolean(), nullable=False),
           sa.Column('created_at', sa.DateTime(timezone=True), nullable=False), sa.PrimaryKeyConstraint('name'))
    _table('crm_task', sa.Column('tenant', sa.String(length=64), nullable=False), sa.Column('id', sa.String(length=64), nullable=False),
           sa.Column('rep_id', sa.String(length=64), nullable=False), sa.Column('account_id', sa.String(length=64), nullable=False),
           sa.Column('opportunity_id', sa.String(length=64), nullable=False), sa.Column('title', sa.Text(), nullable=False),
           sa.Column('due_at', sa.DateTime(timezone=True), nullable=True), sa.Column('done', sa.Boolean(), nullable=False),
           sa.Column('done_at', sa.DateTime(timezone=True), nullable=True), sa.Column('source', sa.String(length=300), nullable=False),
           sa.Column('actor', sa.String(length=64), nullable=False), sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
           sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False), sa.PrimaryKeyConstraint('tenant', 'id'),
           indexes=[('ix_crm_task_opp', ['tenant', 'opportunity_id']), ('ix_crm_task_rep', ['tenant', 'rep_id', 'done', 'due_at'])])
    _table('crm_team', sa.Column('tenant', sa.String(length=64), nullable=False), sa.Column('id', sa.String(length=64), nullable=False),
           sa.Column('manager_id', sa.String(length=64), nullable=False), sa.Column('parent_id', sa.String(length=64), nullable=False),
           sa.PrimaryKeyConstraint('tenant', 'id'))
    _table('crm_write', sa.Column('tenant', sa.String(length=64), nullable=False), sa.Column('key', sa.String(length=200), nullable=False),
           sa.Column('op', sa.String(length=32), nullable=False), sa.Column('entity', sa.String(length=32), nullable=False),
           sa.Column('entity_id', sa.String(length=64), nullable=False), sa.Column('actor', sa.String(length=64), nullable=False),
           sa.Column('source', sa.String(length=300), nullable=False), sa.Column('at', sa.DateTime(timezone=True), nullable=False),
           sa.Column('result', sa.Text(), nullable=False), sa.PrimaryKeyConstraint('tenant', 'key'),
           indexes=[('ix_crm_write_actor', ['tenant', 'actor', 'at'])])
    _table('identity', sa.Column('id', sa.Integer(), nullable=False), sa.Column('channel', sa.String(length=32), nullable=False),
           sa.Column('tenant', sa.String(length=64), nullable=False), sa.Column('platform_user_id', sa.String(length=200), nullable=False),
           sa.Column('rep_id', sa.String(length=64), nullable=False), sa.PrimaryKeyConstraint('id'),
           sa.UniqueConstraint('channel', 'tenant', 'platform_user_id', name='uq_identity'), indexes=[('ix_identity_rep_id', ['rep_id'])])
    _table('inbox', sa.Column('id', sa.Integer(), nullable=False), sa.Column('channel', sa.String(length=32), nullable=False),
           sa.Column('tenant', sa.String(length=64), nullable=False), sa.Column('platform_msg_id', sa.String(length=200), nullable=False),
           sa.Column('conversation_key', sa.String(length=300), nullable=False), sa.Column('payload', sa.Text(), nullable=False),
           sa.Column('status', sa.String(length=16), nullable=False), sa.Column('attempts', sa.Integer(), nullable=False),
           sa.Column('not_before', sa.Float(), nullable=False), sa.Column('lease_owner', sa.String(length=120), nullable=False),
           sa.Column('lease_until', sa.Float(), nullable=False), sa.Column('error', sa.Text(), nullable=False),
           sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
           sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True), sa.PrimaryKeyConstraint('id'),
           sa.UniqueConstraint('channel', 'tenant', 'platform_msg_id', name='uq_inbox_msg'),
           indexes=[('ix_inbox_conversation_key', ['conversation_key']), ('ix_inbox_status', ['status'])])
    _table('kb_chunk', sa.Column('id', sa.String(length=64), nullable=False), sa.Column('version_id', sa.Integer(), nullable=False),
           sa.Column('document_id', sa.Integer(), nullable=False), sa.Column('tenant', sa.String(length=64), nullable=False),
           sa.Column('ordinal', sa.Integer(), nullable=False), sa.Column('heading', sa.String(), nullable=False),
           sa.Column('kind', sa.String(length=8), nullable=False), sa.Column('text', sa.Text(), nullable=False),
           sa.Column('tokens', sa.Text(), nullable=False), sa.Column('embed_hash', sa.String(length=64), nullable=False),
           sa.PrimaryKeyConstraint('id'), indexes=[('ix_kb_chunk_document_id', ['document_id']), ('ix_kb_chunk_tenant', ['tenant']),
           ('ix_kb_chunk_version_id', ['version_id'])])
    _table('kb_document', sa.Column('id', sa.Integer(), nullable=False), sa.Column('tenant', sa.String(length=64), nullable=False),
           sa.Column('doc_id', sa.String(length=300), nullable=False), sa.Column('live_version_id', sa.Integer(), nullable=True),
           sa.Column('created_at', sa.DateTime(timezone=True), nullable=False), sa.PrimaryKeyConstraint('id'),
           sa.UniqueConstraint('tenant', 'doc_id', name='uq_kb_document'), indexes=[('ix_kb_document_tenant', ['tenant'])])
    _table('kb_feedback', sa.Column('id', sa.Integer(), nullable=False), sa.Column('at', sa.DateTime(timezone=True), nullable=False),
           sa.Column('tenant', sa.String(length=64), nullable=False), sa.Column('document_id', sa.Integer(), nullable=False),
           sa.Column('ref', sa.String(length=64), nullable=False), sa.Column('actor', sa.String(length=64), nullable=False),
           sa.Column('score', sa.Integer(), nullable=False), sa.PrimaryKeyConstraint('id'),
           sa.UniqueConstraint('ref', 'actor', 'document_id', name='uq_kb_feedback'),
           indexes=[('ix_kb_feedback_document_id', ['document_id'])])
    _table('kb_state', sa.Column('tenant', sa.String(length=64), nullable=False), sa.Column('generation', sa.Integer(), nullable=False),
           sa.PrimaryKeyConstraint('tenant'))
    _table('kb_use', sa.Column('id', sa.Integer(), nullable=False), sa.Column('at', sa.DateTime(timezone=True), nullable=False),
           sa.Column('tenant', sa.String(length=64), nullable=False), sa.Column('document_id', sa.Integer(), nullable=False),
           sa.Column('chunk_id', sa.String(length=64), nullable=False), sa.Column('kind', sa.String(length=12), nullable=False),
           sa.Column('actor', sa.String(length=64), nullable=False), sa.Column('ref', sa.String(length=64), nullable=False),
           sa.PrimaryKeyConstraint('id'), indexes=[('ix_kb_use_at', ['at']), ('ix_kb_use_document_id', ['document_id'])])
    _table('kb_version', sa.Column('id', sa.Integer(), nullable=False), sa.Column('document_id', sa.Integer(), nullable=False),
           sa.Column('version', sa.String(length=64), nullable=False), sa.Column('status', sa.String(length=16), nullable=False),
           sa.Column('content_hash', sa.String(length=64), nullable=False), sa.Column('title', sa.String(), nullable=False),
           sa.Column('source', sa.String(), nullable=False), sa.Column('doc_type', sa.String(length=32), nullable=False),
           sa.Column('lang', sa.String(length=8), nullable=False), sa.Column('audience', sa.String(length=120), nullable=False),
           sa.Column('team', sa.String(length=64), nullable=False), sa.Column('tags', sa.String(), nullable=False),
           sa.Column('owner', sa.String(length=64), nullable=False), sa.Column('competitor', sa.String(length=64), nullable=False),
           sa.Column('updated', sa.String(length=10), nullable=False), sa.Column('expires', sa.String(length=10), nullable=False),
           sa.Column('n_chunks', sa.Integer(), nullable=False), sa.Column('ingested_at', sa.DateTime(timezone=True), nullable=False),
           sa.Column('ingested_by', sa.String(length=64), nullable=False), sa.Column('approved_by', sa.String(length=64), nullable=False),
           sa.Column('approved_at', sa.DateTime(timezone=True), nullable=True), sa.PrimaryKeyConstraint('id'),
           indexes=[('ix_kb_version_document_id', ['document_id']), ('ix_kb_version_status', ['status'])])
    _table('lease', sa.Column('name', sa.String(length=64), nullable=False), sa.Column('owner', sa.String(length=200), nullable=False),
           sa.Column('until', sa.Float(), nullable=False), sa.PrimaryKeyConstraint('name'))
    _table('model_usage', sa.Column('conversation_key', sa.String(length=300), nullable=False),
           sa.Column('tokens', sa.Integer(), nullable=False), sa.PrimaryKeyConstraint('conversation_key'))
    _table('outbound', sa.Column('id', sa.Integer(), nullable=False), sa.Column('dedupe_key', sa.String(length=200), nullable=False),
           sa.Column('inbox_id', sa.Integer(), nullable=True), sa.Column('channel', sa.String(length=32), nullable=False),
           sa.Column('tenant', sa.String(length=64), nullable=False), sa.Column('conversation_key', sa.String(length=300), nullable=False),
           sa.Column('target', sa.Text(), nullable=False), sa.Column('reply', sa.Text(), nullable=False),
           sa.Column('status', sa.String(length=16), nullable=False), sa.Column('attempts', sa.Integer(), nullable=False),
           sa.Column('not_before', sa.Float(), nullable=False), sa.Column('error', sa.Text(), nullable=False),
           sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
           sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True), sa.PrimaryKeyConstraint('id'),
           sa.UniqueConstraint('dedupe_key'), indexes=[('ix_outbound_channel', ['channel']),
           ('ix_outbound_conversation_key', ['conversation_key']), ('ix_outbound_inbox_id', ['inbox_id']),
           ('ix_outbound_status', ['status'])])
    _table('pending_user', sa.Column('id', sa.Integer(), nullable=False), sa.Column('channel', sa.String(length=32), nullable=False),
           sa.Column('tenant', sa.String(length=64), nullable=False), sa.Column('platform_user_id', sa.String(length=200), nullable=False),
           sa.Column('display_name', sa.String(), nullable=False), sa.Column('first_seen', sa.DateTime(timezone=True), nullable=False),
           sa.Column('status', sa.String(length=16), nullable=False), sa.PrimaryKeyConstraint('id'),
           sa.UniqueConstraint('channel', 'tenant', 'platform_user_id', name='uq_pending_user'))
    _table('rep', sa.Column('id', sa.String(length=64), nullable=False), sa.Column('tenant', sa.String(length=64), nullable=False),
           sa.Column('name', sa.String(), nullable=False), sa.Column('role', sa.String(length=16), nullable=False),
           sa.Column('team', sa.String(length=64), nullable=False), sa.Column('email', sa.String(length=200), nullable=False),
           sa.Column('manager_id', sa.String(length=64), nullable=False), sa.Column('timezone', sa.String(length=64), nullable=False),
           sa.Column('language', sa.String(length=8), nullable=False),
           sa.Column('preferred_channel', sa.String(length=32), nullable=False), sa.Column('active', sa.Boolean(), nullable=False),
           sa.Column('created_at', sa.DateTime(timezone=True), nullable=False), sa.PrimaryKeyConstraint('id'),
           indexes=[('ix_rep_email', ['email']), ('ix_rep_tenant', ['tenant'])])


def downgrade() -> None:
    for name in TABLES:
        op.drop_table(name)
