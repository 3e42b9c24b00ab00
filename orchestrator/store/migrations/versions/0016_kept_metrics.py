"""metrics kept as running totals

Counters and histogram buckets are folded into ``metric_totals`` as runs and steps finish
(at scrape, a window at a time since ``metric_folds.folded_until``), so a scrape costs what
happened since the last one, not the whole history, and purging old runs never makes a
count go down. The indexes let a fold find a window's rows.

Revision ID: 0016
Revises: 0015
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table(
        'metric_totals',
        sa.Column('name', sa.String(length=80), nullable=False),
        sa.Column('labels', sa.String(length=1000), nullable=False),
        sa.Column('value', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('name', 'labels'),
    )
    op.create_table(
        'metric_folds',
        sa.Column('source', sa.String(length=40), nullable=False),
        sa.Column('folded_until', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('source'),
    )
    op.create_index('ix_step_runs_finished_at', 'step_runs', ['finished_at'])
    op.create_index('ix_runs_finished_at', 'runs', ['finished_at'])
    op.create_index('ix_runs_started_at', 'runs', ['started_at'])
    op.create_index('ix_schedule_fires_recorded_at', 'schedule_fires', ['recorded_at'])


def downgrade() -> None:
    op.drop_index('ix_schedule_fires_recorded_at', 'schedule_fires')
    op.drop_index('ix_runs_started_at', 'runs')
    op.drop_index('ix_runs_finished_at', 'runs')
    op.drop_index('ix_step_runs_finished_at', 'step_runs')
    op.drop_table('metric_folds')
    op.drop_table('metric_totals')
