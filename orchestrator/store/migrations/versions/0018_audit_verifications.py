"""kept audit chain verifications

Each `millrace audit verify` keeps its outcome with its time; the console's audit page shows
the last one instead of walking the chain at every load.

Revision ID: 0018
Revises: 0017
"""
import sqlalchemy as sa
from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'audit_verifications',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('events', sa.BigInteger(), nullable=False),
        sa.Column('ok', sa.Boolean(), nullable=False),
        sa.Column('broken_event_id', sa.BigInteger(), nullable=True),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )


def downgrade() -> None:
    op.drop_table('audit_verifications')
