"""run result expiry: a run whose result and log its tier's retention removed says when

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 11:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.kit.models

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('result_expired_at', app.kit.models.UTCDateTime(timezone=True), nullable=True))
        # The purge looks for finished runs past a cutoff whose files are still stored.
        batch_op.create_index('ix_runs_unexpired_finished_at', ['result_expired_at', 'finished_at'])


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_unexpired_finished_at')
        batch_op.drop_column('result_expired_at')
