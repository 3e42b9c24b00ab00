"""A run's row through its life: recorded (admitted under its concurrency limit), started, ended once."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from orchestrator.errors import Conflict, NotFound
from orchestrator.execution.lifecycle import ACTIVE, OPEN_STEP, UNFINISHED, Phase, RunStatus, StepStatus
from orchestrator.store.audit import acting, audit
from orchestrator.store.outbox import Owed, OwedKind, owe
from orchestrator.store.sql import now
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
    with engine.connect() as conn:
        earlier = conn.execute(select(runs.c.id, runs.c.status).where(
            runs.c.flow_id == flow_id, runs.c.idempotency_key == key)).first()
    return None if earlier is None else Created(earlier.id, RunStatus(earlier.status), owed=None)


def insert_run(conn: Connection, new: NewRun) -> Created:
    """Insert a queued run, admitted under its limit: over it, the run is held (queue),
    recorded cancelled (cancel), or refused with Conflict and not recorded (fail). An
    admitted run's first message is owed in the same transaction."""
    status, held, error = RunStatus.QUEUED, False, None
    limit = new.limit
    at = now()
    if limit is not None and limit.debounce:
        pending = _debouncing(conn, new, at)
        if pending is not None:
            return pending
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
    owed = None
    if error:
        audit(conn, new.actor, "run.cancelled", f"run:{new.run_id}", error=error)
        owe(conn, OwedKind.FOLLOW_UP, new.run_id)
    elif until is not None and not held:  # sent at the window's end, by the sweeper
        owe(conn, OwedKind.DEBOUNCED, new.run_id, since=until)
    elif not held:
        owed = owe(conn, OwedKind.RUN, new.run_id, message=new.message, since=at)
    return Created(new.run_id, status, owed)


def _debouncing(conn: Connection, new: NewRun, at: dt.datetime) -> Created | None:
    """The run of this flow and key whose debounce window is still open, given ``new``'s
    inputs and labels (the latest win); None when there is none. The key's lock, held until
    commit, makes concurrent starts find each other: one inserts, the others coalesce."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(
            func.hashtext(f"millrace-debounce:{new.flow_id}:{new.limit.key}"))))
    pending = conn.execute(select(runs.c.id).where(
        runs.c.flow_id == new.flow_id, runs.c.concurrency_key == new.limit.key,
        runs.c.status == RunStatus.QUEUED.value, runs.c.debounce_until > at)
        .order_by(runs.c.created_at.desc()).limit(1).with_for_update()).scalar()
    if pending is None:
        return None
    conn.execute(update(runs).where(runs.c.id == pending).values(inputs=new.inputs, labels=new.labels))
    audit(conn, new.actor, "run.debounced", f"run:{pending}", trigger=new.trigger)
    return Created(pending, RunStatus.QUEUED, owed=None)


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


def start_run(engine: Engine, run_id: str, worker: str) -> bool:
    """queued -> running; False when the run is not queued (already started, or cancelled)."""
    with engine.begin() as conn:
        changed = conn.execute(
            update(runs).where(runs.c.id == run_id, runs.c.status == RunStatus.QUEUED.value)
            .values(status=RunStatus.RUNNING.value, started_at=now())
        ).rowcount
        if changed:
            audit(conn, worker, "run.started", f"run:{run_id}")
            return True
        status = conn.execute(select(runs.c.status).where(runs.c.id == run_id)).scalar()
    return status in ACTIVE


@dataclass(frozen=True)
class Ending:
    """A run that just ended, and who waits on it."""

    run_id: str
    status: RunStatus
    result: Any
    error: str | None
    parent_step_run_id: int | None
    owed: Owed | None  # what its end leaves owed: its follow-up, or its on_failure steps


def finish_run(engine: Engine, run_id: str, phase: Phase, result: Any, worker: str) -> Ending | None:
    """End a run: succeeded after its steps, failed after its on_failure steps; once. Its
    follow-up is owed in the same transaction."""
    if phase is Phase.MAIN:
        where = and_(runs.c.status.in_(ACTIVE), runs.c.error.is_(None))
        status = RunStatus.SUCCEEDED
    else:
        where = runs.c.status == RunStatus.RUNNING.value
        status = RunStatus.FAILED
    with engine.begin() as conn:
        row = conn.execute(
            update(runs).where(runs.c.id == run_id, where)
            .values(status=status.value, result=result if status is RunStatus.SUCCEEDED else None,
                    finished_at=now())
            .returning(runs.c.error, runs.c.parent_step_run_id)
        ).first()
        if row is None:
            return None
        audit(conn, worker, f"run.{status.value}", f"run:{run_id}", error=row.error)
        owed = owe(conn, OwedKind.FOLLOW_UP, run_id)
    return Ending(run_id, status, result, row.error, row.parent_step_run_id, owed)


def fail_run(engine: Engine, run_id: str, error: str, on_failure: dict[str, Any] | None,
             worker: str) -> Ending | None:
    """Record the first failure of a run. With ``on_failure`` (the message of its on_failure
    steps, owed from this commit on) the run stays running: they run, then finish marks it
    failed; without, it ends now and its follow-up is owed. None if it had failed or ended
    already."""
    has_on_failure = on_failure is not None
    values: dict[str, Any] = {"error": error}
    if has_on_failure:
        values.update(status=RunStatus.RUNNING.value)
    else:
        values.update(status=RunStatus.FAILED.value, finished_at=now())
    with engine.begin() as conn:
        row = conn.execute(
            update(runs).where(runs.c.id == run_id, runs.c.status.in_(ACTIVE), runs.c.error.is_(None))
            .values(**values).returning(runs.c.parent_step_run_id)
        ).first()
        if row is None:
            return None
        audit(conn, worker, "run.failed" if not has_on_failure else "run.failing", f"run:{run_id}", error=error)
        owed = (owe(conn, OwedKind.ON_FAILURE, run_id, message=on_failure) if has_on_failure
                else owe(conn, OwedKind.FOLLOW_UP, run_id))
    status = RunStatus.RUNNING if has_on_failure else RunStatus.FAILED
    return Ending(run_id, status, None, error, row.parent_step_run_id, owed)


@dataclass(frozen=True)
class Cancellation:
    """A run just cancelled: the tasks of its running steps, its child runs, who waits on it."""

    task_ids: list[str]
    children: list[str]
    parent_step_run_id: int | None
    follow_up: Owed | None


def cancel_run(engine: Engine, run_id: str, actor: str) -> Cancellation:
    """End a run as cancelled, once: its waiting steps end too; returns what is left to stop."""
    at = now()
    with engine.begin() as conn:
        row = conn.execute(
            update(runs).where(runs.c.id == run_id, runs.c.status.in_(UNFINISHED))
            .values(status=RunStatus.CANCELLED.value, finished_at=at).returning(runs.c.parent_step_run_id)
        ).first()
        if row is None:
            status = conn.execute(select(runs.c.status).where(runs.c.id == run_id)).scalar()
            if status is None:
                raise NotFound(f"run '{run_id}' does not exist")
            raise Conflict(f"run {run_id} has ended already ({status})")
        acting(conn, actor)
        conn.execute(update(step_runs).where(step_runs.c.run_id == run_id, step_runs.c.status.in_(
            OPEN_STEP)).values(
            status=StepStatus.FAILED.value, error="run cancelled", finished_at=at, continuation=None))
        task_ids = list(conn.execute(select(step_runs.c.task_id).where(
            step_runs.c.run_id == run_id, step_runs.c.error == "run cancelled",
            step_runs.c.finished_at == at, step_runs.c.task_id.is_not(None))).scalars())
        children = list(conn.execute(select(runs.c.id).where(
            runs.c.parent_run_id == run_id, runs.c.finished_at.is_(None))).scalars())
        audit(conn, actor, "run.cancelled", f"run:{run_id}")
        follow_up = owe(conn, OwedKind.FOLLOW_UP, run_id)
    return Cancellation(task_ids, children, row.parent_step_run_id, follow_up)


def run_status(engine: Engine, run_id: str) -> RunStatus:
    with engine.connect() as conn:
        status = conn.execute(select(runs.c.status).where(runs.c.id == run_id)).scalar()
    if status is None:
        raise NotFound(f"run '{run_id}' does not exist")
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

