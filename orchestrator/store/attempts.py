"""Step attempts: opened (or found again on redelivery), parked, decided and recorded once.

Step outcomes are recorded exactly once: an attempt row is keyed by (run, path, attempt),
a redelivered task finds the row it opened, and an outcome is written only over a row
still ``running``/``waiting`` (a fire-once update), so the first writer wins and every
later delivery reads what was recorded.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    case,
    exists,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from orchestrator.errors import NotFound
from orchestrator.execution.lifecycle import OPEN_STEP, Phase, RunStatus, StepStatus
from orchestrator.store.admission import Created, NewRun, insert_run
from orchestrator.store.audit import acting, audit
from orchestrator.store.database import autocommit
from orchestrator.store.outbox import Owed, OwedKind, owe
from orchestrator.store.outcomes import RECORD_OUTCOME, outcome_statement, outcome_values, write_outcome
from orchestrator.store.runs import event_parameters, in_phase, start_ctes, start_run
from orchestrator.store.sql import dialect_insert, inline, now, storable, unflushed
from orchestrator.store.tables import (
    runs,
    step_runs,
)


@dataclass(frozen=True)
class Attempt:
    id: int
    status: StepStatus
    result: Any
    error: str | None
    deliveries: int
    continuation: dict | None
    resume_at: dt.datetime | None

    @property
    def redelivered(self) -> bool:
        return self.deliveries > 1


def open_attempt(engine: Engine, *, run_id: str, phase: str, path: str, step_id: str, kind: str,
                 item_index: int | None, attempt: int, worker: str, task_id: str | None,
                 created_at: dt.datetime | None, after: dict[str, Any] | None = None,
                 starting: bool = False) -> Attempt | None:
    """Open (or, on redelivery, find) the row of this attempt, in one round trip.

    None when the run is no longer active for ``phase``: the caller stops. ``after``: the
    outcome of the step before it in its batch (``outcome_values``), written first, in the
    same statement on PostgreSQL; nothing opens (None) unless that outcome is the one
    recorded (another delivery recorded it first, and goes on itself). ``starting``: the
    run's start (queued -> running, ``runs.start_run``) first, in the same statement.
    """
    started = now()
    params = {"open_run_id": run_id, "open_path": path, "open_step_id": step_id, "open_kind": kind,
              "open_item_index": item_index, "open_attempt": attempt, "open_worker": worker, "open_task_id": task_id,
              "open_created_at": created_at or started, "open_started_at": started}
    dialect = engine.dialect.name
    if dialect != "postgresql":
        if starting and not start_run(engine, run_id, worker, flush=False):
            return None
        if after is not None and not write_outcome(engine, after, flush=False):
            return None
        after, starting = None, False
    if after is not None:
        params |= {f"prev_{name}": value for name, value in after.items()}
    if starting:
        params |= event_parameters(run_id, worker)
    with autocommit(engine).connect() as conn:
        row = conn.execute(_open_statement(dialect, phase, after is not None, starting), params).first()
    if row is None:
        return None
    return Attempt(row.id, StepStatus(row.status), row.result, row.error, row.deliveries,
                   row.continuation, row.resume_at)


@functools.cache
def _open_statement(dialect: str, phase: str, after: bool = False, starting: bool = False) -> Any:
    # Built once: constructing it per step costs more than the round trip it makes.
    active = exists().where(runs.c.id == bindparam("open_run_id"), in_phase(Phase(phase)))
    ctes = []
    if starting:  # the run's start first (its event before this one's): the run is active if it started
        started, event = start_ctes(flush=False)
        active = or_(active, exists(select(started.c.id)))
        ctes += [started, event]
    columns = ["run_id", "path", "step_id", "kind", "item_index", "attempt", "worker", "task_id", "created_at",
               "started_at"]
    values = select(
        # named apart from the columns: an UPDATE in the same statement would take those as its SET
        *(bindparam(f"open_{name}", type_=step_runs.c[name].type) for name in columns),
        literal(StepStatus.RUNNING.value), literal(1), literal(False),
    ).where(active)
    # Flushed with the outcome's commit: the row needs no flush of its own (sql.unflushed).
    values = values.where(unflushed(dialect))
    if after:  # the step before's outcome first (its event before this one's), and only if it is ours
        outcome = outcome_statement("prev_").returning(step_runs.c.id).cte("outcome")
        values = values.where(exists(select(outcome.c.id)))
        ctes.append(outcome)
    insert_ = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(step_runs)
    # Another delivery of a running or waiting attempt counts, and names who has it now; an
    # ended attempt handed on again (a replay) stays as it was recorded.
    live = step_runs.c.status.in_(inline(OPEN_STEP))
    return insert_.from_select([*columns, "status", "deliveries", "cached"], values).on_conflict_do_update(
        index_elements=["run_id", "path", "attempt"],
        set_={"deliveries": case((live, step_runs.c.deliveries + 1), else_=step_runs.c.deliveries),
              "worker": case((live, insert_.excluded.worker), else_=step_runs.c.worker),
              "task_id": case((live, insert_.excluded.task_id), else_=step_runs.c.task_id)},
    ).returning(step_runs.c.id, step_runs.c.status, step_runs.c.result, step_runs.c.error,
                step_runs.c.deliveries, step_runs.c.continuation, step_runs.c.resume_at).add_cte(*ctes)


def attempt_id(engine: Engine, run_id: str, path: str, attempt: int) -> int:
    with engine.connect() as conn:
        found = conn.execute(select(step_runs.c.id).where(
            step_runs.c.run_id == run_id, step_runs.c.path == path, step_runs.c.attempt == attempt)).scalar()
    if found is None:
        raise NotFound(f"run {run_id} has no attempt {attempt} of {path}")
    return found


def start_subflow(engine: Engine, child: NewRun, continuation: dict) -> Created | None:
    """Park a flow step (``child.parent_step_run_id``) and record its child run, together;
    None when the step is no longer running (its run was cancelled meanwhile).

    A redelivery finds the child made before (its first message stays owed until sent).
    The step is parked first: its row, then the audit chain, as a cancel takes them.
    """
    attempt_id = child.parent_step_run_id
    with engine.begin() as conn:
        existing = conn.execute(select(runs.c.id, runs.c.status).where(
            runs.c.parent_step_run_id == attempt_id)).first()
        if existing:
            return Created(existing.id, RunStatus(existing.status), owed=None)
        parked = conn.execute(update(step_runs).where(
            step_runs.c.id == attempt_id, step_runs.c.status == StepStatus.RUNNING.value).values(
            status=StepStatus.WAITING.value, continuation=continuation)).rowcount
        if not parked:
            return None
        inherited = conn.execute(select(runs.c.labels).where(runs.c.id == child.parent_run_id)).scalar()
        return insert_run(conn, dataclasses.replace(child, labels={**child.labels, **(inherited or {})}))


def child_of(engine: Engine, attempt_id: int) -> str | None:
    """The run a flow step's attempt started, if it did."""
    with engine.connect() as conn:
        return conn.execute(select(runs.c.id).where(runs.c.parent_step_run_id == attempt_id)).scalar()


def record_skipped(engine: Engine, *, run_id: str, path: str, step_id: str, kind: str,
                   item_index: int | None, worker: str) -> bool:
    """Record a step skipped by its ``if``; False when it has a row already: its condition was
    decided when that row was made (a replay or a retry does not decide it again)."""
    at = now()
    stmt = dialect_insert(engine, step_runs).values(
        run_id=run_id, path=path, step_id=step_id, kind=kind, item_index=item_index, attempt=1,
        status=StepStatus.SKIPPED.value, deliveries=1, worker=worker, created_at=at,
        started_at=at, finished_at=at,
    ).on_conflict_do_nothing().returning(step_runs.c.id)
    with engine.begin() as conn:
        return conn.execute(stmt).first() is not None


def follow_logs(engine: Engine, attempt_id: int, logs: str) -> None:
    """An attempt's output so far (masked by the caller), while it runs: what readers follow.
    Once the attempt has an outcome nothing is written (its outcome brings the whole output)."""
    with autocommit(engine).connect() as conn:
        conn.execute(update(step_runs).where(step_runs.c.id == attempt_id,
                                             step_runs.c.status == StepStatus.RUNNING.value)
                     .values(logs=storable(logs)))


def record_outcome(engine: Engine, attempt_id: int, status: StepStatus, result: Any = None,
                   error: str | None = None, logs: str | None = None,
                   cached: bool = False, labels: tuple[str, dict[str, str]] | None = None,
                   flush: bool = True) -> tuple[StepStatus, Any, str | None]:
    """Write an attempt's outcome once; returns the outcome on record (ours or an earlier one).

    With ``labels`` (its run's id and the labels its step adds), the run's labels take them in
    the same transaction: they are added exactly when this outcome is the one recorded.
    ``flush=False`` when the caller's next write flushes (the run's finish, in the same task):
    see ``sql.unflushed``."""
    values = outcome_values(attempt_id, status, result, error, logs, cached)
    if labels is not None:
        return _record_labelled(engine, values, *labels)
    if write_outcome(engine, values, flush=flush):
        return status, values["result"], values["error"]
    with engine.connect() as conn:
        return _recorded(conn, attempt_id)


def _recorded(conn: Connection, attempt_id: int) -> tuple[StepStatus, Any, str | None]:
    row = conn.execute(select(step_runs.c.status, step_runs.c.result, step_runs.c.error)
                       .where(step_runs.c.id == attempt_id)).one()
    return StepStatus(row.status), row.result, row.error


def _record_labelled(engine: Engine, values: dict[str, Any], run_id: str,
                     labels: dict[str, str]) -> tuple[StepStatus, Any, str | None]:
    # The run's row first, then the step's (and, through its trigger, the audit chain): the
    # order every transaction takes them in.
    with engine.connect() as conn:
        with conn.begin() as transaction:
            current = conn.execute(select(runs.c.labels).where(runs.c.id == run_id).with_for_update()).scalar()
            conn.execute(update(runs).where(runs.c.id == run_id).values(labels={**(current or {}), **labels}))
            if conn.execute(RECORD_OUTCOME, values).rowcount:
                return StepStatus(values["status"]), values["result"], values["error"]
            transaction.rollback()  # an earlier delivery recorded an outcome (and its labels)
        return _recorded(conn, values["attempt_id"])


def suspend_attempt(engine: Engine, attempt_id: int, run_id: str, continuation: dict, *,
                    resume_at: dt.datetime | None, suspend_run: bool, worker: str) -> None:
    """Park a step: it waits (approval, sleep, subflow) and keeps how to go on."""
    with engine.begin() as conn:
        # The run's row first: every transaction locks a run before its audit chain, which
        # the step's update takes through its trigger (the other order could deadlock).
        changed = suspend_run and conn.execute(update(runs).where(
            runs.c.id == run_id, runs.c.status == RunStatus.RUNNING.value)
            .values(status=RunStatus.SUSPENDED.value)).rowcount
        # only a running step parks (or a waiting one, a sleep's next slice): a cancel may have ended it
        conn.execute(update(step_runs).where(
            step_runs.c.id == attempt_id,
            step_runs.c.status.in_(OPEN_STEP)).values(
            status=StepStatus.WAITING.value, continuation=continuation, resume_at=resume_at))
        if changed:
            audit(conn, worker, "run.suspended", f"run:{run_id}")


def resume_attempt(engine: Engine, attempt_id: int, status: StepStatus, result: Any = None,
                   error: str | None = None, actor: str = "system", reason: str | None = None) -> Owed | None:
    """Decide a waiting step once; returns its continuation, owed from this commit on, or
    None if it was decided already (or has nothing to continue). ``reason`` is an approval's,
    for the audit trail (a rejection's is its error)."""
    at = now()
    with engine.begin() as conn:
        # the run's row before its audit chain (see suspend_attempt)
        conn.execute(select(runs.c.id).where(runs.c.id == select(step_runs.c.run_id).where(
            step_runs.c.id == attempt_id).scalar_subquery()).with_for_update(key_share=True))
        acting(conn, actor)
        row = conn.execute(
            update(step_runs)
            .where(step_runs.c.id == attempt_id, step_runs.c.status == StepStatus.WAITING.value)
            .values(status=status.value, result=result, error=error, finished_at=at)
            .returning(step_runs.c.run_id, step_runs.c.path, step_runs.c.continuation, step_runs.c.kind)
        ).first()
        if row is None:
            return None
        if row.kind == "approval":
            waiting = select(step_runs.c.id).where(
                step_runs.c.run_id == row.run_id, step_runs.c.status == StepStatus.WAITING.value,
                step_runs.c.kind == "approval")
            resumed = conn.execute(update(runs).where(
                runs.c.id == row.run_id, runs.c.status == RunStatus.SUSPENDED.value, ~exists(waiting))
                .values(status=RunStatus.RUNNING.value)).rowcount
            audit(conn, actor, "step.approved" if status is StepStatus.SUCCEEDED else "step.rejected",
                  f"run:{row.run_id}", path=row.path, reason=error or reason)
            if resumed:
                audit(conn, actor, "run.resumed", f"run:{row.run_id}")
        if not row.continuation:
            return None
        return owe(conn, OwedKind.CONTINUATION, row.run_id, attempt_id=attempt_id, message=row.continuation)
