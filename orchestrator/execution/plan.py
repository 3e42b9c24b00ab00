"""A flow indexed for execution: every step by its static path, expressions compiled once.

Workers build a Plan once per flow version and keep it; per step they only render the
templates it holds.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.definitions.expressions import Constant, Template, compile_value
from orchestrator.definitions.flow import Flow
from orchestrator.definitions.parser import flow_from_stored
from orchestrator.definitions.steps import ForEachStep, LoopStep, ParallelStep, StepBase, step_kind
from orchestrator.execution.checks import NO_CHECKS, Checks, compile_checks, enclosing_loops
from orchestrator.execution.lifecycle import Phase


@dataclass(frozen=True)
class Node:
    """One step of a flow, ready to run."""

    path: str  # static path: ancestors' ids (and branch ids) joined by '.'
    step: StepBase
    kind: str
    path_format: str  # the path with a `[{}]` after each enclosing for_each, for item indices
    arguments: Template
    condition: Template | None
    items: Template | None
    sequences: tuple[tuple[str, ...], ...]  # child step paths: per branch, the body, per case
    labels: tuple[str, ...]  # branch ids (parallel), or case labels (switch)
    case_conditions: tuple[Template, ...]
    inner_ids: frozenset[str]  # every step id below this one
    variables: frozenset[str]  # vars.<name> its expressions read
    secrets: frozenset[str]  # secrets.<name> its expressions read
    checks: Checks = NO_CHECKS  # fail_if, break_if, retry.if, a loop's until/while

    @property
    def id(self) -> str:
        return self.step.id

    def concrete_path(self, indices: list[int]) -> str:
        return self.path_format.format(*indices) if indices else self.path_format


@dataclass(frozen=True)
class Plan:
    flow_id: str
    version: int
    flow: Flow
    nodes: dict[str, Node]
    main: tuple[str, ...]
    on_failure: tuple[str, ...]
    loops: dict[str, str] = field(default_factory=dict)  # step path -> its innermost for_each/loop's path
    finally_: tuple[str, ...] = ()

    def handlers(self, phase: Phase) -> tuple[str, ...]:
        """The steps of an after-phase: on_failure's or finally's."""
        return self.on_failure if phase is Phase.ON_FAILURE else self.finally_

    def node(self, path: str) -> Node:
        return self.nodes[path]


def build_plan(flow: Flow, version: int) -> Plan:
    """Index ``flow`` (already validated) by static step path."""
    nodes: dict[str, Node] = {}
    main = _sequence(flow.steps, "", "", nodes)
    on_failure = _sequence(flow.on_failure, "on_failure.", "on_failure.", nodes)
    finally_ = _sequence(flow.finally_, "finally.", "finally.", nodes)
    return Plan(flow.id, version, flow, nodes, main, on_failure, enclosing_loops(nodes), finally_)


def _sequence(steps: list[StepBase], prefix: str, fmt_prefix: str, nodes: dict[str, Node]) -> tuple[str, ...]:
    return tuple(_node(step, prefix, fmt_prefix, nodes) for step in steps)


def _node(step: StepBase, prefix: str, fmt_prefix: str, nodes: dict[str, Node]) -> str:
    path = prefix + step.id
    fmt = fmt_prefix + step.id
    sequences: list[tuple[str, ...]] = []
    labels: list[str] = []
    conditions: list[Template] = []
    items: Template | None = None
    if isinstance(step, ForEachStep):
        items = compile_value(step.for_each)
    for nested in step.sequences():
        if isinstance(step, ParallelStep):  # a branch's steps are under its id; one item's under its index
            inner, inner_fmt = f"{path}.{nested.label}.", f"{fmt}.{nested.label}."
        elif isinstance(step, ForEachStep | LoopStep):  # one item's (or iteration's) steps under its index
            inner, inner_fmt = f"{path}.", f"{fmt}[{{}}]."
        else:
            inner, inner_fmt = f"{path}.", f"{fmt}."
        sequences.append(_sequence(nested.steps, inner, inner_fmt, nodes))
        if not isinstance(step, ForEachStep | LoopStep):
            labels.append(nested.label)
        if nested.condition is not None:
            conditions.append(compile_value(nested.condition))
    inner = frozenset(nodes[p].id for seq in sequences for p in seq) | frozenset(
        i for seq in sequences for p in seq for i in nodes[p].inner_ids
    )
    condition = None if step.if_ is None else compile_value(step.if_)
    arguments = compile_value(step.with_)
    refs = arguments.references
    checks = compile_checks(step)
    for template in (condition, items, *conditions, *checks.templates()):
        if template is not None:
            refs = refs | template.references
    nodes[path] = Node(
        path=path,
        step=step,
        kind=step_kind(step) or "",
        path_format=fmt,  # ids are identifiers: the only braces are the index slots
        arguments=arguments,
        condition=condition,
        items=items,
        sequences=tuple(sequences),
        labels=tuple(labels),
        case_conditions=tuple(conditions),
        inner_ids=inner,
        variables=refs.vars,
        # an sql step's `database:` names the secret holding its connection URL
        secrets=refs.secrets | ({step.database} if getattr(step, "database", None) else set()),
        checks=checks,
    )
    return path


def truthy(template: Template | None, names: dict[str, Any]) -> bool:
    """Evaluate a condition; an absent condition holds."""
    if template is None:
        return True
    if isinstance(template, Constant):
        return bool(template.value)
    return bool(template.render(names))


class PlanCache:
    """Plans by flow version, each built once: a version's document never changes.

    ``load(flow_id, version)`` reads a stored document (version None: the latest) and
    returns ``(version, document)``; what reads it (the store) is the caller's choice.
    A stored document was validated when it was saved, so it is only rebuilt as models.
    """

    def __init__(self, load: Callable[[str, int | None], tuple[int, dict[str, Any]]]):
        self._load = load
        self._plans: dict[tuple[str, int], Plan] = {}

    def plan(self, flow_id: str, version: int | None) -> Plan:
        """The plan of a flow version; None: the latest saved version, looked up now."""
        if version is not None:
            found = self._plans.get((flow_id, version))
            if found is not None:
                return found
        number, document = self._load(flow_id, version)
        found = self._plans.get((flow_id, number))
        if found is None:
            found = self._plans[(flow_id, number)] = build_plan(flow_from_stored(document), number)
        return found
