"""Plan + run -> Celery canvas. Pure: signatures are built by task name, nothing is sent.

A sequence of steps is a chain, each task handing its context to the next. Consecutive
code steps on one queue share one ``millrace.step`` task (a *batch*, with the run's start
before them and its finish after them when they are adjacent): each still runs in its own
process and has its own attempt row; what is saved is a broker round trip per step.
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

from orchestrator.execution.context import Context
from orchestrator.execution.lifecycle import Phase
from orchestrator.execution.messages import Enter, Finish, RunRef, Start, StepAt, Unit
from orchestrator.execution.plan import Node, Plan

START = "millrace.start"
STEP = "millrace.step"
EXPAND = "millrace.expand"
JOIN = "millrace.join"
SWITCH = "millrace.switch"
CLOSE = "millrace.close"
LOOP = "millrace.loop"
ITERATE = "millrace.iterate"
WAIT = "millrace.wait"
FINISH = "millrace.finish"

_TASK_FOR_KIND = {
    "python": STEP,
    "bash": STEP,
    "javascript": STEP,
    "typescript": STEP,
    "sql": STEP,
    "script": STEP,
    "parallel": EXPAND,
    "for_each": EXPAND,
    "switch": SWITCH,
    "loop": LOOP,
    "approval": WAIT,
    "sleep": WAIT,
    "flow": WAIT,
}


def compile_run(plan: Plan, ref: RunRef, ctx: Context, first: int = 0) -> Signature:
    """The whole run: start, the main steps (from the ``first``-th on a restart), finish."""
    units = [_Unit(plan, ref, Start()), *_units(plan, plan.main[first:], ref), _Unit(plan, ref, Finish())]
    return _with_context(chain(*_batched(units)), ctx)


def compile_handlers(plan: Plan, ref: RunRef, phase: Phase, ctx: Context) -> Signature:
    """The steps of an after-phase (on_failure, finally), then the finish that ends it."""
    handlers = ref.in_phase(phase)
    units = [*_units(plan, plan.handlers(phase), handlers), _Unit(plan, handlers, Finish())]
    return _with_context(chain(*_batched(units)), ctx)


def compile_sequence(plan: Plan, paths: tuple[str, ...], ref: RunRef) -> list[Signature]:
    """The tasks of a sequence of steps: batches of code steps, composite steps alone."""
    return _batched(_units(plan, paths, ref))


def compile_units(plan: Plan, ref: RunRef, units: list[Unit]) -> Signature:
    """The rest of a batch as a task of its own (a batch that ran long hands the rest on)."""
    [sig] = _batched([_Unit(plan, ref, unit) for unit in units])
    return sig


_PART = {EXPAND: "expand", SWITCH: "switch", LOOP: "loop"}


@dataclass(frozen=True)
class _Unit:
    """A unit of a batch with what the compiler needs to know of it."""

    plan: Plan
    ref: RunRef
    unit: Unit

    @property
    def node(self) -> Node | None:
        return self.plan.node(self.unit.node) if isinstance(self.unit, StepAt) else None

    @property
    def task(self) -> str:
        node = self.node
        if node is None:
            return START if isinstance(self.unit, Start) else FINISH
        return _TASK_FOR_KIND[node.kind]

    @property
    def label(self) -> str:
        unit = self.unit
        if not isinstance(unit, StepAt):
            return "start" if isinstance(unit, Start) else "finish"
        label = unit.node if unit.enter is None else f"{unit.node} [item {unit.enter.index}]"
        # A composite step's task is replaced by what it expands to, under the same task id:
        # its label says which part it is (its join or close says so too).
        part = _PART.get(self.task)
        return label if part is None else f"{label} ({part})"


def _units(plan: Plan, paths: tuple[str, ...], ref: RunRef, enter: Enter | None = None) -> list[_Unit]:
    """One unit per step; ``enter`` starts a for_each item at the first one."""
    return [_Unit(plan, ref, StepAt(path, enter if i == 0 else None)) for i, path in enumerate(paths)]


# How many steps' names one batch shows in Flower before it says how many more there are.
LABELLED = 6


def _batched(units: list[_Unit]) -> list[Signature]:
    """Consecutive units that can share a task become one ``millrace.step`` task.

    A batch holds code steps on one queue, with the start before them and the finish after
    them. A step with ``retry`` opens a new batch: a retry re-sends the whole task, so it
    must not repeat steps before it. Composite and waiting steps are tasks of their own.
    """
    batches: list[list[_Unit]] = []
    for unit in units:
        last = batches[-1] if batches else None
        if last is not None and _joins(last, unit):
            last.append(unit)
        else:
            batches.append([unit])
    return [_batch_signature(batch) for batch in batches]


def _joins(batch: list[_Unit], unit: _Unit) -> bool:
    if unit.task == START or batch[-1].task == FINISH:
        return False
    if unit.task == FINISH:
        return batch[-1].task in (STEP, START)
    if unit.task != STEP or any(u.task not in (STEP, START) for u in batch):
        return False
    if getattr(unit.node.step, "retry", None) is not None and any(u.task == STEP for u in batch):
        return False
    queues = {u.node.step.queue for u in batch if u.node is not None}
    return queues <= {unit.node.step.queue}


def _batch_signature(batch: list[_Unit]) -> Signature:
    ref = batch[0].ref
    options: dict[str, Any] = {"kwargsrepr": "{}"}
    queue = next((u.node.step.queue for u in batch if u.node is not None and u.node.step.queue), None)
    if queue:
        options["queue"] = queue
    if ref.priority is not None:
        options["priority"] = ref.priority
    labels = [u.label for u in batch]
    if len(labels) > LABELLED:
        labels = [*labels[:LABELLED - 1], f"... {len(labels) - LABELLED} more", labels[-1]]
    options["argsrepr"] = ref.label(", ".join(labels))
    if len(batch) == 1 and batch[0].task != STEP:
        where = batch[0].unit.to_wire() if batch[0].node is not None else {}
        return Signature(batch[0].task, kwargs={**ref.kwargs(), **where}, options=options)
    return Signature(STEP, kwargs={**ref.kwargs(), "units": [u.unit.to_wire() for u in batch]}, options=options)


def compile_parallel(plan: Plan, node: Node, ref: RunRef, ctx: Context) -> Signature:
    """A chord over the branches, joined into ``{branch_id: last result}``."""
    lanes = [_with_context(chain(*compile_sequence(plan, seq, ref)), ctx) for seq in node.sequences]
    return chord(group(lanes), _join(node, ref, len(lanes)))


def lane_count(parallel: bool | int, items: int, slots: int | None) -> int:
    """How many lanes a for_each's ``items`` run in: at most ``parallel`` at once (true: no
    limit of its own, false: one at a time), no more lanes than items, and no more than the
    ``slots`` the workers of the items' queue run at once (None: not known, a lane per item).

    A lane is one task running its items one after another, each in a process of its own, so
    items beyond what the workers can run at once would only wait in the queue as tasks of
    their own, each paying a broker round trip and a chord part; as lanes they pay neither.
    """
    limit = items if parallel is True else 1 if parallel is False else parallel
    if slots is not None:
        limit = min(limit, slots)
    return max(1, min(limit, items))


def compile_for_each(plan: Plan, node: Node, ref: RunRef, ctx: Context, items: list[Any],
                     parallel: int) -> Signature:
    """A chord over ``parallel`` lanes, each running its share of the items in order."""
    width = max(1, min(parallel, len(items)))
    lanes = []
    for lane in range(width):
        units: list[_Unit] = []
        for index in range(lane, len(items), width):
            units.extend(_units(plan, node.sequences[0], ref, Enter(index, items[index])))
        lanes.append(_with_context(chain(*_batched(units)), ctx.lane()))
    return chord(group(lanes), _join(node, ref, len(items)))


def compile_case(plan: Plan, node: Node, ref: RunRef, ctx: Context, case: int) -> Signature:
    """The chosen case's steps, then the close that records the switch's result."""
    close = Signature(CLOSE, kwargs={**ref.kwargs(), "node": node.path}, options=_options(ref, f"{node.path} (close)"))
    return _with_context(chain(*compile_sequence(plan, node.sequences[case], ref), close), ctx)


def compile_iteration(plan: Plan, node: Node, ref: RunRef, ctx: Context, countdown: float | None) -> Signature:
    """One iteration of a loop step (the one ``ctx``'s innermost frame is on), then the task
    that checks its condition and sends the next one or records the loop's outcome."""
    iteration = ctx.loops[-1].index
    check = Signature(ITERATE, kwargs={**ref.kwargs(), "node": node.path},
                      options=_options(ref, f"{node.path} [iteration {iteration}] (check)"))
    sig = _with_context(chain(*compile_sequence(plan, node.sequences[0], ref), check), ctx)
    if countdown:
        sig.tasks[0].set(countdown=countdown)
    return sig


def _join(node: Node, ref: RunRef, count: int) -> Signature:
    return Signature(JOIN, kwargs={**ref.kwargs(), "node": node.path, "count": count},
                     options=_options(ref, f"{node.path} (join)"))


def _options(ref: RunRef, label: str) -> dict[str, Any]:
    """A single task's options: its label for Flower, the run's priority."""
    options: dict[str, Any] = {"argsrepr": ref.label(label), "kwargsrepr": "{}"}
    if ref.priority is not None:
        options["priority"] = ref.priority
    return options


def _with_context(sig: Signature, ctx: Context) -> Signature:
    first = sig.tasks[0] if isinstance(sig, _chain) else sig
    first.args = (ctx.to_wire(),)
    return sig
