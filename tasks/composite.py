"""Composite steps: parallel and for_each (a chord over branches or item lanes, joined),
switch (the chosen case's chain, closed). Each replaces its task at run time, when what it
expands to is known."""
from __future__ import annotations

from typing import Any

from celery import Task

from orchestrator.errors import ExpressionError
from orchestrator.execution.compiler import compile_case, compile_for_each, compile_parallel, lane_count
from orchestrator.execution.context import Context, Wire, close_lanes
from orchestrator.execution.messages import RunRef
from orchestrator.execution.plan import Node, truthy
from tasks.app import app, settings
from tasks.attempt import StepDelivery, fail, replay, step_task, succeed
from tasks.capacity import slots
from tasks.loops import composite_delivery
from tasks.runtime import Runtime, runtime


# A recorded outcome (by its join or close, or by this task: no items, bad items, no case
# held) is replayed by the prologue: handed on again, at worst, and the rest replays.
@step_task("millrace.expand")
def expand(s: StepDelivery) -> Context:
    """parallel and for_each: replace this task with a chord over branches or item lanes."""
    if s.node.kind == "parallel":
        raise s.task.replace(compile_parallel(s.plan, s.node, s.ref, s.ctx))
    try:
        items = s.node.items.render(s.names)
    except ExpressionError as exc:
        return fail(s, f"for_each: {exc}", retryable=False)
    if not isinstance(items, list):
        return fail(s, f"for_each: expected a list, got {type(items).__name__}", retryable=False)
    if not items:
        return succeed(s, []).drop_steps(s.node.inner_ids)
    first = s.plan.node(s.node.sequences[0][0]).step
    queue = getattr(first, "queue", None) or settings.default_queue
    width = lane_count(s.node.step.parallel, len(items), slots(queue))
    raise s.task.replace(compile_for_each(s.plan, s.node, s.ref, s.ctx, items, width))


@app.task(name="millrace.join", bind=True)
def join(self: Task, wires: list[Wire], **kw: Any) -> Wire:
    """All branches or lanes are done: record the composite step's result and go on."""
    rt = runtime(settings)
    ref = RunRef.from_kwargs(kw)
    node = rt.plan(ref.flow_id, ref.version).node(kw["node"])
    parts = [Context.from_wire(w) for w in wires]
    if node.kind == "for_each":
        ctx, result = close_lanes(parts, kw["count"])
    else:
        ctx = parts[0]
        if ctx.loops and any(part.loops[-1].broken for part in parts):  # a branch broke the loop it is in
            ctx.loops[-1].broken = True
        result = {label: part.last for label, part in zip(node.labels, parts, strict=True)}
    return _close(self, rt, node, ref, ctx.drop_steps(node.inner_ids), result).to_wire()


@step_task("millrace.switch")
def switch(s: StepDelivery) -> Context:
    """Replace this task with the first case whose `if` holds (or else); none: result null."""
    names = s.names
    chosen = None
    for i, condition in enumerate(s.node.case_conditions):
        try:
            if truthy(condition, names):
                chosen = i
                break
        except ExpressionError as exc:
            return fail(s, f"switch[{i}].if: {exc}", retryable=False)
    if chosen is None and len(s.node.sequences) > len(s.node.case_conditions):
        chosen = len(s.node.case_conditions)  # else
    if chosen is None:
        return succeed(s, None)
    raise s.task.replace(compile_case(s.plan, s.node, s.ref, s.ctx, chosen))


@app.task(name="millrace.close", bind=True)
def close(self: Task, wire: Wire, **kw: Any) -> Wire:
    """The chosen case of a switch is done: its last result is the switch's result."""
    rt = runtime(settings)
    ref = RunRef.from_kwargs(kw)
    node = rt.plan(ref.flow_id, ref.version).node(kw["node"])
    ctx = Context.from_wire(wire)
    return _close(self, rt, node, ref, ctx.drop_steps(node.inner_ids), ctx.last).to_wire()


def _close(task: Task, rt: Runtime, node: Node, ref: RunRef, ctx: Context, result: Any) -> Context:
    """Record the composite step's result (its fail_if and break_if checked, as any step's)."""
    s = composite_delivery(task, rt, rt.plan(ref.flow_id, ref.version), node, ref, ctx)
    if s.attempt.status.finished:  # a redelivered join or close: hand on what was recorded
        return replay(s, retryable=False)
    return succeed(s, result)
