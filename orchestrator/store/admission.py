"""A run recorded: admitted under its flow's concurrency limit (or held, cancelled, refused),
its event and its first message owed with it; and held runs let in as slots free up."""
from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, insert, literal, select, true, update
from sqlalchemy.exc import IntegrityError

from orchestrator.errors import Conflict
from orchestrator.execution.lifecycle import UNFINISHED, RunStatus
from orchestrator.store.audit import acting, audit, event_per_row
from orchestrator.store.database import autocommit
from orchestrator.store.debounce import join_pending, joined_run
from orchestrator.store.outbox import Owed, OwedKind, owe, owed_per_row
from orchestrator.store.sql import now
from orchestrator.store.tables import audit_events, runs, step_runs


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
        if engine.dialect.name == "postgresql" and new.limit is None and not new.reused:
            return _insert_admitted(engine, new)
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
        **_row(new, at, status), concurrency_key=limit.key if limit else None, held=held, error=error,
        finished_at=at if status is RunStatus.CANCELLED else None, debounce_until=until))
    audit(conn, new.actor, "run.created", f"run:{new.run_id}", **_created_details(new, held))
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


def _insert_admitted(engine: Engine, new: NewRun) -> Created:
    """``insert_run`` for a run no limit holds and no restart fills (PostgreSQL): its row, its
    event and its first message owed in one statement, one round trip."""
    at = now()
    params = {**_row(new, at, RunStatus.QUEUED), "event_at": at, "event_actor": new.actor,
              "event_target": f"run:{new.run_id}", "event_details": _created_details(new, False),
              "owed_message": new.message}
    with autocommit(engine).connect() as conn:
        owed_id = conn.execute(_admitted_statement(), params).scalar()
    return Created(new.run_id, RunStatus.QUEUED, Owed(owed_id, OwedKind.RUN, new.run_id, message=new.message))


@functools.cache
def _admitted_statement() -> Any:
    # Built once: constructing it per run costs more than the round trip it makes.
    row = {name: bindparam(name, type_=runs.c[name].type) for name in _ROW}
    created = insert(runs).values(**row, held=False).returning(runs.c.id).cte("created")
    details = bindparam("event_details", type_=audit_events.c.details.type)
    event = event_per_row(created, literal("run.created"), details)
    return select(owed_per_row(created, OwedKind.RUN, true()).c.id).add_cte(event)


_ROW = ("id", "flow_id", "flow_version", "status", "inputs", "trigger", "parent_run_id", "parent_step_run_id",
        "depth", "created_at", "idempotency_key", "restarted_from", "scripts", "schedule_id", "labels", "priority")


def _row(new: NewRun, at: dt.datetime, status: RunStatus) -> dict[str, Any]:
    """The columns of a new run's row (``_ROW``) that its admission does not decide."""
    return {"id": new.run_id, "flow_id": new.flow_id, "flow_version": new.version, "status": status.value,
            "inputs": new.inputs, "trigger": new.trigger, "parent_run_id": new.parent_run_id,
            "parent_step_run_id": new.parent_step_run_id, "depth": new.depth, "created_at": at,
            "idempotency_key": new.idempotency_key, "restarted_from": new.restarted_from,
            "scripts": new.scripts or None, "schedule_id": new.schedule_id, "labels": new.labels,
            "priority": new.priority}


def _created_details(new: NewRun, held: bool) -> dict[str, Any]:
    return {"flow": new.flow_id, "version": new.version, "trigger": new.trigger,
            "restarted_from": new.restarted_from, "held": held or None}


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
