"""What a step checks after it ran: ``fail_if`` (the step fails) and ``break_if`` (the
innermost for_each or loop ends). The lane that broke a loop knows from its context; other
lanes (separate tasks, maybe on other workers) read it from the loop's attempt before they
start an item."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.errors import ExpressionError
from orchestrator.execution.context import Context
from orchestrator.execution.messages import RunRef
from orchestrator.execution.plan import Node, Plan, truthy
from orchestrator.store import breaks

if TYPE_CHECKING:
    from tasks.attempt import StepDelivery
    from tasks.runtime import Runtime


def fail_if_held(s: StepDelivery, result: Any) -> tuple[str, bool] | None:
    """The error the step fails with when its ``fail_if`` holds over ``result`` (and whether a
    retry could change it: a condition that cannot be evaluated is not retried)."""
    try:
        if truthy(s.node.checks.fail_if, {**s.names, "result": result}):
            return f"fail_if held: {s.node.checks.fail_source}", True
    except ExpressionError as exc:
        return f"fail_if: {exc}", False
    return None


def break_holds(s: StepDelivery, result: Any) -> bool:
    """Whether the step's ``break_if`` holds over ``result`` (raises ExpressionError)."""
    return s.ctx.loops != [] and truthy(s.node.checks.break_if, {**s.names, "result": result})


def stopped_by_break(rt: Runtime, plan: Plan, node: Node, ref: RunRef, ctx: Context, entering: bool) -> bool:
    """Whether the innermost loop ``ctx`` is in was broken, so this step does not run: known
    from the context in the lane that broke it; another lane reads it from the loop's
    attempt when it starts an item (once per item, and only in loops that can break)."""
    frame = ctx.loops[-1]
    if frame.broken:
        return True
    if not entering:
        return False
    loop_path = plan.loops.get(node.path)
    if loop_path is None or not plan.node(loop_path).checks.breaks:
        return False
    where = plan.node(loop_path).concrete_path(ctx.indices()[:-1])
    if breaks.broke_at(rt.engine, ref.run_id, where) is None:
        return False
    frame.broken = True
    return True


def break_loop(s: StepDelivery) -> None:
    """This step's ``break_if`` held: the rest of its lane skips, and the loop's attempt says
    where it broke (what other lanes read before their next item)."""
    s.ctx.loops[-1].broken = True
    loop_node = s.plan.node(s.plan.loops[s.node.path])
    where = loop_node.concrete_path(s.ctx.indices()[:-1])
    breaks.mark_broken(s.rt.engine, s.ref.run_id, where, s.path)
