"""A run's finally phase, pure: its plan, its canvas and what its expressions see."""
from __future__ import annotations

from orchestrator.definitions.parser import parse_flow
from orchestrator.execution import compiler
from orchestrator.execution.context import Context
from orchestrator.execution.lifecycle import Phase, after_failure
from orchestrator.execution.messages import RunRef
from orchestrator.execution.plan import build_plan

FLOW = parse_flow("""
id: shop/close
steps:
  - {id: work, bash: echo 1, stop_if: "${{ result == 1 }}"}
on_failure:
  - {id: alert, bash: echo failed}
finally:
  - {id: cleanup, bash: echo done}
  - {id: report, bash: echo "$S", with: {S: "${{ run.status }}"}}
""")
PLAN = build_plan(FLOW, 3)
REF = RunRef("run-1", "shop/close", 3)


def test_finally_steps_are_planned_under_finally():
    assert PLAN.finally_ == ("finally.cleanup", "finally.report")
    assert PLAN.handlers(Phase.FINALLY) == PLAN.finally_ and PLAN.handlers(Phase.ON_FAILURE) == ("on_failure.alert",)
    assert PLAN.node("work").checks.stop_if is not None


def test_finally_runs_in_its_own_phase_then_finishes():
    ctx = Context.new("run-1", "shop/close", 3, {}).for_handlers(None, "cancelled")
    [only] = compiler.compile_handlers(PLAN, REF, Phase.FINALLY, ctx).tasks
    assert only.task == "millrace.step" and only.kwargs["phase"] == "finally"
    assert only.kwargs["units"] == [{"node": "finally.cleanup"}, {"node": "finally.report"}, {"finish": True}]
    assert only.args[0]["status"] == "cancelled"


def test_run_status_is_how_the_run_went_in_finally_and_running_before():
    ctx = Context.new("run-1", "shop/close", 3, {})
    assert ctx.expression_names()["run"]["status"] == "running"
    handlers = Context.from_wire(ctx.for_handlers("step work failed: boom", "failed").to_wire())
    names = handlers.expression_names()["run"]
    assert (names["status"], names["error"]) == ("failed", "step work failed: boom")


def test_a_failing_finally_step_fails_the_run_without_on_failure_steps():
    decision = after_failure(path="finally.cleanup", error="exit code 1", attempt=1, retry=None,
                             continue_on_error=False, retryable=True, phase=Phase.FINALLY, has_on_failure=True)
    assert decision.on_failure is False and decision.error == "step finally.cleanup failed: exit code 1"
