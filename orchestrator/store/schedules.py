"""Schedules and their decided slots (``schedule_fires``): every statement the scheduler
and the schedules API run. Which slot fires and why is decided in
:mod:`orchestrator.services.scheduling`; this module only reads and writes rows."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, Engine, delete, exists, func, select, update

from orchestrator.execution.lifecycle import UNFINISHED
from orchestrator.store import audit, sql
from orchestrator.store.tables import runs, schedules
from orchestrator.store.tables import schedule_fires as fires


def due(engine: Engine, now: dt.datetime) -> tuple[list[str], list[str]]:
    """The enabled schedules whose next slot is due by ``now``, and those with a queued slot."""
    with engine.connect() as conn:
        due_ids = list(conn.execute(select(schedules.c.id).where(
            schedules.c.enabled.is_(True), schedules.c.next_fire_at <= now)).scalars())
        queued = list(conn.execute(select(fires.c.schedule_id).where(fires.c.status == "queued").distinct())
                      .scalars())
    return due_ids, queued


def locked(conn: Connection, schedule_id: str, *, wait: bool = False) -> Any:
    """The schedule's row, locked until commit; None if another pass holds it (or, with
    ``wait``, only if it no longer exists)."""
    query = select(schedules).where(schedules.c.id == schedule_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=not wait)
    return conn.execute(query).first()


def advance(conn: Connection, schedule_id: str, next_fire_at: dt.datetime, paused_until: dt.datetime | None) -> None:
    conn.execute(update(schedules).where(schedules.c.id == schedule_id).values(
        next_fire_at=next_fire_at, paused_until=paused_until))


def active_run(conn: Connection, schedule_id: str) -> Any:
    """One unfinished run the schedule started (its id and status), or None."""
    return conn.execute(select(runs.c.id, runs.c.status).where(
        runs.c.schedule_id == schedule_id, runs.c.status.in_(UNFINISHED)).limit(1)).first()


def queued_besides(conn: Connection, schedule_id: str, fire_id: int) -> bool:
    return bool(conn.execute(select(exists().where(
        fires.c.schedule_id == schedule_id, fires.c.status == "queued", fires.c.id != fire_id))).scalar())


def oldest_queued(conn: Connection, schedule_id: str) -> Any:
    return conn.execute(select(fires.c.id, fires.c.fire_at).where(
        fires.c.schedule_id == schedule_id, fires.c.status == "queued").order_by(fires.c.fire_at).limit(1)).first()


def claim(conn: Connection, schedule_id: str, slot: dt.datetime, actor: str,
          status: str = "started", reason: str | None = None) -> int | None:
    """The slot's row, written once: None when the slot was decided before."""
    statement = sql.dialect_insert(conn, fires).values(
        schedule_id=schedule_id, fire_at=slot, status=status, reason=reason, recorded_at=sql.now(),
        recorded_by=actor).on_conflict_do_nothing(index_elements=["schedule_id", "fire_at"]).returning(fires.c.id)
    return conn.execute(statement).scalar()


def set_fire(conn: Connection, fire_id: int, status: str, reason: str | None, run_id: str | None = None) -> None:
    conn.execute(update(fires).where(fires.c.id == fire_id).values(status=status, reason=reason, run_id=run_id))


def fire_at(conn: Connection, schedule_id: str, slot: dt.datetime) -> Any:
    return conn.execute(select(fires.c.id, fires.c.status).where(
        fires.c.schedule_id == schedule_id, fires.c.fire_at == slot)).first()


def forget_fire(conn: Connection, fire_id: int) -> None:
    conn.execute(delete(fires).where(fires.c.id == fire_id))


def insert_schedule(engine: Engine, values: dict[str, Any], actor: str) -> None:
    with engine.begin() as conn:
        conn.execute(schedules.insert().values(**values))
        audit.audit(conn, actor, "schedule.created", f"schedule:{values['id']}", flow=values["flow_id"],
                    cron=values["cron"])


def change_schedule(engine: Engine, schedule_id: str, values: dict[str, Any], actor: str,
                    changes: dict[str, Any]) -> None:
    with engine.begin() as conn:
        conn.execute(update(schedules).where(schedules.c.id == schedule_id).values(**values))
        audit.audit(conn, actor, "schedule.updated", f"schedule:{schedule_id}",
                    **{k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in changes.items()})


def remove_schedule(engine: Engine, schedule_id: str, actor: str) -> None:
    with engine.begin() as conn:
        conn.execute(delete(schedules).where(schedules.c.id == schedule_id))
        audit.audit(conn, actor, "schedule.deleted", f"schedule:{schedule_id}")


def schedule_row(engine: Engine, schedule_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(schedules).where(schedules.c.id == schedule_id)).mappings().first()
    return dict(row) if row is not None else None


def list_schedules(engine: Engine, *, flow_id: str | None = None, after: str = "",
                   limit: int = 50) -> list[dict[str, Any]]:
    query = select(schedules).where(schedules.c.id > after)
    if flow_id:
        query = query.where(schedules.c.flow_id == flow_id)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query.order_by(schedules.c.id).limit(limit)).mappings()]


def fires_of(engine: Engine, schedule_id: str, *, before: dt.datetime | None = None,
             limit: int = 50) -> list[dict[str, Any]]:
    """A schedule's decided slots, newest first."""
    query = select(fires).where(fires.c.schedule_id == schedule_id)
    if before is not None:
        query = query.where(fires.c.fire_at < before)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query.order_by(fires.c.fire_at.desc()).limit(limit)).mappings()]


def next_due(engine: Engine) -> dt.datetime | None:
    """The earliest slot any enabled schedule waits for (the scheduler sleeps until then)."""
    with engine.connect() as conn:
        return conn.execute(select(func.min(schedules.c.next_fire_at)).where(schedules.c.enabled.is_(True))).scalar()


def next_fires(engine: Engine, flow_ids: list[str]) -> dict[str, dt.datetime]:
    """Each flow's next scheduled fire among its enabled schedules, in one query."""
    if not flow_ids:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(select(schedules.c.flow_id, func.min(schedules.c.next_fire_at))
                            .where(schedules.c.flow_id.in_(flow_ids), schedules.c.enabled.is_(True))
                            .group_by(schedules.c.flow_id))
        return {flow_id: at for flow_id, at in rows}
