"""where a loop broke

A for_each or loop step's attempt keeps the path of the step whose `break_if` held
(`each[3].check`): every lane of a parallel for_each reads it before it starts an item, and
the record says where the loop ended (the items after it have no rows).

Revision ID: 0020
Revises: 0019
"""
import sqlalchemy as sa
from alembic import op

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('step_runs', sa.Column('broke_at', sa.String(length=1000), nullable=True))


def downgrade() -> None:
    op.drop_column('step_runs', 'broke_at')
