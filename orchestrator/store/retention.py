"""Retention's statements: which finished runs are due (each top-level run with its subflow
runs, a family that goes together), their rows for an export, and their deletion in one short
transaction that leaves a tombstone of each id. Audit events are not touched here."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, literal, select, tuple_

from orchestrator.errors import FlowError, Gone, NotFound
from orchestrator.execution.lifecycle import FINISHED
from orchestrator.store.sql import dialect_insert
from orchestrator.store.tables import (
    event_triggers,
    flow_versions,
    flows,
    joined_keys,
    outbox,
    purged_runs,
    runs,
    schedule_fires,
    schedules,
    step_cache,
    step_runs,
    trigger_fires,
)

_FINISHED = tuple(sorted(s.value for s in FINISHED))


@dataclass(frozen=True)
class Scope:
    """Which top-level runs a purge takes: finished before ``before``, of ``flow`` (None: any)
    except ``except_flows`` (the flows whose own retention decides for them)."""

    before: dt.datetime
    flow: str | None = None
    except_flows: tuple[str, ...] = ()


@dataclass(frozen=True)
class Family:
    """A top-level run and every subflow run below it: purged together or not at all."""

    root: str
    run_ids: tuple[str, ...]


@dataclass(frozen=True)
class Due:
    """One batch of families, and where the next batch begins (None: this was the last)."""

    families: tuple[Family, ...]
    after: tuple[dt.datetime, str] | None

    @property
    def run_ids(self) -> list[str]:
        return [run_id for family in self.families for run_id in family.run_ids]


def due(conn: Connection, scope: Scope, limit: int, after: tuple[dt.datetime, str] | None = None,
        *, lock: bool = True) -> Due:
    """Up to ``limit`` top-level runs in ``scope`` (oldest end first, from ``after``), each with
    its subflow runs; a family with a member unfinished or finished since ``scope.before`` is
    left for later. With ``lock`` the rows are locked for this transaction, skipping runs
    another purger holds."""
    query = select(runs.c.id, runs.c.finished_at).where(
        runs.c.parent_run_id.is_(None), runs.c.status.in_(_FINISHED), runs.c.finished_at < scope.before)
    if scope.flow is not None:
        query = query.where(runs.c.flow_id == scope.flow)
    if scope.except_flows:
        query = query.where(runs.c.flow_id.not_in(scope.except_flows))
    if after is not None:
        query = query.where(tuple_(runs.c.finished_at, runs.c.id) > tuple_(*after))
    query = query.order_by(runs.c.finished_at, runs.c.id).limit(limit)
    if lock:
        query = query.with_for_update(skip_locked=True)
    roots = conn.execute(query).all()
    if not roots:
        return Due((), None)
    members = {root.id: [root.id] for root in roots}
    kept: set[str] = set()
    level = {root.id: root.id for root in roots}  # run id -> its family's root
    while level:
        children = select(runs.c.id, runs.c.parent_run_id, runs.c.status, runs.c.finished_at).where(
            runs.c.parent_run_id.in_(list(level)))
        if lock:
            children = children.with_for_update()
        below: dict[str, str] = {}
        for child in conn.execute(children):
            root = level[child.parent_run_id]
            members[root].append(child.id)
            below[child.id] = root
            if child.status not in _FINISHED or child.finished_at is None or child.finished_at >= scope.before:
                kept.add(root)
        level = below
    families = tuple(Family(root.id, tuple(members[root.id])) for root in roots if root.id not in kept)
    last = roots[-1]
    return Due(families, (last.finished_at, last.id) if len(roots) == limit else None)


def declared_keeps(engine: Engine) -> dict[str, Any]:
    """Each flow whose latest version declares ``retention``, with its ``keep`` as stored."""
    declared = flow_versions.c.document["retention"]
    query = select(flows.c.flow_id, declared).join(flow_versions, (flow_versions.c.flow_id == flows.c.flow_id) & (
        flow_versions.c.version == flows.c.latest_version)).where(declared.is_not(None))
    with engine.connect() as conn:
        return {flow_id: kept["keep"] for flow_id, kept in conn.execute(query)
                if isinstance(kept, dict) and "keep" in kept}


def steps_of(conn: Connection, run_ids: list[str]) -> int:
    """How many step rows these runs have."""
    return conn.execute(select(func.count()).select_from(step_runs).where(step_runs.c.run_id.in_(run_ids))).scalar()


def exported(conn: Connection, family: Family) -> dict[str, Any]:
    """A family as one JSON-ready record: the top run's row with ``steps``, and its subflow
    runs (each with its steps) in ``subflow_runs``."""
    rows = {r["id"]: _plain(r) for r in conn.execute(select(runs).where(runs.c.id.in_(family.run_ids))).mappings()}
    for run in rows.values():
        run["steps"] = []
    for step in conn.execute(select(step_runs).where(step_runs.c.run_id.in_(family.run_ids))
                             .order_by(step_runs.c.id)).mappings():
        rows[step["run_id"]]["steps"].append(_plain(step))
    record = rows[family.root]
    record["subflow_runs"] = [rows[run_id] for run_id in family.run_ids[1:]]
    return record


def _plain(row: Any) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in dict(row).items()}


def delete_runs(conn: Connection, run_ids: list[str], at: dt.datetime) -> tuple[int, int]:
    """Delete these runs with their step rows (logs and results with them), owed sends and the
    schedule and trigger fires that started them; keep a tombstone of each id. Returns
    (runs, step rows) deleted."""
    steps = conn.execute(delete(step_runs).where(step_runs.c.run_id.in_(run_ids))).rowcount
    conn.execute(delete(outbox).where(outbox.c.run_id.in_(run_ids)))
    conn.execute(delete(joined_keys).where(joined_keys.c.run_id.in_(run_ids)))
    conn.execute(delete(schedule_fires).where(schedule_fires.c.run_id.in_(run_ids)))
    conn.execute(delete(trigger_fires).where(trigger_fires.c.run_id.in_(run_ids)))
    tombstones = select(runs.c.id, runs.c.flow_id, runs.c.finished_at, literal(at, purged_runs.c.purged_at.type)
                        ).where(runs.c.id.in_(run_ids))
    conn.execute(dialect_insert(conn, purged_runs).from_select(
        ["id", "flow_id", "finished_at", "purged_at"], tombstones).on_conflict_do_nothing(index_elements=["id"]))
    return conn.execute(delete(runs).where(runs.c.id.in_(run_ids))).rowcount, steps


def delete_old_fires(conn: Connection, scope: Scope, limit: int) -> int:
    """Delete up to ``limit`` schedule and trigger fires in ``scope`` that started no run (skipped,
    missed, refused) and were recorded before its cutoff; those that started a run go with it."""
    deleted = 0
    for fires, owners, owner_key in ((schedule_fires, schedules, schedule_fires.c.schedule_id),
                                     (trigger_fires, event_triggers, trigger_fires.c.trigger)):
        query = select(fires.c.id).where(fires.c.run_id.is_(None), fires.c.recorded_at < scope.before)
        if scope.flow is not None:
            query = query.where(owner_key.in_(select(owners.c.id).where(owners.c.flow_id == scope.flow)))
        if scope.except_flows:
            query = query.where(owner_key.not_in(select(owners.c.id).where(owners.c.flow_id.in_(scope.except_flows))))
        ids = query.limit(limit - deleted).scalar_subquery()
        deleted += conn.execute(delete(fires).where(fires.c.id.in_(ids))).rowcount
        if deleted >= limit:
            break
    return deleted


def delete_expired_cache(conn: Connection, at: dt.datetime, limit: int) -> int:
    """Delete up to ``limit`` step cache entries past their expiry (never read again)."""
    keys = select(step_cache.c.key).where(step_cache.c.expires_at < at).limit(limit).scalar_subquery()
    return conn.execute(delete(step_cache).where(step_cache.c.key.in_(keys))).rowcount


def missing_run(conn: Connection, run_id: str) -> FlowError:
    """What to answer for a run id with no row: Gone when retention purged it, else NotFound."""
    purged = conn.execute(select(purged_runs.c.purged_at).where(purged_runs.c.id == run_id)).scalar()
    if purged is None:
        return NotFound(f"run '{run_id}' does not exist")
    return Gone(f"run '{run_id}' was purged at {purged:%Y-%m-%d %H:%M:%S} UTC by retention")
