"""Consecutive code steps share one Celery task (a batch) and lose nothing by it: each step
runs in its own process with its own attempt row and audit events; a retrying step runs
again alone; a batch that has run past MILLRACE_STEP_BATCH_S hands the rest on."""
from __future__ import annotations

import re

import pytest

from orchestrator.cli.wiring import publisher_for, send
from orchestrator.definitions.parser import parse_flow
from orchestrator.services.publisher import Publisher
from orchestrator.services.runs import stored_plans, submit, wait_for_run
from orchestrator.store import audit, views
from tests.conftest import QUEUE, Worker

pytestmark = pytest.mark.integration

PID = "import os\\ndef main(previous: list) -> list:\\n    return previous + [os.getpid()]"


def pid_steps(count: int, queue: str | None = None) -> str:
    lines = []
    for i in range(count):
        previous = "[]" if i == 0 else '"${{ steps.p' + str(i - 1) + '.result }}"'
        on = f"\n    queue: {queue}" if queue else ""
        lines.append(f'  - id: p{i}{on}\n    python: "{PID}"\n    with: {{previous: {previous}}}')
    return "\n".join(lines)


def test_consecutive_steps_share_a_task_yet_each_runs_in_its_own_process(run_flow, engine) -> None:
    run = run_flow(f"id: batch/pids\nsteps:\n{pid_steps(5)}\n")
    assert run.status == "succeeded"
    pids = run.result
    assert len(pids) == 5 and len(set(pids)) == 5  # a process each: nothing leaks between steps
    steps = run.steps
    assert [(s.path, s.attempt, s.status, s.deliveries) for s in steps] == [
        (f"p{i}", 1, "succeeded", 1) for i in range(5)]
    assert len({s.task_id for s in steps}) == 1  # one Celery task: no broker round trip between them
    actions = [(e["action"], e["details"].get("path"))
               for e in audit.list_audit(engine, target=f"run:{run.id}", limit=100)]
    assert actions == [("run.created", None), ("run.started", None),
                       *[(a, f"p{i}") for i in range(5) for a in ("step.started", "step.succeeded")],
                       ("run.succeeded", None)]


def test_a_retrying_step_runs_again_without_the_steps_before_it(run_flow) -> None:
    run = run_flow("""
id: batch/retry
steps:
  - {id: before, bash: echo before}
  - id: flaky
    python: |
      import os
      def main() -> int:
          if os.environ["MILLRACE_ATTEMPT"] == "1":
              raise RuntimeError("first attempt fails")
          return int(os.environ["MILLRACE_ATTEMPT"])
    retry: {attempts: 3, delay: 10ms}
  - id: after
    python: |
      import os
      def main(n: int) -> str:
          return os.environ["MILLRACE_ATTEMPT"] + "/" + str(n)
    with: {n: "${{ steps.flaky.result }}"}
""")
    assert run.status == "succeeded", run.error
    assert [(s.path, s.attempt, s.status) for s in run.steps] == [
        ("before", 1, "succeeded"), ("flaky", 1, "failed"), ("flaky", 2, "succeeded"), ("after", 1, "succeeded")]
    assert run.result == "1/2"  # the step after a retried one is that step's first attempt


def test_a_batch_past_its_time_hands_the_rest_on_even_inside_a_for_each(engine, worker) -> None:
    queue = f"{QUEUE}_unbatched"
    unbatched = Worker([queue], concurrency=1, env={"MILLRACE_STEP_BATCH_S": "0"})
    try:
        text = f"""id: batch/unbatched
steps:
{pid_steps(3, queue)}
  - id: each
    for_each: [10, 20, 30]
    parallel: false
    do:
      - id: twice
        queue: {queue}
        python: "def main(x: int) -> int:\\n    return 2 * x"
        with: {{x: "${{{{ item }}}}"}}
      - id: plus
        queue: {queue}
        python: "def main(y: int) -> int:\\n    return y + 1"
        with: {{y: "${{{{ steps.twice.result }}}}"}}
"""
        run_id = submit(publisher_for(engine), parse_flow(text), text, {}, trigger="test")
        assert wait_for_run(engine, run_id, 60).finished
    finally:
        unbatched.stop()
    run = views.get_run(engine, run_id)
    assert run.status == "succeeded", run.error
    assert run.result == [21, 41, 61]
    code_steps = [s for s in run.steps if s.kind == "python"]
    assert len(code_steps) == 9 and all(s.attempt == 1 and s.deliveries == 1 for s in code_steps)
    # with no time for a batch, a message per step (the run's start goes with the first)
    log = unbatched.log_path.read_text()
    assert len(re.findall(r"Task millrace\.step\[[0-9a-f-]+\] received", log)) == 9, log


def test_a_run_sent_before_batches_existed_still_completes(engine, worker) -> None:
    """Messages made by an older Millrace (a continuation kept by a waiting step, a queued
    retry) name one step each, with `millrace.start` and `millrace.finish` as tasks."""
    from celery import Signature, chain

    def send_as_before(sig) -> None:
        old = []
        for task in sig.tasks:
            if task.task != "millrace.step":
                old.append(task)
                continue
            ref = {k: v for k, v in task.kwargs.items() if k != "units"}
            for unit in task.kwargs["units"]:
                name = "millrace.start" if "start" in unit else "millrace.finish" if "finish" in unit else task.task
                where = {k: unit[k] for k in ("node", "enter") if k in unit}
                old.append(Signature(name, kwargs={**ref, **where}, options=task.options))
        old[0].args = sig.tasks[0].args
        send(chain(*old))

    text = f"id: batch/old\nsteps:\n{pid_steps(3)}\n"
    run_id = submit(Publisher(engine, send_as_before, stored_plans(engine)), parse_flow(text), text, {},
                    trigger="test")
    assert wait_for_run(engine, run_id, 60).finished
    run = views.get_run(engine, run_id)
    assert run.status == "succeeded" and len(run.result) == 3
    assert len({s.task_id for s in run.steps}) == 3  # each step its own task, as sent
