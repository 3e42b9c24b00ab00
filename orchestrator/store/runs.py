"""A run's row through its life once recorded (``store/admission.py``): started, ended once."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Connection,
    Engine,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    true,
    update,
)

from orchestrator.errors import Conflict
from orchestrator.execution.lifecycle import ACTIVE, OPEN_STEP, UNFINISHED, Phase, RunStatus, StepStatus
from orchestrator.store.audit import acting, audit, event_per_row
from orchestrator.store.database import autocommit
from orchestrator.store.outbox import Owed, OwedKind, owe, owed_per_row
from orchestrator.store.retention import missing_run
from orchestrator.store.sql import inline, now, unflushed
from orchestrator.store.tables import (
    audit_events,
    flow_triggers,
    outbox,
    runs,
    step_runs,
)


def start_run(engine: Engine, run_id: str, worker: str, *, flush: bool = True) -> bool:
    """queued -> running; False when the run is not queued (already started, or cancelled).
    ``flush=False`` when what follows in the same task writes and flushes (its first step's
    outcome): see ``sql.unflushed``. On PostgreSQL the row and its event are one statement."""
    if engine.dialect.name == "postgresql":
        with autocommit(engine).connect() as conn:
            if conn.execute(_start_statement(flush), event_parameters(run_id, worker)).scalar():
                return True
            status = conn.execute(select(runs.c.status).where(runs.c.id == run_id)).scalar()
        return status in ACTIVE
    started = update(runs).where(runs.c.id == run_id, runs.c.status == RunStatus.QUEUED.value)
    with engine.begin() as conn:
        if conn.execute(started.values(status=RunStatus.RUNNING.value, started_at=now())).rowcount:
            audit(conn, worker, "run.started", f"run:{run_id}")
            return True
        status = conn.execute(select(runs.c.status).where(runs.c.id == run_id)).scalar()
    return status in ACTIVE


def event_parameters(run_id: str, actor: str, **more: Any) -> dict[str, Any]:
    """The parameters of a statement that writes a run's change with its event (``event_per_row``);
    none named as a column: an UPDATE in the statement would take it as its SET."""
    return {"for_run": run_id, "event_at": now(), "event_actor": actor, "event_target": f"run:{run_id}", **more}


_NO_DETAILS = literal({}, audit_events.c.details.type)


@functools.cache
def _start_statement(flush: bool) -> Any:
    # Built once: constructing it per run costs more than the round trip it makes.
    changed, event = start_ctes(flush)
    return select(func.count()).select_from(changed).add_cte(event)


def start_ctes(flush: bool) -> tuple[CTE, CTE]:
    """queued -> running and its event, as CTEs of one statement (PostgreSQL), with the
    parameters ``event_parameters`` gives; the first returns the run's id if it started."""
    started = update(runs).where(runs.c.id == bindparam("for_run"), runs.c.status == RunStatus.QUEUED.value)
    if not flush:
        started = started.where(unflushed("postgresql"))
    changed = started.values(status=RunStatus.RUNNING.value, started_at=bindparam("event_at")).returning(
        runs.c.id).cte("started")
    return changed, event_per_row(changed, literal("run.started"), _NO_DETAILS)


@dataclass(frozen=True)
class Ending:
    """A run that just ended, or whose finally steps are now owed, and who waits on it."""

    run_id: str
    status: RunStatus  # running: its finally steps (or on_failure steps) are owed
    result: Any
    error: str | None
    parent_step_run_id: int | None
    owed: Owed | None  # what its end leaves owed: its follow-up, its on_failure or finally steps


_RUNNING = RunStatus.RUNNING.value


def in_phase(phase: Phase) -> ColumnElement[bool]:
    """A run whose steps of ``phase`` may run: its main steps until it fails or its ending is
    recorded (stop_if, a cancel, the main steps' end); on_failure steps while it runs with no
    ending yet; finally steps while it runs with its ending recorded. Its constants are
    written into the SQL (statements run per step)."""
    if phase is Phase.MAIN:
        return and_(runs.c.status.in_(inline(ACTIVE)), runs.c.error.is_(None), runs.c.ending.is_(None))
    running = runs.c.status.in_(inline(ACTIVE))  # suspended too: an approval of the phase may wait
    return and_(running, runs.c.ending.is_(None) if phase is Phase.ON_FAILURE else runs.c.ending.is_not(None))


_IN_MAIN = in_phase(Phase.MAIN)
_IN_PHASE = {phase: in_phase(phase) for phase in Phase}
_ENDED = (runs.c.status, runs.c.ending, runs.c.error, runs.c.result, runs.c.parent_step_run_id)


def _end(status: RunStatus, has_finally: bool) -> dict[str, Any]:
    """The values that end a run with ``status``: now, or after its finally steps."""
    if has_finally:
        return {"status": _RUNNING, "ending": status.value}
    return {"status": status.value, "finished_at": now()}


def _ended(conn: Connection, actor: str, run_id: str, row: Any) -> Ending:
    """Audit what the run's row became and owe what it sets off: its finally steps while it
    stays running (``run.finally``, with the status it will end with: who cancelled a run
    with finally steps is this event's actor), its follow-up once it ended."""
    status = RunStatus(row.status)
    if status.finished:
        audit(conn, actor, f"run.{status.value}", f"run:{run_id}", error=row.error)
        owed = owe(conn, OwedKind.FOLLOW_UP, run_id)
    else:
        audit(conn, actor, "run.finally", f"run:{run_id}", ending=row.ending, error=row.error)
        owed = owe(conn, OwedKind.FINALLY, run_id)
    return Ending(run_id, status, row.result, row.error, row.parent_step_run_id, owed)


def finish_run(engine: Engine, run_id: str, phase: Phase, result: Any, worker: str,
               has_finally: bool = False) -> Ending | None:
    """End a phase of a run, once: its main steps (succeeded, with ``result``), its on_failure
    steps (failed), its finally steps (the status its ending says). With ``has_finally`` the
    first two leave the run running, its ending recorded, its finally steps owed; an end owes
    its follow-up, in the same transaction."""
    status = RunStatus.SUCCEEDED if phase is Phase.MAIN else RunStatus.FAILED
    ended_result = result if status is RunStatus.SUCCEEDED else None
    if engine.dialect.name == "postgresql" and (phase is Phase.FINALLY or not has_finally):
        params = event_parameters(run_id, worker, owed_message=None)
        if phase is not Phase.FINALLY:
            params |= {"status": status.value, "result": ended_result}
        with autocommit(engine).connect() as conn:
            row = conn.execute(_finish_statement(phase), params).first()
        if row is None:
            return None
        follow = None if row.owed_id is None else Owed(row.owed_id, OwedKind.FOLLOW_UP, run_id)
        return Ending(run_id, RunStatus(row.status), row.result, row.error, row.parent_step_run_id, follow)
    if phase is Phase.FINALLY:
        values: dict[str, Any] = {"status": runs.c.ending, "ending": None, "finished_at": now()}
    else:
        values = {"result": ended_result, **_end(status, has_finally)}
    with engine.begin() as conn:
        row = conn.execute(update(runs).where(runs.c.id == run_id, _IN_PHASE[phase]).values(**values)
                           .returning(*_ENDED)).first()
        return None if row is None else _ended(conn, worker, run_id, row)


@functools.cache
def _finish_statement(phase: Phase) -> Any:
    """A run's end, its event and its follow-up in one statement (PostgreSQL), built once: the
    follow-up owed only when something follows (a flow trigger listens to its flow, or it holds
    a concurrency slot); nothing else waits on a run's end but a parent, settled by its ender."""
    if phase is Phase.FINALLY:
        values: dict[str, Any] = {"status": runs.c.ending, "ending": None}
    else:
        values = {"status": bindparam("status"), "result": bindparam("result", type_=runs.c.result.type)}
    ended = (update(runs).where(runs.c.id == bindparam("for_run"), _IN_PHASE[phase])
             .values(**values, finished_at=bindparam("event_at"))
             .returning(*_ENDED, runs.c.id, runs.c.flow_id, runs.c.concurrency_key).cte("ended"))
    event = event_per_row(ended, literal("run.") + ended.c.status, func.jsonb_build_object("error", ended.c.error))
    follows = or_(ended.c.concurrency_key.is_not(None), exists().where(flow_triggers.c.upstream == ended.c.flow_id))
    owed = owed_per_row(ended, OwedKind.FOLLOW_UP, follows)
    return select(ended, owed.c.id.label("owed_id")).select_from(ended.outerjoin(owed, true())).add_cte(event)


def fail_run(engine: Engine, run_id: str, error: str, on_failure: dict[str, Any] | None,
             worker: str, has_finally: bool = False) -> Ending | None:
    """Record the first failure of a run. With ``on_failure`` (the message of its on_failure
    steps, owed from this commit on) the run stays running: they run, then finish marks it
    failed; without, it ends now (or after its finally steps) and what follows is owed. None
    if it had failed or ended already. Its waiting approvals end failed with it."""
    values: dict[str, Any] = {"error": error}
    values |= {"status": _RUNNING} if on_failure is not None else _end(RunStatus.FAILED, has_finally)
    with engine.begin() as conn:
        row = conn.execute(update(runs).where(runs.c.id == run_id, _IN_MAIN).values(**values)
                           .returning(*_ENDED)).first()
        if row is None:
            return None
        _end_waiting_approvals(conn, run_id)
        if on_failure is None:
            return _ended(conn, worker, run_id, row)
        audit(conn, worker, "run.failing", f"run:{run_id}", error=error)
        owed = owe(conn, OwedKind.ON_FAILURE, run_id, message=on_failure)
    return Ending(run_id, RunStatus.RUNNING, None, error, row.parent_step_run_id, owed)


def _end_waiting_approvals(conn: Connection, run_id: str) -> None:
    """A failed run's approvals waiting in other branches can no longer go on: no decision (nor link) takes them."""
    conn.execute(update(step_runs).where(
        step_runs.c.run_id == run_id, step_runs.c.status == StepStatus.WAITING.value,
        step_runs.c.kind == "approval").values(status=StepStatus.FAILED.value, error="cancelled: the run failed",
                                               finished_at=now(), continuation=None))


def fail_finally(engine: Engine, run_id: str, error: str, worker: str) -> Ending | None:
    """A finally step failed: the run ends now, failed (a cancelled one stays cancelled), with
    ``error`` unless it had failed before; once."""
    cancelled = RunStatus.CANCELLED.value
    values = {"status": case((runs.c.ending == cancelled, cancelled), else_=RunStatus.FAILED.value),
              "error": func.coalesce(runs.c.error, error), "result": None, "ending": None, "finished_at": now()}
    with engine.begin() as conn:
        row = conn.execute(update(runs).where(runs.c.id == run_id, _IN_PHASE[Phase.FINALLY]).values(**values)
                           .returning(*_ENDED)).first()
        if row is None:
            return None
        _end_waiting_approvals(conn, run_id)
        return _ended(conn, worker, run_id, row)


@dataclass(frozen=True)
class Cancellation:
    """A run just cancelled (or stopped): the tasks of its running steps, its child runs, who
    waits on it and what it leaves owed (its follow-up, or its finally steps)."""

    task_ids: list[str]
    children: list[str]
    ending: Ending


def cancel_run(engine: Engine, run_id: str, actor: str, has_finally: bool = False) -> Cancellation:
    """Cancel a run, once: its open steps end. With ``has_finally`` a started run whose main
    (or on_failure) steps were running stays running for its finally steps, then ends
    cancelled; otherwise (a run not started, or one in its finally steps) it ends now."""
    with engine.begin() as conn:
        row = None
        if has_finally:
            row = conn.execute(update(runs).where(runs.c.id == run_id, runs.c.status.in_(ACTIVE),
                                                  runs.c.ending.is_(None))
                               .values(status=_RUNNING, ending=RunStatus.CANCELLED.value).returning(*_ENDED)).first()
        if row is None:
            row = conn.execute(update(runs).where(runs.c.id == run_id, runs.c.status.in_(UNFINISHED))
                               .values(status=RunStatus.CANCELLED.value, ending=None, finished_at=now())
                               .returning(*_ENDED)).first()
        if row is None:
            status = conn.execute(select(runs.c.status).where(runs.c.id == run_id)).scalar()
            if status is None:
                raise missing_run(conn, run_id)
            raise Conflict(f"run {run_id} has ended already ({status})")
        acting(conn, actor)
        task_ids, children = _close_steps(conn, run_id, "run cancelled")
        return Cancellation(task_ids, children, _ended(conn, actor, run_id, row))


def stop_run(engine: Engine, run_id: str, path: str, result: Any, worker: str,
             has_finally: bool = False) -> Cancellation | None:
    """The ``stop_if`` of step ``path`` held: the run ends succeeded with ``result`` (after its
    finally steps, with ``has_finally``), its other open steps end; once. None when its main
    steps had ended already (failed, cancelled, stopped)."""
    values = {"stopped_at": path, "result": result, **_end(RunStatus.SUCCEEDED, has_finally)}
    with engine.begin() as conn:
        row = conn.execute(update(runs).where(runs.c.id == run_id, _IN_MAIN).values(**values)
                           .returning(*_ENDED)).first()
        if row is None:
            return None
        task_ids, children = _close_steps(conn, run_id, f"cancelled: the run stopped at {path}")
        return Cancellation(task_ids, children, _ended(conn, worker, run_id, row))


def _close_steps(conn: Connection, run_id: str, error: str) -> tuple[list[str], list[str]]:
    """End a run's open steps with ``error``: the tasks running them, and its unfinished child runs."""
    at = now()
    conn.execute(update(step_runs).where(step_runs.c.run_id == run_id, step_runs.c.status.in_(OPEN_STEP))
                 .values(status=StepStatus.FAILED.value, error=error, finished_at=at, continuation=None))
    task_ids = list(conn.execute(select(step_runs.c.task_id).where(
        step_runs.c.run_id == run_id, step_runs.c.error == error, step_runs.c.finished_at == at,
        step_runs.c.task_id.is_not(None))).scalars())
    children = list(conn.execute(select(runs.c.id).where(
        runs.c.parent_run_id == run_id, runs.c.finished_at.is_(None))).scalars())
    return task_ids, children


def run_status(engine: Engine, run_id: str) -> RunStatus:
    with engine.connect() as conn:
        status = conn.execute(select(runs.c.status).where(runs.c.id == run_id)).scalar()
        if status is None:
            raise missing_run(conn, run_id)
    return RunStatus(status)


def abandon_unpublished(engine: Engine, owed: Owed, error: str, actor: str) -> None:
    """Fail a run that was recorded but whose first message cannot be rebuilt to send it
    (a restart recorded before its message was kept in the outbox)."""
    with engine.begin() as conn:
        if conn.execute(update(runs).where(runs.c.id == owed.run_id, runs.c.status == RunStatus.QUEUED.value)
                        .values(status=RunStatus.FAILED.value, error=error, finished_at=now())).rowcount:
            audit(conn, actor, "run.failed", f"run:{owed.run_id}", error=error)
            owe(conn, OwedKind.FOLLOW_UP, owed.run_id)
        conn.execute(delete(outbox).where(outbox.c.id == owed.id))

