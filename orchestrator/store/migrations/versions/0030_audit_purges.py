"""audit retention: purges of whole checkpoints, only by the schema's owner

Revision ID: 0030
Revises: 0029

Audit events were append-only for everyone. Now the schema's owner (the role migrations run
as, MILLRACE_DATABASE_OWNER_URL) may delete the oldest ones, and only as whole checkpoints:
`audit_purges` records each purge first (the last checkpoint purged with its hash, and where
each chain it cut now begins), then the events go (only those a checkpoint sealed), then the
checkpoints (only those a recorded purge covers). Any other role is still refused every UPDATE,
DELETE and TRUNCATE, by the triggers and by its grants; nobody may change or remove a purge
record. orchestrator/store/audit_purges.py writes them and audit.verify reads them.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0030'
down_revision = '0029'
branch_labels = None
depends_on = None

# One check per DELETE statement, over the rows it removed (a row trigger made a purge ten
# times slower): the owner only, and only what a checkpoint sealed or a recorded purge covers.
GUARDS = """
CREATE FUNCTION millrace_audit_purge_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE refused bigint;
BEGIN
    IF NOT pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'MEMBER') THEN
        RAISE EXCEPTION 'the audit trail is append-only: % refused (only the schema''s owner purges it, '
            'as whole checkpoints: millrace audit purge)', TG_OP USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_TABLE_NAME = 'audit_checkpoints' THEN
        SELECT min(seq) INTO refused FROM gone
            WHERE seq > coalesce((SELECT through_checkpoint FROM audit_purges ORDER BY seq DESC LIMIT 1), 0);
        IF refused IS NOT NULL THEN
            RAISE EXCEPTION 'the audit trail is append-only: checkpoint #% is covered by no recorded purge', refused
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    ELSE
        SELECT min(g.id) INTO refused FROM gone g LEFT JOIN audit_chains c ON c.chain = g.chain
            WHERE g.seq IS NULL OR g.seq > coalesce(c.sealed_seq, 0);
        IF refused IS NOT NULL THEN
            RAISE EXCEPTION 'the audit trail is append-only: event % is sealed by no checkpoint, so no purge '
                'takes it', refused USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    END IF;
    RETURN NULL;
END $$;
"""


def _guard(table: str) -> str:
    return f"""
DROP TRIGGER {table}_append_only ON {table};
CREATE TRIGGER {table}_append_only BEFORE UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION millrace_audit_append_only();
CREATE TRIGGER {table}_purge_guard AFTER DELETE ON {table} REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION millrace_audit_purge_guard();
"""


def _unguard(table: str) -> str:
    return f"""
DROP TRIGGER {table}_purge_guard ON {table};
DROP TRIGGER {table}_append_only ON {table};
CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION millrace_audit_append_only();
"""


PURGES_APPEND_ONLY = """
CREATE TRIGGER audit_purges_append_only BEFORE UPDATE OR DELETE ON audit_purges
    FOR EACH ROW EXECUTE FUNCTION millrace_audit_append_only();
CREATE TRIGGER audit_purges_no_truncate BEFORE TRUNCATE ON audit_purges
    FOR EACH STATEMENT EXECUTE FUNCTION millrace_audit_append_only();
REVOKE UPDATE, DELETE, TRUNCATE ON audit_purges FROM PUBLIC;
"""


def upgrade() -> None:
    op.create_table(
        'audit_purges',
        sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('actor', sa.String(length=200), nullable=False),
        sa.Column('through_checkpoint', sa.BigInteger(), nullable=False),
        sa.Column('checkpoint_hash', sa.String(length=64), nullable=False),
        sa.Column('cut', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
        sa.Column('events', sa.BigInteger(), nullable=False),
        sa.Column('prev_hash', sa.String(length=64), nullable=True),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.Column('signature', sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint('seq'),
    )
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(GUARDS + _guard('audit_events') + _guard('audit_checkpoints') + PURGES_APPEND_ONLY)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        if bind.execute(sa.text("SELECT 1 FROM audit_purges LIMIT 1")).first():
            raise RuntimeError("audit events were purged since 0030: before it, verify would find the oldest "
                               "events and checkpoints missing")
        op.execute(_unguard('audit_events') + _unguard('audit_checkpoints')
                   + "DROP FUNCTION millrace_audit_purge_guard();")
    op.drop_table('audit_purges')
