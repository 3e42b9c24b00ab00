"""The compiler is pure: a plan and a run give signatures, with names Flower can show."""
from __future__ import annotations

from celery import chord
from celery.canvas import _chain as chain

from orchestrator import compiler
from orchestrator.compiler import RunRef
from orchestrator.context import close_loop, enter_item, new_context, open_loop
from orchestrator.parser import parse_flow
from orchestrator.plan import build_plan

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


def test_a_run_is_a_chain_of_one_task_per_step_between_start_and_finish() -> None:
    ctx = new_context("run-1", "shop/orders", 7, {})
    sig = compiler.compile_run(PLAN, REF, ctx)
    assert isinstance(sig, chain)
    assert [t.task for t in sig.tasks] == [
        "millrace.start", "millrace.step", "millrace.expand", "millrace.switch", "millrace.finish"]
    assert sig.tasks[0].args == (ctx,)
    assert sig.tasks[1].options["queue"] == "io"
    assert sig.tasks[2].kwargs == {"run": "run-1", "flow": "shop/orders", "version": 7,
                                   "phase": "main", "node": "each"}
    assert sig.tasks[2].options["argsrepr"] == "shop/orders / run-1 / each"


def test_static_paths_name_every_nested_step() -> None:
    assert set(PLAN.nodes) == {
        "fetch", "each", "each.price", "each.fan", "each.fan.a.tax", "each.fan.b.ship",
        "pick", "pick.many", "pick.few", "on_failure.alert"}
    assert PLAN.node("each.fan.a.tax").concrete_path([4]) == "each[4].fan.a.tax"
    assert PLAN.node("each").inner_ids == {"price", "fan", "tax", "ship"}


def test_for_each_lanes_share_the_items_and_join_once() -> None:
    ctx = new_context("run-1", "shop/orders", 7, {})
    sig = compiler.compile_for_each(PLAN, PLAN.node("each"), REF, ctx, ["x", "y", "z"], 2)
    assert isinstance(sig, chord)
    lanes = sig.tasks.tasks if hasattr(sig.tasks, "tasks") else sig.tasks
    assert len(lanes) == 2
    entered = [[t.kwargs.get("enter", {}).get("index") for t in lane.tasks] for lane in lanes]
    assert entered == [[0, None, 2, None], [1, None]]
    assert sig.body.task == "millrace.join" and sig.body.kwargs["count"] == 3


def test_on_failure_runs_in_its_own_phase() -> None:
    sig = compiler.compile_on_failure(PLAN, REF, new_context("run-1", "shop/orders", 7, {}))
    assert [t.task for t in sig.tasks] == ["millrace.step", "millrace.finish"]
    assert all(t.kwargs["phase"] == "on_failure" for t in sig.tasks)


def test_lanes_collect_each_items_last_result_in_item_order() -> None:
    base = new_context("r", "f", 1, {})
    lane_a, lane_b = open_loop(base), open_loop(base)
    for lane, items in ((lane_a, (0, 2)), (lane_b, (1,))):
        for index in items:
            enter_item(lane, index, f"item{index}")
            enter_item(lane, index, f"item{index}")  # a redelivery enters once
            lane["last"] = index * 10
    outer, results = close_loop([lane_a, lane_b], 3)
    assert results == [0, 10, 20]
    assert outer["loops"] == []
