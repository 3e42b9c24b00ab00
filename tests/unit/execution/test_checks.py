"""The pure parts of loops and checks: error types, retry.if, loop frames, the iteration's canvas."""
from __future__ import annotations

from orchestrator.definitions.expressions import compile_value
from orchestrator.definitions.parser import parse_flow
from orchestrator.execution import compiler
from orchestrator.execution.checks import error_shape, error_type, retry_wanted
from orchestrator.execution.context import Context, Loop, close_lanes
from orchestrator.execution.messages import RunRef
from orchestrator.execution.plan import build_plan


def test_error_types_per_language():
    assert error_type("ValueError: bad input") == "ValueError"  # Python: the exception's class
    assert error_type("json.decoder.JSONDecodeError: x") == "Error"  # a dotted lower-case module is no class
    assert error_type("TypeError: x is not a function") == "TypeError"  # JavaScript: the error's name
    assert error_type("UndefinedTable: relation \"nope\" does not exist") == "UndefinedTable"  # SQL (psycopg)
    assert error_type("timed out after 2s") == "Timeout"
    assert error_type("timed out after 2s (statement_timeout)") == "Timeout"
    assert error_type("exit code 3: no such file") == "exit 3"  # Bash
    assert error_type("killed by signal SIGKILL") == "SIGKILL"
    assert error_type("node exited with code 2: boom") == "exit 2"
    assert error_type("fail_if held: result.rows == 0") == "FailIf"
    assert error_type("with: ${{ x }}: 'x' is undefined") == "Error"
    assert error_shape(None) is None
    assert error_shape("KeyError: 'a'") == {"type": "KeyError", "message": "KeyError: 'a'"}


def test_retry_if_holds_over_the_error_and_a_broken_condition_does_not():
    timeout = compile_value("${{ error.type == 'Timeout' }}")
    assert retry_wanted(timeout, {}, "timed out after 1s")
    assert not retry_wanted(timeout, {}, "ValueError: no")
    assert retry_wanted(None, {}, "anything")
    assert retry_wanted(compile_value("${{ 'timed out' in error.message }}"), {}, "timed out after 1s")
    assert not retry_wanted(compile_value("${{ error.nope.deeper }}"), {}, "ValueError: no")


def test_expressions_see_the_innermost_item_and_the_innermost_iteration():
    ctx = Context.new("r", "f", 1, {})
    ctx.loops = [Loop(index=2, item="outer"), Loop(index=4, iteration=True, previous={"a": {"result": 1}}),
                 Loop(index=0, item="inner")]
    names = ctx.expression_names()
    assert (names["item"], names["index"], names["iteration"], names["previous"]) == (
        "inner", 0, 4, {"a": {"result": 1}})
    ctx.set_outcome("x", "failed", None, "ValueError: v")
    assert ctx.expression_names()["steps"]["x"]["error"] == {"type": "ValueError", "message": "ValueError: v"}
    again = Context.from_wire(ctx.to_wire())
    assert again.loops[1].iteration and again.loops[1].previous == {"a": {"result": 1}}
    assert again.steps["x"].error == "ValueError: v"  # the wire keeps the message, as before


def test_an_old_loop_frame_on_the_wire_still_reads():
    frame = Loop.from_wire({"index": 1, "item": "a", "done": {"0": 5}})
    assert (frame.iteration, frame.broken, frame.done) == (False, False, {0: 5})


def test_a_broken_for_each_lists_only_the_items_that_ran_in_item_order():
    base = Context.new("r", "f", 1, {})
    lane0, lane1 = base.lane(), base.lane()
    lane0.loops[-1].done = {0: "a"}
    lane0.loops[-1].index, lane0.last = 2, "c"
    lane1.loops[-1].index, lane1.last, lane1.loops[-1].broken = 1, "b", True
    _, results = close_lanes([lane0, lane1], 8)
    assert results == ["a", "b", "c"]
    lane1.loops[-1].broken = False
    _, unbroken = close_lanes([lane0, lane1], 4)
    assert unbroken == ["a", "b", "c", None]


def test_an_iteration_compiles_to_its_body_then_the_check_with_the_delay_as_countdown():
    flow = parse_flow("id: t/l\nsteps:\n  - id: count\n    loop:\n      do:\n"
                      "        - {id: a, bash: echo 1}\n        - {id: b, bash: echo 2}\n"
                      "      until: \"${{ steps.b.result == 2 }}\"\n      max_iterations: 3\n      delay: 5s\n")
    plan = build_plan(flow, 1)
    assert plan.node("count.a").path_format == "count[{}].a" and plan.loops["count.b"] == "count"
    ctx = Context.new("r", "t/l", 1, {})
    ctx.loops.append(Loop(index=2, iteration=True))
    sig = compiler.compile_iteration(plan, plan.node("count"), RunRef("r", "t/l", 1), ctx, 5.0)
    names = [t.task for t in sig.tasks]
    assert names == [compiler.STEP, compiler.ITERATE]
    assert sig.tasks[0].options["countdown"] == 5.0
    assert sig.tasks[0].args[0]["loops"][-1]["index"] == 2
    assert "[iteration 2] (check)" in sig.tasks[1].options["argsrepr"]
    assert plan.node("count").checks.until is not None and not plan.node("count").checks.breaks
