"""purged runs

Retention removes finished runs with their steps, logs and owed sends; the id of each purged
run is kept here, so that a later run naming it (restarted_from) or a kept link answers
"purged" rather than "no such run". Finding a run's subflow runs, the expired cache entries and the trigger fires that started
no run gets an index each.

Revision ID: 0026
Revises: 0025
"""
import sqlalchemy as sa
from alembic import op

revision = '0026'
down_revision = '0025'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'purged_runs',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('flow_id', sa.String(length=200), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('purged_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_runs_parent', 'runs', ['parent_run_id'], postgresql_where=sa.text('parent_run_id IS NOT NULL'),
                    sqlite_where=sa.text('parent_run_id IS NOT NULL'))
    op.create_index('ix_step_cache_expires_at', 'step_cache', ['expires_at'])
    op.create_index('ix_trigger_fires_unstarted', 'trigger_fires', ['recorded_at'],
                    postgresql_where=sa.text('run_id IS NULL'), sqlite_where=sa.text('run_id IS NULL'))


def downgrade() -> None:
    op.drop_index('ix_trigger_fires_unstarted', table_name='trigger_fires')
    op.drop_index('ix_step_cache_expires_at', table_name='step_cache')
    op.drop_index('ix_runs_parent', table_name='runs')
    op.drop_table('purged_runs')
