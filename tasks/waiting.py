"""Waiting steps: approval, sleep and flow (a subflow run). Each parks its step with the
message that continues the run (its continuation) until it is decided."""
from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

from celery import Task
from celery.exceptions import Ignore

from orchestrator.definitions.inputs import validate_inputs
from orchestrator.errors import FlowError, ValidationError
from orchestrator.execution.context import Context
from orchestrator.execution.lifecycle import StepStatus
from orchestrator.services.runs import new_run
from orchestrator.services.scripts import pin_scripts
from orchestrator.store import attempts, outbox, sql, versions
from orchestrator.store.outbox import OwedKind
from tasks.attempt import StepDelivery, fail, step_task, succeed

# Sleeps are re-published in slices so no message is held unacked near RabbitMQ's limit.
SLEEP_SLICE_S = 600.0
MAX_SUBFLOW_DEPTH = 10


# A recorded failure is acted on again but never retried: a waiting step has no retry.
@step_task("millrace.wait", retry_replayed=False)
def wait(s: StepDelivery) -> Context:
    """approval, sleep and flow: park the step with its continuation until it is decided."""
    attempt = s.attempt
    if s.node.kind == "sleep":
        return _sleep(s.task, s)
    if attempt.status is StepStatus.WAITING:  # a redelivery of the message that parked it
        if s.node.kind == "flow":
            _send_unsent_child(s)
        raise Ignore()
    continuation = _continuation(s.task, s.ctx, argsrepr=s.ref.label(f"{s.path} (resumed)"), kwargsrepr="{}")
    if s.node.kind == "approval":
        timeout = s.node.step.approval.timeout
        resume_at = sql.now() + dt.timedelta(seconds=timeout) if timeout else None
        attempts.suspend_attempt(s.rt.engine, attempt.id, s.ref.run_id, continuation,
                                resume_at=resume_at, suspend_run=True, worker=s.rt.worker)
        raise Ignore()
    return _start_subflow(s.task, s, continuation)


def _send_unsent_child(s: StepDelivery) -> None:
    """The delivery that made the child run died before sending it (its message came back):
    send it now rather than leave it to the sweeper's grace period."""
    child = attempts.child_of(s.rt.engine, s.attempt.id)
    if child is not None:
        s.rt.publisher.deliver(outbox.owed_for(s.rt.engine, OwedKind.RUN, child))


def _continuation(task: Task, ctx: Context, **options: Any) -> dict[str, Any]:
    kwargs = {k: v for k, v in task.request.kwargs.items() if k != "enter"}
    sig = task.signature_from_request(args=(ctx.to_wire(),), kwargs=kwargs, **options)
    return dict(sig)


def _sleep(task: Task, s: StepDelivery) -> Context:
    attempt = s.attempt
    now = sql.now()
    if attempt.status is StepStatus.WAITING and attempt.resume_at and attempt.resume_at <= now:
        return succeed(s, None)
    if attempt.status is StepStatus.RUNNING:
        resume_at = now + dt.timedelta(seconds=s.node.step.sleep)
        attempts.suspend_attempt(s.rt.engine, attempt.id, s.ref.run_id, {}, resume_at=resume_at,
                                suspend_run=False, worker=s.rt.worker)
    else:
        resume_at = attempt.resume_at
    remaining = (resume_at - now).total_seconds()
    if remaining <= 0:
        return succeed(s, None)
    kwargs = {k: v for k, v in task.request.kwargs.items() if k != "enter"}
    task.signature_from_request(args=(s.ctx.to_wire(),), kwargs=kwargs).apply_async(
        countdown=min(remaining, SLEEP_SLICE_S), argsrepr=s.ref.label(f"{s.path} (sleeping)"), kwargsrepr="{}")
    raise Ignore()


def _start_subflow(task: Task, s: StepDelivery, continuation: dict[str, Any]) -> Context:
    rt = s.rt
    ref_text = s.node.step.flow
    flow_id, _, version_text = ref_text.partition("@")
    depth = s.ctx.run.depth + 1
    if depth > MAX_SUBFLOW_DEPTH:
        return fail(s, f"subflows nest deeper than {MAX_SUBFLOW_DEPTH}", retryable=False)
    try:
        args = s.node.arguments.render(s.names)
        version, _ = versions.load_flow_document(rt.engine, flow_id, int(version_text) if version_text else None)
        child_plan = rt.plan(flow_id, version)
        inputs = validate_inputs(child_plan.flow.inputs, args)
        pins = pin_scripts(rt.engine, child_plan.flow)
    except (FlowError, ValidationError) as exc:
        return fail(s, f"flow {ref_text}: {exc}", retryable=False)
    # Its flow's labels, its parent's over them (added when it is recorded); the parent's priority
    # unless its flow has one; no concurrency rule (a held child would hold its parent).
    child = dataclasses.replace(new_run(
        child_plan, str(uuid.uuid4()), inputs, trigger="subflow", actor=rt.worker, parent_run_id=s.ref.run_id,
        priority=s.ref.priority if child_plan.flow.priority is None else None,
        parent_step_run_id=s.attempt.id, depth=depth, scripts=pins), limit=None)
    created = attempts.start_subflow(rt.engine, child, continuation)
    if created is None:
        raise Ignore()  # the step ended meanwhile: its run was cancelled
    rt.publisher.deliver_run(created.owed, child_plan, inputs, depth, pins, child.priority)
    raise Ignore()
