"""A long history is folded into the metrics over several scrapes, a day of records at a
time, so no scrape waits on all of it; counts only ever grow (local mode's SQLite here: the
fold policy is the same on both databases)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from orchestrator.store import stats
from orchestrator.store.database import make_engine, upgrade
from orchestrator.store.tables import metric_totals, runs


def test_a_history_is_folded_a_day_a_scrape_when_the_budget_is_spent(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'metrics.db'}")
    upgrade(engine)
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        for i in range(30):  # one run a day for thirty days
            at = now - dt.timedelta(days=30 - i)
            conn.execute(runs.insert().values(id=f"r{i}", flow_id="old/flow", flow_version=1, status="succeeded",
                                              inputs={}, trigger="test", created_at=at, started_at=at,
                                              finished_at=at + dt.timedelta(seconds=1), held=False, depth=0))

    def finished() -> float:
        with engine.connect() as conn:
            return conn.execute(select(func.coalesce(func.sum(metric_totals.c.value), 0)).where(
                metric_totals.c.name == "runs_finished")).scalar()

    seen = []
    for _ in range(3):
        stats.fold(engine, now, budget_s=0.0)  # a spent budget: one window a source
        seen.append(finished())
    assert seen == [1, 2, 3]
    stats.fold(engine, now)  # the normal budget catches up
    assert finished() == 30
    stats.fold(engine, now)
    assert finished() == 30  # nothing is folded twice
