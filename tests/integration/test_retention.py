"""Retention on real PostgreSQL with a worker: `millrace runs purge` and the scheduler's leader
remove finished runs past how long they are kept, with their steps and logs, a run with its
subflow runs, in batches; what later runs name answers "purged"; an idempotency key finds
its run for its whole window whatever the retention."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
import uuid

import pytest
from sqlalchemy import func, insert, select, update

from orchestrator.store import tables
from tests.conftest import LOGS, MILLRACE, ROOT, ProcessGroup

pytestmark = pytest.mark.integration

LOUD = """id: retention/{name}
steps:
  - {{id: first, bash: echo first-line}}
  - {{id: second, python: "def main():\\n    print('second-line')\\n    return 2"}}
"""
CHILD = "id: retention/child\nsteps:\n  - {id: inner, bash: echo inner-line}\n"
PARENT = "id: retention/parent\nsteps:\n  - {id: sub, flow: retention/child}\n  - {id: after, bash: echo done}\n"


def purge_cli(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([*MILLRACE, "runs", "purge", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def age(engine, run_ids: list[str], days: float) -> None:
    """Make these runs look as if they were created and finished ``days`` ago."""
    at = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    with engine.begin() as conn:
        conn.execute(update(tables.runs).where(tables.runs.c.id.in_(run_ids)).values(
            created_at=at - dt.timedelta(seconds=5), finished_at=at))


def rows(engine, table, run_ids: list[str]) -> int:
    column = table.c.run_id if "run_id" in table.c else table.c.id
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(column.in_(run_ids))).scalar()


def run_to_end(api, flow_id: str, **kwargs) -> dict:
    started = api.post(f"/api/v1/flows/{flow_id}/runs", json={}, **kwargs)
    assert started.status_code in (200, 202), started.json
    return api.finished_run(started.json["id"])


def children_of(engine, run_id: str) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(tables.runs.c.id).where(tables.runs.c.parent_run_id == run_id)).scalars())


def test_a_purge_removes_old_runs_with_their_steps_and_logs_and_keeps_the_newer(api, engine) -> None:
    api.save_flow(LOUD.format(name="loud"))
    old, new = (run_to_end(api, "retention/loud") for _ in range(2))
    assert old["status"] == new["status"] == "succeeded"
    age(engine, [old["id"]], days=40)

    said = purge_cli("--older-than", "30d", "--flow", "retention/loud")

    assert "purged 1 run(s)" in said and "with 2 step row(s)" in said
    assert rows(engine, tables.runs, [old["id"]]) == rows(engine, tables.step_runs, [old["id"]]) == 0
    gone = api.get(f"/api/v1/runs/{old['id']}")
    assert gone.status_code == 410 and "purged" in gone.json["detail"]
    assert api.get(f"/api/v1/runs/{old['id']}/steps/first/logs").status_code == 410
    kept = api.get(f"/api/v1/runs/{new['id']}").json
    assert [s["path"] for s in kept["steps"]] == ["first", "second"]
    assert "first-line" in api.get(f"/api/v1/runs/{new['id']}/steps/first/logs").json["attempts"][0]["logs"]
    assert api.get(f"/api/v1/runs/{uuid.uuid4()}").status_code == 404  # never existed: still 404


def test_a_run_and_its_subflow_runs_are_purged_together_or_not_at_all(api, engine) -> None:
    api.save_flow(CHILD)
    api.save_flow(PARENT)
    parent = run_to_end(api, "retention/parent")
    assert parent["status"] == "succeeded"
    [child] = children_of(engine, parent["id"])

    age(engine, [parent["id"]], days=40)  # the subflow run ended recently: the family waits for it
    assert "purged 0 run(s)" in purge_cli("--older-than", "30d", "--flow", "retention/parent")
    age(engine, [child], days=40)  # a subflow run is never purged alone, by its own flow
    assert "purged 0 run(s)" in purge_cli("--older-than", "30d", "--flow", "retention/child")
    assert rows(engine, tables.runs, [parent["id"], child]) == 2

    said = purge_cli("--older-than", "30d", "--flow", "retention/parent")

    assert "purged 2 run(s)" in said
    assert rows(engine, tables.runs, [parent["id"], child]) == 0
    assert rows(engine, tables.step_runs, [parent["id"], child]) == 0
    assert api.get(f"/api/v1/runs/{child}").status_code == 410


def test_an_export_holds_each_purged_run_with_its_steps_and_subflow_runs(api, engine, tmp_path) -> None:
    api.save_flow(CHILD)
    api.save_flow(PARENT)
    parent = run_to_end(api, "retention/parent")
    [child] = children_of(engine, parent["id"])
    age(engine, [parent["id"], child], days=40)
    export = tmp_path / "purged.jsonl"

    purge_cli("--older-than", "30d", "--flow", "retention/parent", "--export", str(export))

    [line] = export.read_text().splitlines()
    record = json.loads(line)
    assert record["id"] == parent["id"] and record["status"] == "succeeded"
    assert [s["path"] for s in record["steps"]] == ["sub", "after"]
    [sub] = record["subflow_runs"]
    assert sub["id"] == child and sub["parent_run_id"] == parent["id"]
    assert "inner-line" in sub["steps"][0]["logs"]
    assert rows(engine, tables.runs, [parent["id"], child]) == 0


def test_a_dry_run_counts_and_changes_nothing(api, engine) -> None:
    api.save_flow(LOUD.format(name="dry"))
    run = run_to_end(api, "retention/dry")
    age(engine, [run["id"]], days=40)

    said = purge_cli("--older-than", "30d", "--flow", "retention/dry", "--dry-run")

    assert "would purge 1 run(s)" in said and "2 step row(s)" in said
    assert rows(engine, tables.runs, [run["id"]]) == 1 and rows(engine, tables.step_runs, [run["id"]]) == 2
    assert rows(engine, tables.purged_runs, [run["id"]]) == 0
    assert api.get(f"/api/v1/runs/{run['id']}").status_code == 200


def seed(engine, flow_id: str, count: int, days: float) -> list[str]:
    """``count`` finished runs of ``flow_id`` that ended ``days`` ago, one step row each."""
    at = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    ids = [str(uuid.uuid4()) for _ in range(count)]
    with engine.begin() as conn:
        conn.execute(insert(tables.runs), [
            {"id": i, "flow_id": flow_id, "flow_version": 1, "status": "succeeded", "inputs": {}, "trigger": "test",
             "created_at": at, "started_at": at, "finished_at": at, "depth": 0, "held": False, "labels": {}}
            for i in ids])
        conn.execute(insert(tables.step_runs), [
            {"run_id": i, "path": "only", "step_id": "only", "kind": "bash", "attempt": 1, "status": "succeeded",
             "started_at": at, "finished_at": at, "logs": "seeded"} for i in ids])
    return ids


def test_1200_runs_are_purged_in_batches_of_500(engine) -> None:
    ids = seed(engine, "retention/bulk", 1200, days=40)
    with engine.connect() as conn:
        before = conn.execute(select(func.max(tables.audit_events.c.id))).scalar()

    said = purge_cli("--older-than", "30d", "--flow", "retention/bulk", env={"MILLRACE_RETENTION_BATCH": "500"})

    assert "purged 1200 run(s)" in said and "1200 step row(s), in 3 batch(es)" in said
    assert rows(engine, tables.runs, ids) == rows(engine, tables.step_runs, ids) == 0
    with engine.connect() as conn:
        events = conn.execute(select(tables.audit_events.c.details).where(
            tables.audit_events.c.id > before, tables.audit_events.c.action == "runs.purged")
            .order_by(tables.audit_events.c.id)).scalars().all()
    assert [e["runs"] for e in events] == [500, 500, 200]  # one transaction each
    assert sorted(i for e in events for i in e["run_ids"]) == sorted(ids)
    verified = subprocess.run([*MILLRACE, "audit", "verify"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert verified.returncode == 0, verified.stderr  # the audit trail is untouched: it still verifies


def test_a_restarted_run_keeps_naming_the_purged_run_which_answers_410(api, engine) -> None:
    api.save_flow("id: retention/flaky\nsteps:\n  - {id: try, bash: exit 3}\n")
    failed = run_to_end(api, "retention/flaky")
    assert failed["status"] == "failed"
    again = api.post(f"/api/v1/runs/{failed['id']}/restart", json={"from": "try"})
    assert again.status_code == 202, again.json
    restarted = api.finished_run(again.json["id"])
    age(engine, [failed["id"]], days=40)

    purge_cli("--older-than", "30d", "--flow", "retention/flaky")

    assert api.get(f"/api/v1/runs/{restarted['id']}").json["restarted_from"] == failed["id"]
    gone = api.get(f"/api/v1/runs/{failed['id']}")
    assert gone.status_code == 410 and "purged" in gone.json["detail"]
    assert api.post(f"/api/v1/runs/{failed['id']}/restart", json={"from": "try"}).status_code == 410


def test_an_idempotency_key_finds_its_run_for_its_whole_window_whatever_the_retention(api, engine) -> None:
    api.save_flow("id: retention/once\nretention: {keep: 1s}\nsteps:\n  - {id: one, bash: echo once}\n")
    key = {"Idempotency-Key": f"retention-{uuid.uuid4()}"}
    first = run_to_end(api, "retention/once", headers=key)
    age(engine, [first["id"]], days=0.5)  # past the flow's retention, within the 24 h window

    said = purge_cli("--older-than", "1s", "--flow", "retention/once")

    assert "purged 0 run(s)" in said
    assert api.post("/api/v1/flows/retention/once/runs", json={}, headers=key).json["id"] == first["id"]
    age(engine, [first["id"]], days=1.1)  # past the window too
    assert "purged 1 run(s)" in purge_cli("--older-than", "1s", "--flow", "retention/once")
    assert api.post("/api/v1/flows/retention/once/runs", json={}, headers=key).json["id"] != first["id"]


class Scheduler(ProcessGroup):
    def __init__(self, env: dict[str, str]):
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log_path = LOGS / f"scheduler-retention-{uuid.uuid4().hex[:6]}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([*MILLRACE, "scheduler"], cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True, env={**os.environ, **env})


def eventually(check, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.2)


def test_the_scheduler_leader_purges_by_each_flows_retention_every_interval(api, engine) -> None:
    api.save_flow("id: retention/kept2d\nretention: {keep: 2d}\nsteps:\n  - {id: s, bash: echo}\n")
    old, young = seed(engine, "retention/kept2d", 1, days=3), seed(engine, "retention/kept2d", 1, days=1)
    forever = seed(engine, "retention/forever", 1, days=400)  # no retention of its own, none installation-wide
    scheduler = Scheduler({"MILLRACE_RETENTION_INTERVAL_S": "1"})
    try:
        eventually(lambda: rows(engine, tables.runs, old) == 0)
        later = seed(engine, "retention/kept2d", 1, days=3)  # the next interval's pass takes it
        eventually(lambda: rows(engine, tables.runs, later) == 0)
        assert rows(engine, tables.runs, young) == rows(engine, tables.runs, forever) == 1
        assert rows(engine, tables.step_runs, old + later) == 0
    finally:
        scheduler.stop()


def test_fires_go_with_their_runs_and_fires_that_started_none_go_by_age(api, engine) -> None:
    from orchestrator.store.triggers import declared_schedule_id

    api.save_flow("id: retention/cron\ntriggers:\n  - {id: yearly, cron: '0 0 1 1 *'}\n"
                  "steps:\n  - {id: s, bash: echo}\n")
    schedule = declared_schedule_id("retention/cron", "yearly")
    [run] = seed(engine, "retention/cron", 1, days=40)
    now = dt.datetime.now(dt.UTC)
    fires = [("started", run, 40), ("skipped", None, 40), ("skipped", None, 1)]
    with engine.begin() as conn:
        ids = [conn.execute(insert(tables.schedule_fires).values(
            schedule_id=schedule, fire_at=now - dt.timedelta(days=days, minutes=n), status=status, run_id=run_id,
            recorded_at=now - dt.timedelta(days=days), recorded_by="test").returning(tables.schedule_fires.c.id)
        ).scalar() for n, (status, run_id, days) in enumerate(fires)]

    said = purge_cli("--older-than", "30d", "--flow", "retention/cron")

    assert "purged 1 run(s)" in said and "1 fire(s) that started no run" in said
    with engine.connect() as conn:
        left = conn.execute(select(tables.schedule_fires.c.id).where(tables.schedule_fires.c.id.in_(ids))).scalars()
        assert list(left) == [ids[2]]  # the recent one stays
