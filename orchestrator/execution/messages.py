"""What a task is told besides the context: which run (:class:`RunRef`) and, for a batch,
which units to do in order (:class:`Start`, :class:`StepAt`, :class:`Finish`).

On the wire they are the keyword arguments every earlier release sent (``run``, ``flow``,
``version``, ``phase``; ``units`` as ``{"start": true}``, ``{"node": path[, "enter":
{index, item}]}``, ``{"finish": true}``), so queued messages survive an upgrade.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.execution.context import Wire
from orchestrator.execution.lifecycle import Phase


@dataclass(frozen=True)
class RunRef:
    """What every task of a run is told: which run, of which flow version, in which phase, and
    the priority (0-9; None: none) every message of the run is sent at."""

    run_id: str
    flow_id: str
    version: int
    phase: Phase = Phase.MAIN
    priority: int | None = None

    def kwargs(self) -> Wire:
        wire: Wire = {"run": self.run_id, "flow": self.flow_id, "version": self.version, "phase": self.phase.value}
        if self.priority is not None:
            wire["priority"] = self.priority
        return wire

    @classmethod
    def from_kwargs(cls, kw: Wire) -> RunRef:
        """The run a task's keyword arguments name (``phase`` absent in older messages: main)."""
        return cls(kw["run"], kw["flow"], kw["version"], Phase(kw.get("phase", Phase.MAIN)), kw.get("priority"))

    def in_phase(self, phase: Phase) -> RunRef:
        return RunRef(self.run_id, self.flow_id, self.version, phase, self.priority)

    def label(self, what: str) -> str:
        # Flower shows this instead of the context blob.
        return f"{self.flow_id} / {self.run_id} / {what}"


@dataclass(frozen=True)
class Start:
    """Mark the run running (queued -> running)."""

    def to_wire(self) -> Wire:
        return {"start": True}


@dataclass(frozen=True)
class Finish:
    """End the run (or its on_failure phase) with the last result."""

    def to_wire(self) -> Wire:
        return {"finish": True}


@dataclass(frozen=True)
class Enter:
    """Enter item ``index`` of the innermost for_each before the step."""

    index: int
    item: Any


@dataclass(frozen=True)
class StepAt:
    """Run the step at plan path ``node`` (entering an item first, when ``enter`` says so)."""

    node: str
    enter: Enter | None = None

    def to_wire(self) -> Wire:
        wire: Wire = {"node": self.node}
        if self.enter is not None:
            wire["enter"] = {"index": self.enter.index, "item": self.enter.item}
        return wire


Unit = Start | StepAt | Finish


def unit_from_wire(wire: Wire) -> Unit:
    if wire.get("start"):
        return Start()
    if wire.get("finish"):
        return Finish()
    enter = wire.get("enter")
    return StepAt(wire["node"], Enter(enter["index"], enter["item"]) if enter is not None else None)


def units_of(kw: Wire) -> list[Unit]:
    """A batch's units; a message sent before batches (a kept continuation, a retry) names one step."""
    if kw.get("units"):
        return [unit_from_wire(u) for u in kw["units"]]
    return [unit_from_wire({k: kw[k] for k in ("node", "enter") if k in kw})]
