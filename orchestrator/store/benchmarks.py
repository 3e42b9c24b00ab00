"""What ``millrace bench`` keeps: the raw baseline's finish marks and the results of each run."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Engine, func, insert, select, text

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


# Each statement starts from the chunk's run numbers n, with `at`, the n-th run's creation
# time (the runs spread evenly over the 30 days before now).
_SEED_RUNS = """
    WITH p AS (SELECT CAST(:tag AS text) AS tag, CAST(:total AS bigint) AS total,
                      CAST(:spacing AS double precision) AS spacing),
         r AS (SELECT n, md5(p.tag || n)::uuid::text AS id,
                      now() - make_interval(secs => (p.total - n) * p.spacing) AS at
               FROM p, generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS n)
"""
SEED_STATEMENTS = (
    # runs, one in ten failed (at its last step)
    _SEED_RUNS + """
    INSERT INTO runs (id, flow_id, flow_version, status, inputs, result, error, trigger, created_at, started_at,
                      finished_at, held, depth)
    SELECT id, CAST(:flow AS text), CAST(:version AS integer),
           CASE WHEN n % 10 = 0 THEN 'failed' ELSE 'succeeded' END, '{}'::jsonb,
           CASE WHEN n % 10 = 0 THEN NULL ELSE to_jsonb(n) END,
           CASE WHEN n % 10 = 0 THEN 'step s' || (CAST(:steps AS integer) - 1) || ' failed: seeded' END, 'seed',
           at, at, at + interval '50 ms', false, 0
    FROM r""",
    # each run's steps, all of them, so a run is `steps` step rows; a failed run's last one
    # failed (their audit events come from the step_runs trigger)
    _SEED_RUNS + """
    INSERT INTO step_runs (run_id, path, step_id, kind, attempt, status, deliveries, worker, created_at, started_at,
                           finished_at, result, cached)
    SELECT id, 's' || k, 's' || k, 'python', 1,
           CASE WHEN n % 10 = 0 AND k = CAST(:steps AS integer) - 1 THEN 'failed' ELSE 'succeeded' END,
           1, 'seed', at + make_interval(secs => k * 0.004), at + make_interval(secs => k * 0.004 + 0.001),
           at + make_interval(secs => k * 0.004 + 0.003), to_jsonb(k), false
    FROM r, generate_series(0, CAST(:steps AS integer) - 1) AS k""",
    # the runs' own events
    _SEED_RUNS + """
    INSERT INTO audit_events (at, actor, action, target, details)
    SELECT at, 'seed', e.action, 'run:' || id, '{}'::jsonb
    FROM r, (VALUES ('run.created'), ('run.started'), ('run.finished')) AS e(action)""",
)


def seed_history(engine: Engine, flow_id: str, version: int, runs: int, steps: int, *, tag: str,
                 chunk: int = 10_000, progress: Any = None) -> None:
    """``runs`` finished runs of ``flow_id`` with ``steps`` step rows each (the failed tenth
    fail at their last step) and their audit events, written set-based in chunks: a history to
    measure against (PostgreSQL only)."""
    if engine.dialect.name != "postgresql":
        raise NotFound("seeding a history needs PostgreSQL")
    for first in range(1, runs + 1, chunk):
        last = min(first + chunk - 1, runs)
        params = {"tag": tag, "flow": flow_id, "version": version, "total": runs, "spacing": 2592000 / max(runs, 1),
                  "first": first, "last": last, "steps": steps}
        with engine.begin() as conn:
            for statement in SEED_STATEMENTS:
                conn.execute(text(statement), params)
        if progress is not None:
            progress(last)


# Runs to search, spread over SEARCH_FLOWS flows and the 30 days before now: every tenth failed,
# triggers api/schedule/webhook/event in turn, labels team (t0-t19), env (prod for three in
# four) and shard (s0-s999), inputs customer (0-49999: 20 runs each) and region.
SEARCH_FLOWS = 5
SEARCH_SEED = _SEED_RUNS + """
    INSERT INTO runs (id, flow_id, flow_version, status, inputs, result, error, trigger, labels, created_at,
                      started_at, finished_at, held, depth)
    SELECT id, CAST(:flow AS text) || '-' || (n % """ + str(SEARCH_FLOWS) + """), CAST(:version AS integer),
           CASE WHEN n % 10 = 0 THEN 'failed' ELSE 'succeeded' END,
           jsonb_build_object('customer', n % 50000, 'region', CASE WHEN n % 3 = 0 THEN 'eu' ELSE 'us' END),
           CASE WHEN n % 10 = 0 THEN NULL ELSE to_jsonb(n) END,
           CASE WHEN n % 10 = 0 THEN 'step s0 failed: seeded' END,
           (ARRAY['api', 'schedule', 'webhook', 'event'])[1 + n % 4],
           jsonb_build_object('team', 't' || (n % 20), 'env', CASE WHEN n % 4 = 0 THEN 'dev' ELSE 'prod' END,
                              'shard', 's' || (n % 1000)),
           at, at, at + interval '50 ms', false, 0
    FROM r"""


def seed_search(engine: Engine, flow_id: str, version: int, runs: int, *, tag: str, chunk: int = 50_000,
                progress: Any = None) -> None:
    """``runs`` finished runs of ``SEARCH_FLOWS`` flows named ``flow_id-N``, without steps, with
    labels and inputs to search by (PostgreSQL only); vacuumed once written, as autovacuum
    would (the GIN indexes' pending entries merged, the statistics taken)."""
    if engine.dialect.name != "postgresql":
        raise NotFound("seeding runs to search needs PostgreSQL")
    for first in range(1, runs + 1, chunk):
        last = min(first + chunk - 1, runs)
        with engine.begin() as conn:
            conn.execute(text(SEARCH_SEED), {"tag": tag, "flow": flow_id, "version": version, "total": runs,
                                             "spacing": 2592000 / max(runs, 1), "first": first, "last": last})
        if progress is not None:
            progress(last)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE runs"))


def runs_of(engine: Engine, flow_prefix: str) -> int:
    """How many runs the flows whose ids begin with ``flow_prefix`` have."""
    from orchestrator.store.tables import runs

    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(runs)
                            .where(runs.c.flow_id.startswith(flow_prefix, autoescape=True))).scalar_one()


def history_size(engine: Engine) -> tuple[int, int]:
    """How many runs and step rows the database holds (what a history-sized figure is at)."""
    from orchestrator.store.tables import runs, step_runs

    with engine.connect() as conn:
        return (conn.execute(select(func.count()).select_from(runs)).scalar_one(),
                conn.execute(select(func.count()).select_from(step_runs)).scalar_one())
