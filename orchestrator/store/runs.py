"""A run's row through its life: recorded (admitted under its concurrency limit), started, ended once."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from orchestrator.errors import Conflict
from orchestrator.execution.lifecycle import ACTIVE, OPEN_STEP, UNFINISHED, Phase, RunStatus, StepStatus
from orchestrator.store.audit import acting, audit
from orchestrator.store.debounce import join_pending, joined_run
from orchestrator.store.outbox import Owed, OwedKind, owe
from orchestrator.store.retention import missing_run
from orchestrator.store.sql import inline, now, unflushed
from orchestrator.store.tables import (
    outbox,
    runs,
    step_runs,
)


@dataclass(frozen=True)
class Limit:
    """A flow's concurrency rule for one key value: its limit (None: no limit) and its debounce window."""

    limit: int | None
    key: str
    on_limit: str  # queue | cancel | fail
    debounce: float | None = None  # seconds


@dataclass(frozen=True)
class NewRun:
    """A run to record: which flow version, with what, started by whom and how."""

    run_id: str
    flow_id: str
    version: int
    inputs: dict[str, Any]
    trigger: str = "cli"
    actor: str = "cli"
    parent_run_id: str | None = None
    parent_step_run_id: int | None = None
    depth: int = 0
    idempotency_key: str | None = None
    restarted_from: str | None = None
    scripts: dict[str, int] | None = None
    limit: Limit | None = None
    schedule_id: str | None = None
    message: dict[str, Any] | None = None  # its first message, when not the flow's whole canvas (a restart)
    reused: tuple[int, ...] = ()  # a restart's: the attempts of ``restarted_from`` whose outcomes it takes
    labels: dict[str, str] = field(default_factory=dict)
    priority: int | None = None


@dataclass(frozen=True)
class Created:
    run_id: str
    status: RunStatus
    owed: Owed | None  # its first message, owed since the commit (None: held, debounced, refused, made before)


def create_run(engine: Engine, new: NewRun) -> Created:
    """Record a run; with an idempotency key already used for this flow, the earlier run."""
    if new.idempotency_key is not None:  # a retry finds its run even when the limit is now full
        earlier = _by_idempotency_key(engine, new.flow_id, new.idempotency_key)
        if earlier is not None:
            return earlier
    try:
        with engine.begin() as conn:
            return insert_run(conn, new)
    except IntegrityError:
        if new.idempotency_key is None:
            raise
        earlier = _by_idempotency_key(engine, new.flow_id, new.idempotency_key)
        assert earlier is not None
        return earlier


def _by_idempotency_key(engine: Engine, flow_id: str, key: str) -> Created | None:
    """The run a start with this key made, or joined while it was debounced."""
    with engine.connect() as conn:
        earlier = conn.execute(select(runs.c.id, runs.c.status).where(
            runs.c.flow_id == flow_id, runs.c.idempotency_key == key)).first()
        if earlier is None:
            earlier = joined_run(conn, flow_id, key)
    return None if earlier is None else Created(earlier.id, RunStatus(earlier.status), owed=None)


def insert_run(conn: Connection, new: NewRun) -> Created:
    """Insert a queued run, admitted under its limit: over it, the run is held (queue),
    recorded cancelled (cancel), or refused with Conflict and not recorded (fail). An
    admitted run's first message is owed in the same transaction."""
    status, held, error = RunStatus.QUEUED, False, None
    limit = new.limit
    at = now()
    if limit is not None and limit.debounce:
        pending = join_pending(conn, new.flow_id, limit.key, at, inputs=new.inputs, labels=new.labels,
                               idempotency_key=new.idempotency_key, actor=new.actor, trigger=new.trigger)
        if pending is not None:
            return Created(pending, RunStatus.QUEUED, owed=None)
    if limit is not None and limit.limit is not None and running_under(conn, new.flow_id, limit.key) >= limit.limit:
        if limit.on_limit == "fail":
            raise Conflict(f"flow {new.flow_id} has {limit.limit} active run(s)"
                           + (f" for key '{limit.key}'" if limit.key else "") + ", its concurrency limit")
        if limit.on_limit == "cancel":
            status, error = RunStatus.CANCELLED, f"cancelled: concurrency limit {limit.limit} reached"
        else:
            held = True
    until = at + dt.timedelta(seconds=limit.debounce) if limit is not None and limit.debounce else None
    conn.execute(insert(runs).values(
        id=new.run_id, flow_id=new.flow_id, flow_version=new.version, status=status.value,
        inputs=new.inputs, trigger=new.trigger, parent_run_id=new.parent_run_id,
        parent_step_run_id=new.parent_step_run_id, depth=new.depth, created_at=at,
        idempotency_key=new.idempotency_key, restarted_from=new.restarted_from, scripts=new.scripts or None,
        schedule_id=new.schedule_id, concurrency_key=limit.key if limit else None, held=held, error=error,
        finished_at=at if status is RunStatus.CANCELLED else None, labels=new.labels, priority=new.priority,
        debounce_until=until))
    audit(conn, new.actor, "run.created", f"run:{new.run_id}", flow=new.flow_id, version=new.version,
          trigger=new.trigger, restarted_from=new.restarted_from, held=held or None)
    if new.reused:
        _copy_reused(conn, new, at)
    owed = None
    if error:
        audit(conn, new.actor, "run.cancelled", f"run:{new.run_id}", error=error)
        owe(conn, OwedKind.FOLLOW_UP, new.run_id)
    elif until is not None and not held:  # sent at the window's end, by the sweeper
        owe(conn, OwedKind.DEBOUNCED, new.run_id, since=until)
    elif not held:
        owed = owe(conn, OwedKind.RUN, new.run_id, message=new.message, since=at)
    return Created(new.run_id, status, owed)


def _copy_reused(conn: Connection, new: NewRun, at: Any) -> None:
    """Copy the outcomes a restart reuses into its run, before its first message is owed: its
    workers find each one recorded and replay it. Each copy is the step's first attempt, marked
    with the run that ran it (a restart of a restart keeps the first), dated when it was reused."""
    acting(conn, new.actor)
    copied = ("path", "step_id", "kind", "item_index", "status", "worker", "result", "error", "logs", "cached",
              "broke_at")
    conn.execute(insert(step_runs).from_select(
        ["run_id", *copied, "attempt", "deliveries", "created_at", "started_at", "finished_at", "reused_from"],
        select(literal(new.run_id), *(step_runs.c[name] for name in copied), literal(1), literal(0),
               literal(at, step_runs.c.created_at.type), literal(at, step_runs.c.started_at.type),
               literal(at, step_runs.c.finished_at.type),
               func.coalesce(step_runs.c.reused_from, literal(new.restarted_from)))  # where it ran
        .where(step_runs.c.run_id == new.restarted_from, step_runs.c.id.in_(new.reused))
        .order_by(step_runs.c.id)))


def running_under(conn: Connection, flow_id: str, key: str) -> int:
    """Active runs of a flow for a concurrency key, after taking the key's lock until commit."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"millrace-concurrency:{flow_id}:{key}"))))
    return conn.execute(select(func.count()).select_from(runs).where(
        runs.c.flow_id == flow_id, runs.c.concurrency_key == key, runs.c.held.is_(False),
        runs.c.status.in_(UNFINISHED))).scalar_one()


def release_held(engine: Engine, flow_id: str, key: str, limit: int) -> list[Owed]:
    """Admit the oldest held runs of a flow and key that now fit under ``limit``; their first
    messages are owed from this commit on (returned, to send)."""
    with engine.begin() as conn:
        free = limit - running_under(conn, flow_id, key)
        if free <= 0:
            return []
        rows = conn.execute(select(runs.c.id)
                            .where(runs.c.flow_id == flow_id, runs.c.concurrency_key == key,
                                   runs.c.held.is_(True), runs.c.status == RunStatus.QUEUED.value)
                            .order_by(runs.c.created_at).limit(free)).all()
        if not rows:
            return []
        conn.execute(update(runs).where(runs.c.id.in_([r.id for r in rows])).values(held=False))
        owed = [owe(conn, OwedKind.RUN, r.id) for r in rows]
        return [o for o in owed if o is not None]


def start_run(engine: Engine, run_id: str, worker: str, *, flush: bool = True) -> bool:
    """queued -> running; False when the run is not queued (already started, or cancelled).
    ``flush=False`` when what follows in the same task writes and flushes (its first step's
    outcome): see ``sql.unflushed``."""
    started = update(runs).where(runs.c.id == run_id, runs.c.status == RunStatus.QUEUED.value)
    if not flush:
        started = started.where(unflushed(engine.dialect.name))
    with engine.begin() as conn:
        changed = conn.execute(started.values(status=RunStatus.RUNNING.value, started_at=now())).rowcount
        if changed:
            audit(conn, worker, "run.started", f"run:{run_id}")
            return True
        status = conn.execute(select(runs.c.status).where(runs.c.id == run_id)).scalar()
    return status in ACTIVE


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
    if phase is Phase.FINALLY:
        values: dict[str, Any] = {"status": runs.c.ending, "ending": None, "finished_at": now()}
    else:
        status = RunStatus.SUCCEEDED if phase is Phase.MAIN else RunStatus.FAILED
        values = {"result": result if status is RunStatus.SUCCEEDED else None, **_end(status, has_finally)}
    with engine.begin() as conn:
        row = conn.execute(update(runs).where(runs.c.id == run_id, _IN_PHASE[phase]).values(**values)
                           .returning(*_ENDED)).first()
        return None if row is None else _ended(conn, worker, run_id, row)


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

