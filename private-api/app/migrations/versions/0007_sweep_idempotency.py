"""sweep idempotency: a sweep keeps the Idempotency-Key that created it, as a run does

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 08:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sweeps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('idempotency_key', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('request_hash', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_sweeps_user_id_idempotency_key'),
                                          ['user_id', 'idempotency_key'])


def downgrade() -> None:
    with op.batch_alter_table('sweeps', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_sweeps_user_id_idempotency_key'), type_='unique')
        batch_op.drop_column('request_hash')
        batch_op.drop_column('idempotency_key')
