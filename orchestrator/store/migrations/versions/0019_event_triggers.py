"""event triggers

A flow's amqp/mqtt/nats/redis/postgres triggers as rows the listener reads (with its last
report of each connection and the counts of messages fired and refused), and one row per
message received, unique per (trigger, message key): what makes a redelivered message start
nothing new.

Revision ID: 0019
Revises: 0018
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'event_triggers',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('flow_id', sa.String(length=200), nullable=False),
        sa.Column('trigger_id', sa.String(length=64), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('source', _JSON, nullable=False),
        sa.Column('inputs', _JSON, nullable=True),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('state_detail', sa.Text(), nullable=True),
        sa.Column('state_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('fired', sa.BigInteger(), nullable=False),
        sa.Column('refused', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('uq_event_triggers_flow', 'event_triggers', ['flow_id', 'trigger_id'], unique=True)
    op.create_table(
        'trigger_fires',
        sa.Column('id', _ID, autoincrement=True, nullable=False),
        sa.Column('trigger', sa.String(length=64), nullable=False),
        sa.Column('message_key', sa.String(length=200), nullable=False),
        sa.Column('digest', sa.String(length=64), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('run_id', sa.String(length=36), nullable=True),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('topic', sa.Text(), nullable=True),
        sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('uq_trigger_fires_key', 'trigger_fires', ['trigger', 'message_key'], unique=True)
    op.create_index('ix_trigger_fires_digest', 'trigger_fires', ['trigger', 'digest', 'recorded_at'])
    op.create_index('ix_trigger_fires_page', 'trigger_fires', ['trigger', 'id'])


def downgrade() -> None:
    op.drop_table('trigger_fires')
    op.drop_table('event_triggers')
