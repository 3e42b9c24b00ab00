"""Everything Millrace writes to the system of record, each write one transaction.

Step outcomes are recorded exactly once: an attempt row is keyed by (run, path, attempt),
a redelivered task finds the row it opened, and an outcome is written only over a row
still ``running``/``waiting`` (a fire-once update), so the first writer wins and every
later delivery reads what was recorded.
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from orchestrator.cron import parse_cron
from orchestrator.errors import Conflict, NotFound
from orchestrator.flow import CronTrigger, Flow, FlowTrigger
from orchestrator.models import (
    AuditEvent,
    DependencyLock,
    FlowRecord,
    FlowTriggerRecord,
    FlowVersion,
    Run,
    RunStatus,
    Schedule,
    ScheduleFire,
    ScriptRecord,
    ScriptVersion,
    StepCacheEntry,
    StepRun,
    StepStatus,
)

runs = Run.__table__
step_runs = StepRun.__table__
audit_events = AuditEvent.__table__
flow_versions = FlowVersion.__table__
flows = FlowRecord.__table__
step_cache = StepCacheEntry.__table__
scripts = ScriptRecord.__table__
schedules = Schedule.__table__
schedule_fires = ScheduleFire.__table__
flow_triggers = FlowTriggerRecord.__table__
dependency_locks = DependencyLock.__table__
script_versions = ScriptVersion.__table__

ACTIVE = (RunStatus.RUNNING.value, RunStatus.SUSPENDED.value)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@functools.cache
def autocommit(engine: Engine) -> Engine:
    """The engine in autocommit mode: a single statement commits without BEGIN/COMMIT round trips."""
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def dialect_insert(engine_or_conn: Engine | Connection, table: Any) -> Any:
    """An INSERT that knows ON CONFLICT for the connected database."""
    name = engine_or_conn.dialect.name
    return (postgresql.insert if name == "postgresql" else sqlite.insert)(table)


def audit(conn: Connection, actor: str, action: str, target: str, **details: Any) -> None:
    conn.execute(insert(audit_events).values(at=now(), actor=actor, action=action, target=target, details=details))


def _acting(conn: Connection, actor: str) -> None:
    """Name who causes the step transitions of this transaction: the step_runs trigger writes
    their audit events with this actor instead of the row's worker (PostgreSQL only)."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.set_config("millrace.actor", actor, True)))


def record_event(engine: Engine, actor: str, action: str, target: str, **details: Any) -> None:
    """An audit event on its own (what happened changed nothing else)."""
    with engine.begin() as conn:
        audit(conn, actor, action, target, **details)


# --- flows and scripts: immutable versions under a head row ----------------------------

@dataclass(frozen=True)
class Versioned:
    """A kind of definition kept as immutable versions: its head table and versions table."""

    noun: str
    heads: Any
    versions: Any
    key: str  # the column naming one definition

    def key_of(self, table: Any) -> Any:
        return table.c[self.key]


FLOWS = Versioned("flow", flows, flow_versions, "flow_id")
SCRIPTS = Versioned("script", scripts, script_versions, "path")


def save_flow(engine: Engine, flow: Flow, source: str, actor: str = "cli") -> int:
    """Store ``flow`` as a new version unless the latest version is the same document; its
    triggers become schedules and trigger rows in the same transaction."""
    document = flow.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return save_version(engine, FLOWS, flow.id, {"document": document, "source": source}, actor,
                        same_as=document, also=lambda conn: sync_triggers(conn, flow))


def sync_triggers(conn: Connection, flow: Flow | None, flow_id: str | None = None) -> None:
    """Make the flow's declared schedules and flow triggers what its latest version says
    (``flow`` None: it was deleted, so it has none). A schedule whose cron, zone and state
    did not change keeps its next slot."""
    flow_id = flow.id if flow is not None else flow_id
    declared = {t.id: t for t in (flow.triggers if flow is not None else [])}
    crons = {i: t for i, t in declared.items() if isinstance(t, CronTrigger)}
    at = now()
    existing = {row.trigger_id: row for row in conn.execute(select(schedules).where(
        schedules.c.flow_id == flow_id, schedules.c.trigger_id.is_not(None)))}
    gone = [row.id for trigger_id, row in existing.items() if trigger_id not in crons]
    if gone:
        conn.execute(delete(schedules).where(schedules.c.id.in_(gone)))
    declared_before = _declared_enabled(conn, flow_id) if existing else {}
    for trigger_id, trigger in crons.items():
        values = {"cron": trigger.cron, "timezone": trigger.timezone, "inputs": trigger.inputs,
                  "catchup": trigger.catchup, "max_catchup": trigger.max_catchup, "overlap": trigger.overlap,
                  "enabled": trigger.enabled, "updated_at": at}
        row = existing.get(trigger_id)
        if row is not None and declared_before.get(trigger_id, trigger.enabled) == trigger.enabled:
            values["enabled"] = row.enabled  # the document did not change it: a pause made through the API stays
        if row is None:
            conn.execute(insert(schedules).values(
                id=declared_schedule_id(flow_id, trigger_id), flow_id=flow_id, trigger_id=trigger_id,
                next_fire_at=parse_cron(trigger.cron, trigger.timezone).next_after(at), created_at=at, **values))
        elif any(getattr(row, k) != v for k, v in values.items() if k != "updated_at"):
            if (row.cron, row.timezone, row.enabled) != (trigger.cron, trigger.timezone, trigger.enabled):
                values["next_fire_at"] = parse_cron(trigger.cron, trigger.timezone).next_after(at)
            conn.execute(update(schedules).where(schedules.c.id == row.id).values(**values))
    conn.execute(delete(flow_triggers).where(flow_triggers.c.flow_id == flow_id))
    rows = [{"flow_id": flow_id, "trigger_id": t.id, "upstream": t.flow, "statuses": list(t.status),
             "inputs": t.inputs} for t in declared.values() if isinstance(t, FlowTrigger)]
    if rows:
        conn.execute(insert(flow_triggers), rows)


def _declared_enabled(conn: Connection, flow_id: str) -> dict[str, bool]:
    """What the version before the newest one declared as each cron trigger's `enabled`."""
    document = conn.execute(select(flow_versions.c.document).where(flow_versions.c.flow_id == flow_id)
                            .order_by(flow_versions.c.version.desc()).offset(1).limit(1)).scalar()
    return {t["id"]: t.get("enabled", True) for t in (document or {}).get("triggers", [])
            if isinstance(t, dict) and "cron" in t and "id" in t}


def declared_schedule_id(flow_id: str, trigger_id: str) -> str:
    """The stable id of the schedule a flow's cron trigger declares."""
    return "f-" + hashlib.sha256(f"{flow_id}#{trigger_id}".encode()).hexdigest()[:20]


def downstream_triggers(engine: Engine, flow_id: str, status: str) -> list[Any]:
    """The flow triggers of live flows that a run of ``flow_id`` ending in ``status`` fires."""
    live = select(flows.c.flow_id).where(flows.c.flow_id == flow_triggers.c.flow_id, flows.c.deleted_at.is_(None))
    with engine.connect() as conn:
        return [row for row in conn.execute(select(flow_triggers).where(
            flow_triggers.c.upstream == flow_id, exists(live))) if status in row.statuses]


def save_version(engine: Engine, kind: Versioned, key: str, values: dict[str, Any], actor: str, *,
                 same_as: Any, also: Callable[[Connection], None] | None = None) -> int:
    """Store ``values`` as the next version of ``key``, unless the latest version was saved
    with an equal ``same_as`` (then its number is returned, and a deleted definition is
    restored)."""
    digest = hashlib.sha256(json.dumps(same_as, sort_keys=True).encode()).hexdigest()
    heads, versions = kind.heads, kind.versions
    for _ in range(3):
        try:
            with engine.begin() as conn:
                latest = conn.execute(
                    select(versions.c.version, versions.c.digest).where(kind.key_of(versions) == key)
                    .order_by(versions.c.version.desc()).limit(1)
                ).first()
                if latest and latest.digest == digest:
                    restored = conn.execute(update(heads).where(kind.key_of(heads) == key,
                                                                heads.c.deleted_at.is_not(None))
                                            .values(deleted_at=None, updated_at=now())).rowcount
                    if restored and also is not None:  # saving again restores it, triggers included
                        also(conn)
                    return latest.version
                version = latest.version + 1 if latest else 1
                at = now()
                conn.execute(insert(versions).values(
                    {kind.key: key, "version": version, "digest": digest, "created_at": at, **values}))
                if latest:
                    conn.execute(update(heads).where(kind.key_of(heads) == key).values(
                        latest_version=version, updated_at=at, deleted_at=None))
                else:
                    conn.execute(insert(heads).values(
                        {kind.key: key, "latest_version": version, "created_at": at, "updated_at": at}))
                if also is not None:
                    also(conn)
                audit(conn, actor, f"{kind.noun}.saved", f"{kind.noun}:{key}", version=version)
                return version
        except IntegrityError:
            continue  # another writer took this version number: read again
    raise Conflict(f"{kind.noun} {key} is being saved concurrently; try again")


def load_flow_document(engine: Engine, flow_id: str, version: int | None = None) -> tuple[int, dict]:
    """The stored document of a flow version (the latest when ``version`` is None)."""
    query = select(flow_versions.c.version, flow_versions.c.document).where(flow_versions.c.flow_id == flow_id)
    query = query.where(flow_versions.c.version == version) if version else query.order_by(
        flow_versions.c.version.desc()).limit(1)
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"flow '{flow_id}'" + (f" version {version}" if version else "") + " does not exist")
    return row.version, row.document


def get_version(engine: Engine, kind: Versioned, key: str, version: int | None = None) -> dict[str, Any]:
    """A saved version (the latest when ``version`` is None; a deleted definition has no
    latest version, but its versions can still be read by number)."""
    versions = kind.versions
    query = select(versions).where(kind.key_of(versions) == key)
    if not version:
        live = select(kind.key_of(kind.heads)).where(kind.key_of(kind.heads) == key,
                                                      kind.heads.c.deleted_at.is_(None))
        query = query.where(exists(live)).order_by(versions.c.version.desc()).limit(1)
    else:
        query = query.where(versions.c.version == version)
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    if row is None:
        raise NotFound(f"{kind.noun} '{key}'" + (f" version {version}" if version else "") + " does not exist")
    return dict(row)


def get_flow_version(engine: Engine, flow_id: str, version: int | None = None) -> dict[str, Any]:
    return get_version(engine, FLOWS, flow_id, version)


def delete_versioned(engine: Engine, kind: Versioned, key: str, actor: str) -> None:
    """Hide a definition from listings and new use; its versions stay for the runs that used them."""
    with engine.begin() as conn:
        changed = conn.execute(update(kind.heads).where(kind.key_of(kind.heads) == key,
                                                        kind.heads.c.deleted_at.is_(None))
                               .values(deleted_at=now())).rowcount
        if not changed:
            raise NotFound(f"{kind.noun} '{key}' does not exist")
        if kind is FLOWS:
            sync_triggers(conn, None, key)  # a deleted flow has no schedules or triggers
        audit(conn, actor, f"{kind.noun}.deleted", f"{kind.noun}:{key}")


def newest_version(engine: Engine, kind: Versioned, key: str) -> int:
    """The highest version number saved, deleted or not; 0 if none."""
    with engine.connect() as conn:
        return conn.execute(select(func.max(kind.versions.c.version))
                            .where(kind.key_of(kind.versions) == key)).scalar() or 0


def versions_of(engine: Engine, kind: Versioned, key: str, text_column: str) -> list[dict[str, Any]]:
    """Every version's number, time and ``text_column`` (the text diffs are made of)."""
    versions = kind.versions
    with engine.connect() as conn:
        rows = conn.execute(select(versions.c.version, versions.c.created_at, versions.c[text_column])
                            .where(kind.key_of(versions) == key).order_by(versions.c.version)).mappings()
        found = [dict(r) for r in rows]
    if not found:
        raise NotFound(f"{kind.noun} '{key}' does not exist")
    return found


def list_heads(engine: Engine, kind: Versioned, *, prefix: str = "", after: str = "",
               limit: int = 50) -> list[dict[str, Any]]:
    """Live definitions ordered by key, ``limit`` after the key ``after`` (a stable cursor)."""
    key = kind.key_of(kind.heads)
    query = select(kind.heads).where(kind.heads.c.deleted_at.is_(None), key > after)
    if prefix:
        query = query.where(key.startswith(prefix, autoescape=True))
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query.order_by(key).limit(limit)).mappings()]


# --- runs --------------------------------------------------------------------------------

def create_run(engine: Engine, run_id: str, flow_id: str, version: int, inputs: dict[str, Any], *,
               trigger: str = "cli", parent_run_id: str | None = None,
               parent_step_run_id: int | None = None, depth: int = 0, actor: str = "cli",
               idempotency_key: str | None = None, restarted_from: str | None = None,
               scripts: dict[str, int] | None = None, limit: Limit | None = None,
               schedule_id: str | None = None) -> Created:
    """Record a run; with an idempotency key already used for this flow, the earlier run."""
    if idempotency_key is not None:  # a retry finds its run even when the limit is now full
        with engine.connect() as conn:
            earlier = conn.execute(select(runs.c.id, runs.c.status).where(
                runs.c.flow_id == flow_id, runs.c.idempotency_key == idempotency_key)).first()
        if earlier is not None:
            return Created(earlier.id, RunStatus(earlier.status), publish=False)
    try:
        with engine.begin() as conn:
            return insert_run(conn, run_id, flow_id, version, inputs, trigger=trigger, parent_run_id=parent_run_id,
                              parent_step_run_id=parent_step_run_id, depth=depth, actor=actor,
                              idempotency_key=idempotency_key, restarted_from=restarted_from, scripts=scripts,
                              limit=limit, schedule_id=schedule_id)
    except IntegrityError:
        if idempotency_key is None:
            raise
        with engine.connect() as conn:
            earlier = conn.execute(select(runs.c.id, runs.c.status).where(
                runs.c.flow_id == flow_id, runs.c.idempotency_key == idempotency_key)).one()
        return Created(earlier.id, RunStatus(earlier.status), publish=False)


@dataclass(frozen=True)
class Limit:
    """A flow's concurrency limit for one key value."""

    limit: int
    key: str
    on_limit: str  # queue | cancel | fail


@dataclass(frozen=True)
class Created:
    run_id: str
    status: RunStatus
    publish: bool  # its canvas is to be sent now (not held, not refused, not made before)


def insert_run(conn: Connection, run_id: str, flow_id: str, version: int, inputs: dict[str, Any], *,
               trigger: str, parent_run_id: str | None, parent_step_run_id: int | None, depth: int,
               actor: str, idempotency_key: str | None = None, restarted_from: str | None = None,
               scripts: dict[str, int] | None = None, limit: Limit | None = None,
               schedule_id: str | None = None) -> Created:
    """Insert a queued run, admitted under ``limit``: over it, the run is held (queue),
    recorded cancelled (cancel), or refused with Conflict and not recorded (fail)."""
    status, held, error = RunStatus.QUEUED, False, None
    if limit is not None and running_under(conn, flow_id, limit.key) >= limit.limit:
        if limit.on_limit == "fail":
            raise Conflict(f"flow {flow_id} has {limit.limit} active run(s)"
                           + (f" for key '{limit.key}'" if limit.key else "") + ", its concurrency limit")
        if limit.on_limit == "cancel":
            status, error = RunStatus.CANCELLED, f"cancelled: concurrency limit {limit.limit} reached"
        else:
            held = True
    at = now()
    conn.execute(insert(runs).values(
        id=run_id, flow_id=flow_id, flow_version=version, status=status.value,
        inputs=inputs, trigger=trigger, parent_run_id=parent_run_id,
        parent_step_run_id=parent_step_run_id, depth=depth, created_at=at,
        idempotency_key=idempotency_key, restarted_from=restarted_from, scripts=scripts or None,
        schedule_id=schedule_id, concurrency_key=limit.key if limit else None, held=held, error=error,
        publishable_at=None if held else at,
        finished_at=at if status is RunStatus.CANCELLED else None))
    audit(conn, actor, "run.created", f"run:{run_id}", flow=flow_id, version=version, trigger=trigger,
          restarted_from=restarted_from, held=held or None)
    if error:
        audit(conn, actor, "run.cancelled", f"run:{run_id}", error=error)
    return Created(run_id, status, publish=status is RunStatus.QUEUED and not held)


def running_under(conn: Connection, flow_id: str, key: str) -> int:
    """Active runs of a flow for a concurrency key, after taking the key's lock until commit."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"millrace-concurrency:{flow_id}:{key}"))))
    return conn.execute(select(func.count()).select_from(runs).where(
        runs.c.flow_id == flow_id, runs.c.concurrency_key == key, runs.c.held.is_(False),
        runs.c.status.in_((RunStatus.QUEUED.value, *ACTIVE)))).scalar_one()


def release_held(engine: Engine, flow_id: str, key: str, limit: int) -> list[Any]:
    """Admit the oldest held runs of a flow and key that now fit under ``limit``; returns
    them (id, flow_version, inputs, depth, scripts) for publishing."""
    with engine.begin() as conn:
        free = limit - running_under(conn, flow_id, key)
        if free <= 0:
            return []
        rows = conn.execute(select(runs.c.id, runs.c.flow_version, runs.c.inputs, runs.c.depth, runs.c.scripts)
                            .where(runs.c.flow_id == flow_id, runs.c.concurrency_key == key,
                                   runs.c.held.is_(True), runs.c.status == RunStatus.QUEUED.value)
                            .order_by(runs.c.created_at).limit(free)).all()
        if rows:
            conn.execute(update(runs).where(runs.c.id.in_([r.id for r in rows]))
                         .values(held=False, publishable_at=now()))
        return rows


def ended_runs_to_follow_up(engine: Engine, older_than: float) -> list[str]:
    """Runs that ended more than ``older_than`` seconds ago and were never followed up."""
    cutoff = now() - dt.timedelta(seconds=older_than)
    with engine.connect() as conn:
        return list(conn.execute(select(runs.c.id).where(
            runs.c.followed_up_at.is_(None), runs.c.finished_at < cutoff).limit(100)).scalars())


def mark_followed_up(engine: Engine, run_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(update(runs).where(runs.c.id == run_id, runs.c.followed_up_at.is_(None))
                     .values(followed_up_at=now()))


def mark_published(engine: Engine, run_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(update(runs).where(runs.c.id == run_id, runs.c.published_at.is_(None))
                     .values(published_at=now()))


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


def finish_run(engine: Engine, run_id: str, phase: str, result: Any, worker: str) -> Ending | None:
    """End a run: succeeded after its steps, failed after its on_failure steps; once."""
    if phase == "main":
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
    return Ending(run_id, status, result, row.error, row.parent_step_run_id)


def fail_run(engine: Engine, run_id: str, error: str, on_failure: dict[str, Any] | None,
             worker: str) -> Ending | None:
    """Record the first failure of a run. With ``on_failure`` (the message of its on_failure
    steps, kept until :func:`on_failure_sent`) the run stays running: they run, then finish
    marks it failed; without, it ends now. None if it had failed or ended already."""
    has_on_failure = on_failure is not None
    values: dict[str, Any] = {"error": error}
    if has_on_failure:
        values.update(status=RunStatus.RUNNING.value, on_failure=on_failure, on_failure_pending_since=now())
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
    status = RunStatus.RUNNING if has_on_failure else RunStatus.FAILED
    return Ending(run_id, status, None, error, row.parent_step_run_id)


# --- step attempts -----------------------------------------------------------------------

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
                 created_at: dt.datetime | None) -> Attempt | None:
    """Open (or, on redelivery, find) the row of this attempt, in one round trip.

    None when the run is no longer active for ``phase``: the caller stops.
    """
    started = now()
    params = {"run_id": run_id, "path": path, "step_id": step_id, "kind": kind, "item_index": item_index,
              "attempt": attempt, "worker": worker, "task_id": task_id, "created_at": created_at or started,
              "started_at": started}
    with autocommit(engine).connect() as conn:
        row = conn.execute(_open_statement(engine.dialect.name, phase), params).first()
    if row is None:
        return None
    return Attempt(row.id, StepStatus(row.status), row.result, row.error, row.deliveries,
                   row.continuation, row.resume_at)


def _inline(values: tuple[str, ...]) -> list[Any]:
    """Constants written into the SQL text: an IN over bound parameters is re-expanded (and
    the statement recompiled) at every execution, which a statement run per step cannot afford."""
    return [literal_column(f"'{value}'") for value in values]


@functools.cache
def _open_statement(dialect: str, phase: str) -> Any:
    # Built once: constructing it per step costs more than the round trip it makes.
    if phase == "main":
        active = and_(runs.c.status.in_(_inline(ACTIVE)), runs.c.error.is_(None))
    else:
        active = runs.c.status == RunStatus.RUNNING.value
    columns = ["run_id", "path", "step_id", "kind", "item_index", "attempt", "worker", "task_id", "created_at",
               "started_at"]
    values = select(
        *(bindparam(name, type_=step_runs.c[name].type) for name in columns),
        literal(StepStatus.RUNNING.value), literal(1),
    ).where(exists().where(runs.c.id == bindparam("run_id"), active))
    insert_ = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(step_runs)
    # Another delivery of a running or waiting attempt counts, and names who has it now; an
    # ended attempt handed on again (a replay) stays as it was recorded.
    live = step_runs.c.status.in_(_inline((StepStatus.RUNNING.value, StepStatus.WAITING.value)))
    return insert_.from_select([*columns, "status", "deliveries"], values).on_conflict_do_update(
        index_elements=["run_id", "path", "attempt"],
        set_={"deliveries": case((live, step_runs.c.deliveries + 1), else_=step_runs.c.deliveries),
              "worker": case((live, insert_.excluded.worker), else_=step_runs.c.worker),
              "task_id": case((live, insert_.excluded.task_id), else_=step_runs.c.task_id)},
    ).returning(step_runs.c.id, step_runs.c.status, step_runs.c.result, step_runs.c.error,
                step_runs.c.deliveries, step_runs.c.continuation, step_runs.c.resume_at)


def attempt_id(engine: Engine, run_id: str, path: str, attempt: int) -> int:
    with engine.connect() as conn:
        found = conn.execute(select(step_runs.c.id).where(
            step_runs.c.run_id == run_id, step_runs.c.path == path, step_runs.c.attempt == attempt)).scalar()
    if found is None:
        raise NotFound(f"run {run_id} has no attempt {attempt} of {path}")
    return found


def start_subflow(engine: Engine, *, parent_run_id: str, attempt_id: int, continuation: dict,
                  flow_id: str, version: int, inputs: dict[str, Any], depth: int, worker: str,
                  scripts: dict[str, int] | None = None) -> str | None:
    """Park a flow step and create its child run, together; returns the child id, or None
    when the step is no longer running (its run was cancelled meanwhile).

    A redelivery finds the child made before (its publication is the sweeper's if lost).
    The step is parked first: its row, then the audit chain, as a cancel takes them.
    """
    with engine.begin() as conn:
        existing = conn.execute(select(runs.c.id).where(runs.c.parent_step_run_id == attempt_id)).scalar()
        if existing:
            return existing
        parked = conn.execute(update(step_runs).where(
            step_runs.c.id == attempt_id, step_runs.c.status == StepStatus.RUNNING.value).values(
            status=StepStatus.WAITING.value, continuation=continuation)).rowcount
        if not parked:
            return None
        child_id = str(uuid.uuid4())
        insert_run(conn, child_id, flow_id, version, inputs, trigger="subflow", parent_run_id=parent_run_id,
                   parent_step_run_id=attempt_id, depth=depth, actor=worker, scripts=scripts)
    return child_id


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


def record_outcome(engine: Engine, attempt_id: int, status: StepStatus, result: Any = None,
                   error: str | None = None, logs: str | None = None,
                   cached: bool = False) -> tuple[StepStatus, Any, str | None]:
    """Write an attempt's outcome once; returns the outcome on record (ours or an earlier one)."""
    with autocommit(engine).connect() as conn:
        written = conn.execute(_RECORD_OUTCOME, {
            "attempt_id": attempt_id, "status": status.value, "result": result, "error": error,
            "logs": logs, "cached": cached, "finished_at": now()}).rowcount
        if written:
            return status, result, error
        row = conn.execute(select(step_runs.c.status, step_runs.c.result, step_runs.c.error)
                           .where(step_runs.c.id == attempt_id)).one()
    return StepStatus(row.status), row.result, row.error


_RECORD_OUTCOME = (
    update(step_runs)
    .where(step_runs.c.id == bindparam("attempt_id"),
           step_runs.c.status.in_(_inline((StepStatus.RUNNING.value, StepStatus.WAITING.value))))
    .values(status=bindparam("status"), result=bindparam("result"), error=bindparam("error"),
            logs=bindparam("logs"), cached=bindparam("cached"), finished_at=bindparam("finished_at"),
            continuation=None)
)


def suspend_attempt(engine: Engine, attempt_id: int, run_id: str, continuation: dict, *,
                    resume_at: dt.datetime | None, suspend_run: bool, worker: str) -> None:
    """Park a step: it waits (approval, sleep, subflow) and keeps how to go on."""
    with engine.begin() as conn:
        # The run's row first: every transaction locks a run before the audit chain, which
        # the step's update takes through its trigger (the other order could deadlock).
        changed = suspend_run and conn.execute(update(runs).where(
            runs.c.id == run_id, runs.c.status == RunStatus.RUNNING.value)
            .values(status=RunStatus.SUSPENDED.value)).rowcount
        # only a running step parks (or a waiting one, a sleep's next slice): a cancel may have ended it
        conn.execute(update(step_runs).where(
            step_runs.c.id == attempt_id,
            step_runs.c.status.in_((StepStatus.RUNNING.value, StepStatus.WAITING.value))).values(
            status=StepStatus.WAITING.value, continuation=continuation, resume_at=resume_at))
        if changed:
            audit(conn, worker, "run.suspended", f"run:{run_id}")


def resume_attempt(engine: Engine, attempt_id: int, status: StepStatus, result: Any = None,
                   error: str | None = None, actor: str = "system") -> dict | None:
    """Decide a waiting step once; returns its continuation to publish, or None if already decided.

    The row stays marked pending until :func:`continuation_sent`, so a crash in between
    is republished by the sweeper.
    """
    at = now()
    with engine.begin() as conn:
        # the run's row before the audit chain (see suspend_attempt)
        conn.execute(select(runs.c.id).where(runs.c.id == select(step_runs.c.run_id).where(
            step_runs.c.id == attempt_id).scalar_subquery()).with_for_update(key_share=True))
        _acting(conn, actor)
        row = conn.execute(
            update(step_runs)
            .where(step_runs.c.id == attempt_id, step_runs.c.status == StepStatus.WAITING.value)
            .values(status=status.value, result=result, error=error, finished_at=at,
                    resume_pending_since=at)
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
                  f"run:{row.run_id}", path=row.path, reason=error)
            if resumed:
                audit(conn, actor, "run.resumed", f"run:{row.run_id}")
    return row.continuation


def continuation_sent(engine: Engine, attempt_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(update(step_runs).where(step_runs.c.id == attempt_id).values(resume_pending_since=None))


# --- cache -------------------------------------------------------------------------------

def cache_key(flow_id: str, path: str, code: str, args: dict[str, Any]) -> str:
    blob = json.dumps([flow_id, path, code, args], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def cached_result(engine: Engine, key: str) -> tuple[bool, Any]:
    with engine.connect() as conn:
        row = conn.execute(select(step_cache.c.result).where(
            step_cache.c.key == key, step_cache.c.expires_at > now())).first()
    return (True, row.result) if row else (False, None)


def store_cached_result(engine: Engine, key: str, result: Any, ttl: float) -> None:
    expires = now() + dt.timedelta(seconds=ttl)
    stmt = dialect_insert(engine, step_cache).values(key=key, result=result, expires_at=expires)
    stmt = stmt.on_conflict_do_update(index_elements=["key"], set_={"result": result, "expires_at": expires})
    with engine.begin() as conn:
        conn.execute(stmt)


# --- reading -----------------------------------------------------------------------------

def get_run(engine: Engine, run_id: str, *, with_steps: bool = True) -> dict[str, Any]:
    with engine.connect() as conn:
        run = conn.execute(select(runs).where(runs.c.id == run_id)).mappings().first()
        if run is None:
            raise NotFound(f"run '{run_id}' does not exist")
        if not with_steps:
            return dict(run)
        steps = conn.execute(
            select(step_runs).where(step_runs.c.run_id == run_id).order_by(step_runs.c.id)
        ).mappings().all()
    return {**dict(run), "steps": [dict(s) for s in steps]}


def list_runs(engine: Engine, *, flow_id: str | None = None, status: str | None = None,
              trigger: str | None = None, since: dt.datetime | None = None, until: dt.datetime | None = None,
              before: tuple[dt.datetime, str] | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Runs, newest first; ``before`` is the (created_at, id) of the last run of the previous page."""
    query = select(runs.c.id, runs.c.flow_id, runs.c.flow_version, runs.c.status, runs.c.trigger,
                   runs.c.created_at, runs.c.started_at, runs.c.finished_at, runs.c.error)
    if flow_id:
        query = query.where(runs.c.flow_id == flow_id)
    if status:
        query = query.where(runs.c.status == status)
    if trigger:
        query = query.where(runs.c.trigger == trigger)
    if since:
        query = query.where(runs.c.created_at >= since)
    if until:
        query = query.where(runs.c.created_at < until)
    if before:
        at, run_id = before
        query = query.where((runs.c.created_at < at) | ((runs.c.created_at == at) & (runs.c.id < run_id)))
    query = query.order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def list_audit(engine: Engine, *, action: str | None = None, target: str | None = None,
               after_id: int = 0, limit: int = 50) -> list[dict[str, Any]]:
    """Audit events, oldest first, after the event id ``after_id``."""
    query = select(audit_events).where(audit_events.c.id > after_id)
    if action:
        query = query.where(audit_events.c.action.startswith(action, autoescape=True))
    if target:
        query = query.where(audit_events.c.target == target)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query.order_by(audit_events.c.id).limit(limit)).mappings()]


@dataclass(frozen=True)
class Cancellation:
    """A run just cancelled: the tasks of its running steps, its child runs, who waits on it."""

    task_ids: list[str]
    children: list[str]
    parent_step_run_id: int | None


def cancel_run(engine: Engine, run_id: str, actor: str) -> Cancellation:
    """End a run as cancelled, once: its waiting steps end too; returns what is left to stop."""
    at = now()
    with engine.begin() as conn:
        row = conn.execute(
            update(runs).where(runs.c.id == run_id, runs.c.status.in_(
                (RunStatus.QUEUED.value, RunStatus.RUNNING.value, RunStatus.SUSPENDED.value)))
            .values(status=RunStatus.CANCELLED.value, finished_at=at).returning(runs.c.parent_step_run_id)
        ).first()
        if row is None:
            status = conn.execute(select(runs.c.status).where(runs.c.id == run_id)).scalar()
            if status is None:
                raise NotFound(f"run '{run_id}' does not exist")
            raise Conflict(f"run {run_id} has ended already ({status})")
        _acting(conn, actor)
        conn.execute(update(step_runs).where(step_runs.c.run_id == run_id, step_runs.c.status.in_(
            (StepStatus.WAITING.value, StepStatus.RUNNING.value))).values(
            status=StepStatus.FAILED.value, error="run cancelled", finished_at=at, continuation=None))
        task_ids = list(conn.execute(select(step_runs.c.task_id).where(
            step_runs.c.run_id == run_id, step_runs.c.error == "run cancelled",
            step_runs.c.finished_at == at, step_runs.c.task_id.is_not(None))).scalars())
        children = list(conn.execute(select(runs.c.id).where(
            runs.c.parent_run_id == run_id, runs.c.finished_at.is_(None))).scalars())
        audit(conn, actor, "run.cancelled", f"run:{run_id}")
    return Cancellation(task_ids, children, row.parent_step_run_id)


def run_status(engine: Engine, run_id: str) -> RunStatus:
    with engine.connect() as conn:
        status = conn.execute(select(runs.c.status).where(runs.c.id == run_id)).scalar()
    if status is None:
        raise NotFound(f"run '{run_id}' does not exist")
    return RunStatus(status)


def waiting_attempt(engine: Engine, run_id: str, step: str) -> int:
    """The waiting attempt of step ``step`` (its id or path) in a run."""
    with engine.connect() as conn:
        row = conn.execute(select(step_runs.c.id, step_runs.c.kind).where(
            step_runs.c.run_id == run_id, step_runs.c.status == StepStatus.WAITING.value,
            (step_runs.c.path == step) | (step_runs.c.step_id == step),
        ).order_by(step_runs.c.id)).first()
    if row is None:
        raise NotFound(f"run '{run_id}' has no step '{step}' waiting")
    if row.kind != "approval":
        raise Conflict(f"step '{step}' waits for a {row.kind}, not for an approval")
    return row.id


# --- what the sweeper repairs ------------------------------------------------------------

def unpublished_runs(engine: Engine, older_than: float) -> list[Any]:
    """Runs committed but never published (the publisher died in between)."""
    cutoff = now() - dt.timedelta(seconds=older_than)
    with engine.connect() as conn:
        return conn.execute(select(runs.c.id, runs.c.flow_id, runs.c.flow_version, runs.c.inputs, runs.c.depth,
                                   runs.c.restarted_from, runs.c.scripts)
                            .where(runs.c.status == RunStatus.QUEUED.value, runs.c.published_at.is_(None),
                                   runs.c.held.is_(False),
                                   func.coalesce(runs.c.publishable_at, runs.c.created_at) < cutoff)
                            .limit(100)).all()


def abandon_unpublished(engine: Engine, run_id: str, error: str, actor: str) -> None:
    """Fail a run that was recorded but whose canvas cannot be rebuilt to publish it."""
    with engine.begin() as conn:
        if conn.execute(update(runs).where(runs.c.id == run_id, runs.c.status == RunStatus.QUEUED.value,
                                           runs.c.published_at.is_(None))
                        .values(status=RunStatus.FAILED.value, error=error, finished_at=now())).rowcount:
            audit(conn, actor, "run.failed", f"run:{run_id}", error=error)


def on_failure_sent(engine: Engine, run_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(update(runs).where(runs.c.id == run_id).values(on_failure=None, on_failure_pending_since=None))


def unsent_on_failure(engine: Engine, older_than: float) -> list[Any]:
    """Failed runs whose on_failure steps were not confirmed sent (their worker died)."""
    cutoff = now() - dt.timedelta(seconds=older_than)
    with engine.connect() as conn:
        return conn.execute(select(runs.c.id, runs.c.on_failure).where(
            runs.c.on_failure_pending_since < cutoff).limit(100)).all()


def unsent_continuations(engine: Engine, older_than: float) -> list[Any]:
    """Decided waits whose continuation was not confirmed sent."""
    cutoff = now() - dt.timedelta(seconds=older_than)
    with engine.connect() as conn:
        return conn.execute(select(step_runs.c.id, step_runs.c.continuation).where(
            step_runs.c.resume_pending_since < cutoff).limit(100)).all()


def expired_approvals(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(select(step_runs.c.id).where(
            step_runs.c.status == StepStatus.WAITING.value, step_runs.c.kind == "approval",
            step_runs.c.resume_at <= now()).limit(100)).scalars())
