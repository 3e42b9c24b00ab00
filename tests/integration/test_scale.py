"""A long history stays cheap: at 20,000 seeded runs (200,000 step rows, their audit events)
and a backlog of in-flight work, every periodic query and every list route is answered from
an index, never a sequential scan of a table that grows with history; and ``millrace bench
scale`` prints each with a time. On a database of its own, ANALYZEd, with no workers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from tests.conftest import PG, make_engine, migrate

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RUNS = 20_000

# In-flight work next to the history, so the partial indexes have rows to find and the tables
# they index are too big to be read whole: runs going on under a schedule and a concurrency
# key, waiting approvals, owed sends (a broker outage's backlog), schedule slots and event
# trigger fires.
BACKLOG = (
    """INSERT INTO runs (id, flow_id, flow_version, status, inputs, trigger, schedule_id, concurrency_key, held,
                         depth, created_at)
       SELECT md5('live' || n)::uuid::text, 'bench/seed', 1, (ARRAY['queued', 'running', 'suspended'])[1 + n % 3],
              '{}'::jsonb, 'schedule', 'bench-scale', 'bench-scale', n % 3 = 0, 0, now()
       FROM generate_series(1, 300) AS n""",
    """INSERT INTO step_runs (run_id, path, step_id, kind, attempt, status, deliveries, cached, created_at,
                              started_at, resume_at)
       SELECT md5('live' || n)::uuid::text, 'gate', 'gate', 'approval', 1, 'waiting', 1, false, now(), now(),
              now() + interval '1 day'
       FROM generate_series(1, 300) AS n""",
    """INSERT INTO outbox (key, kind, run_id, owed_since)
       SELECT k.kind || ':' || md5('owed' || n), k.kind, md5('owed' || n)::uuid::text, now()
       FROM generate_series(1, 5000) AS n,
            (VALUES ('run'), ('on_failure'), ('finally'), ('continuation'), ('follow_up'), ('debounced')) AS k(kind)""",
    """INSERT INTO schedule_fires (schedule_id, fire_at, status, recorded_at, recorded_by)
       SELECT 'bench-scale', now() - make_interval(mins => n), CASE WHEN n < 3 THEN 'queued' ELSE 'started' END,
              now() - make_interval(mins => n), 'seed'
       FROM generate_series(1, 20000) AS n""",
    """INSERT INTO trigger_fires (trigger, message_key, status, recorded_at)
       SELECT 'bench-scale', 'm' || n, 'started', now() - make_interval(secs => n)
       FROM generate_series(1, 20000) AS n""",
)


@pytest.fixture(scope="module")
def scale_url():
    """A database of its own with the seeded history and the backlog, ANALYZEd."""
    name = f"millrace_scale_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://{PG.split('://', 1)[1]}/{name}"
    try:
        migrate(url)
        engine = make_engine(url)
        from orchestrator.observe.scale_bench import fold_history, seed_to

        with engine.begin() as conn:
            for statement in BACKLOG:
                conn.execute(text(statement))
        seed_to(engine, RUNS + 300)  # the backlog's runs count: 20,000 seeded
        fold_history(engine)  # the metrics' first scrapes are behind it
        engine.dispose()
        yield url
    finally:
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_scale(url: str, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MILLRACE_DATABASE_URL": url}
    env.pop("MILLRACE_DATABASE_OWNER_URL", None)
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", "bench", "scale", "--runs", str(RUNS), *argv],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_every_periodic_query_reads_an_index_not_the_history(scale_url: str) -> None:
    from orchestrator.observe.scale_bench import captured, periodic_queries, seq_scans

    engine = make_engine(scale_url)
    try:
        for name, call in periodic_queries(engine).items():
            with captured() as statements:
                call()
            assert statements, name
            for statement, parameters in statements:
                assert seq_scans(engine, statement, parameters) == [], f"{name}: {statement}"
    finally:
        engine.dispose()


def test_the_sweepers_owed_sends_and_expired_approvals_use_their_indexes(scale_url: str) -> None:
    from orchestrator.observe.scale_bench import captured, periodic_queries
    from orchestrator.store import plans

    engine = make_engine(scale_url)
    try:
        queries = periodic_queries(engine)
        for name, index in (("sweeper: owed continuation", "ix_outbox_kind_owed_since"),
                            ("sweeper: expired approvals", "ix_step_runs_waiting"),
                            ("scheduler: a schedule's active run", "ix_runs_schedule_unfinished"),
                            ("concurrency: runs under a key", "ix_runs_concurrency_unfinished")):
            with captured() as statements:
                queries[name]()
            plan = json.dumps([plans.plan(engine, statement, parameters) for statement, parameters in statements])
            assert f'"Index Name": "{index}"' in plan, f"{name}: {plan}"
    finally:
        engine.dispose()


def test_bench_scale_times_every_query_and_route_and_no_route_scans_the_history(scale_url: str) -> None:
    from orchestrator.observe.scale_bench import list_routes, periodic_queries

    engine = make_engine(scale_url)
    periodic = list(periodic_queries(engine))
    engine.dispose()
    measured = bench_scale(scale_url, "--json")
    assert measured.returncode == 0, measured.stderr[-3000:]
    result = json.loads(measured.stdout.strip().splitlines()[-1])
    assert result["runs"] == RUNS + 300
    names = [q["name"] for q in result["queries"]]
    assert names[:len(periodic)] == periodic
    assert len(names) == len(periodic) + len(list_routes("cursor"))
    for query in result["queries"]:
        assert query["seq_scans"] == [], query
        assert query["statements"] >= 1, query
        assert query["p50_ms"] > 0 and query["max_ms"] >= query["p50_ms"], query

    printed = bench_scale(scale_url)
    assert printed.returncode == 0, printed.stderr[-3000:]
    lines = printed.stdout.splitlines()
    for name in names:
        row = next(line for line in lines if line[:58].rstrip() == name[:58])
        p50, top = row[58:].split()[:2]
        assert float(p50) > 0 and float(top) > 0, row
    assert f"at {RUNS + 300:,} runs" in printed.stdout
