"""The counts metrics report, read from the system of record at scrape time."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, and_, func, select

from orchestrator.store.tables import runs, schedules, step_runs
from orchestrator.store.tables import schedule_fires as fires

QUANTILES = (0.5, 0.9, 0.99)


@dataclass(frozen=True)
class StepTimes:
    """One step kind's timings over a window: how many, their sum and the QUANTILES."""

    kind: str
    count: int
    total: float
    quantiles: tuple[float | None, ...]


@dataclass(frozen=True)
class Stats:
    started_by_flow: list[tuple[str, int]]
    finished_by_flow_status: list[tuple[str, str, int]]
    active_by_status: list[tuple[str, int]]
    step_durations: list[StepTimes] = field(default_factory=list)
    step_queue_latencies: list[StepTimes] = field(default_factory=list)
    scheduler_lag_s: float = 0.0
    slots_by_outcome: list[tuple[str, int]] = field(default_factory=list)


def read_stats(engine: Engine, now: dt.datetime, since: dt.datetime) -> Stats:
    """Counts since the start of records; step timings of the steps finished since ``since``
    (on Postgres, which has percentiles)."""
    with engine.connect() as conn:
        started = [tuple(r) for r in conn.execute(select(runs.c.flow_id, func.count())
                                                  .where(runs.c.started_at.is_not(None)).group_by(runs.c.flow_id))]
        finished = [tuple(r) for r in conn.execute(
            select(runs.c.flow_id, runs.c.status, func.count()).where(runs.c.finished_at.is_not(None))
            .group_by(runs.c.flow_id, runs.c.status))]
        active = [tuple(r) for r in conn.execute(select(runs.c.status, func.count())
                                                 .where(runs.c.finished_at.is_(None)).group_by(runs.c.status))]
        durations = latencies = []
        if conn.dialect.name == "postgresql":
            durations = _times(conn, func.extract("epoch", step_runs.c.finished_at - step_runs.c.started_at), since)
            latencies = _times(conn, func.extract("epoch", step_runs.c.started_at - step_runs.c.created_at), since)
        lag = conn.execute(select(func.max(func.extract("epoch", now - schedules.c.next_fire_at)))
                           .where(schedules.c.enabled.is_(True), schedules.c.next_fire_at < now)).scalar()
        slots = [tuple(r) for r in conn.execute(select(fires.c.status, func.count()).group_by(fires.c.status))]
    return Stats(started, finished, active, durations, latencies, max(float(lag or 0), 0.0), slots)  # type: ignore[arg-type]


def _times(conn: Connection, value, since: dt.datetime) -> list[StepTimes]:  # type: ignore[no-untyped-def]
    recent = and_(step_runs.c.finished_at >= since, step_runs.c.started_at.is_not(None))
    parts = [func.percentile_cont(q).within_group(value) for q in QUANTILES]
    rows = conn.execute(select(step_runs.c.kind, func.count(), func.sum(value), *parts)
                        .where(recent).group_by(step_runs.c.kind)).all()
    return [StepTimes(kind, count, float(total or 0), tuple(values)) for kind, count, total, *values in rows]
