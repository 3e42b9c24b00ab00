"""Prometheus metrics, read from the system of record at scrape time, so every API process
answers the same whatever process did the work.

Counters count since the start of records; the latency summaries cover the last five
minutes (``WINDOW``).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import Engine, and_, func, select

from orchestrator.store import tables

WINDOW = dt.timedelta(minutes=5)
QUANTILES = (0.5, 0.9, 0.99)
runs, step_runs, schedules, fires = tables.runs, tables.step_runs, tables.schedules, tables.schedule_fires


def exposition(engine: Engine, now: dt.datetime | None = None) -> str:
    """The metrics in Prometheus's text format (version 0.0.4)."""
    now = now or dt.datetime.now(dt.UTC)
    since = now - WINDOW
    out: list[str] = []
    with engine.connect() as conn:
        rows = conn.execute(select(runs.c.flow_id, func.count()).where(runs.c.started_at.is_not(None))
                            .group_by(runs.c.flow_id)).all()
        _family(out, "millrace_runs_started_total", "counter", "Runs that started, by flow",
                ((f'flow="{_label(f)}"', n) for f, n in rows))
        rows = conn.execute(select(runs.c.flow_id, runs.c.status, func.count())
                            .where(runs.c.finished_at.is_not(None)).group_by(runs.c.flow_id, runs.c.status)).all()
        _family(out, "millrace_runs_finished_total", "counter", "Runs that ended, by flow and status",
                ((f'flow="{_label(f)}",status="{s}"', n) for f, s, n in rows))
        rows = conn.execute(select(runs.c.status, func.count()).where(runs.c.finished_at.is_(None))
                            .group_by(runs.c.status)).all()
        _family(out, "millrace_runs_active", "gauge", "Runs not ended yet, by status",
                ((f'status="{s}"', n) for s, n in rows))
        if conn.dialect.name == "postgresql":
            _summaries(conn, out, since)
        lag = conn.execute(select(func.max(func.extract("epoch", now - schedules.c.next_fire_at)))
                           .where(schedules.c.enabled.is_(True), schedules.c.next_fire_at < now)).scalar()
        _family(out, "millrace_scheduler_lag_seconds", "gauge",
                "How late the most overdue schedule slot is (0: none overdue)", [("", max(float(lag or 0), 0.0))])
        rows = conn.execute(select(fires.c.status, func.count()).group_by(fires.c.status)).all()
        _family(out, "millrace_schedule_slots_total", "counter", "Schedule slots decided, by outcome",
                ((f'outcome="{s}"', n) for s, n in rows))
    return "\n".join(out) + "\n"


def _summaries(conn, out: list[str], since: dt.datetime) -> None:  # type: ignore[no-untyped-def]
    duration = func.extract("epoch", step_runs.c.finished_at - step_runs.c.started_at)
    waited = func.extract("epoch", step_runs.c.started_at - step_runs.c.created_at)
    recent = and_(step_runs.c.finished_at >= since, step_runs.c.started_at.is_not(None))
    for name, help_, value in (
        ("millrace_step_duration_seconds", "Step execution time (started -> finished), last 5 minutes", duration),
        ("millrace_step_queue_latency_seconds", "Step wait in the queue (created -> started), last 5 minutes",
         waited),
    ):
        parts = [func.percentile_cont(q).within_group(value) for q in QUANTILES]
        rows = conn.execute(select(step_runs.c.kind, func.count(), func.sum(value), *parts)
                            .where(recent).group_by(step_runs.c.kind)).all()
        samples = []
        for kind, count, total, *values in rows:
            samples += [(f'kind="{kind}",quantile="{q}"', v) for q, v in zip(QUANTILES, values, strict=True)]
            samples += [(f'kind="{kind}"', total, "_sum"), (f'kind="{kind}"', count, "_count")]
        _family(out, name, "summary", help_, samples)


def _family(out: list[str], name: str, kind: str, help_: str, samples: Iterable[tuple]) -> None:
    out.append(f"# HELP {name} {help_}")
    out.append(f"# TYPE {name} {kind}")
    for sample in samples:
        labels, value = sample[0], sample[1]
        suffix = sample[2] if len(sample) > 2 else ""
        out.append(f"{name}{suffix}{{{labels}}} {float(value or 0):g}" if labels
                   else f"{name}{suffix} {float(value or 0):g}")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
