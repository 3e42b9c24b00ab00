"""partial indexes for what the periodic queries look for

The metrics' active runs, the scheduler's "is a run of this schedule still going", a
concurrency key's running and held runs, the sweeper's expired approvals and the
scheduler's queued slots each look for a sliver of a history that only grows: unfinished
runs, waiting steps, queued slots. Each gets a partial index holding only those rows, so its
cost (and the index's size) follows what is going on, not how much has ended. The full
indexes they replace are dropped: `ix_runs_status` (the (status, created_at) index answers
a status listing), `ix_runs_schedule_status`, `ix_runs_concurrency` and the full
`ix_step_runs_waiting`.

On a large history the new indexes take a moment to build (each reads the table once):
create them beforehand with CREATE INDEX CONCURRENTLY under the same names and predicates
to keep the tables writable meanwhile; the upgrade then skips them.

Revision ID: 0025
Revises: 0024
"""
import sqlalchemy as sa
from alembic import op

revision = '0025'
down_revision = '0024'
branch_labels = None
depends_on = None

UNFINISHED = "status IN ('queued', 'running', 'suspended')"
WAITING = "status = 'waiting'"
QUEUED = "status = 'queued'"


def _where(predicate: str) -> dict:
    return {'postgresql_where': sa.text(predicate), 'sqlite_where': sa.text(predicate)}


def upgrade() -> None:
    op.create_index('ix_runs_unfinished', 'runs', ['status'], if_not_exists=True, **_where(UNFINISHED))
    op.create_index('ix_runs_schedule_unfinished', 'runs', ['schedule_id'], if_not_exists=True, **_where(UNFINISHED))
    op.create_index('ix_runs_concurrency_unfinished', 'runs', ['flow_id', 'concurrency_key', 'created_at'],
                    if_not_exists=True, **_where(UNFINISHED))
    op.create_index('ix_schedule_fires_queued', 'schedule_fires', ['schedule_id', 'fire_at'], if_not_exists=True,
                    **_where(QUEUED))
    op.drop_index('ix_step_runs_waiting', table_name='step_runs')
    op.create_index('ix_step_runs_waiting', 'step_runs', ['kind', 'resume_at'], **_where(WAITING))
    op.drop_index('ix_runs_status', table_name='runs')
    op.drop_index('ix_runs_schedule_status', table_name='runs')
    op.drop_index('ix_runs_concurrency', table_name='runs')


def downgrade() -> None:
    op.create_index('ix_runs_concurrency', 'runs', ['flow_id', 'concurrency_key', 'status'])
    op.create_index('ix_runs_schedule_status', 'runs', ['schedule_id', 'status'])
    op.create_index('ix_runs_status', 'runs', ['status'])
    op.drop_index('ix_step_runs_waiting', table_name='step_runs')
    op.create_index('ix_step_runs_waiting', 'step_runs', ['status', 'resume_at'])
    for name, table in (('ix_schedule_fires_queued', 'schedule_fires'), ('ix_runs_concurrency_unfinished', 'runs'),
                        ('ix_runs_schedule_unfinished', 'runs'), ('ix_runs_unfinished', 'runs')):
        op.drop_index(name, table_name=table)
