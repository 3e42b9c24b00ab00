"""Loops: the ``loop`` step (one iteration's chain at a time, each followed by the check that
sends the next or records the loop's outcome), and ``break_if``, which ends the innermost
for_each or loop.

A loop step's attempt stays ``running`` while it iterates; its body's steps are recorded
under the iteration's index (``count[3].add``). ``millrace.iterate`` decides from the
context it is handed, so a redelivered check decides the same way (at worst the next
iteration is sent twice, and its steps, recorded once by path, replay).
"""
from __future__ import annotations

from typing import Any

from celery import Task
from celery.exceptions import Ignore

from orchestrator.errors import ExpressionError
from orchestrator.execution.compiler import compile_iteration
from orchestrator.execution.context import Context, Loop, Wire
from orchestrator.execution.messages import RunRef
from orchestrator.execution.plan import Node, Plan, truthy
from orchestrator.store import breaks
from tasks.app import app, settings
from tasks.attempt import StepDelivery, fail, replay, step_task, succeed
from tasks.runtime import Runtime, runtime


@step_task("millrace.loop")
def loop(s: StepDelivery) -> Context:
    """A loop step: replace this task with its first iteration (a ``while`` that does not
    hold at once: no iteration runs, the result is null)."""
    condition = s.node.checks.while_
    if condition is not None:
        try:
            holds = truthy(condition, {**s.names, "iteration": 0, "previous": {}})
        except ExpressionError as exc:
            return fail(s, f"loop.while: {exc}", retryable=False)
        if not holds:
            return succeed(s, None)
    s.ctx.loops.append(Loop(index=0, iteration=True))
    s.ctx.last = None
    raise s.task.replace(compile_iteration(s.plan, s.node, s.ref, s.ctx, None))


@app.task(name="millrace.iterate", bind=True)
def iterate(self: Task, wire: Wire, **kw: Any) -> Wire:
    """An iteration is done: check ``until``/``while`` (and a break), then send the next
    iteration (after ``delay``) or record the loop's outcome."""
    rt = runtime(settings)
    ref = RunRef.from_kwargs(kw)
    plan = rt.plan(ref.flow_id, ref.version)
    node = plan.node(kw["node"])
    ctx = Context.from_wire(wire)
    s = composite_delivery(self, rt, plan, node, ref, ctx, frames=1)
    frame = ctx.loops[-1]
    if s.attempt.status.finished:  # a redelivered check: the loop's outcome is recorded
        _leave(ctx, node)
        return replay(s, retryable=False).to_wire()
    checks, ran = node.checks, frame.index + 1
    names = s.names
    try:
        if frame.broken or (checks.breaks and breaks.broke_at(rt.engine, ref.run_id, s.path)):
            again = False
        elif checks.until is not None:
            again = not truthy(checks.until, names)
        else:
            again = truthy(checks.while_, {**names, "iteration": ran})
    except ExpressionError as exc:
        _leave(ctx, node)
        return fail(s, f"loop.{'until' if checks.until is not None else 'while'}: {exc}", retryable=False).to_wire()
    if not again:
        result = ctx.last
        _leave(ctx, node)
        return succeed(s, result).to_wire()
    if ran >= node.step.loop.max_iterations:
        _leave(ctx, node)
        why = "until never held" if checks.until is not None else "while still held"
        return fail(s, f"loop stopped after {ran} iterations: {why}", retryable=False).to_wire()
    frame.previous = {k: ctx.steps[k].names() for k in node.inner_ids if k in ctx.steps}
    ctx.drop_steps(node.inner_ids)
    frame.index = ran
    ctx.last = None
    raise self.replace(compile_iteration(plan, node, ref, ctx, node.step.loop.delay))


def _leave(ctx: Context, node: Node) -> None:
    ctx.loops.pop()
    ctx.drop_steps(node.inner_ids)


def composite_delivery(task: Task, rt: Runtime, plan: Plan, node: Node, ref: RunRef, ctx: Context, *,
                       frames: int = 0) -> StepDelivery:
    """A composite step's open attempt, found again by the task that ends it (a join, a
    close, a loop's check), so that its outcome goes through ``succeed``/``fail`` like any
    step's. ``frames``: loop frames of its own that ``ctx`` is still in."""
    indices = ctx.indices()
    outer = indices[:len(indices) - frames]
    path = node.concrete_path(outer)
    attempt = breaks.loop_attempt(rt.engine, ref.run_id, path)
    if attempt is None:
        raise Ignore()  # its run was deleted
    return StepDelivery(task, rt, plan, node, ref, ctx, path, outer[-1] if outer else None, 1, False, attempt)
