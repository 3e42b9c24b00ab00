"""Starting runs and letting waiting steps go on: record first, then send.

Sending is passed in (``send``: a function that publishes a Celery signature), so the
core never imports the Celery app; the composition root (``orchestrator/cli.py``) and the
tasks give their own.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from celery import Signature
from sqlalchemy import Engine

from orchestrator import compiler, records
from orchestrator.compiler import RunRef
from orchestrator.context import new_context, set_outcome
from orchestrator.errors import Problem, ValidationError
from orchestrator.flow import Flow, step_kind
from orchestrator.inputs import validate_inputs
from orchestrator.models import RunStatus, StepStatus
from orchestrator.plan import Plan, build_plan
from orchestrator.scripts import check_script_steps, pin_scripts
from orchestrator.validation import walk_steps

Send = Callable[[Signature], Any]
Revoke = Callable[[list[str]], Any]  # stops the Celery tasks with these ids wherever they run

_NOT_YET = {
    "javascript": "javascript steps are not supported by this release; use python: or bash:",
    "sql": "sql steps are not supported by this release; use python: or bash:",
}


def check_runnable(flow: Flow) -> None:
    """Refuse, before anything is stored, what this release cannot run."""
    problems = [Problem(f"{path}.{kind}", _NOT_YET[kind])
                for step, path in walk_steps(flow) if (kind := step_kind(step)) in _NOT_YET]
    if flow.concurrency is not None:
        problems.append(Problem("concurrency", "concurrency limits are not enforced by this release; "
                                               "remove `concurrency` to run the flow"))
    if problems:
        raise ValidationError(problems)


def submit(engine: Engine, send: Send, flow: Flow, source: str, given: dict[str, Any], *,
           trigger: str, actor: str = "cli") -> str:
    """Save the flow, check the inputs, record the run, then publish it; returns the run id."""
    check_runnable(flow)
    check_script_steps(engine, flow)
    inputs = validate_inputs(flow.inputs, given)
    version = records.save_flow(engine, flow, source, actor=actor)
    return start_saved(engine, send, build_plan(flow, version), inputs, trigger=trigger, actor=actor)


def start_saved(engine: Engine, send: Send, plan: Plan, inputs: dict[str, Any], *, trigger: str,
                actor: str, idempotency_key: str | None = None) -> str:
    """Record and publish a run of a saved flow version whose inputs are already checked.

    With an ``idempotency_key`` used before for this flow, nothing starts: the earlier
    run's id is returned. Each ``script:`` step is pinned now to the version it will run.
    """
    new_id = str(uuid.uuid4())
    pins = pin_scripts(engine, plan.flow)
    run_id = records.create_run(engine, new_id, plan.flow_id, plan.version, inputs, trigger=trigger, actor=actor,
                                idempotency_key=idempotency_key, scripts=pins)
    if run_id == new_id:
        publish_run(send, plan, run_id, inputs, scripts=pins)
        records.mark_published(engine, run_id)
    return run_id


def publish_run(send: Send, plan: Plan, run_id: str, inputs: dict[str, Any], depth: int = 0,
                scripts: dict[str, int] | None = None) -> None:
    """Send a run's canvas (its row is committed already)."""
    ref = RunRef(run_id, plan.flow_id, plan.version)
    send(compiler.compile_run(plan, ref, new_context(run_id, plan.flow_id, plan.version, inputs, depth, scripts)))


def restart(engine: Engine, send: Send, plan: Plan, run: dict[str, Any], step: str, *, actor: str) -> str:
    """A new run of a failed or cancelled run's flow version that starts at top-level ``step``,
    the steps before it handing on the results they recorded in ``run``."""
    if run["status"] not in (RunStatus.FAILED.value, RunStatus.CANCELLED.value):
        raise records.Conflict(f"run {run['id']} is {run['status']}; only failed or cancelled runs restart")
    if step not in plan.main:
        raise ValidationError([Problem("step", f"'{step}' is not a top-level step of {plan.flow_id}; "
                                               f"restart from one of: {', '.join(plan.main)}")])
    first = plan.main.index(step)
    outcomes = {s["path"]: s for s in run["steps"] if s["status"] in ("succeeded", "skipped")}
    missing = [path for path in plan.main[:first] if path not in outcomes]
    if missing:
        raise ValidationError([Problem("step", f"step '{missing[0]}' before '{step}' has no recorded outcome "
                                               "to reuse; restart from it instead")])
    new_id = str(uuid.uuid4())
    records.create_run(engine, new_id, plan.flow_id, plan.version, run["inputs"], trigger="restart", actor=actor,
                       restarted_from=run["id"], scripts=run["scripts"])
    ctx = new_context(new_id, plan.flow_id, plan.version, run["inputs"], scripts=run["scripts"])
    for path in plan.main[:first]:
        set_outcome(ctx, plan.node(path).id, outcomes[path]["status"], outcomes[path]["result"])
    send(compiler.compile_run(plan, RunRef(new_id, plan.flow_id, plan.version), ctx, first))
    records.mark_published(engine, new_id)
    return new_id


def publish_continuation(engine: Engine, send: Send, attempt_id: int, continuation: dict[str, Any]) -> None:
    """Send a decided step's saved message again, then mark it sent."""
    send(Signature.from_dict(continuation))
    records.continuation_sent(engine, attempt_id)


def decide_approval(engine: Engine, send: Send, run_id: str, step: str, *, approve: bool,
                    actor: str, reason: str | None = None) -> None:
    """Approve or reject the waiting approval ``step`` (id or path) of a run, once."""
    attempt_id = records.waiting_attempt(engine, run_id, step)
    if approve:
        cont = records.resume_attempt(engine, attempt_id, StepStatus.SUCCEEDED,
                                      {"approved": True, "by": actor, "reason": reason}, actor=actor)
    else:
        error = f"rejected by {actor}" + (f": {reason}" if reason else "")
        cont = records.resume_attempt(engine, attempt_id, StepStatus.FAILED, error=error, actor=actor)
    if cont is None:
        raise records.Conflict(f"step '{step}' of run {run_id} was decided already")
    publish_continuation(engine, send, attempt_id, cont)


def cancel(engine: Engine, send: Send, revoke: Revoke, run_id: str, *, actor: str) -> None:
    """Cancel a run: nothing more of it starts, its running steps are killed, its subflow runs
    are cancelled, and a parent run waiting on it sees its flow step fail."""
    cancellation = records.cancel_run(engine, run_id, actor)
    if cancellation.task_ids:
        revoke(cancellation.task_ids)
    for child in cancellation.children:
        try:
            cancel(engine, send, revoke, child, actor=actor)
        except records.Conflict:
            pass  # it ended meanwhile
    if cancellation.parent_step_run_id is not None:
        cont = records.resume_attempt(engine, cancellation.parent_step_run_id, StepStatus.FAILED,
                                      error=f"subflow run {run_id} cancelled", actor=actor)
        if cont is not None:
            publish_continuation(engine, send, cancellation.parent_step_run_id, cont)


def wait_for_run(engine: Engine, run_id: str, timeout: float | None = None) -> RunStatus:
    """Wait until the run has ended (or ``timeout`` seconds); returns its status."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.01
    while True:
        status = records.run_status(engine, run_id)
        if status.finished:
            return status
        if deadline is not None and time.monotonic() > deadline:
            return status
        time.sleep(pause)
        pause = min(pause * 1.5, 0.25)
