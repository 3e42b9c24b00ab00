"""Prometheus metrics, read from the system of record at scrape time, so every API process
answers the same whatever process did the work.

Counters count since the start of records; the latency summaries cover the last five
minutes (``WINDOW``).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import Engine

from orchestrator.store.stats import QUANTILES, StepTimes, read_stats

WINDOW = dt.timedelta(minutes=5)


def exposition(engine: Engine, now: dt.datetime | None = None) -> str:
    """The metrics in Prometheus's text format (version 0.0.4)."""
    now = now or dt.datetime.now(dt.UTC)
    stats = read_stats(engine, now, now - WINDOW)
    out: list[str] = []
    _family(out, "millrace_runs_started_total", "counter", "Runs that started, by flow",
            ((f'flow="{_label(f)}"', n) for f, n in stats.started_by_flow))
    _family(out, "millrace_runs_finished_total", "counter", "Runs that ended, by flow and status",
            ((f'flow="{_label(f)}",status="{s}"', n) for f, s, n in stats.finished_by_flow_status))
    _family(out, "millrace_runs_active", "gauge", "Runs not ended yet, by status",
            ((f'status="{s}"', n) for s, n in stats.active_by_status))
    if engine.dialect.name == "postgresql":
        _summary(out, "millrace_step_duration_seconds", "Step execution time (started -> finished), last 5 minutes",
                 stats.step_durations)
        _summary(out, "millrace_step_queue_latency_seconds",
                 "Step wait in the queue (created -> started), last 5 minutes", stats.step_queue_latencies)
    _family(out, "millrace_scheduler_lag_seconds", "gauge",
            "How late the most overdue schedule slot is (0: none overdue)", [("", stats.scheduler_lag_s)])
    _family(out, "millrace_schedule_slots_total", "counter", "Schedule slots decided, by outcome",
            ((f'outcome="{s}"', n) for s, n in stats.slots_by_outcome))
    return "\n".join(out) + "\n"


def _summary(out: list[str], name: str, help_: str, times: list[StepTimes]) -> None:
    samples: list[tuple] = []
    for t in times:
        samples += [(f'kind="{t.kind}",quantile="{q}"', v) for q, v in zip(QUANTILES, t.quantiles, strict=True)]
        samples += [(f'kind="{t.kind}"', t.total, "_sum"), (f'kind="{t.kind}"', t.count, "_count")]
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
