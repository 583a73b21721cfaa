"""model grants (run a shared model, pay its owner per run) and the run cache

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 17:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.kit.models

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'fmu_grants',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('fmu_id', sa.String(length=40), nullable=False),
        sa.Column('owner_id', sa.String(length=40), nullable=False),
        sa.Column('email', sa.String(length=320), nullable=False),
        sa.Column('price_credits_per_run', sa.Integer(), nullable=False),
        sa.Column('created_at', app.kit.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('revoked_at', app.kit.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['fmu_id'], ['fmus.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_fmu_grants_fmu_id', 'fmu_grants', ['fmu_id'])
    op.create_index('ix_fmu_grants_owner_id', 'fmu_grants', ['owner_id'])
    op.create_index('ix_fmu_grants_email', 'fmu_grants', ['email'])
    op.create_index('uq_fmu_grants_fmu_email_live', 'fmu_grants', ['fmu_id', 'email'], unique=True,
                    sqlite_where=sa.text('revoked_at IS NULL'), postgresql_where=sa.text('revoked_at IS NULL'))
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('display_name', sa.String(length=100), nullable=True))
    with op.batch_alter_table('fmus', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deterministic', sa.Boolean(), server_default=sa.text('true'), nullable=False))
    # Nullable or with a server default: adding them rewrites no row of a large runs table.
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('grant_id', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('owner_credits', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('cache_key', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('cached_from', sa.String(length=40), nullable=True))
    if op.get_bind().dialect.name == 'postgresql':
        # Built without blocking writes to runs (as 0009's index): the service keeps running.
        with op.get_context().autocommit_block():
            op.create_index('ix_runs_user_cache_key', 'runs', ['user_id', 'cache_key'], postgresql_concurrently=True)
    else:
        op.create_index('ix_runs_user_cache_key', 'runs', ['user_id', 'cache_key'])


def downgrade() -> None:
    op.drop_index('ix_runs_user_cache_key', table_name='runs')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('cached_from')
        batch_op.drop_column('cache_key')
        batch_op.drop_column('owner_credits')
        batch_op.drop_column('grant_id')
    with op.batch_alter_table('fmus', schema=None) as batch_op:
        batch_op.drop_column('deterministic')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('display_name')
    op.drop_table('fmu_grants')
