"""knowledge: the vectors of each passage's statements (sentences, table rows), kept with the passage

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 15:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("kb_chunk")}
    if "statement_vectors" not in columns:  # a database made by create_all from today's models has it already
        op.add_column('kb_chunk', sa.Column('statement_vectors', sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    op.drop_column('kb_chunk', 'statement_vectors')
