"""restarted runs

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('runs', sa.Column('restarted_from', sa.String(length=36), nullable=True))


def downgrade() -> None:
    op.drop_column('runs', 'restarted_from')
