"""run labels, search indexes, debounce, priority

Runs keep their labels (JSONB, a GIN index: `?label=team:billing` is a containment test) and
are searched by input value through a GIN index on `inputs`; newest-first listings by status
or trigger have their own indexes. A debounced run keeps until when starts coalesce into it;
a run keeps its priority (0-9) for every message it sends. Schedules and webhooks keep the
labels they put on the runs they start.

On a large history the indexes take a while to build: create them beforehand with
CREATE INDEX CONCURRENTLY under the same names to keep the table writable meanwhile.

Revision ID: 0024
Revises: 0023
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.add_column('runs', sa.Column('labels', JSON, nullable=False, server_default=sa.text("'{}'")))
    op.add_column('runs', sa.Column('priority', sa.SmallInteger(), nullable=True))
    op.add_column('runs', sa.Column('debounce_until', sa.DateTime(timezone=True), nullable=True))
    op.add_column('schedules', sa.Column('labels', JSON, nullable=True))
    op.add_column('webhooks', sa.Column('labels', JSON, nullable=True))
    op.create_index('ix_runs_created_id', 'runs', ['created_at', 'id'], if_not_exists=True)
    op.create_index('ix_runs_status_created', 'runs', ['status', 'created_at'], if_not_exists=True)
    op.create_index('ix_runs_trigger_created', 'runs', ['trigger', 'created_at'], if_not_exists=True)
    op.create_index('ix_runs_labels', 'runs', ['labels'], postgresql_using='gin',
                    postgresql_ops={'labels': 'jsonb_path_ops'}, if_not_exists=True)
    op.create_index('ix_runs_inputs', 'runs', ['inputs'], postgresql_using='gin',
                    postgresql_ops={'inputs': 'jsonb_path_ops'}, if_not_exists=True)


def downgrade() -> None:
    for name in ('ix_runs_inputs', 'ix_runs_labels', 'ix_runs_trigger_created', 'ix_runs_status_created',
                 'ix_runs_created_id'):
        op.drop_index(name, table_name='runs')
    op.drop_column('webhooks', 'labels')
    op.drop_column('schedules', 'labels')
    op.drop_column('runs', 'debounce_until')
    op.drop_column('runs', 'priority')
    op.drop_column('runs', 'labels')
