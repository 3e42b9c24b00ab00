"""Approval steps as deciding them needs: the waiting attempt with its run's flow version,
who started the run, and the resume and cancel links already followed."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine, select

from orchestrator.errors import Conflict, NotFound
from orchestrator.execution.lifecycle import StepStatus
from orchestrator.store.sql import dialect_insert, now
from orchestrator.store.tables import approval_links, audit_events, runs, step_runs


@dataclass(frozen=True)
class ApprovalAttempt:
    """An approval step's attempt and what its decision is checked against."""

    id: int
    run_id: str
    path: str
    status: StepStatus
    flow_id: str
    flow_version: int
    waiting_since: dt.datetime
    resume_at: dt.datetime | None  # when its timeout decides it

    @property
    def static_path(self) -> str:
        """Its path in the plan: without the for_each items' and loop iterations' indices."""
        return static_path(self.path)


def static_path(path: str) -> str:
    """``each[2].review`` -> ``each.review``: a concrete step path as the plan indexes it."""
    out, depth = [], 0
    for char in path:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif depth == 0:
            out.append(char)
    return "".join(out)


_COLUMNS = (step_runs.c.id, step_runs.c.run_id, step_runs.c.path, step_runs.c.status, step_runs.c.kind,
            runs.c.flow_id, runs.c.flow_version, step_runs.c.started_at, step_runs.c.resume_at)


def _approval(row) -> ApprovalAttempt:
    return ApprovalAttempt(row.id, row.run_id, row.path, StepStatus(row.status), row.flow_id, row.flow_version,
                           row.started_at, row.resume_at)


def waiting_approval(engine: Engine, run_id: str, step: str) -> ApprovalAttempt:
    """The waiting attempt of step ``step`` (its id or path) in a run."""
    with engine.connect() as conn:
        row = conn.execute(select(*_COLUMNS).join(runs, runs.c.id == step_runs.c.run_id).where(
            step_runs.c.run_id == run_id, step_runs.c.status == StepStatus.WAITING.value,
            (step_runs.c.path == step) | (step_runs.c.step_id == step),
        ).order_by(step_runs.c.id)).first()
    if row is None:
        raise NotFound(f"run '{run_id}' has no step '{step}' waiting")
    if row.kind != "approval":
        raise Conflict(f"step '{step}' waits for a {row.kind}, not for an approval")
    return _approval(row)


def waiting_approvals(engine: Engine, run_id: str) -> list[ApprovalAttempt]:
    """The approval steps of a run that wait for a decision, in the order they began."""
    with engine.connect() as conn:
        rows = conn.execute(select(*_COLUMNS).join(runs, runs.c.id == step_runs.c.run_id).where(
            step_runs.c.run_id == run_id, step_runs.c.status == StepStatus.WAITING.value,
            step_runs.c.kind == "approval").order_by(step_runs.c.id)).all()
    return [_approval(r) for r in rows]


def approval_attempt(engine: Engine, attempt_id: int) -> ApprovalAttempt:
    """An approval's attempt by id, whatever its status (a link names its attempt)."""
    with engine.connect() as conn:
        row = conn.execute(select(*_COLUMNS).join(runs, runs.c.id == step_runs.c.run_id).where(
            step_runs.c.id == attempt_id, step_runs.c.kind == "approval")).first()
    if row is None:
        raise NotFound(f"no approval step attempt {attempt_id}")
    return _approval(row)


def expired_approvals(engine: Engine) -> list[ApprovalAttempt]:
    """Waiting approvals whose timeout has passed (a pass's worth)."""
    with engine.connect() as conn:
        rows = conn.execute(select(*_COLUMNS).join(runs, runs.c.id == step_runs.c.run_id).where(
            step_runs.c.status == StepStatus.WAITING.value, step_runs.c.kind == "approval",
            step_runs.c.resume_at <= now()).limit(100)).all()
    return [_approval(r) for r in rows]


def started_by(engine: Engine, run_id: str, *, at_the_top: bool = False) -> str | None:
    """Who started a run: its ``run.created`` audit event's actor. ``at_the_top``: for a subflow
    run, whoever started the run at the top of it (its own creator is the worker that ran the
    flow step), as self_approval needs."""
    with engine.connect() as conn:
        while at_the_top and (parent := conn.execute(
                select(runs.c.parent_run_id).where(runs.c.id == run_id)).scalar()) is not None:
            run_id = parent
        return conn.execute(select(audit_events.c.actor).where(
            audit_events.c.action == "run.created", audit_events.c.target == f"run:{run_id}")
            .order_by(audit_events.c.id).limit(1)).scalar()


def spend_link(engine: Engine, digest: str, attempt_id: int, action: str, approver: str) -> bool:
    """Record a link as followed; False when it was followed before (a link decides once)."""
    stmt = dialect_insert(engine, approval_links).values(
        digest=digest, attempt_id=attempt_id, action=action, approver=approver, used_at=now(),
    ).on_conflict_do_nothing().returning(approval_links.c.digest)
    with engine.begin() as conn:
        return conn.execute(stmt).first() is not None


def link_used_at(engine: Engine, digest: str) -> dt.datetime | None:
    """When a link was followed, or None if it never was."""
    with engine.connect() as conn:
        return conn.execute(select(approval_links.c.used_at).where(approval_links.c.digest == digest)).scalar()
