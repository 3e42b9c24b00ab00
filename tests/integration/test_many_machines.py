"""Workers on three machines, one broker and one database on a fourth: a machine that dies
mid-run loses nothing, and every run finishes once, each step recorded once.

The machines are network namespaces (tests/integration/hosts.py): each worker reaches
RabbitMQ and PostgreSQL over its veth link, at its gateway address, as over a LAN.
"""
from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest

from orchestrator.cli.wiring import publisher_for
from orchestrator.definitions.parser import parse_flow
from orchestrator.services.runs import submit, wait_for_run
from orchestrator.store import views
from tests.conftest import _SHARED_QUEUES, AMQP, DB_NAME, PG, QUEUE, Worker
from tests.integration.hosts import lan_hosts  # noqa: F401 - the fixture

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STEPS = 6
RUNS = 8


def _flow(queue: str) -> str:
    code = "import time\\ndef main(x: int) -> int:\\n    time.sleep(0.5)\\n    return x + 1"
    steps = []
    for i in range(STEPS):
        previous = "0" if i == 0 else '"${{ steps.s' + str(i - 1) + '.result }}"'
        steps.append(f'  - id: s{i}\n    queue: {queue}\n    python: "{code}"\n    with: {{x: {previous}}}')
    return "id: test/many_machines\nsteps:\n" + "\n".join(steps) + "\n"


def _on_host(host, url: str, port: int) -> str:
    """``url`` with its host and port those of the service as ``host`` reaches it."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return parts._replace(netloc=f"{userinfo}{host.gateway}:{port}").geturl()


def test_a_machine_killed_mid_run_loses_nothing_and_every_run_finishes_once(engine, lan_hosts):  # noqa: F811
    queue = f"{QUEUE}_hosts"
    _SHARED_QUEUES.add(queue)
    amqp_port, pg_port = urlsplit(AMQP).port or 5672, urlsplit(PG).port or 5432
    hosts = lan_hosts(3, (amqp_port, pg_port))
    workers = []
    for host in hosts:
        env = {"MILLRACE_BROKER_URL": _on_host(host, AMQP, amqp_port),
               "MILLRACE_DATABASE_URL": _on_host(host, f"postgresql+psycopg://{PG.split('://', 1)[1]}/{DB_NAME}",
                                                 pg_port)}
        workers.append(Worker([queue], concurrency=1, env=env, on=host.command))
    doomed = hosts[0]
    try:
        text = _flow(queue)
        run_ids = [submit(publisher_for(engine), parse_flow(text), text, {}, trigger="test") for _ in range(RUNS)]
        running_there = _wait_running_on(engine, run_ids, doomed.hostname)
        doomed.crash()
        workers[0].proc.wait(30)
        for run_id in run_ids:
            assert wait_for_run(engine, run_id, 240).finished
    finally:
        for worker in workers:
            worker.stop()

    runs = [views.get_run(engine, run_id) for run_id in run_ids]
    for run in runs:
        assert (run.status, run.result) == ("succeeded", STEPS), (run.id, run.error)
        rows = sorted((s.path, s.attempt, s.status) for s in run.steps)
        assert rows == [(f"s{i}", 1, "succeeded") for i in range(STEPS)], rows  # once each, no duplicate
    [redone] = [s for run in runs for s in run.steps if (run.id, s.path) == running_there]
    assert redone.deliveries >= 2 and not redone.worker.startswith(doomed.hostname + ":")


def _wait_running_on(engine, run_ids: list[str], hostname: str, timeout: float = 120) -> tuple[str, str]:
    """(run id, path) of a step running on ``hostname`` once all three hosts have recorded steps."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = [(run_id, s) for run_id in run_ids for s in views.get_run(engine, run_id).steps]
        hosts = {s.worker.split(":")[0] for _, s in steps if s.worker}
        there = [(run_id, s.path) for run_id, s in steps
                 if s.status == "running" and s.worker and s.worker.startswith(hostname + ":")]
        if len(hosts) >= 3 and there:
            return there[0]
        time.sleep(0.05)
    raise AssertionError(f"no step ran on {hostname} while the others worked")
