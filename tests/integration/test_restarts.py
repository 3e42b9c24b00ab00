"""A database restart in the middle of a run: the run continues when it returns."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError

from orchestrator.cli.wiring import publisher_for
from orchestrator.definitions.parser import parse_flow
from orchestrator.services.runs import submit
from orchestrator.store import views

pytestmark = pytest.mark.integration


def _restart_postgres() -> None:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
                   check=True, capture_output=True, timeout=120)


def _start_slow_chain(engine, flow_id: str) -> str:
    """12 sequential steps of 0.3 s each, passing a counter along."""
    code = "import time\\ndef main(x: int) -> int:\\n    time.sleep(0.3)\\n    return x + 1"
    lines = []
    for i in range(12):
        previous = "0" if i == 0 else '"${{ steps.s' + str(i - 1) + '.result }}"'
        lines.append(f'  - id: s{i}\n    python: "{code}"\n    with: {{x: {previous}}}')
    text = f"id: {flow_id}\nsteps:\n" + "\n".join(lines) + "\n"
    return submit(publisher_for(engine), parse_flow(text), text, {}, trigger="test")


def _assert_one_outcome_per_step(run: dict) -> None:
    assert run["status"] == "succeeded", run["error"]
    assert run["result"] == 12
    for i in range(12):
        outcomes = [s for s in run["steps"] if s["path"] == f"s{i}"]
        assert [(o["attempt"], o["status"]) for o in outcomes] == [(1, "succeeded")]


def _until_finished(engine, run_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            run = views.get_run(engine, run_id)
            if run["status"] in ("succeeded", "failed", "cancelled"):
                return run
        except DBAPIError:
            pass  # the database is still coming back
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish in {timeout}s")


@pytest.mark.skipif(shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").exists(),
                    reason="needs a local PostgreSQL cluster it may restart")
def test_a_postgres_restart_mid_run_loses_nothing(engine, worker):
    run_id = _start_slow_chain(engine, "test/pg_restart")
    time.sleep(1.2)
    _restart_postgres()
    _assert_one_outcome_per_step(_until_finished(engine, run_id, 180))


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs a local RabbitMQ it may restart")
def test_a_rabbitmq_restart_mid_run_loses_nothing(engine, worker):
    run_id = _start_slow_chain(engine, "test/mq_restart")
    time.sleep(1.2)
    subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=120)
    time.sleep(2)
    subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)
    _assert_one_outcome_per_step(_until_finished(engine, run_id, 180))
