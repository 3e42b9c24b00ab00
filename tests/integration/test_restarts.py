"""A database or broker restart in the middle of a run: the run continues when it returns,
and each step's outcome is recorded once.

The services restarted are the module's own (a private PostgreSQL cluster and RabbitMQ
node): the machine's are shared with other sessions. A real worker runs on them, and runs
are submitted by the `millrace` command in a process whose environment names them: this
process's Celery app was made for the shared broker.
"""
from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError

from tests.conftest import MILLRACE, QUEUE, ROOT, Worker, get_run, make_engine

pytestmark = pytest.mark.integration

FINISHED = ("succeeded", "failed", "cancelled")


@dataclass
class Stack:
    """Millrace on private services: a worker, and what a client needs to reach them."""

    env: dict[str, str]
    engine: object
    folder: Path

    def submit(self, text: str, name: str) -> str:
        """Start a run of a flow text with `millrace run`, without waiting; returns its id."""
        path = self.folder / f"{name}.yaml"
        path.write_text(text)
        done = subprocess.run([*MILLRACE, "run", str(path), "--detach"], cwd=ROOT,
                              env=self.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stdout, done.stderr
        return done.stdout.strip()  # --detach prints the run id and returns

    def run(self, run_id: str) -> dict:
        return get_run(self.engine, run_id)


@pytest.fixture(scope="module")
def stack(private_database, private_rabbit, tmp_path_factory):
    env = {**os.environ, "MILLRACE_DATABASE_URL": private_database, "MILLRACE_BROKER_URL": private_rabbit.url}
    worker = Worker([QUEUE], concurrency=2, env=env)
    engine = make_engine(private_database)
    yield Stack(env, engine, tmp_path_factory.mktemp("flows"))
    worker.stop()
    engine.dispose()


def _slow_chain(flow_id: str) -> str:
    """12 sequential steps of 0.3 s each, passing a counter along."""
    code = "import time\\ndef main(x: int) -> int:\\n    time.sleep(0.3)\\n    return x + 1"
    lines = []
    for i in range(12):
        previous = "0" if i == 0 else '"${{ steps.s' + str(i - 1) + '.result }}"'
        lines.append(f'  - id: s{i}\n    python: "{code}"\n    with: {{x: {previous}}}')
    return f"id: {flow_id}\nsteps:\n" + "\n".join(lines) + "\n"


def _start_and_wait_into(stack: Stack, flow_id: str) -> str:
    """Start the slow chain and return once it is under way (so the outage comes mid-run)."""
    run_id = stack.submit(_slow_chain(flow_id), flow_id.replace("/", "_"))
    deadline = time.monotonic() + 30
    while not _steps_done(run := stack.run(run_id)):
        assert time.monotonic() < deadline, f"the run never got going: {run}"
        time.sleep(0.05)
    assert run.status not in FINISHED, "the run ended before the outage: nothing was tested"
    print(f"{flow_id}: the outage begins after {_steps_done(run)} of 12 steps")
    return run_id


def _steps_done(run: dict) -> int:
    return sum(s.status == "succeeded" for s in run.steps)


def _assert_one_outcome_per_step(run: dict) -> None:
    assert run.status == "succeeded", run.error
    assert run.result == 12
    for i in range(12):
        outcomes = [s for s in run.steps if s.path == f"s{i}"]
        assert [(o.attempt, o.status) for o in outcomes] == [(1, "succeeded")]


def _until_finished(stack: Stack, run_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            run = stack.run(run_id)
            if run.status in FINISHED:
                return run
        except DBAPIError:
            pass  # the database is still coming back
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish in {timeout}s")


def test_a_postgres_restart_mid_run_loses_nothing(stack, private_postgres):
    run_id = _start_and_wait_into(stack, "test/pg_restart")
    private_postgres.restart(down_for=1.0)
    _assert_one_outcome_per_step(_until_finished(stack, run_id, 180))


def test_a_rabbitmq_restart_mid_run_loses_nothing(stack, private_rabbit):
    run_id = _start_and_wait_into(stack, "test/mq_restart")
    private_rabbit.restart(down_for=1.0)  # the whole node: every connection drops
    _assert_one_outcome_per_step(_until_finished(stack, run_id, 180))
