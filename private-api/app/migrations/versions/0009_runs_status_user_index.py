"""runs by status and user: the scheduler finds whose turn it is without scanning a long queue

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 14:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

COLUMNS = ['status', 'user_id', 'created_at']


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        # Built without blocking writes to runs (CONCURRENTLY cannot run in a transaction): a
        # deployment's table may be large, and the API and workers keep serving while it builds.
        with op.get_context().autocommit_block():
            op.create_index('ix_runs_status_user', 'runs', COLUMNS, postgresql_concurrently=True)
    else:
        op.create_index('ix_runs_status_user', 'runs', COLUMNS)


def downgrade() -> None:
    op.drop_index('ix_runs_status_user', table_name='runs')
