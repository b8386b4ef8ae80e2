"""inbox: a partial index of unfinished rows by conversation (the claim's order check across processes)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 09:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

UNFINISHED = sa.text("status IN ('queued', 'processing')")


def upgrade() -> None:  # if_not_exists: a database made by create_all from today's models has it already
    op.create_index('ix_inbox_unfinished', 'inbox', ['conversation_key', 'id'], unique=False, if_not_exists=True,
                    sqlite_where=UNFINISHED, postgresql_where=UNFINISHED)


def downgrade() -> None:
    op.drop_index('ix_inbox_unfinished', table_name='inbox')
