"""What a crash between a commit and a publish leaves behind is repaired by the sweeper."""
from __future__ import annotations

import time
import uuid

import pytest

from orchestrator.cli.wiring import publisher_for
from orchestrator.definitions.parser import parse_flow
from orchestrator.execution.lifecycle import Phase, StepStatus
from orchestrator.services.runs import submit, wait_for_run
from orchestrator.services.saving import save_flow
from orchestrator.store import admission, outbox, runs, views
from orchestrator.store.admission import NewRun
from orchestrator.store.outbox import OwedKind

pytestmark = pytest.mark.integration

FLOW = """
id: test/sweep
steps:
  - id: one
    python: "def main():\\n    return 'published late'"
"""


def _runtime():
    from tasks.app import settings
    from tasks.runtime import Runtime

    return Runtime(settings)


def test_a_run_committed_but_never_published_is_published_by_the_sweeper(engine, worker):
    from tasks.sweeper import sweep

    flow = parse_flow(FLOW)
    version = save_flow(engine, flow, FLOW)
    run_id = str(uuid.uuid4())
    admission.create_run(engine, NewRun(run_id, flow.id, version, {}, trigger="test"))  # the publisher "died" here
    time.sleep(1)
    assert runs.run_status(engine, run_id).value == "queued"
    sweep(_runtime(), unpublished_after=0.5)
    assert wait_for_run(engine, run_id, 60).value == "succeeded"
    assert views.get_run(engine, run_id).result == "published late"


def test_an_approval_past_its_timeout_is_rejected_and_the_run_fails(engine, worker):
    from tasks.sweeper import sweep

    text = """
id: test/approval_timeout
steps:
  - id: gate
    approval: {timeout: 1s}
  - id: after
    bash: echo never
"""
    run_id = submit(publisher_for(engine), parse_flow(text), text, {}, trigger="test")
    deadline = time.monotonic() + 30
    while not any(s.status == StepStatus.WAITING.value for s in views.get_run(engine, run_id).steps):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    sweep(_runtime())
    assert runs.run_status(engine, run_id).value == "suspended"  # not yet due
    time.sleep(1.2)
    sweep(_runtime())
    assert wait_for_run(engine, run_id, 30).value == "failed"
    run = views.get_run(engine, run_id)
    assert "approval timed out" in run.error
    assert [s.path for s in run.steps] == ["gate"]


def test_on_failure_steps_a_dead_worker_owed_are_sent_by_the_sweeper(engine, worker):
    from orchestrator.execution import compiler
    from orchestrator.execution.context import Context
    from orchestrator.execution.messages import RunRef
    from orchestrator.execution.plan import build_plan
    from tasks.sweeper import sweep

    text = """id: test/owed
steps:
  - {id: boom, bash: "exit 3"}
on_failure:
  - id: alert
    python: "import os\\ndef main():\\n    return 'alerted: ' + os.environ['MILLRACE_ERROR']"
"""
    flow = parse_flow(text)
    version = save_flow(engine, flow, text)
    run_id = str(uuid.uuid4())
    admission.create_run(engine, NewRun(run_id, flow.id, version, {}, trigger="test"))
    assert runs.start_run(engine, run_id, "dead-worker")
    # the worker recorded the failure with its on_failure steps, then died before sending them
    error = "step boom failed: exit status 3"
    ctx = Context.new(run_id, flow.id, version, {}).for_handlers(error)
    handlers = compiler.compile_handlers(build_plan(flow, version), RunRef(run_id, flow.id, version),
                                         Phase.ON_FAILURE, ctx)
    assert runs.fail_run(engine, run_id, error, dict(handlers), "dead-worker") is not None
    time.sleep(1)
    assert runs.run_status(engine, run_id).value == "running"
    sweep(_runtime(), unsent_after=0.5)
    assert wait_for_run(engine, run_id, 60).value == "failed"
    run = views.get_run(engine, run_id)
    assert run.error == error
    assert outbox.owed_for(engine, OwedKind.ON_FAILURE, run_id) is None  # sent: nothing owed any more
    assert [(s.path, s.status, s.result) for s in run.steps] == [
        ("on_failure.alert", "succeeded", f"alerted: {error}")]


CHILD = """
id: test/child
steps:
  - id: add
    python: "def main():\\n    return 41 + 1"
"""
PARENT = """
id: test/parent
steps:
  - id: sub
    flow: test/child
  - id: after
    python: "def main(x: int):\\n    return x"
    with: {x: "${{ steps.sub.result }}"}
"""


def test_a_redelivered_flow_step_sends_the_child_its_dead_worker_never_sent(engine, worker):
    """The worker that parked a flow step with its child run died before sending the child.
    The step's message comes back; that delivery sends the child at once, not 30 s later
    when the sweeper would."""
    from orchestrator.execution.compiler import compile_run
    from orchestrator.execution.context import Context
    from orchestrator.execution.messages import RunRef
    from orchestrator.execution.plan import build_plan
    from orchestrator.store import attempts
    from tasks.app import send

    child_version = save_flow(engine, parse_flow(CHILD), CHILD)
    flow = parse_flow(PARENT)
    version = save_flow(engine, flow, PARENT)
    plan = build_plan(flow, version)
    run_id = str(uuid.uuid4())
    admission.create_run(engine, NewRun(run_id, flow.id, version, {}, trigger="test"))
    assert runs.start_run(engine, run_id, "dead-worker")
    message = compile_run(plan, RunRef(run_id, flow.id, version), Context.new(run_id, flow.id, version, {}))
    # what the dead worker recorded: the step parked, its child made and owed, never sent
    attempt = attempts.open_attempt(engine, run_id=run_id, phase="main", path="sub", step_id="sub", kind="flow",
                                    item_index=None, attempt=1, worker="dead-worker", task_id=None,
                                    created_at=None)
    child = NewRun(str(uuid.uuid4()), "test/child", child_version, {}, trigger="subflow", actor="dead-worker",
                   parent_run_id=run_id, parent_step_run_id=attempt.id, depth=1)
    created = attempts.start_subflow(engine, child, dict(message))
    assert created is not None and created.owed is not None
    began = time.monotonic()
    send(message)  # the parent's message, redelivered
    assert wait_for_run(engine, run_id, 25).value == "succeeded"
    assert time.monotonic() - began < 25  # the sweeper would have waited 30 s to send the child
    assert views.get_run(engine, run_id).result == 42
    assert outbox.owed_for(engine, OwedKind.RUN, child.run_id) is None
