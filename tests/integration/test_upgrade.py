"""An installation upgraded to the outbox keeps everything it owed before the upgrade."""
from __future__ import annotations

import datetime as dt
import json
import os
import time
import uuid

import psycopg
import pytest
from sqlalchemy import text

from tests.conftest import PG, ROOT, Worker

pytestmark = pytest.mark.integration

FLOW = """id: upgrade/owed
concurrency: {limit: 1}
steps:
  - id: gate
    approval: {}
  - id: done
    python: "def main():\\n    return 'done'"
on_failure:
  - id: alert
    python: "import os\\ndef main():\\n    return 'alerted: ' + os.environ['MILLRACE_ERROR']"
"""
PLAIN = """id: upgrade/plain
steps:
  - id: hello
    python: "def main():\\n    return 'published after the upgrade'"
"""


def _alembic(engine, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    from orchestrator.store.database import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    command.upgrade(config, revision)


@pytest.fixture
def old_database():
    """A database at the schema before the outbox (revision 0013)."""
    from orchestrator.store.database import make_engine

    name = f"millrace_upgrade_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://{PG.split('://', 1)[1]}/{name}"
    engine = make_engine(url)
    _alembic(engine, "0013")
    yield url, engine
    engine.dispose()
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _save(conn, source: str) -> int:
    from orchestrator.definitions.parser import parse_flow

    flow = parse_flow(source)
    document = flow.model_dump(mode="json", by_alias=True, exclude_unset=True)
    at = dt.datetime.now(dt.UTC)
    conn.execute(text("INSERT INTO flows (flow_id, latest_version, created_at, updated_at) VALUES (:f, 1, :at, :at)"),
                 {"f": flow.id, "at": at})
    conn.execute(text("INSERT INTO flow_versions (flow_id, version, document, source, digest, created_at) "
                      "VALUES (:f, 1, :d, :s, :g, :at)"),
                 {"f": flow.id, "d": json.dumps(document), "s": source, "g": uuid.uuid4().hex, "at": at})
    return 1


def _run(conn, flow_id: str, status: str, **columns) -> str:
    run_id = str(uuid.uuid4())
    values = {"id": run_id, "flow_id": flow_id, "flow_version": 1, "status": status, "inputs": "{}",
              "trigger": "test", "depth": 0, "held": False, "created_at": _ago(300), **columns}
    names = ", ".join(values)
    conn.execute(text(f"INSERT INTO runs ({names}) VALUES ({', '.join(':' + n for n in values)})"), values)
    return run_id


def _ago(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)


def test_what_was_owed_before_the_upgrade_is_all_done_after_it(old_database):
    """One of each kind owed under the old schema: a run never published, a failed run's
    on_failure steps never sent, a decided approval's continuation never sent, and a run's
    end never followed up (its held run never released). After the upgrade a worker's
    first sweep does each, once."""
    from orchestrator.definitions.parser import parse_flow
    from orchestrator.execution.compiler import compile_handlers, compile_run
    from orchestrator.execution.context import Context
    from orchestrator.execution.lifecycle import Phase
    from orchestrator.execution.messages import RunRef
    from orchestrator.execution.plan import build_plan
    from orchestrator.store.database import upgrade

    url, engine = old_database
    plan = build_plan(parse_flow(FLOW), 1)
    with engine.begin() as conn:
        _save(conn, FLOW)
        _save(conn, PLAIN)
        unpublished = _run(conn, "upgrade/plain", "queued", publishable_at=_ago(120))
        # failed: on_failure steps recorded with the failure, never sent
        failing = _run(conn, "upgrade/owed", "running", started_at=_ago(200), error="step gate failed: no",
                       concurrency_key="x")
        handlers = compile_handlers(plan, RunRef(failing, plan.flow_id, 1), Phase.ON_FAILURE,
                                    Context.new(failing, plan.flow_id, 1, {}).for_handlers("step gate failed: no"))
        conn.execute(text("UPDATE runs SET on_failure = :m, on_failure_pending_since = :at WHERE id = :id"),
                     {"m": json.dumps(dict(handlers)), "at": _ago(120), "id": failing})
        # approved: its continuation (the rest of the run from the gate on) never sent
        approved = _run(conn, "upgrade/owed", "running", started_at=_ago(200), concurrency_key="y")
        continuation = compile_run(plan, RunRef(approved, plan.flow_id, 1),
                                   Context.new(approved, plan.flow_id, 1, {}), first=0)
        conn.execute(text(
            "INSERT INTO step_runs (run_id, path, step_id, kind, attempt, status, deliveries, cached, started_at, "
            "finished_at, result, continuation, resume_pending_since) VALUES (:r, 'gate', 'gate', 'approval', 1, "
            "'succeeded', 1, false, :at, :at, :res, :c, :at)"),
            {"r": approved, "at": _ago(120), "res": json.dumps({"approved": True}),
             "c": json.dumps(dict(continuation))})
        # ended, never followed up: the run its concurrency limit held is never released
        ended = _run(conn, "upgrade/owed", "cancelled", concurrency_key="z", finished_at=_ago(120),
                     published_at=_ago(200))
        held = _run(conn, "upgrade/owed", "queued", concurrency_key="z", held=True)
    upgrade(engine)
    with engine.connect() as conn:
        owed = dict(conn.execute(text("SELECT kind, run_id FROM outbox")).all())
    assert owed == {"run": unpublished, "on_failure": failing, "continuation": approved, "follow_up": ended}

    queue = f"upgrade_{uuid.uuid4().hex[:8]}"
    # the worker's default queue is named with the session's MILLRACE_QUEUE_PREFIX in front
    prefixed = os.environ.get("MILLRACE_QUEUE_PREFIX", "") + queue
    worker = Worker([prefixed], env={"MILLRACE_DATABASE_URL": url, "MILLRACE_DEFAULT_QUEUE": queue,
                                  "MILLRACE_HOME": str(ROOT / ".millrace" / "test-upgrade")})
    try:
        deadline = time.monotonic() + 90
        while True:
            with engine.connect() as conn:
                statuses = dict(conn.execute(text("SELECT id, status FROM runs")).all())
                left = conn.execute(text("SELECT count(*) FROM outbox")).scalar()
            if (statuses[unpublished] == "succeeded" and statuses[failing] == "failed"
                    and statuses[approved] == "succeeded" and statuses[held] != "queued" and not left):
                break
            assert time.monotonic() < deadline, (statuses, left)
            time.sleep(0.2)
        with engine.connect() as conn:
            steps = conn.execute(text("SELECT run_id, path, status, result FROM step_runs ORDER BY id")).all()
        by_run: dict[str, list] = {}
        for row in steps:
            by_run.setdefault(row.run_id, []).append((row.path, row.status, row.result))
        assert by_run[unpublished] == [("hello", "succeeded", "published after the upgrade")]
        assert by_run[failing] == [("on_failure.alert", "succeeded", "alerted: step gate failed: no")]
        assert by_run[approved] == [("gate", "succeeded", {"approved": True}), ("done", "succeeded", "done")]
        assert by_run[held][0][:2] == ("gate", "waiting")  # released: it started, and waits at its gate
    finally:
        worker.stop()
