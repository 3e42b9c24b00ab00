"""The run context a step hands to the next: inputs, visible step results, loop frames.

It travels in the task messages as a plain JSON object:
``{"run": {...}, "inputs": {...}, "steps": {id: {"result", "status"}}, "last": ...,
"loops": [{"index", "item", "done"}], "error": ...}``.
"""
from __future__ import annotations

from typing import Any

Context = dict[str, Any]


def new_context(run_id: str, flow_id: str, version: int, inputs: dict[str, Any],
                depth: int = 0, scripts: dict[str, int] | None = None) -> Context:
    """A run's first context; ``scripts`` pins each ``script:`` reference to a version."""
    run: dict[str, Any] = {"id": run_id, "flow": flow_id, "version": version, "depth": depth}
    if scripts:
        run["scripts"] = scripts
    return {
        "run": run,
        "inputs": inputs,
        "steps": {},
        "last": None,
        "loops": [],
    }


def expression_names(ctx: Context, variables: dict[str, Any] | None = None,
                     secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """The names an expression sees in this context."""
    names = {
        "inputs": ctx["inputs"],
        "steps": ctx["steps"],
        "run": {**ctx["run"], "error": ctx.get("error")},
        "vars": variables or {},
        "secrets": secrets or {},
    }
    if ctx["loops"]:
        frame = ctx["loops"][-1]
        names["item"] = frame["item"]
        names["index"] = frame["index"]
    return names


def indices(ctx: Context) -> list[int]:
    return [frame["index"] for frame in ctx["loops"]]


def enter_item(ctx: Context, index: int, item: Any) -> None:
    """Start item ``index`` in the innermost loop, keeping the previous item's last result."""
    frame = ctx["loops"][-1]
    if frame["index"] == index:
        return  # this delivery entered already (a retry or a resumed wait)
    if frame["index"] is not None:
        frame["done"][str(frame["index"])] = ctx["last"]
    frame["index"] = index
    frame["item"] = item
    ctx["last"] = None


def set_outcome(ctx: Context, step_id: str, status: str, result: Any, error: str | None = None) -> Context:
    entry: dict[str, Any] = {"result": result, "status": status}
    if error:
        entry["error"] = error
    ctx["steps"][step_id] = entry
    ctx["last"] = result
    return ctx


def open_loop(ctx: Context) -> Context:
    """A copy of ``ctx`` with a fresh innermost loop frame, for one lane of a for_each."""
    lane = {**ctx, "loops": [*ctx["loops"], {"index": None, "item": None, "done": {}}]}
    lane["steps"] = dict(ctx["steps"])
    return lane


def close_loop(lanes: list[Context], count: int) -> tuple[Context, list[Any]]:
    """Merge finished lanes: the outer context and each item's last result, in item order."""
    results: list[Any] = [None] * count
    for lane in lanes:
        frame = lane["loops"][-1]
        for index, value in frame["done"].items():
            results[int(index)] = value
        if frame["index"] is not None:
            results[frame["index"]] = lane["last"]
    base = dict(lanes[0])
    base["loops"] = lanes[0]["loops"][:-1]
    return base, results


def drop_steps(ctx: Context, step_ids: frozenset[str]) -> Context:
    """Forget results of steps inside a finished composite step: they are not visible after it."""
    if step_ids & ctx["steps"].keys():
        ctx["steps"] = {k: v for k, v in ctx["steps"].items() if k not in step_ids}
    return ctx
