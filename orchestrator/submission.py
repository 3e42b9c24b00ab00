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
from orchestrator.deps import Index, lock_flow
from orchestrator.errors import FlowError, Problem, ValidationError
from orchestrator.expressions import compile_value
from orchestrator.flow import Flow
from orchestrator.inputs import validate_inputs
from orchestrator.models import RunStatus, StepStatus
from orchestrator.parser import flow_from_data
from orchestrator.plan import Plan, build_plan
from orchestrator.scripts import check_script_steps, pin_scripts

Send = Callable[[Signature], Any]
PlanOf = Callable[[str, int | None], Plan]  # the plan of a flow version (None: the latest)
Revoke = Callable[[list[str]], Any]  # stops the Celery tasks with these ids wherever they run

def submit(engine: Engine, send: Send, flow: Flow, source: str, given: dict[str, Any], *,
           trigger: str, actor: str = "cli", index: Index | None = None) -> str:
    """Save the flow, check the inputs, record the run, then publish it; returns the run id."""
    check_script_steps(engine, flow)
    inputs = validate_inputs(flow.inputs, given)
    lock_flow(engine, flow, index or Index())
    version = records.save_flow(engine, flow, source, actor=actor)
    return start_saved(engine, send, build_plan(flow, version), inputs, trigger=trigger, actor=actor)


def start_saved(engine: Engine, send: Send, plan: Plan, inputs: dict[str, Any], *, trigger: str,
                actor: str, idempotency_key: str | None = None) -> str:
    """Record and publish a run of a saved flow version whose inputs are already checked.

    With an ``idempotency_key`` used before for this flow, nothing starts: the earlier
    run's id is returned. Each ``script:`` step is pinned now to the version it will run.
    Over the flow's concurrency limit the run is held, cancelled, or refused (Conflict).
    """
    pins = pin_scripts(engine, plan.flow)
    created = records.create_run(engine, str(uuid.uuid4()), plan.flow_id, plan.version, inputs, trigger=trigger,
                                 actor=actor, idempotency_key=idempotency_key, scripts=pins,
                                 limit=limit_of(plan, inputs))
    if created.publish:
        publish_run(send, plan, created.run_id, inputs, scripts=pins)
        records.mark_published(engine, created.run_id)
    return created.run_id


def limit_of(plan: Plan, inputs: dict[str, Any]) -> records.Limit | None:
    """The concurrency limit a run with these inputs falls under, if its flow has one."""
    rule = plan.flow.concurrency
    if rule is None:
        return None
    key = "" if rule.key is None else compile_value(rule.key).render({"inputs": inputs})
    return records.Limit(rule.limit, str(key)[:200], rule.on_limit)


def stored_plan(engine: Engine, flow_id: str, version: int | None) -> Plan:
    """The plan of a saved flow version (None: the latest), read from the database."""
    number, document = records.load_flow_document(engine, flow_id, version)
    return build_plan(flow_from_data(document), number)


def follow_up(engine: Engine, send: Send, run_id: str, plan_of: PlanOf | None = None) -> None:
    """What a run's end sets off, each part safe to do twice: the runs its flow triggers
    start, and runs held by its concurrency limit take its slot. Then it is marked done."""
    plan_of = plan_of or (lambda flow_id, version: stored_plan(engine, flow_id, version))
    run = records.get_run(engine, run_id, with_steps=False)
    if run["finished_at"] is None or run["followed_up_at"] is not None:
        return
    for trigger in records.downstream_triggers(engine, run["flow_id"], run["status"]):
        _start_triggered(engine, send, trigger, run, plan_of)
    if run["concurrency_key"] is not None:
        release(engine, send, run["flow_id"], run["concurrency_key"], plan_of)
    records.mark_followed_up(engine, run_id)


def release(engine: Engine, send: Send, flow_id: str, key: str, plan_of: PlanOf) -> None:
    """Publish the held runs of ``flow_id`` and ``key`` that fit under its limit now."""
    latest = plan_of(flow_id, None)
    if latest.flow.concurrency is None:
        limit = 1_000_000  # the limit was removed: let every held run go
    else:
        limit = latest.flow.concurrency.limit
    for row in records.release_held(engine, flow_id, key, limit):
        publish_run(send, plan_of(flow_id, row.flow_version), row.id, row.inputs, row.depth, row.scripts)
        records.mark_published(engine, row.id)


def _start_triggered(engine: Engine, send: Send, trigger: Any, upstream: dict[str, Any], plan_of: PlanOf) -> None:
    names = {"trigger": {"run_id": upstream["id"], "flow": upstream["flow_id"], "status": upstream["status"],
                         "result": upstream["result"], "error": upstream["error"]}}
    try:
        plan = plan_of(trigger.flow_id, None)
        inputs = validate_inputs(plan.flow.inputs, compile_value(trigger.inputs).render(names))
        start_saved(engine, send, plan, inputs, trigger=f"flow:{upstream['flow_id']}", actor="trigger",
                    idempotency_key=f"trigger:{trigger.trigger_id}:{upstream['id']}")
    except (FlowError, records.Conflict) as exc:  # its inputs do not fit, its limit refuses: said, not lost
        records.record_event(engine, "trigger", "trigger.refused", f"flow:{trigger.flow_id}",
                             trigger=trigger.trigger_id, upstream_run=upstream["id"], error=str(exc))


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
                       restarted_from=run["id"], scripts=run["scripts"])  # a restart is not held by a limit
    ctx = new_context(new_id, plan.flow_id, plan.version, run["inputs"], scripts=run["scripts"])
    for path in plan.main[:first]:
        set_outcome(ctx, plan.node(path).id, outcomes[path]["status"], outcomes[path]["result"])
    send(compiler.compile_run(plan, RunRef(new_id, plan.flow_id, plan.version), ctx, first))
    records.mark_published(engine, new_id)
    return new_id


def publish_on_failure(engine: Engine, send: Send, run_id: str, handlers: dict[str, Any]) -> None:
    """Send a failed run's on_failure steps (kept on the run until now), then mark them sent."""
    send(Signature.from_dict(handlers))
    records.on_failure_sent(engine, run_id)


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
    follow_up(engine, send, run_id)
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
