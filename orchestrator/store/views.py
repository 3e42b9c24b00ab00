"""What readers see of runs: a run with its steps, pages of runs."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    Engine,
    select,
)

from orchestrator.errors import NotFound
from orchestrator.store.tables import (
    runs,
    step_runs,
)


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

