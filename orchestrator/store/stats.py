"""What metrics report: kept totals, folded from the records a window at a time.

A scrape first folds what finished since the last fold (runs started and ended, steps
ended, schedule slots decided) into ``metric_totals``, under a lock so two scrapes never
fold the same window, then reads the totals. Its cost is what happened since the last
scrape, not the history; purging old runs never makes a count go down. A fold stops
``LAG`` short of now: a row whose transaction has not committed yet is folded next time.
"""
from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, case, func, literal, select

from orchestrator.execution.lifecycle import UNFINISHED
from orchestrator.store import event_triggers, leases, sql
from orchestrator.store.event_triggers import EventTriggerRow
from orchestrator.store.tables import metric_folds, metric_totals, runs, schedules, step_runs
from orchestrator.store.tables import schedule_fires as fires

LAG = dt.timedelta(seconds=10)
FOLD_WINDOW = dt.timedelta(days=1)  # records folded per transaction
FOLD_BUDGET_S = 2.0  # of a scrape's time, at most, spent folding
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
METRICS_LOCK = 0x6D696C6D  # "milm"


@dataclass(frozen=True)
class Histogram:
    labels: dict[str, str]
    buckets: list[tuple[float, float]]  # (upper bound, cumulative count), +Inf last
    total: float
    count: float


@dataclass
class Stats:
    counters: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)
    histograms: dict[str, list[Histogram]] = field(default_factory=dict)
    active_by_status: dict[str, int] = field(default_factory=dict)
    scheduler_lag_s: float = 0.0
    event_triggers: list[EventTriggerRow] = field(default_factory=list)  # live and enabled
    listener_leading: bool | None = None  # None: unknown (local mode)


def read_stats(engine: Engine, now: dt.datetime, lag: dt.timedelta = LAG) -> Stats:
    """Fold up to ``lag`` before ``now`` (never past the real time: a window folded is never
    looked at again), unless another process is folding; then read everything."""
    with leases.held(engine, METRICS_LOCK) as mine:
        if mine:
            fold(engine, min(now, sql.now()) - lag)
    stats = Stats()
    with engine.connect() as conn:
        hist: dict[tuple[str, str], dict[str, Any]] = {}
        for name, labels_text, value in conn.execute(select(metric_totals.c.name, metric_totals.c.labels,
                                                            metric_totals.c.value)):
            labels = json.loads(labels_text)
            family, _, part = name.partition(":")
            if not part:
                stats.counters.setdefault(family, []).append((labels, value))
                continue
            le = labels.pop("le", None)
            key = (family, json.dumps(labels, sort_keys=True))
            entry = hist.setdefault(key, {"labels": labels, "buckets": {}, "sum": 0.0, "count": 0.0})
            if part == "bucket":
                entry["buckets"][le] = value
            else:
                entry[part] = value
        for (family, _), e in sorted(hist.items()):
            bounds = [(float(le), e["buckets"].get(str(le), 0.0)) for le in BUCKETS]
            stats.histograms.setdefault(family, []).append(
                Histogram(e["labels"], [*bounds, (float("inf"), e["count"])], e["sum"], e["count"]))
        stats.active_by_status = {s: 0 for s in UNFINISHED} | dict(conn.execute(  # type: ignore[arg-type]
            select(runs.c.status, func.count()).where(runs.c.status.in_(UNFINISHED)).group_by(runs.c.status)).all())
        lag = conn.execute(select(func.min(schedules.c.next_fire_at)).where(
            schedules.c.enabled.is_(True), schedules.c.next_fire_at < now)).scalar()
    stats.scheduler_lag_s = max((now - lag).total_seconds(), 0.0) if lag else 0.0
    stats.event_triggers = event_triggers.active(engine)
    stats.listener_leading = leases.is_held(engine, leases.LISTENER) if stats.event_triggers else None
    return stats


def fold(engine: Engine, until: dt.datetime, budget_s: float = FOLD_BUDGET_S) -> None:
    """Add what each source recorded in (its last fold, ``until``] to the totals, a day of
    records per transaction. A long history (the first scrape after an upgrade) is folded
    over several scrapes, ``budget_s`` each, so no scrape waits on all of it."""
    began = time.monotonic()
    for source, folder in _FOLDERS.items():
        windows = 0  # each source folds at least one window a scrape, whatever the budget says
        while windows == 0 or time.monotonic() - began < budget_s:
            windows += 1
            with engine.begin() as conn:
                since = conn.execute(select(metric_folds.c.folded_until)
                                     .where(metric_folds.c.source == source)).scalar()
                if since is None:  # never folded: from its oldest record on
                    since = _oldest(conn, source) or until
                if since.tzinfo is None:  # SQLite gives naive times back
                    since = since.replace(tzinfo=dt.UTC)
                if since >= until:
                    break
                upto = min(until, since + FOLD_WINDOW)
                for name, labels, value in folder(conn, since, upto):
                    _add(conn, name, labels, value)
                conn.execute(sql.dialect_insert(conn, metric_folds).values(source=source, folded_until=upto)
                             .on_conflict_do_update(index_elements=["source"], set_={"folded_until": upto}))


def _oldest(conn: Connection, source: str) -> dt.datetime | None:
    """Just before the first record a source would fold (its window is open at the start)."""
    column = {"runs_started": runs.c.started_at, "runs_finished": runs.c.finished_at,
              "steps": step_runs.c.finished_at, "fires": fires.c.recorded_at}[source]
    first = conn.execute(select(func.min(column))).scalar()
    return None if first is None else first - dt.timedelta(microseconds=1)


def _add(conn: Connection, name: str, labels: dict[str, Any], value: float) -> None:
    if not value:
        return
    text = json.dumps({k: str(v) for k, v in labels.items()}, sort_keys=True)
    statement = sql.dialect_insert(conn, metric_totals).values(name=name, labels=text, value=value)
    conn.execute(statement.on_conflict_do_update(index_elements=["name", "labels"],
                                                 set_={"value": metric_totals.c.value + statement.excluded.value}))


def _seconds(conn: Connection, later: Any, earlier: Any) -> Any:
    if conn.dialect.name == "postgresql":
        return func.extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def _histogram(conn: Connection, name: str, groups: list[Any], value: Any, where: Any, table: Any) -> list:
    columns = [func.count(), func.coalesce(func.sum(value), 0.0),
               *(func.sum(case((value <= literal(b), 1), else_=0)) for b in BUCKETS)]
    out = []
    for row in conn.execute(select(*groups, *columns).select_from(table).where(where).group_by(*groups)):
        labels = {g.key: v for g, v in zip(groups, row[:len(groups)], strict=True)}
        count, total, *buckets = row[len(groups):]
        out += [(f"{name}:count", labels, count), (f"{name}:sum", labels, total)]
        out += [(f"{name}:bucket", {**labels, "le": str(b)}, n) for b, n in zip(BUCKETS, buckets, strict=True)]
    return out


def _runs_started(conn: Connection, since: dt.datetime, until: dt.datetime) -> list:
    rows = conn.execute(select(runs.c.flow_id, func.count()).where(
        runs.c.started_at > since, runs.c.started_at <= until).group_by(runs.c.flow_id))
    return [("runs_started", {"flow": flow}, n) for flow, n in rows]


def _runs_finished(conn: Connection, since: dt.datetime, until: dt.datetime) -> list:
    window = (runs.c.finished_at > since) & (runs.c.finished_at <= until)
    counted = [("runs_finished", {"flow": flow, "status": status}, n) for flow, status, n in conn.execute(
        select(runs.c.flow_id, runs.c.status, func.count()).where(window).group_by(runs.c.flow_id, runs.c.status))]
    flow, status = runs.c.flow_id.label("flow"), runs.c.status.label("status")
    return counted + _histogram(conn, "run_duration_seconds", [flow, status],
                                _seconds(conn, runs.c.finished_at, runs.c.created_at), window, runs)


def _steps(conn: Connection, since: dt.datetime, until: dt.datetime) -> list:
    joined = step_runs.join(runs, runs.c.id == step_runs.c.run_id)
    window = (step_runs.c.finished_at > since) & (step_runs.c.finished_at <= until) & \
        step_runs.c.started_at.is_not(None) & step_runs.c.reused_from.is_(None)  # a reused outcome did not run
    flow, kind = runs.c.flow_id.label("flow"), step_runs.c.kind.label("kind")
    status = step_runs.c.status.label("status")
    return (_histogram(conn, "step_duration_seconds", [flow, kind, status],
                       _seconds(conn, step_runs.c.finished_at, step_runs.c.started_at), window, joined)
            + _histogram(conn, "step_queue_latency_seconds", [flow, kind],
                         _seconds(conn, step_runs.c.started_at, step_runs.c.created_at), window, joined))


def _fires(conn: Connection, since: dt.datetime, until: dt.datetime) -> list:
    rows = conn.execute(select(fires.c.status, func.count()).where(
        fires.c.recorded_at > since, fires.c.recorded_at <= until).group_by(fires.c.status))
    return [("schedule_slots", {"outcome": status}, n) for status, n in rows]


_FOLDERS = {"runs_started": _runs_started, "runs_finished": _runs_finished, "steps": _steps, "fires": _fires}
