"""step transitions are audit events

Revision ID: 0012
Revises: 0011

A trigger on step_runs writes one audit event per step transition, in the statement that
makes it: no code path can change a step's state without leaving its event, and the hot
path pays no extra round trip. The event's actor is the worker on the row, or on
PostgreSQL whoever the transaction names in `millrace.actor` (a cancel, an approval).
  step.started / step.skipped       a row inserted (an attempt opened, or a skip recorded)
  step.waiting / .succeeded / .failed  its status changed (cancel: failed, "run cancelled")
  step.redelivered                  a running attempt delivered again (its worker died, say);
                                    an ended one handed on again (a replay) is no transition
"""
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

POSTGRES = """
CREATE FUNCTION millrace_step_audit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    action text;
    at timestamptz;
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status THEN
        action := 'step.' || CASE NEW.status WHEN 'running' THEN 'started' ELSE NEW.status END;
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
                                             'deliveries', NEW.deliveries, 'error', NEW.error)));
    RETURN NULL;
END $$;
CREATE TRIGGER step_runs_audit AFTER INSERT OR UPDATE OF status, deliveries ON step_runs
    FOR EACH ROW EXECUTE FUNCTION millrace_step_audit();
"""

# SQLite (local mode) stores timestamps as text in SQLAlchemy's format: 6-digit microseconds.
# json_patch with a null value drops the key, as jsonb_strip_nulls does above.
_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'"
_DETAILS = "json_object('path', NEW.path, 'attempt', NEW.attempt, 'deliveries', NEW.deliveries)"
_ACTION = "'step.' || CASE NEW.status WHEN 'running' THEN 'started' ELSE NEW.status END"
SQLITE = [
    f"""CREATE TRIGGER step_runs_audit_insert AFTER INSERT ON step_runs BEGIN
        INSERT INTO audit_events (at, actor, action, target, details) VALUES (
            NEW.started_at, coalesce(NEW.worker, 'system'), {_ACTION}, 'run:' || NEW.run_id,
            {_DETAILS});
    END""",
    f"""CREATE TRIGGER step_runs_audit_status AFTER UPDATE OF status ON step_runs
    WHEN NEW.status IS NOT OLD.status BEGIN
        INSERT INTO audit_events (at, actor, action, target, details) VALUES (
            coalesce(NEW.finished_at, {_NOW}), coalesce(NEW.worker, 'system'), {_ACTION},
            'run:' || NEW.run_id, json_patch({_DETAILS}, json_object('error', NEW.error)));
    END""",
    f"""CREATE TRIGGER step_runs_audit_redelivered AFTER UPDATE OF deliveries ON step_runs
    WHEN OLD.status = 'running' AND NEW.status IS OLD.status AND NEW.deliveries > OLD.deliveries BEGIN
        INSERT INTO audit_events (at, actor, action, target, details) VALUES (
            {_NOW}, coalesce(NEW.worker, 'system'), 'step.redelivered', 'run:' || NEW.run_id,
            {_DETAILS});
    END""",
]


def upgrade() -> None:
    op.create_index('ix_audit_events_target', 'audit_events', ['target', 'id'], unique=False)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(POSTGRES)
    else:
        for statement in SQLITE:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER step_runs_audit ON step_runs")
        op.execute("DROP FUNCTION millrace_step_audit()")
    else:
        for name in ("step_runs_audit_insert", "step_runs_audit_status", "step_runs_audit_redelivered"):
            op.execute(f"DROP TRIGGER {name}")
    op.drop_index('ix_audit_events_target', table_name='audit_events')
