"""Flower in a real browser: headless Chromium (Debian's package, installed here when it is
missing) opens Flower's tasks page while a flow runs; the page shows the flow's steps by
name, and a screenshot is kept with the session's logs (kept when the session fails)."""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
import requests

from tests.conftest import LOGS, Served, free_port

pytestmark = pytest.mark.integration

FLOW = """id: flower/visible
steps:
  - {id: fetch_orders, bash: echo 3}
  - id: each_order
    for_each: [1, 2, 3]
    do:
      - {id: charge_card, bash: "sleep 0.2; echo charged"}
  - {id: send_receipts, python: "def main():\\n    return 'sent'"}
"""


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True, capture_output=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, timeout=600)
        found = shutil.which("chromium")
    assert found, "Debian's chromium package did not install"
    return found


@pytest.fixture(scope="module")
def flower(worker):
    port = free_port()
    served = Served("flower", ["flower"], "/healthcheck", port=port,
                    env={"MILLRACE_FLOWER_BASIC_AUTH": "ops:s3cret", "MILLRACE_FLOWER_PORT": str(port)})
    yield served.base
    served.stop()


def test_flower_needs_its_password_and_serves_prometheus_metrics(flower) -> None:
    assert requests.get(f"{flower}/api/tasks", timeout=5).status_code == 401
    metrics = requests.get(f"{flower}/metrics", auth=("ops", "s3cret"), timeout=5)
    assert metrics.status_code == 200 and "flower_events_total" in metrics.text


def test_the_tasks_page_shows_the_flows_steps_by_name(flower, engine, tmp_path) -> None:
    from orchestrator.cli.wiring import publisher_for
    from orchestrator.definitions.parser import parse_flow
    from orchestrator.services.runs import submit, wait_for_run

    browser = chromium()
    run_id = submit(publisher_for(engine), parse_flow(FLOW), FLOW, {}, trigger="test")
    # while it runs, and after: Flower hears the events and lists the tasks
    deadline = time.monotonic() + 60
    while "send_receipts" not in requests.get(f"{flower}/api/tasks", auth=("ops", "s3cret"), timeout=5).text:
        assert time.monotonic() < deadline, "Flower never saw the last step"
        time.sleep(0.3)
    assert wait_for_run(engine, run_id, 60).finished
    page = f"http://ops:s3cret@{flower.removeprefix('http://')}/tasks"
    LOGS.mkdir(parents=True, exist_ok=True)
    shot = LOGS / "flower-tasks.png"
    common = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=2000,900",
              "--virtual-time-budget=10000", f"--user-data-dir={tmp_path / 'profile'}"]
    subprocess.run([*common, f"--screenshot={shot}", page], check=True, capture_output=True, timeout=120)
    dom = subprocess.run([*common, "--dump-dom", page], check=True, capture_output=True, text=True,
                         timeout=120).stdout
    assert shot.stat().st_size > 10_000  # a real picture, not an error page
    (LOGS / "flower-tasks.html").write_text(dom)
    # the newest tasks first: the run's last steps, named, with the flow, the run and the step path
    # (consecutive code steps share a task, which names them all; so does a for_each's lane)
    for name in ("millrace.step", "millrace.join",
                 f"flower/visible / {run_id} / send_receipts, finish",
                 f"flower/visible / {run_id} / each_order.charge_card [item ",
                 *(f"each_order.charge_card [item {i}]" for i in range(3))):
        assert name in dom, name


FAILING = """id: flower/failing
steps:
  - id: flaky
    bash: "echo trying >&2; exit 3"
    retry: {attempts: 2, delay: 0.2s}
  - {id: never, bash: echo never}
"""


def test_a_failing_step_shows_as_failure_with_its_name_and_a_retry_keeps_it(flower, engine, tmp_path) -> None:
    from orchestrator.cli.wiring import publisher_for
    from orchestrator.definitions.parser import parse_flow
    from orchestrator.services.runs import submit, wait_for_run

    run_id = submit(publisher_for(engine), parse_flow(FAILING), FAILING, {}, trigger="test")
    assert wait_for_run(engine, run_id, 60).value == "failed"
    label = f"flower/failing / {run_id} / flaky"
    deadline = time.monotonic() + 30
    while True:
        failed = requests.get(f"{flower}/api/tasks", params={"state": "FAILURE"}, auth=("ops", "s3cret"),
                              timeout=5).json()
        mine = [t for t in failed.values() if label in (t.get("args") or "")]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert mine, failed
    assert "exit code 3" in (mine[0].get("exception") or "")  # the step's own error, not Millrace's
    assert mine[0].get("retries") == 1  # it failed on its retry, which kept the step's name
    page = f"http://ops:s3cret@{flower.removeprefix('http://')}/tasks"
    dom = subprocess.run([chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=2000,900",
                          "--virtual-time-budget=10000", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                          page], check=True, capture_output=True, text=True, timeout=120).stdout
    assert "FAILURE" in dom and label in dom
