"""Prometheus metrics (``prometheus_client``'s exposition, a custom collector over the kept
totals of ``store/stats.py``), so every API process answers the same whatever process did
the work, and a scrape costs what happened since the last one.

Counters and cumulative histograms count since the start of records and never go down;
``millrace_runs_active``, ``millrace_scheduler_lag_seconds``, ``millrace_event_trigger_connected`` and
``millrace_listener_leading`` are gauges read live; an event trigger's message counts are kept on
its row (they leave with it when its flow stops declaring it).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from sqlalchemy import Engine

from orchestrator.store.stats import LAG, Stats, read_stats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_COUNTERS = {
    "runs_started": ("millrace_runs_started", "Runs that started, by flow", ("flow",)),
    "runs_finished": ("millrace_runs_finished", "Runs that ended, by flow and status", ("flow", "status")),
    "schedule_slots": ("millrace_schedule_slots", "Schedule slots decided, by outcome", ("outcome",)),
}
_HISTOGRAMS = {
    "step_duration_seconds": ("millrace_step_duration_seconds", "Step execution time (started -> finished)",
                              ("flow", "kind", "status")),
    "step_queue_latency_seconds": ("millrace_step_queue_latency_seconds",
                                   "Step wait before it started (created -> started)", ("flow", "kind")),
    "run_duration_seconds": ("millrace_run_duration_seconds", "Run time (created -> finished)", ("flow", "status")),
}


class _Collector:
    def __init__(self, stats: Stats):
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        for key, (name, help_, labels) in _COUNTERS.items():
            family = CounterMetricFamily(name, help_, labels=labels)
            for values, value in sorted(self.stats.counters.get(key, []), key=lambda s: sorted(s[0].items())):
                family.add_metric([values.get(label, "") for label in labels], value)
            yield family
        for key, (name, help_, labels) in _HISTOGRAMS.items():
            family = HistogramMetricFamily(name, help_, labels=labels)
            for h in self.stats.histograms.get(key, []):
                buckets = [("+Inf" if le == float("inf") else repr(le), n) for le, n in h.buckets]
                family.add_metric([h.labels.get(label, "") for label in labels], buckets, h.total)
            yield family
        active = GaugeMetricFamily("millrace_runs_active", "Runs not ended yet, by status", labels=["status"])
        for status, n in sorted(self.stats.active_by_status.items()):
            active.add_metric([status], n)
        yield active
        yield GaugeMetricFamily("millrace_scheduler_lag_seconds",
                                "How late the most overdue schedule slot is (0: none overdue)",
                                value=self.stats.scheduler_lag_s)
        yield from self._event_triggers()

    def _event_triggers(self) -> Iterator[Metric]:
        labels = ["flow", "trigger", "kind"]
        connected = GaugeMetricFamily("millrace_event_trigger_connected", "1 when the listener reports the "
                                      "trigger's connection up, and recently", labels=labels)
        messages = CounterMetricFamily("millrace_event_trigger_messages", "Messages an event trigger received, "
                                       "by outcome (started a run, refused)", labels=[*labels, "outcome"])
        now = dt.datetime.now(dt.UTC)
        for row in self.stats.event_triggers:
            names = [row.flow_id, row.trigger_id, row.kind]
            connected.add_metric(names, 1.0 if row.state_now(now) == "connected" else 0.0)
            messages.add_metric([*names, "started"], row.fired)
            messages.add_metric([*names, "refused"], row.refused)
        yield connected
        yield messages
        if self.stats.listener_leading is not None:
            yield GaugeMetricFamily("millrace_listener_leading", "1 when a `millrace listener` leads (consumes the "
                                    "event triggers); reported while any is declared", value=float(
                                        self.stats.listener_leading))


def exposition(engine: Engine, now: dt.datetime | None = None, lag: dt.timedelta = LAG) -> bytes:
    """The metrics in Prometheus's text format (``now`` and ``lag``: see ``read_stats``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(read_stats(engine, now or dt.datetime.now(dt.UTC), lag)))  # type: ignore[arg-type]
    return generate_latest(registry)
