"""reused step outcomes

A restarted run starts with the outcomes it reuses copied from the run it restarts: each
copy keeps that run's id in `step_runs.reused_from`, and its audit event says
`step.reused` (with `reused_from`) instead of the `step.succeeded` of a step that ran.

Revision ID: 0022
Revises: 0021
"""
import sqlalchemy as sa
from alembic import op

revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def _postgres(reused: bool) -> str:
    """The audit trigger's function of 0012, telling a reused outcome's row apart when ``reused``."""
    action = ("CASE WHEN TG_OP = 'INSERT' AND NEW.reused_from IS NOT NULL THEN 'reused' "
              "WHEN NEW.status = 'running' THEN 'started' ELSE NEW.status END" if reused else
              "CASE NEW.status WHEN 'running' THEN 'started' ELSE NEW.status END")
    details = ", 'reused_from', NEW.reused_from" if reused else ""
    return f"""
CREATE OR REPLACE FUNCTION millrace_step_audit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    action text;
    at timestamptz;
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status THEN
        action := 'step.' || {action};
        at := CASE WHEN TG_OP = 'INSERT' THEN NEW.started_at
                   ELSE coalesce(NEW.finished_at, clock_timestamp()) END;
    ELSIF NEW.deliveries > OLD.deliveries AND OLD.status = 'running' THEN
        action := 'step.redelivered';
        at := clock_timestamp();
    ELSE
        RETURN NULL;
    END IF;
    INSERT INTO audit_events (at, actor, action, target, details) VALUES (
        at, coalesce(nullif(current_setting('millrace.actor', true), ''), NEW.worker, 'system'), action,
        'run:' || NEW.run_id,
        jsonb_strip_nulls(jsonb_build_object('path', NEW.path, 'attempt', NEW.attempt,
                                             'deliveries', NEW.deliveries, 'error', NEW.error{details})));
    RETURN NULL;
END $$;
"""


def _sqlite(reused: bool) -> str:
    action = ("'step.' || CASE WHEN NEW.reused_from IS NOT NULL THEN 'reused' WHEN NEW.status = 'running' "
              "THEN 'started' ELSE NEW.status END" if reused else
              "'step.' || CASE NEW.status WHEN 'running' THEN 'started' ELSE NEW.status END")
    details = "json_object('path', NEW.path, 'attempt', NEW.attempt, 'deliveries', NEW.deliveries)"
    if reused:
        details = f"json_patch({details}, json_object('reused_from', NEW.reused_from))"
    return f"""CREATE TRIGGER step_runs_audit_insert AFTER INSERT ON step_runs BEGIN
        INSERT INTO audit_events (at, actor, action, target, details) VALUES (
            NEW.started_at, coalesce(NEW.worker, 'system'), {action}, 'run:' || NEW.run_id,
            {details});
    END"""


def upgrade() -> None:
    op.add_column('step_runs', sa.Column('reused_from', sa.String(length=36), nullable=True))
    _triggers(reused=True)


def downgrade() -> None:
    _triggers(reused=False)
    with op.batch_alter_table('step_runs') as step_runs:
        step_runs.drop_column('reused_from')


def _triggers(*, reused: bool) -> None:
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        op.execute(_postgres(reused))
        return
    # SQLite loses a table's triggers when a batch migration copies the table (0014 did): only
    # a database that still has the insert trigger gets it replaced.
    present = bind.execute(sa.text("SELECT 1 FROM sqlite_master WHERE type = 'trigger' "
                                   "AND name = 'step_runs_audit_insert'")).first()
    if present:
        op.execute("DROP TRIGGER step_runs_audit_insert")
        op.execute(_sqlite(reused))
