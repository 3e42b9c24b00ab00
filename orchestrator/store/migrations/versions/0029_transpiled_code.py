"""transpiled code

The JavaScript each TypeScript step's or script's code was turned into when it was saved,
kept by the code's digest, so workers run it without the transpiler.

Revision ID: 0029
Revises: 0028
"""
import sqlalchemy as sa
from alembic import op

revision = '0029'
down_revision = '0028'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('transpiled_code',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('javascript', sa.Text(), nullable=False),
    sa.Column('transpiler', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )


def downgrade() -> None:
    op.drop_table('transpiled_code')
