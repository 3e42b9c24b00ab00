"""audit chains per run, and signed checkpoints sealing them

Revision ID: 0027
Revises: 0026

Until now one advisory lock serialized every audit event of the installation. Now each run's
events form a chain of their own (`chain` = the event's target `run:<id>`); every other event
(tokens, flows, variables, schedules...) extends the one `system` chain. The events written
before this revision were one chain already: they stay it, as the start of the system chain,
with their hashes untouched.

`audit_chains` holds each chain's head (its last seq and hash). The chain trigger locks the
head's row, so writers of one chain queue and writers of different chains never wait on each
other; `sealed_seq` is how far the last checkpoint sealed it and `moved` whether it moved since
(the partial index finds those; a head moving again changes no indexed column, so the update
stays a HOT one). `audit_checkpoints` is the append-only sequence the scheduler's
leader writes: the heads of the chains that moved, linked by hash to the checkpoint before
and signed with a key the database never holds (orchestrator/store/checkpoints.py).
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0027'
down_revision = '0026'
branch_labels = None
depends_on = None

# What one event's hash covers, as in 0008 (`audit.verify` recomputes it the same way).
CANONICAL = """jsonb_build_array(coalesce(NEW.prev_hash, ''), NEW.seq,
    to_char(NEW.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), NEW.actor, NEW.action, NEW.target,
    NEW.details)::text"""

# The same, computed while the head moves: `hash` and `seq` are the head's before the move.
MOVED_CANONICAL = CANONICAL.replace("coalesce(NEW.prev_hash, '')", "coalesce(hash, '')").replace("NEW.seq", "seq + 1")
MOVE_HEAD = f"""UPDATE audit_chains SET seq = seq + 1, prev_hash = hash, moved = true,
            hash = encode(sha256(convert_to({MOVED_CANONICAL}, 'UTF8')), 'hex')
        WHERE chain = NEW.chain RETURNING seq, prev_hash, hash INTO NEW.seq, NEW.prev_hash, NEW.hash"""

CHAIN = f"""
CREATE OR REPLACE FUNCTION millrace_audit_chain() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.chain := CASE WHEN NEW.target LIKE 'run:%' THEN NEW.target ELSE 'system' END;
    -- One statement moves the head and locks its row until the transaction ends: the writers
    -- of this chain queue, those of other chains do not.
    {MOVE_HEAD};
    IF NOT FOUND THEN
        INSERT INTO audit_chains (chain, seq, sealed_seq, moved) VALUES (NEW.chain, 0, 0, false)
            ON CONFLICT (chain) DO NOTHING;
        {MOVE_HEAD};
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION millrace_audit_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION millrace_audit_append_only();
REVOKE UPDATE, DELETE, TRUNCATE ON audit_checkpoints FROM PUBLIC;
"""

# 0008's function, put back by a downgrade: one chain, one lock.
GLOBAL_CHAIN = f"""
CREATE OR REPLACE FUNCTION millrace_audit_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE last record;
BEGIN
    PERFORM pg_advisory_xact_lock(7236837891);
    SELECT seq, hash INTO last FROM audit_events WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1;
    NEW.seq := coalesce(last.seq, 0) + 1;
    NEW.prev_hash := last.hash;
    NEW.hash := encode(sha256(convert_to({CANONICAL}, 'UTF8')), 'hex');
    RETURN NEW;
END $$;
"""


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == 'postgresql'
    # A default fills the rows already there without an UPDATE (which the guard trigger refuses).
    op.add_column('audit_events', sa.Column('chain', sa.String(length=300), nullable=True,
                                            server_default='system' if postgres else None))
    if postgres:  # (SQLite cannot alter a column, and was given no default)
        op.alter_column('audit_events', 'chain', server_default=None)
    op.drop_index('uq_audit_events_seq', table_name='audit_events')
    op.create_index('uq_audit_events_chain_seq', 'audit_events', ['chain', 'seq'], unique=True)
    op.create_table(
        'audit_chains',
        sa.Column('chain', sa.String(length=300), nullable=False),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.Column('prev_hash', sa.String(length=64), nullable=True),
        sa.Column('hash', sa.String(length=64), nullable=True),
        sa.Column('sealed_seq', sa.BigInteger(), nullable=False),
        sa.Column('moved', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('chain'),
        postgresql_with={'fillfactor': 70},
    )
    op.create_index('ix_audit_chains_moved', 'audit_chains', ['chain'],
                    postgresql_where=sa.text('moved'), sqlite_where=sa.text('moved'))
    op.create_table(
        'audit_checkpoints',
        sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('heads', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
        sa.Column('events', sa.BigInteger(), nullable=False),
        sa.Column('prev_hash', sa.String(length=64), nullable=True),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.Column('signature', sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint('seq'),
    )
    if postgres:
        op.execute("""INSERT INTO audit_chains (chain, seq, hash, sealed_seq, moved)
                      SELECT 'system', seq, hash, 0, true FROM audit_events WHERE seq IS NOT NULL
                      ORDER BY seq DESC LIMIT 1""")
        op.execute(CHAIN)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        # Runs' chains cannot fold back into one without rewriting every hash since.
        if bind.execute(sa.text("SELECT 1 FROM audit_events WHERE chain <> 'system' LIMIT 1")).first():
            raise RuntimeError("audit events of runs are chained per run since 0027: downgrading would break "
                               "the one chain 0008 verifies")
        op.execute("DROP TRIGGER audit_checkpoints_no_truncate ON audit_checkpoints")
        op.execute("DROP TRIGGER audit_checkpoints_append_only ON audit_checkpoints")
        op.execute(GLOBAL_CHAIN)
    op.drop_table('audit_checkpoints')
    op.drop_index('ix_audit_chains_moved', table_name='audit_chains')
    op.drop_table('audit_chains')
    op.drop_index('uq_audit_events_chain_seq', table_name='audit_events')
    op.create_index('uq_audit_events_seq', 'audit_events', ['seq'], unique=True)
    op.drop_column('audit_events', 'chain')
