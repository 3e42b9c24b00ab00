"""schedules triggers concurrency

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('flow_triggers',
    sa.Column('flow_id', sa.String(length=200), nullable=False),
    sa.Column('trigger_id', sa.String(length=64), nullable=False),
    sa.Column('upstream', sa.String(length=200), nullable=False),
    sa.Column('statuses', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('inputs', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.PrimaryKeyConstraint('flow_id', 'trigger_id')
    )
    op.create_index(op.f('ix_flow_triggers_upstream'), 'flow_triggers', ['upstream'], unique=False)
    op.create_table('schedule_fires',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('schedule_id', sa.String(length=64), nullable=False),
    sa.Column('fire_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('run_id', sa.String(length=36), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_by', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('uq_schedule_fires_slot', 'schedule_fires', ['schedule_id', 'fire_at'], unique=True)
    op.create_table('schedules',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('flow_id', sa.String(length=200), nullable=False),
    sa.Column('trigger_id', sa.String(length=64), nullable=True),
    sa.Column('cron', sa.String(length=200), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('inputs', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('catchup', sa.String(length=8), nullable=False),
    sa.Column('max_catchup', sa.Integer(), nullable=False),
    sa.Column('overlap', sa.String(length=8), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('paused_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('next_fire_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_schedules_due', 'schedules', ['enabled', 'next_fire_at'], unique=False)
    op.create_index('uq_schedules_trigger', 'schedules', ['flow_id', 'trigger_id'], unique=True)
    op.create_table('webhooks',
    sa.Column('flow_id', sa.String(length=200), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('flow_id')
    )
    op.add_column('runs', sa.Column('schedule_id', sa.String(length=64), nullable=True))
    op.add_column('runs', sa.Column('concurrency_key', sa.String(length=200), nullable=True))
    op.add_column('runs', sa.Column('held', sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column('runs', sa.Column('followed_up_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_runs_concurrency', 'runs', ['flow_id', 'concurrency_key', 'status'], unique=False)
    op.create_index('ix_runs_follow_up', 'runs', ['followed_up_at', 'finished_at'], unique=False)
    op.create_index('ix_runs_schedule_status', 'runs', ['schedule_id', 'status'], unique=False)
    # Runs that ended before this release have nothing left to follow up.
    op.execute("UPDATE runs SET followed_up_at = finished_at WHERE finished_at IS NOT NULL")


def downgrade() -> None:
    op.drop_index('ix_runs_schedule_status', table_name='runs')
    op.drop_index('ix_runs_follow_up', table_name='runs')
    op.drop_index('ix_runs_concurrency', table_name='runs')
    op.drop_column('runs', 'followed_up_at')
    op.drop_column('runs', 'held')
    op.drop_column('runs', 'concurrency_key')
    op.drop_column('runs', 'schedule_id')
    op.drop_table('webhooks')
    op.drop_index('uq_schedules_trigger', table_name='schedules')
    op.drop_index('ix_schedules_due', table_name='schedules')
    op.drop_table('schedules')
    op.drop_index('uq_schedule_fires_slot', table_name='schedule_fires')
    op.drop_table('schedule_fires')
    op.drop_index(op.f('ix_flow_triggers_upstream'), table_name='flow_triggers')
    op.drop_table('flow_triggers')
