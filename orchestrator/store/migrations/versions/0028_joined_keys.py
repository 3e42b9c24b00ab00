"""joined keys

A start that joins a debounced run (its window still open) gets that run; its idempotency
key is kept here (the run's row holds its first start's), so a retry of that start finds the
run it joined, after the window has closed too.

Revision ID: 0028
Revises: 0027
"""
import sqlalchemy as sa
from alembic import op

revision = '0028'
down_revision = '0027'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'joined_keys',
        sa.Column('flow_id', sa.String(length=200), nullable=False),
        sa.Column('idempotency_key', sa.String(length=200), nullable=False),
        sa.Column('run_id', sa.String(length=36), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('flow_id', 'idempotency_key'),
    )
    op.create_index('ix_joined_keys_run', 'joined_keys', ['run_id'])


def downgrade() -> None:
    op.drop_index('ix_joined_keys_run', table_name='joined_keys')
    op.drop_table('joined_keys')
