"""API tokens carry the secrets they may put in flows

A token saves only flows whose steps read secrets its scope allows (``fnmatch`` patterns);
tokens made before keep every secret (``["*"]``), as they had.

Revision ID: 0015
Revises: 0014
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    with op.batch_alter_table('api_tokens') as batch:
        batch.add_column(sa.Column('secrets', Json, nullable=False, server_default=sa.text("'[\"*\"]'")))


def downgrade() -> None:
    with op.batch_alter_table('api_tokens') as batch:
        batch.drop_column('secrets')
