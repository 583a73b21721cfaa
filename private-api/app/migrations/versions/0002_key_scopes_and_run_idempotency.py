"""key scopes and run idempotency

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 13:24:32.891779
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

ALL_SCOPES = '["fmus:read", "fmus:write", "runs:read", "runs:write", "billing:read"]'


def upgrade() -> None:
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        # Keys issued before scopes existed keep every scope.
        batch_op.add_column(sa.Column('scopes', sa.JSON().with_variant(sa.JSON(none_as_null=True), 'postgresql'),
                                      nullable=False, server_default=sa.text(f"'{ALL_SCOPES}'")))

    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('idempotency_key', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('request_hash', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_runs_user_id_idempotency_key'), ['user_id', 'idempotency_key'])



def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_runs_user_id_idempotency_key'), type_='unique')
        batch_op.drop_column('request_hash')
        batch_op.drop_column('idempotency_key')

    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_column('scopes')

