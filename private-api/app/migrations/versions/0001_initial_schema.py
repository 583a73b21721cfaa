"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-26 12:35:43.178103
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.kit.models

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('users',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('credits', sa.Integer(), nullable=False),
    sa.Column('created_at', app.kit.models.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('credits >= 0', name=op.f('ck_users_credits_non_negative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('email', name=op.f('uq_users_email'))
    )
    op.create_table('api_keys',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('user_id', sa.String(length=40), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('created_at', app.kit.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', app.kit.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_api_keys_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_api_keys_key_hash'))
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_user_id'), ['user_id'], unique=False)

    op.create_table('fmus',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('user_id', sa.String(length=40), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=True),
    sa.Column('fmi_version', sa.String(length=8), nullable=False),
    sa.Column('model_name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('generation_tool', sa.String(length=255), nullable=True),
    sa.Column('guid', sa.String(length=255), nullable=False),
    sa.Column('supports_model_exchange', sa.Boolean(), nullable=False),
    sa.Column('supports_co_simulation', sa.Boolean(), nullable=False),
    sa.Column('model_info', sa.JSON().with_variant(sa.JSON(none_as_null=True), 'postgresql'), nullable=False),
    sa.Column('created_at', app.kit.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('deleted_at', app.kit.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_fmus_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fmus'))
    )
    with op.batch_alter_table('fmus', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fmus_sha256'), ['sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_fmus_user_id'), ['user_id'], unique=False)
        batch_op.create_index('uq_fmus_user_sha256_live', ['user_id', 'sha256'], unique=True, sqlite_where=sa.text('deleted_at IS NULL'), postgresql_where=sa.text('deleted_at IS NULL'))

    op.create_table('runs',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('user_id', sa.String(length=40), nullable=False),
    sa.Column('fmu_id', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('spec', sa.JSON().with_variant(sa.JSON(none_as_null=True), 'postgresql'), nullable=False),
    sa.Column('credits_charged', sa.Integer(), nullable=False),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('result_rows', sa.Integer(), nullable=True),
    sa.Column('result_columns', sa.JSON().with_variant(sa.JSON(none_as_null=True), 'postgresql'), nullable=True),
    sa.Column('result_bytes', sa.BigInteger(), nullable=True),
    sa.Column('wall_time_s', sa.Float(), nullable=True),
    sa.Column('cpu_time_s', sa.Float(), nullable=True),
    sa.Column('max_rss_bytes', sa.BigInteger(), nullable=True),
    sa.Column('created_at', app.kit.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', app.kit.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', app.kit.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['fmu_id'], ['fmus.id'], name=op.f('fk_runs_fmu_id_fmus')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_runs_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_runs'))
    )
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_runs_fmu_id'), ['fmu_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_runs_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_runs_user_id'), ['user_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_runs_user_id'))
        batch_op.drop_index(batch_op.f('ix_runs_status'))
        batch_op.drop_index(batch_op.f('ix_runs_fmu_id'))

    op.drop_table('runs')
    with op.batch_alter_table('fmus', schema=None) as batch_op:
        batch_op.drop_index('uq_fmus_user_sha256_live', sqlite_where=sa.text('deleted_at IS NULL'), postgresql_where=sa.text('deleted_at IS NULL'))
        batch_op.drop_index(batch_op.f('ix_fmus_user_id'))
        batch_op.drop_index(batch_op.f('ix_fmus_sha256'))

    op.drop_table('fmus')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_user_id'))

    op.drop_table('api_keys')
    op.drop_table('users')
