"""how a run ends: stop_if and finally

`runs.stopped_at` keeps the path of the step whose `stop_if` ended the run (`each[2].check`).
`runs.ending` is set while a run's `finally` steps run: the status it ends with once they are
done (succeeded, failed or cancelled); null before that, and on runs without finally steps.

Revision ID: 0021
Revises: 0020
"""
import sqlalchemy as sa
from alembic import op

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('runs', sa.Column('stopped_at', sa.String(length=1000), nullable=True))
    op.add_column('runs', sa.Column('ending', sa.String(length=16), nullable=True))


def downgrade() -> None:
    op.drop_column('runs', 'ending')
    op.drop_column('runs', 'stopped_at')
