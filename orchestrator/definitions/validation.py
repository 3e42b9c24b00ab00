"""Checks across a parsed flow: unique ids, options that fit the step kind, expressions
that parse, and references only to inputs that exist and to steps that ran before."""
from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from typing import Any

from orchestrator.definitions.cron import parse_cron
from orchestrator.definitions.events import EventTrigger
from orchestrator.definitions.expressions import NAMES, References, compile_value
from orchestrator.definitions.flow import Flow
from orchestrator.definitions.inputs import check_input_specs, validate_inputs
from orchestrator.definitions.step_code import check_step_code
from orchestrator.definitions.steps import (
    EXECUTABLE_KINDS,
    ForEachStep,
    LoopStep,
    ParallelStep,
    StepBase,
    step_kind,
    walk_sequence,
)
from orchestrator.definitions.triggers import CronTrigger
from orchestrator.errors import ExpressionError, Problem, ValidationError, did_you_mean, join_path

_ALLOWED_NAMES = NAMES | {"range", "dict"}
_CODE_OPTIONS = ("retry", "timeout", "cache", "limits", "network")
_WAITING_KINDS = ("approval", "sleep", "flow")


@dataclass(frozen=True)
class _Scope:
    # The step ids a step may read: the sequence's set, grown as the walk goes (read only
    # while the step is checked; a nested sequence walks a copy). Not one copy per step:
    # that made checking a flow quadratic in its length.
    visible: AbstractSet[str]
    in_loop: bool  # inside a for_each: item, index
    in_iteration: bool = False  # inside a loop step: iteration, previous


# Names an expression reads only in some places: where each is defined.
_PLACED = {"iteration": "inside a loop step's `do`, `until` and `while`",
           "previous": "inside a loop step's `do`, `until` and `while`",
           "result": "in `fail_if`, `break_if`, `stop_if` and `labels` (the step's own result)",
           "error": "in `retry.if` (the failure's {type, message})"}


def check_flow(flow: Flow) -> list[Problem]:
    """Every problem in ``flow`` that the typed model alone cannot see."""
    problems: list[Problem] = list(check_input_specs(flow.inputs))
    first_seen: dict[str, str] = {}
    for step, path in flow.walk():
        _check_unique(step, path, first_seen, problems)
    checker = _ReferenceChecker(flow, set(first_seen), problems)
    checker.sequence(flow.steps, ("steps",), _Scope(frozenset(), False))
    top_ids = frozenset(step.id for step in flow.steps)
    for key, steps in (("on_failure", flow.on_failure), ("finally", flow.finally_)):
        checker.sequence(steps, (key,), _Scope(top_ids, False))
        problems += [Problem(f"{join_path(*path)}.stop_if", f"stop_if ends a run's main steps; steps in `{key}` run "
                             "after them and cannot stop the run (use `if:` on later steps)")
                     for step, path in walk_sequence(steps, (key,)) if step.stop_if is not None]
    problems += check_triggers(flow)
    problems += check_step_code(flow)
    return problems


def check_triggers(flow: Flow) -> list[Problem]:
    """Trigger ids unique; cron expressions and zones valid; a cron trigger's inputs fit the
    flow's; a flow trigger's inputs read only ``trigger``; the concurrency key only ``inputs``."""
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, trigger in enumerate(flow.triggers):
        path = f"triggers[{i}]"
        if trigger.id in seen:
            problems.append(Problem(f"{path}.id", f"duplicate trigger id '{trigger.id}'"))
        seen.add(trigger.id)
        if isinstance(trigger, CronTrigger):
            try:
                parse_cron(trigger.cron, trigger.timezone, path=path)
                validate_inputs(flow.inputs, trigger.inputs)
            except ValidationError as exc:
                problems += [Problem(p.path.replace("inputs.", f"{path}.inputs.", 1)
                                     if p.path.startswith("inputs.") else p.path, p.message) for p in exc.problems]
        elif isinstance(trigger, EventTrigger):
            if trigger.inputs is not None:
                problems += _only_names(trigger.inputs, {"trigger"}, f"{path}.inputs")
        else:
            if trigger.flow == flow.id:
                problems.append(Problem(f"{path}.flow", "a flow cannot trigger itself"))
            problems += _only_names(trigger.inputs, {"trigger"}, f"{path}.inputs")
    if flow.concurrency is not None and flow.concurrency.key is not None:
        problems += _only_names(flow.concurrency.key, {"inputs"}, "concurrency.key")
    return problems


def _only_names(value: Any, allowed: set[str], path: str) -> list[Problem]:
    try:
        names = compile_value(value).references.names
    except ExpressionError as exc:
        return [Problem(path, str(exc))]
    unknown = sorted(names - allowed - {"range", "dict"})
    return [Problem(path, f"'{name}' is not known here; expressions here read: {', '.join(sorted(allowed))}")
            for name in unknown]


def walk_steps(flow: Flow) -> Iterator[tuple[StepBase, str]]:
    """Every step of ``flow``, nested ones included, with its JSON path."""
    for step, path in flow.walk():
        yield step, join_path(*path)


def _check_unique(step: StepBase, path: tuple, first_seen: dict[str, str], problems: list) -> None:
    where = join_path(*path)
    if step.id in first_seen:
        problems.append(
            Problem(f"{where}.id", f"duplicate step id '{step.id}' (first used at {first_seen[step.id]})")
        )
    else:
        first_seen[step.id] = where
    if isinstance(step, ParallelStep):
        branch_ids: set[str] = set()
        for b, branch in enumerate(step.parallel):
            if branch.id in branch_ids:
                problems.append(
                    Problem(join_path(*path, "parallel", b, "id"), f"duplicate branch id '{branch.id}'")
                )
            branch_ids.add(branch.id)


class _ReferenceChecker:
    def __init__(self, flow: Flow, all_ids: set[str], problems: list[Problem]):
        self.inputs = set(flow.inputs)
        self.all_ids = all_ids
        self.problems = problems

    def sequence(self, steps: list[StepBase], prefix: tuple, scope: _Scope) -> None:
        visible = set(scope.visible)
        for i, step in enumerate(steps):
            self.step(step, (*prefix, i), replace(scope, visible=visible))
            visible.add(step.id)

    def step(self, step: StepBase, path: tuple, scope: _Scope) -> None:
        kind = step_kind(step)
        if kind not in EXECUTABLE_KINDS:
            options = _CODE_OPTIONS if kind == "flow" else (*_CODE_OPTIONS, "with")
            for option in options:
                if option in step.model_fields_set or (option == "with" and step.with_):
                    self.problems.append(
                        Problem(join_path(*path, option), f"'{option}' does not apply to a {kind} step")
                    )
        elif kind == "sql":
            for option in ("limits", "network"):
                if option in step.model_fields_set:
                    self.problems.append(Problem(join_path(*path, option), f"'{option}' does not apply to an sql "
                                                 "step: its statement runs on its database, not in a sandbox"))
        self.value(step.if_, (*path, "if"), scope, condition=True)
        for name, value in step.with_.items():
            self.value(value, (*path, "with", name), scope)
        self.checks(step, path, scope)
        if isinstance(step, ForEachStep):
            self.value(step.for_each, (*path, "for_each"), scope, iterable=True)
            scope = replace(scope, in_loop=True)
        if isinstance(step, LoopStep):
            scope = replace(scope, in_iteration=True)
            body = {*scope.visible, *(inner.id for inner in step.loop.do)}
            for name in ("until", "while"):
                value = getattr(step.loop, "while_" if name == "while" else name)
                self.value(value, (*path, "loop", name), replace(scope, visible=body), condition=True)
        for nested in step.sequences():
            if nested.condition is not None:  # a switch case's `if`, beside its `do`
                self.value(nested.condition, (*path, *nested.where[:-1], "if"), scope, condition=True)
            self.sequence(nested.steps, (*path, *nested.where), scope)

    def checks(self, step: StepBase, path: tuple, scope: _Scope) -> None:
        """fail_if, break_if and stop_if (over `result`), retry.if (over `error`); break_if only in a loop."""
        self.value(step.fail_if, (*path, "fail_if"), scope, condition=True, extra={"result"})
        if step.break_if is not None and not (scope.in_loop or scope.in_iteration):
            self.problems.append(Problem(join_path(*path, "break_if"), "break_if ends the for_each or loop a step "
                                         "is in; this step is in none (use `if:` on later steps, or fail_if)"))
        else:
            self.value(step.break_if, (*path, "break_if"), scope, condition=True, extra={"result"})
        self.value(step.stop_if, (*path, "stop_if"), scope, condition=True, extra={"result"})
        if getattr(step, "retry", None) is not None:
            self.value(step.retry.if_, (*path, "retry", "if"), scope, condition=True, extra={"error"})
        if step.labels and step_kind(step) in _WAITING_KINDS:
            self.problems.append(Problem(join_path(*path, "labels"), f"'labels' does not apply to {step_kind(step)} "
                                         "steps (one ends when it is decided or woken, not after it ran); put it on "
                                         "the step after it"))
        elif step.labels:
            self.value(step.labels, (*path, "labels"), scope, extra={"result"})

    def value(self, value: Any, path: tuple, scope: _Scope, *, condition: bool = False,
              iterable: bool = False, extra: AbstractSet[str] = frozenset()) -> None:
        where = join_path(*path)
        if condition and value is not None and not isinstance(value, bool):
            if not (isinstance(value, str) and value.strip().startswith("${{")):
                self.problems.append(Problem(where, "expected true, false or an expression ${{ ... }}"))
                return
        if iterable and not isinstance(value, list):
            if not (isinstance(value, str) and value.strip().startswith("${{")):
                self.problems.append(Problem(where, "expected a list or an expression ${{ ... }}"))
                return
        for leaf, leaf_path in _leaves(value, path):
            try:
                refs = compile_value(leaf).references
            except ExpressionError as exc:
                self.problems.append(Problem(join_path(*leaf_path), str(exc)))
                continue
            self.references(refs, join_path(*leaf_path), scope, extra)

    def references(self, refs: References, where: str, scope: _Scope, extra: AbstractSet[str] = frozenset()) -> None:
        here = set(extra) | ({"iteration", "previous"} if scope.in_iteration else set())
        for name in sorted((refs.names & _PLACED.keys()) - here):
            self.problems.append(Problem(where, f"'{name}' is only defined {_PLACED[name]}"))
        for name in sorted(refs.names - _ALLOWED_NAMES - _PLACED.keys()):
            self.problems.append(
                Problem(where, f"unknown name '{name}'{did_you_mean(name, NAMES)}; expressions can use "
                               f"{', '.join(sorted(NAMES))}")
            )
        if not scope.in_loop:
            for name in sorted(refs.names & {"item", "index"}):
                self.problems.append(Problem(where, f"'{name}' is only defined inside for_each"))
        for name in sorted(refs.inputs - self.inputs):
            self.problems.append(Problem(where, f"unknown input '{name}'{did_you_mean(name, self.inputs)}"))
        for step_id in sorted(refs.steps - scope.visible):
            if step_id not in self.all_ids:
                message = f"unknown step '{step_id}'{did_you_mean(step_id, self.all_ids)}"
            else:
                message = f"step '{step_id}' has not run at this point (it is later, or in another branch)"
            self.problems.append(Problem(where, message))


def _leaves(value: Any, path: tuple) -> Iterator[tuple[str, tuple]]:
    if isinstance(value, str):
        yield value, path
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, (*path, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
