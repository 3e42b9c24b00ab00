"""Plan + run -> Celery canvas. Pure: signatures are built by task name, nothing is sent.

A sequence of steps is a chain, one task per step, each handing its context to the next.
Composite steps are single tasks that replace themselves at run time, when what they
expand to is known: ``parallel`` and ``for_each`` with a chord over branches or item
lanes joined by ``millrace.join``, ``switch`` with the chosen case's chain closed by
``millrace.close``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery import Signature, chain, chord, group
from celery.canvas import _chain

from orchestrator.context import Context, open_loop
from orchestrator.plan import Node, Plan

START = "millrace.start"
STEP = "millrace.step"
EXPAND = "millrace.expand"
JOIN = "millrace.join"
SWITCH = "millrace.switch"
CLOSE = "millrace.close"
WAIT = "millrace.wait"
FINISH = "millrace.finish"

_TASK_FOR_KIND = {
    "python": STEP,
    "bash": STEP,
    "javascript": STEP,
    "sql": STEP,
    "script": STEP,
    "parallel": EXPAND,
    "for_each": EXPAND,
    "switch": SWITCH,
    "approval": WAIT,
    "sleep": WAIT,
    "flow": WAIT,
}


@dataclass(frozen=True)
class RunRef:
    """What every task of a run is told: which run, of which flow version, in which phase."""

    run_id: str
    flow_id: str
    version: int
    phase: str = "main"  # or "on_failure"

    def kwargs(self) -> dict[str, Any]:
        return {"run": self.run_id, "flow": self.flow_id, "version": self.version, "phase": self.phase}

    def label(self, what: str) -> str:
        # Flower shows this instead of the context blob.
        return f"{self.flow_id} / {self.run_id} / {what}"


def compile_run(plan: Plan, ref: RunRef, ctx: Context, first: int = 0) -> Signature:
    """The whole run: start, the main steps (from the ``first``-th on a restart), finish."""
    steps = compile_sequence(plan, plan.main[first:], ref)
    tasks = [_control(START, ref, "start"), *steps, _control(FINISH, ref, "finish")]
    return _with_context(chain(*tasks), ctx)


def compile_on_failure(plan: Plan, ref: RunRef, ctx: Context) -> Signature:
    """The on_failure steps, then the finish that marks the run failed."""
    on_failure = RunRef(ref.run_id, ref.flow_id, ref.version, "on_failure")
    tasks = [*compile_sequence(plan, plan.on_failure, on_failure), _control(FINISH, on_failure, "finish")]
    return _with_context(chain(*tasks), ctx)


def compile_sequence(plan: Plan, paths: tuple[str, ...], ref: RunRef,
                     enter: dict[str, Any] | None = None) -> list[Signature]:
    """One signature per step; ``enter`` starts a for_each item at the first one."""
    sigs = []
    for i, path in enumerate(paths):
        node = plan.node(path)
        kwargs = {**ref.kwargs(), "node": path}
        label = path
        if enter is not None and i == 0:
            kwargs["enter"] = enter
            label = f"{path} [item {enter['index']}]"
        options: dict[str, Any] = {"argsrepr": ref.label(label), "kwargsrepr": "{}"}
        if node.step.queue:
            options["queue"] = node.step.queue
        sigs.append(Signature(_TASK_FOR_KIND[node.kind], kwargs=kwargs, options=options))
    return sigs


def compile_parallel(plan: Plan, node: Node, ref: RunRef, ctx: Context) -> Signature:
    """A chord over the branches, joined into ``{branch_id: last result}``."""
    lanes = [_with_context(chain(*compile_sequence(plan, seq, ref)), ctx) for seq in node.sequences]
    return chord(group(lanes), _join(node, ref, len(lanes)))


def compile_for_each(plan: Plan, node: Node, ref: RunRef, ctx: Context, items: list[Any],
                     parallel: int) -> Signature:
    """A chord over ``parallel`` lanes, each running its share of the items in order."""
    width = max(1, min(parallel, len(items)))
    lanes = []
    for lane in range(width):
        tasks: list[Signature] = []
        for index in range(lane, len(items), width):
            enter = {"index": index, "item": items[index]}
            tasks.extend(compile_sequence(plan, node.sequences[0], ref, enter))
        lanes.append(_with_context(chain(*tasks), open_loop(ctx)))
    return chord(group(lanes), _join(node, ref, len(items)))


def compile_case(plan: Plan, node: Node, ref: RunRef, ctx: Context, case: int) -> Signature:
    """The chosen case's steps, then the close that records the switch's result."""
    close = Signature(CLOSE, kwargs={**ref.kwargs(), "node": node.path},
                      options={"argsrepr": ref.label(f"{node.path} (close)"), "kwargsrepr": "{}"})
    return _with_context(chain(*compile_sequence(plan, node.sequences[case], ref), close), ctx)


def _join(node: Node, ref: RunRef, count: int) -> Signature:
    return Signature(JOIN, kwargs={**ref.kwargs(), "node": node.path, "count": count},
                     options={"argsrepr": ref.label(f"{node.path} (join)"), "kwargsrepr": "{}"})


def _control(name: str, ref: RunRef, what: str) -> Signature:
    return Signature(name, kwargs=ref.kwargs(), options={"argsrepr": ref.label(what), "kwargsrepr": "{}"})


def _with_context(sig: Signature, ctx: Context) -> Signature:
    first = sig.tasks[0] if isinstance(sig, _chain) else sig
    first.args = (ctx,)
    return sig
