"""The statements of loops: where a ``break_if`` ended a for_each or loop (kept on its
attempt, so lanes on other workers see it), and a composite step's open attempt found again."""
from __future__ import annotations

from sqlalchemy import Engine, select, update

from orchestrator.execution.lifecycle import StepStatus
from orchestrator.store.attempts import Attempt
from orchestrator.store.database import autocommit
from orchestrator.store.tables import step_runs


def mark_broken(engine: Engine, run_id: str, loop_path: str, at: str) -> None:
    """Record that the step at ``at`` broke the loop at ``loop_path`` (the first break counts)."""
    with autocommit(engine).connect() as conn:
        conn.execute(update(step_runs).where(
            step_runs.c.run_id == run_id, step_runs.c.path == loop_path, step_runs.c.attempt == 1,
            step_runs.c.broke_at.is_(None)).values(broke_at=at))


def broke_at(engine: Engine, run_id: str, loop_path: str) -> str | None:
    """Where the loop at ``loop_path`` was broken, or None while no break_if held."""
    with autocommit(engine).connect() as conn:
        return conn.execute(select(step_runs.c.broke_at).where(
            step_runs.c.run_id == run_id, step_runs.c.path == loop_path, step_runs.c.attempt == 1)).scalar()


def loop_attempt(engine: Engine, run_id: str, path: str) -> Attempt | None:
    """The (first and only) attempt of a composite step, as its prologue opened it."""
    with autocommit(engine).connect() as conn:
        row = conn.execute(select(
            step_runs.c.id, step_runs.c.status, step_runs.c.result, step_runs.c.error, step_runs.c.deliveries,
            step_runs.c.continuation, step_runs.c.resume_at).where(
            step_runs.c.run_id == run_id, step_runs.c.path == path, step_runs.c.attempt == 1)).first()
    if row is None:
        return None
    return Attempt(row.id, StepStatus(row.status), row.result, row.error, row.deliveries, row.continuation,
                   row.resume_at)
