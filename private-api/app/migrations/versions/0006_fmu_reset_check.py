"""fmu reset check: whether reset() restores the model exactly, for sweep chunks

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 15:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('fmus', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reset_exact', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('reset_checked_by', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('fmus', schema=None) as batch_op:
        batch_op.drop_column('reset_checked_by')
        batch_op.drop_column('reset_exact')
