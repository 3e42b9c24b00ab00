"""The compiler is pure: a plan and a run give signatures, with names Flower can show."""
from __future__ import annotations

from celery import chord
from celery.canvas import _chain as chain

from orchestrator.definitions.parser import parse_flow
from orchestrator.execution import compiler
from orchestrator.execution.context import Context, close_lanes
from orchestrator.execution.lifecycle import Phase
from orchestrator.execution.messages import Finish, RunRef, StepAt, units_of
from orchestrator.execution.plan import build_plan

FLOW = parse_flow("""
id: shop/orders
steps:
  - id: fetch
    python: "def main():\\n    return [1, 2, 3]"
    queue: io
  - id: each
    for_each: ${{ steps.fetch.result }}
    parallel: 2
    do:
      - id: price
        bash: echo 1
      - id: fan
        parallel:
          - {id: a, steps: [{id: tax, bash: echo 2}]}
          - {id: b, steps: [{id: ship, bash: echo 3}]}
  - id: pick
    switch:
      - if: ${{ steps.each.result | length > 2 }}
        do: [{id: many, bash: echo many}]
    else: [{id: few, bash: echo few}]
on_failure:
  - id: alert
    bash: echo failed
""")
PLAN = build_plan(FLOW, 7)
REF = RunRef("run-1", "shop/orders", 7)


def test_a_run_is_a_chain_from_start_to_finish_with_code_steps_batched() -> None:
    ctx = Context.new("run-1", "shop/orders", 7, {})
    sig = compiler.compile_run(PLAN, REF, ctx)
    assert isinstance(sig, chain)
    assert [t.task for t in sig.tasks] == ["millrace.step", "millrace.expand", "millrace.switch", "millrace.finish"]
    first = sig.tasks[0]
    assert first.args == (ctx.to_wire(),)
    assert first.kwargs["units"] == [{"start": True}, {"node": "fetch"}]
    assert first.options["queue"] == "io"
    assert first.options["argsrepr"] == "shop/orders / run-1 / start, fetch"
    assert sig.tasks[1].kwargs == {"run": "run-1", "flow": "shop/orders", "version": 7,
                                   "phase": "main", "node": "each"}
    assert sig.tasks[1].options["argsrepr"] == "shop/orders / run-1 / each (expand)"
    assert sig.tasks[3].kwargs == REF.kwargs()


BATCHES = build_plan(parse_flow("""
id: shop/batches
steps:
  - {id: a, bash: echo a}
  - {id: b, python: "def main():\n    return 1"}
  - {id: c, bash: echo c, queue: io}
  - {id: d, bash: echo d, queue: io}
  - {id: e, bash: echo e, queue: io, retry: {attempts: 2}}
  - {id: f, bash: echo f, queue: io}
  - {id: g, sleep: 1s}
  - {id: h, bash: echo h}
"""), 1)


def test_code_steps_share_a_task_per_queue_and_a_retrying_step_opens_a_new_one() -> None:
    ref = RunRef("run-2", "shop/batches", 1)
    sig = compiler.compile_run(BATCHES, ref, Context.new("run-2", "shop/batches", 1, {}))
    tasks = [(t.task, [u.get("node", next(iter(u))) for u in t.kwargs.get("units", [])], t.options.get("queue"))
             for t in sig.tasks]
    assert tasks == [
        ("millrace.step", ["start", "a", "b"], None),
        ("millrace.step", ["c", "d"], "io"),
        ("millrace.step", ["e", "f"], "io"),
        ("millrace.wait", [], None),
        ("millrace.step", ["h", "finish"], None),
    ]
    # what is left of a batch that ran long is a task of its own, on the same queue
    rest = compiler.compile_units(BATCHES, ref, [StepAt("f")])
    assert (rest.task, rest.kwargs["units"], rest.options["queue"]) == ("millrace.step", [{"node": "f"}], "io")
    assert compiler.compile_units(BATCHES, ref, [Finish()]).task == "millrace.finish"


def test_a_long_batch_names_its_first_and_last_steps_and_counts_the_rest() -> None:
    ref = RunRef("run-3", "shop/batches", 1)
    units = [StepAt("a"), StepAt("b")] * 5
    label = compiler.compile_units(BATCHES, ref, units).options["argsrepr"]
    assert label == "shop/batches / run-3 / a, b, a, b, a, ... 4 more, b"


def test_static_paths_name_every_nested_step() -> None:
    assert set(PLAN.nodes) == {
        "fetch", "each", "each.price", "each.fan", "each.fan.a.tax", "each.fan.b.ship",
        "pick", "pick.many", "pick.few", "on_failure.alert"}
    assert PLAN.node("each.fan.a.tax").concrete_path([4]) == "each[4].fan.a.tax"
    assert PLAN.node("each").inner_ids == {"price", "fan", "tax", "ship"}


def test_for_each_lanes_share_the_items_and_join_once() -> None:
    ctx = Context.new("run-1", "shop/orders", 7, {})
    sig = compiler.compile_for_each(PLAN, PLAN.node("each"), REF, ctx, ["x", "y", "z"], 2)
    assert isinstance(sig, chord)
    lanes = sig.tasks.tasks if hasattr(sig.tasks, "tasks") else sig.tasks
    assert len(lanes) == 2
    entered = [[(t.task, [u.get("enter", {}).get("index") for u in t.kwargs.get("units", [t.kwargs])])
                for t in lane.tasks] for lane in lanes]
    assert entered == [
        [("millrace.step", [0]), ("millrace.expand", [None]), ("millrace.step", [2]), ("millrace.expand", [None])],
        [("millrace.step", [1]), ("millrace.expand", [None])]]
    assert lanes[0].tasks[2].options["argsrepr"] == "shop/orders / run-1 / each.price [item 2]"
    assert sig.body.task == "millrace.join" and sig.body.kwargs["count"] == 3


def test_a_for_each_runs_in_no_more_lanes_than_its_limit_the_workers_slots_or_its_items() -> None:
    # parallel: true on 2 slots: 2 lanes of 20 items, not 40 tasks waiting for 2 processes
    assert compiler.lane_count(True, 40, 2) == 2
    assert compiler.lane_count(True, 40, 64) == 40  # more slots than items: a lane per item
    assert compiler.lane_count(True, 40, None) == 40  # slots not known: a lane per item, as before
    assert compiler.lane_count(8, 40, 4) == 4 and compiler.lane_count(3, 40, 4) == 3  # parallel: N is a ceiling
    assert compiler.lane_count(3, 40, None) == 3
    assert compiler.lane_count(False, 40, 16) == 1  # one at a time, in order
    assert compiler.lane_count(True, 1, 0) == 1  # never no lane


def test_on_failure_runs_in_its_own_phase() -> None:
    sig = compiler.compile_handlers(PLAN, REF, Phase.ON_FAILURE, Context.new("run-1", "shop/orders", 7, {}))
    [only] = sig.tasks
    assert only.task == "millrace.step" and only.kwargs["phase"] == "on_failure"
    assert only.kwargs["units"] == [{"node": "on_failure.alert"}, {"finish": True}]


def test_lanes_collect_each_items_last_result_in_item_order() -> None:
    base = Context.new("r", "f", 1, {})
    lane_a, lane_b = base.lane(), base.lane()
    for lane, items in ((lane_a, (0, 2)), (lane_b, (1,))):
        for index in items:
            lane.enter_item(index, f"item{index}")
            lane.enter_item(index, f"item{index}")  # a redelivery enters once
            lane.last = index * 10
    # lanes reach the join as JSON
    outer, results = close_lanes([Context.from_wire(lane_a.to_wire()), Context.from_wire(lane_b.to_wire())], 3)
    assert results == [0, 10, 20]
    assert outer.loops == [] and base.loops == []


def test_units_read_back_what_the_compiler_wrote_and_what_older_releases_sent() -> None:
    sig = compiler.compile_run(BATCHES, RunRef("run-4", "shop/batches", 1), Context.new("run-4", "shop/batches", 1, {}))
    assert [type(u).__name__ for u in units_of(sig.tasks[0].kwargs)] == ["Start", "StepAt", "StepAt"]
    # a continuation kept before batches names its one step in the task's own keywords
    [old] = units_of({"run": "r", "flow": "f", "version": 1, "node": "each.price", "enter": {"index": 2, "item": "z"}})
    assert old.node == "each.price" and (old.enter.index, old.enter.item) == (2, "z")


def test_a_context_crosses_the_wire_unchanged() -> None:
    ctx = Context.new("r", "f", 3, {"n": 1}, depth=1, scripts={"lib/x": 2}).lane()
    ctx.enter_item(0, "a")
    ctx.set_outcome("s", "failed", None, "boom")
    ctx.enter_item(1, "b")
    wire = ctx.to_wire()
    assert wire["loops"] == [{"index": 1, "item": "b", "done": {"0": None}}]
    assert wire["steps"] == {"s": {"result": None, "status": "failed", "error": "boom"}}
    assert Context.from_wire(wire) == ctx
    names = ctx.for_handlers("it failed").expression_names()
    assert names["run"]["error"] == "it failed" and names["run"]["scripts"] == {"lib/x": 2} and "item" not in names
