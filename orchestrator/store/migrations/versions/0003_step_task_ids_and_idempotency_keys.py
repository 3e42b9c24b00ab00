"""step task ids and idempotency keys

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('runs', sa.Column('idempotency_key', sa.String(length=200), nullable=True))
    op.create_index('uq_runs_idempotency_key', 'runs', ['flow_id', 'idempotency_key'], unique=True)
    op.add_column('step_runs', sa.Column('task_id', sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column('step_runs', 'task_id')
    op.drop_index('uq_runs_idempotency_key', table_name='runs')
    op.drop_column('runs', 'idempotency_key')
