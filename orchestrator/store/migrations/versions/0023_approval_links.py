"""approval links followed

A signed resume or cancel link of an approval step decides once: the SHA-256 of each link
followed is kept here, with the attempt it decided, what it did and for whom it was issued.

Revision ID: 0023
Revises: 0022
"""
import sqlalchemy as sa
from alembic import op

revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'approval_links',
        sa.Column('digest', sa.String(length=64), nullable=False),
        sa.Column('attempt_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('approver', sa.String(length=220), nullable=False),
        sa.Column('used_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['attempt_id'], ['step_runs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('digest'),
    )
    op.create_index('ix_approval_links_attempt_id', 'approval_links', ['attempt_id'])


def downgrade() -> None:
    op.drop_index('ix_approval_links_attempt_id', table_name='approval_links')
    op.drop_table('approval_links')
