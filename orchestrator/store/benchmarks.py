"""What ``millrace bench`` keeps: the raw baseline's finish marks and the results of each run."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Engine, insert, select

from orchestrator.errors import NotFound
from orchestrator.store import sql
from orchestrator.store.tables import bench_marks, bench_runs


def mark_done(engine: Engine, key: str) -> None:
    """A raw baseline finished (a redelivered task marks it once)."""
    with engine.begin() as conn:
        conn.execute(sql.dialect_insert(engine, bench_marks).values(key=key, finished_at=sql.now())
                     .on_conflict_do_nothing())


def marks(engine: Engine, keys: list[str]) -> dict[str, dt.datetime]:
    """When each of ``keys`` finished, for those that did."""
    with engine.connect() as conn:
        return {row.key: row.finished_at for row in conn.execute(
            select(bench_marks.c.key, bench_marks.c.finished_at).where(bench_marks.c.key.in_(keys)))}


def keep(engine: Engine, summary: dict[str, Any], args: dict[str, Any], machine: dict[str, Any],
         revision: str | None) -> int:
    """Keep a bench result; returns its id."""
    with engine.begin() as conn:
        return conn.execute(insert(bench_runs).values(
            created_at=sql.now(), git_revision=revision, machine=machine, args=args,
            summary=summary).returning(bench_runs.c.id)).scalar_one()


def history(engine: Engine, limit: int = 20) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(
            select(bench_runs).order_by(bench_runs.c.id.desc()).limit(limit)).mappings()]


def get(engine: Engine, bench_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(select(bench_runs).where(bench_runs.c.id == bench_id)).mappings().first()
    if row is None:
        raise NotFound(f"bench run {bench_id} does not exist")
    return dict(row)
