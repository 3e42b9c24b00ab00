"""The run context a step hands to the next: inputs, visible step results, loop frames.

A :class:`Context` is a typed value inside a task; between tasks it travels as a plain JSON
object (:meth:`Context.to_wire`), in the shape every earlier release sent, so messages
queued before an upgrade still run after it:
``{"run": {"id", "flow", "version", "depth"[, "scripts"]}, "inputs": {...},
"steps": {id: {"result", "status"[, "error"]}}, "last": ..., "loops": [{"index", "item",
"done"[, "loop", "previous", "broken"]}][, "error": ...][, "status": ...]}``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from orchestrator.execution.checks import error_shape

Wire = dict[str, Any]


@dataclass(frozen=True)
class RunInfo:
    """Which run this is, as expressions see it (``run.id``, ``run.flow``...)."""

    id: str
    flow: str
    version: int
    depth: int = 0
    scripts: dict[str, int] = field(default_factory=dict)  # each ``script:`` reference, pinned

    def to_wire(self) -> Wire:
        wire: Wire = {"id": self.id, "flow": self.flow, "version": self.version, "depth": self.depth}
        if self.scripts:
            wire["scripts"] = self.scripts
        return wire

    @classmethod
    def from_wire(cls, wire: Wire) -> RunInfo:
        return cls(wire["id"], wire["flow"], wire["version"], wire.get("depth", 0), wire.get("scripts") or {})


@dataclass(frozen=True)
class Outcome:
    """A visible step's outcome (``steps.<id>.result`` / ``.status`` / ``.error``)."""

    status: str
    result: Any = None
    error: str | None = None

    def to_wire(self) -> Wire:
        wire: Wire = {"result": self.result, "status": self.status}
        if self.error:
            wire["error"] = self.error
        return wire

    def names(self) -> Wire:
        """What expressions see: the error as ``{type, message}``."""
        wire = self.to_wire()
        if self.error:
            wire["error"] = error_shape(self.error)
        return wire


@dataclass
class Loop:
    """A for_each lane's place (the item it is on, the items it finished) or, for a ``loop``
    step (``iteration``), the iteration it is on and the previous one's step outcomes.
    ``broken``: a ``break_if`` held, so no further step of the loop runs in this lane."""

    index: int | None = None
    item: Any = None
    done: dict[int, Any] = field(default_factory=dict)  # item index -> that item's last result
    iteration: bool = False
    previous: dict[str, Wire] = field(default_factory=dict)  # step id -> outcome, of the previous iteration
    broken: bool = False

    def to_wire(self) -> Wire:
        wire = {"index": self.index, "item": self.item, "done": {str(i): v for i, v in self.done.items()}}
        if self.iteration:
            wire["loop"] = True
            wire["previous"] = self.previous
        if self.broken:
            wire["broken"] = True
        return wire

    @classmethod
    def from_wire(cls, wire: Wire) -> Loop:
        return cls(wire["index"], wire["item"], {int(i): v for i, v in wire["done"].items()},
                   wire.get("loop", False), wire.get("previous") or {}, wire.get("broken", False))


@dataclass
class Context:
    run: RunInfo
    inputs: dict[str, Any]
    steps: dict[str, Outcome] = field(default_factory=dict)
    last: Any = None
    loops: list[Loop] = field(default_factory=list)
    error: str | None = None  # the run's failure, for its on_failure and finally steps
    status: str | None = None  # how the run went, for its finally steps (``run.status``)

    @classmethod
    def new(cls, run_id: str, flow_id: str, version: int, inputs: dict[str, Any], depth: int = 0,
            scripts: dict[str, int] | None = None) -> Context:
        """A run's first context; ``scripts`` pins each ``script:`` reference to a version."""
        return cls(RunInfo(run_id, flow_id, version, depth, scripts or {}), inputs)

    def to_wire(self) -> Wire:
        wire: Wire = {"run": self.run.to_wire(), "inputs": self.inputs,
                      "steps": {k: o.to_wire() for k, o in self.steps.items()}, "last": self.last,
                      "loops": [frame.to_wire() for frame in self.loops]}
        if self.error:
            wire["error"] = self.error
        if self.status:
            wire["status"] = self.status
        return wire

    @classmethod
    def from_wire(cls, wire: Wire) -> Context:
        return cls(RunInfo.from_wire(wire["run"]), wire["inputs"],
                   {k: Outcome(o["status"], o.get("result"), o.get("error")) for k, o in wire["steps"].items()},
                   wire.get("last"), [Loop.from_wire(f) for f in wire.get("loops", [])], wire.get("error"),
                   wire.get("status"))

    def expression_names(self, variables: dict[str, Any] | None = None,
                         secrets: dict[str, Any] | None = None) -> dict[str, Any]:
        """The names an expression sees in this context."""
        names: dict[str, Any] = {
            "inputs": self.inputs,
            "steps": {k: o.names() for k, o in self.steps.items()},
            "run": {**self.run.to_wire(), "error": self.error, "status": self.status or "running"},
            "vars": variables or {},
            "secrets": secrets or {},
        }
        item = iteration = None
        for frame in reversed(self.loops):  # the innermost for_each's item, the innermost loop's iteration
            if frame.iteration:
                iteration = iteration or frame
            else:
                item = item or frame
        if item is not None:
            names["item"] = item.item
            names["index"] = item.index
        if iteration is not None:
            names["iteration"] = iteration.index
            names["previous"] = iteration.previous
        return names

    def indices(self) -> list[int]:
        """The item index of each loop the context is in, outermost first."""
        return [frame.index for frame in self.loops]  # type: ignore[misc]  # entered before any step

    def enter_item(self, index: int, item: Any) -> None:
        """Start item ``index`` in the innermost loop, keeping the previous item's last result."""
        frame = self.loops[-1]
        if frame.index == index:
            return  # this delivery entered already (a retry or a resumed wait)
        if frame.index is not None:
            frame.done[frame.index] = self.last
        frame.index = index
        frame.item = item
        self.last = None

    def set_outcome(self, step_id: str, status: str, result: Any, error: str | None = None) -> Context:
        self.steps[step_id] = Outcome(status, result, error)
        self.last = result
        return self

    def lane(self) -> Context:
        """A copy with a fresh innermost loop frame, for one lane of a for_each."""
        return replace(self, steps=dict(self.steps), loops=[*[replace(f, done=dict(f.done)) for f in self.loops],
                                                              Loop()])

    def for_handlers(self, error: str | None, status: str | None = None) -> Context:
        """The context a run's on_failure (or, with ``status``, finally) steps start from: the
        run's error and status, outside every loop."""
        return replace(self, steps=dict(self.steps), error=error, status=status, loops=[], last=None)

    def drop_steps(self, step_ids: frozenset[str]) -> Context:
        """Forget results of steps inside a finished composite step: they are not visible after it."""
        if step_ids & self.steps.keys():
            self.steps = {k: v for k, v in self.steps.items() if k not in step_ids}
        return self


def close_lanes(lanes: list[Context], count: int) -> tuple[Context, list[Any]]:
    """Merge finished lanes: the outer context and each item's last result, in item order."""
    results: list[Any] = [None] * count
    ran: set[int] = set()
    for lane in lanes:
        frame = lane.loops[-1]
        for index, value in frame.done.items():
            results[index] = value
        ran |= frame.done.keys()
        if frame.index is not None:
            results[frame.index] = lane.last
            ran.add(frame.index)
    if any(lane.loops[-1].broken for lane in lanes):  # a break_if held: only the items that ran
        results = [results[i] for i in sorted(ran)]
    return replace(lanes[0], loops=lanes[0].loops[:-1]), results
