"""What a step checks after it ran: ``fail_if`` (the step fails), ``break_if`` (the
innermost for_each or loop ends) and ``stop_if`` (the run ends). The lane that broke a loop
knows from its context; other lanes (separate tasks, maybe on other workers) read it from
the loop's attempt before they start an item. A stopped run's other steps are killed and
its attempts refuse any later step."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, NoReturn

from celery.exceptions import Ignore

from orchestrator.errors import ExpressionError
from orchestrator.execution.context import Context
from orchestrator.execution.messages import RunRef
from orchestrator.execution.plan import Node, Plan, truthy
from orchestrator.services.decisions import wind_down
from orchestrator.store import breaks, runs
from tasks.app import revoke

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


def stop_holds(s: StepDelivery, result: Any) -> bool:
    """Whether the step's ``stop_if`` holds over ``result`` (raises ExpressionError)."""
    return truthy(s.node.checks.stop_if, {**s.names, "result": result})


def stop_run(s: StepDelivery, result: Any) -> NoReturn:
    """This step's ``stop_if`` held: the run ends succeeded with ``result`` (after its finally
    steps), the tasks of its other running steps are killed, and this task goes no further.
    A second delivery finds the run stopped and does nothing."""
    from tasks.attempt import ended  # attempt.py imports this module

    stopped = runs.stop_run(s.rt.engine, s.ref.run_id, s.path, result, s.rt.worker, bool(s.plan.finally_))
    if stopped is not None:
        others = [task_id for task_id in stopped.task_ids if task_id != s.task.request.id]
        wind_down(s.rt.publisher, revoke, dataclasses.replace(stopped, task_ids=others), s.rt.worker)
        ended(s.rt, stopped.ending)
    raise Ignore()
