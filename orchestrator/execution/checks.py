"""What a step checks besides running: ``fail_if``, ``break_if``, ``stop_if`` and ``labels`` after it ran,
``retry.if`` over its error, a loop's ``until``/``while``; and the shape ``{type, message}``
an error has in expressions.

Pure: templates compiled once per flow version (:func:`compile_checks`), evaluated by the
tasks with the names they are given.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from orchestrator.definitions.expressions import Template, compile_value
from orchestrator.definitions.labels import label_value
from orchestrator.definitions.steps import ForEachStep, LoopStep, StepBase
from orchestrator.errors import ExpressionError

LOOP_KINDS = frozenset({"for_each", "loop"})


@dataclass(frozen=True)
class Checks:
    """A step's compiled conditions, each None when the step has none."""

    fail_if: Template | None = None
    fail_source: str = ""
    break_if: Template | None = None
    stop_if: Template | None = None
    retry_if: Template | None = None
    until: Template | None = None
    while_: Template | None = None
    breaks: bool = False  # a loop whose own body (not a nested loop's) has a break_if step
    labels: Template | None = None  # {key: value} over `result`, added to the run's labels

    @property
    def plain(self) -> bool:
        """Nothing is decided once the step succeeded (no fail_if, break_if, stop_if or labels)."""
        return self.fail_if is None and self.break_if is None and self.stop_if is None and self.labels is None

    def templates(self) -> tuple[Template, ...]:
        return tuple(t for t in (self.fail_if, self.break_if, self.stop_if, self.retry_if, self.until, self.while_,
                                 self.labels)
                     if t is not None)


NO_CHECKS = Checks()


def compile_checks(step: StepBase) -> Checks:
    retry_if = step.retry.if_ if step.retry is not None else None
    loop = step.loop if isinstance(step, LoopStep) else None
    if step.fail_if is None and step.break_if is None and step.stop_if is None and retry_if is None \
            and loop is None and not step.labels and not isinstance(step, ForEachStep):
        return NO_CHECKS
    return Checks(
        fail_if=_compiled(step.fail_if),
        fail_source=_source(step.fail_if),
        break_if=_compiled(step.break_if),
        stop_if=_compiled(step.stop_if),
        retry_if=_compiled(retry_if),
        until=_compiled(loop.until) if loop else None,
        while_=_compiled(loop.while_) if loop else None,
        breaks=isinstance(step, ForEachStep | LoopStep) and _breaks_in(step),
        labels=compile_value(step.labels) if step.labels else None,
    )


def _compiled(value: Any) -> Template | None:
    return None if value is None else compile_value(value)


def _source(value: Any) -> str:
    if isinstance(value, str):
        return value.strip().removeprefix("${{").removesuffix("}}").strip()
    return "" if value is None else str(value)


def _breaks_in(loop: StepBase) -> bool:
    """Whether a step of this loop's body breaks it: nested steps count, a nested loop's do not."""
    pending = [step for nested in loop.sequences() for step in nested.steps]
    while pending:
        step = pending.pop()
        if step.break_if is not None:
            return True
        if not isinstance(step, ForEachStep | LoopStep):
            pending.extend(s for nested in step.sequences() for s in nested.steps)
    return False


def enclosing_loops(nodes: dict[str, Any]) -> dict[str, str]:
    """Each step's innermost enclosing for_each or loop, by static path (steps in none: absent).

    A static path is its ancestors' ids (and branch ids) joined by '.', so the nearest prefix
    that is a loop node is the one."""
    found: dict[str, str] = {}
    for path in nodes:
        parts = path.split(".")
        for end in range(len(parts) - 1, 0, -1):
            node = nodes.get(".".join(parts[:end]))
            if node is not None and node.kind in LOOP_KINDS:
                found[path] = node.path
                break
    return found


# --- the error shape -------------------------------------------------------------------

_CLASS = re.compile(r"^([A-Z][A-Za-z0-9_]*(?:\.[A-Z][A-Za-z0-9_]*)*): ")
_EXIT = re.compile(r"^exit code (\d+)")
_SIGNAL = re.compile(r"^killed by signal (SIG[A-Z0-9]+)")
_NODE_EXIT = re.compile(r"^node exited with code (\d+)")


def error_type(message: str) -> str:
    """The type of a step's recorded error, read from how every executor writes it.

    Python, JavaScript and SQL errors are ``Class: message`` (the exception's class, the
    error's name, psycopg's error class); a step that ran past its ``timeout`` is
    ``Timeout``; a command that exits non-zero is ``exit N``, one killed ``SIGKILL`` (the
    signal); whatever Millrace itself reports (a bad expression, a limit) is ``Error``.
    """
    if message.startswith("timed out after"):
        return "Timeout"
    for pattern, shape in ((_EXIT, "exit {}"), (_NODE_EXIT, "exit {}"), (_SIGNAL, "{}"), (_CLASS, "{}")):
        found = pattern.match(message)
        if found:
            return shape.format(found.group(1))
    if message.startswith("fail_if held"):
        return "FailIf"
    return "Error"


def error_shape(message: str | None) -> dict[str, str] | None:
    """``{type, message}``, what expressions see of an error (None: no error)."""
    if message is None:
        return None
    return {"type": error_type(message), "message": message}


def added_labels(template: Template, names: dict[str, Any], result: Any) -> dict[str, str]:
    """A step's ``labels:`` over its ``result``, as the strings its run keeps (raises ExpressionError)."""
    return {key: label_value(value) for key, value in template.render({**names, "result": result}).items()}


def retry_wanted(template: Template | None, names: dict[str, Any], error: str) -> bool:
    """Whether ``retry.if`` holds over ``error`` (no condition: always). A condition that
    cannot be evaluated does not hold: the failure goes on as if the attempts were used up."""
    if template is None:
        return True
    try:
        return bool(template.render({**names, "error": error_shape(error)}))
    except ExpressionError:
        return False
