"""one outbox for every owed send

What a commit leaves owed to the broker (a run's first message, a failed run's on_failure
steps, a decided step's continuation) and the follow-up owed to a run's end were recorded
in four column pairs, each with its own finder. They become rows of one table, ``outbox``,
kept from the commit that makes them owed until they are marked sent; what was owed before
the upgrade is moved into it, so nothing owed is lost.

Revision ID: 0014
Revises: 0013
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table(
        'outbox',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('key', sa.String(length=80), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('run_id', sa.String(length=36), nullable=False),
        sa.Column('attempt_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
        sa.Column('message', Json, nullable=True),
        sa.Column('owed_since', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('key', name='uq_outbox_key'),
    )
    op.create_index('ix_outbox_kind_owed_since', 'outbox', ['kind', 'owed_since'])
    op.execute("""
        INSERT INTO outbox (key, kind, run_id, owed_since)
        SELECT 'run:' || id, 'run', id, coalesce(publishable_at, created_at) FROM runs
        WHERE status = 'queued' AND published_at IS NULL AND NOT held""")
    op.execute("""
        INSERT INTO outbox (key, kind, run_id, message, owed_since)
        SELECT 'on_failure:' || id, 'on_failure', id, on_failure, on_failure_pending_since FROM runs
        WHERE on_failure_pending_since IS NOT NULL AND on_failure IS NOT NULL""")
    op.execute("""
        INSERT INTO outbox (key, kind, run_id, attempt_id, message, owed_since)
        SELECT 'continuation:' || id, 'continuation', run_id, id, continuation, resume_pending_since FROM step_runs
        WHERE resume_pending_since IS NOT NULL AND continuation IS NOT NULL""")
    op.execute("""
        INSERT INTO outbox (key, kind, run_id, owed_since)
        SELECT 'follow_up:' || id, 'follow_up', id, finished_at FROM runs
        WHERE finished_at IS NOT NULL AND followed_up_at IS NULL""")
    with op.batch_alter_table('runs') as runs:
        runs.drop_index('ix_runs_follow_up')
        for column in ('followed_up_at', 'published_at', 'publishable_at', 'on_failure', 'on_failure_pending_since'):
            runs.drop_column(column)
    with op.batch_alter_table('step_runs') as step_runs:
        step_runs.drop_column('resume_pending_since')


def downgrade() -> None:
    with op.batch_alter_table('step_runs') as step_runs:
        step_runs.add_column(sa.Column('resume_pending_since', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('runs') as runs:
        runs.add_column(sa.Column('followed_up_at', sa.DateTime(timezone=True), nullable=True))
        runs.add_column(sa.Column('published_at', sa.DateTime(timezone=True), nullable=True))
        runs.add_column(sa.Column('publishable_at', sa.DateTime(timezone=True), nullable=True))
        runs.add_column(sa.Column('on_failure', Json, nullable=True))
        runs.add_column(sa.Column('on_failure_pending_since', sa.DateTime(timezone=True), nullable=True))
        runs.create_index('ix_runs_follow_up', ['followed_up_at', 'finished_at'])
    # What is owed goes back to its columns; every run not owed a publication counts as published.
    op.execute("UPDATE runs SET published_at = created_at, followed_up_at = finished_at")
    op.execute("""UPDATE runs SET published_at = NULL, publishable_at = o.owed_since FROM outbox o
                  WHERE o.kind = 'run' AND o.run_id = runs.id""")
    op.execute("""UPDATE runs SET followed_up_at = NULL FROM outbox o
                  WHERE o.kind = 'follow_up' AND o.run_id = runs.id""")
    op.execute("""UPDATE runs SET on_failure = o.message, on_failure_pending_since = o.owed_since FROM outbox o
                  WHERE o.kind = 'on_failure' AND o.run_id = runs.id""")
    op.execute("""UPDATE step_runs SET resume_pending_since = o.owed_since FROM outbox o
                  WHERE o.kind = 'continuation' AND o.attempt_id = step_runs.id""")
    op.drop_index('ix_outbox_kind_owed_since', table_name='outbox')
    op.drop_table('outbox')
