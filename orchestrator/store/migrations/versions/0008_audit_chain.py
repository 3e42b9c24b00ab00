"""audit events: append-only, hash-chained

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

# What one event's hash covers, in SQL; `audit.verify` recomputes it the same way.
# A JSON array, not a joined string: no field's text can spill into its neighbour's.
CANONICAL = """jsonb_build_array(coalesce({p}.prev_hash, ''), {p}.seq,
    to_char({p}.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), {p}.actor, {p}.action, {p}.target,
    {p}.details)::text"""

CHAIN = f"""
CREATE FUNCTION millrace_audit_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE last record;
BEGIN
    -- One writer at a time extends the chain; the lock is held until its transaction ends.
    PERFORM pg_advisory_xact_lock(7236837891);
    SELECT seq, hash INTO last FROM audit_events WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1;
    NEW.seq := coalesce(last.seq, 0) + 1;
    NEW.prev_hash := last.hash;
    NEW.hash := encode(sha256(convert_to({CANONICAL.format(p='NEW')}, 'UTF8')), 'hex');
    RETURN NEW;
END $$;
CREATE TRIGGER audit_events_chain BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION millrace_audit_chain();

CREATE FUNCTION millrace_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION millrace_audit_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION millrace_audit_append_only();
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM PUBLIC;
"""

# Events written before this revision join the chain in id order.
BACKFILL = f"""
DO $$
DECLARE r record; previous text := NULL; n bigint := 0;
BEGIN
    FOR r IN SELECT id FROM audit_events ORDER BY id LOOP
        n := n + 1;
        UPDATE audit_events SET seq = n, prev_hash = previous WHERE id = r.id;
        UPDATE audit_events e SET hash = encode(sha256(convert_to({CANONICAL.format(p='e')}, 'UTF8')), 'hex')
            WHERE e.id = r.id RETURNING hash INTO previous;
    END LOOP;
END $$;
"""


def upgrade() -> None:
    op.add_column('audit_events', sa.Column('seq', sa.BigInteger(), nullable=True))
    op.add_column('audit_events', sa.Column('prev_hash', sa.String(length=64), nullable=True))
    op.add_column('audit_events', sa.Column('hash', sa.String(length=64), nullable=True))
    op.create_index('uq_audit_events_seq', 'audit_events', ['seq'], unique=True)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(BACKFILL)
        op.execute(CHAIN)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER audit_events_no_truncate ON audit_events")
        op.execute("DROP TRIGGER audit_events_append_only ON audit_events")
        op.execute("DROP TRIGGER audit_events_chain ON audit_events")
        op.execute("DROP FUNCTION millrace_audit_append_only()")
        op.execute("DROP FUNCTION millrace_audit_chain()")
    op.drop_index('uq_audit_events_seq', table_name='audit_events')
    op.drop_column('audit_events', 'hash')
    op.drop_column('audit_events', 'prev_hash')
    op.drop_column('audit_events', 'seq')
