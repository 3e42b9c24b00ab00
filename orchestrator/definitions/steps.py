"""The steps of a flow document as typed models: every step kind and the options any step takes.

Which kinds hold steps, and where, is ``StepBase.sequences``; ``walk_sequence`` walks them.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from orchestrator.definitions.approvals import Approval
from orchestrator.definitions.durations import DURATION_SCHEMA, Duration, Size
from orchestrator.definitions.labels import MAX_LABELS, LabelKey
from orchestrator.errors import did_you_mean

STEP_ID = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
FLOW_ID = r"^[a-z0-9_][a-z0-9_-]*(/[a-z0-9_][a-z0-9_-]*)*$"
SCRIPT_PATH = r"[a-z0-9_][a-z0-9_-]*(/[a-z0-9_][a-z0-9_-]*)*"
SCRIPT_REF = rf"^{SCRIPT_PATH}(@[1-9][0-9]*)?$"
INPUT_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
ARGUMENT_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"

StepId = Annotated[str, Field(pattern=STEP_ID, description="Unique in the flow; a Python identifier")]
FlowId = Annotated[str, Field(pattern=FLOW_ID, max_length=200)]
# An expression `${{ ... }}` or a literal; checked in validation.py where paths are known.
Value = Any


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Retry(Model):
    """Run a failing step again: ``attempts`` in all, waiting ``delay`` between them."""

    attempts: int = Field(ge=1, le=100)
    delay: Duration = 1.0
    backoff: Literal["constant", "exponential"] = "constant"
    max_delay: Duration = 3600.0
    if_: Value = Field(default=None, alias="if", description=(
        "retry only when this holds over `error` ({type, message}), e.g. ${{ error.type == 'Timeout' }}; "
        "otherwise the failure goes on as if the attempts were used up"))

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2, 3, ...)."""
        if self.backoff == "exponential":
            return min(self.delay * 2 ** (attempt - 2), self.max_delay)
        return min(self.delay, self.max_delay)


class Cache(Model):
    """Reuse a step's result for the same code and inputs within ``ttl`` (``cache: 1h`` is
    ``cache: {ttl: 1h}``)."""

    model_config = ConfigDict(json_schema_extra=lambda schema, _: _or_shorthand(schema, DURATION_SCHEMA))

    ttl: Duration

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return data if isinstance(data, dict) else {"ttl": data}


def _or_shorthand(schema: dict[str, Any], *shorthands: dict[str, Any]) -> None:
    """A model's JSON Schema that also accepts the shorthands its before-validator expands."""
    whole = dict(schema)
    schema.clear()
    schema["anyOf"] = [whole, *shorthands]


class StepLimits(Model):
    """What a step may use, past the worker's defaults and within the operator's maxima."""

    memory: Size | None = None
    processes: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    cpu: Duration | None = Field(default=None, description="CPU time, beside the wall-clock timeout")
    disk: Size | None = Field(default=None, description="its private temporary space")


Network = Literal["host", "none"]


@dataclass(frozen=True)
class Nested:
    """A list of steps inside a composite step: where it is (relative to the step, as JSON
    path parts), its label (a branch id, ``case N``, ``else``, ``do``) and, for a switch
    case, its condition."""

    where: tuple[str | int, ...]
    label: str
    steps: list[StepBase]
    condition: Any = None


class StepBase(Model):
    id: StepId
    summary: str | None = None
    with_: dict[str, Value] = Field(default_factory=dict, alias="with",
                                    json_schema_extra={"propertyNames": {"pattern": ARGUMENT_NAME}})
    if_: Value = Field(default=None, alias="if")
    retry: Retry | None = None
    timeout: Duration | None = None
    queue: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,100}$")] | None = None
    cache: Cache | None = None
    continue_on_error: bool = False
    limits: StepLimits | None = None
    network: Network | None = Field(default=None, description="none: no network at all (default: the flow's)")
    fail_if: Value = Field(default=None, description=(
        "after the step ran: fail it when this holds over `result` (its own result); the failure policy follows"))
    break_if: Value = Field(default=None, description=(
        "inside a for_each or loop, after the step ran: when this holds over `result`, the innermost loop ends "
        "(no new item or iteration starts; the rest of this item's steps do not run)"))
    stop_if: Value = Field(default=None, description=(
        "after the step succeeded: when this holds over `result`, the run ends succeeded with this result; "
        "whatever else of it still runs is cancelled and no later step starts (its finally steps still run)"),
        examples=["${{ result.count == 0 }}"])
    labels: dict[LabelKey, Value] = Field(default_factory=dict, max_length=MAX_LABELS, description=(
        "after the step ran: labels added to its run, evaluated over `result` (which stays the step's result)"),
        examples=[{"rows": "${{ result.count }}"}])

    def sequences(self) -> list[Nested]:
        """The step lists nested in this step, in document order (none for a plain step).

        This is the one place that says which step kinds hold steps and where."""
        return []

    @field_validator("with_")
    @classmethod
    def _with_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not re.match(ARGUMENT_NAME, name):
                raise ValueError(f"'{name}' is not a valid argument name (letters, digits, _)")
        return value


class PythonStep(StepBase):
    python: str = Field(description="Python source defining main(); its return value is the result")


class BashStep(StepBase):
    bash: str = Field(description="Bash script; `with` values arrive as environment variables")


class JavaScriptStep(StepBase):
    javascript: str = Field(description="JavaScript (an ES module) defining `main`; `with` values are matched "
                                        "to main's parameters by name; its (awaited) return value is the result")


class TypeScriptStep(StepBase):
    typescript: str = Field(description="TypeScript (an ES module) defining `main`; turned into JavaScript when "
                                        "the flow is saved (types stripped, not checked) and run as a "
                                        "`javascript` step")


class SqlStep(StepBase):
    sql: str = Field(description="One statement; `with` values are bound as %(name)s parameters, never "
                                 "interpolated")
    database: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description=(
        "the name of a secret holding a PostgreSQL URL; without it, Millrace's own database if "
        "MILLRACE_SQL_OWN_DATABASE allows"))


class ScriptStep(StepBase):
    script: Annotated[str, Field(pattern=SCRIPT_REF, max_length=210,
                                 description="A saved script's path, `@N` to pin version N (else the latest "
                                             "when the run starts)")]
    database: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                 description="for an SQL script: the secret holding its connection URL")


class SubflowStep(StepBase):
    flow: str = Field(description="A flow file path (.yaml/.yml/.json) or a registered flow id")


class Branch(Model):
    id: StepId
    steps: Annotated[list[Step], Field(min_length=1)]


class ParallelStep(StepBase):
    parallel: Annotated[list[Branch], Field(min_length=1)]

    def sequences(self) -> list[Nested]:
        return [Nested(("parallel", i, "steps"), branch.id, branch.steps) for i, branch in enumerate(self.parallel)]


class ForEachStep(StepBase):
    for_each: Value
    parallel: bool | Annotated[int, Field(ge=1, le=10000)] = True
    do: Annotated[list[Step], Field(min_length=1)]

    def sequences(self) -> list[Nested]:
        return [Nested(("do",), "do", self.do)]


class Case(Model):
    if_: Value = Field(alias="if")
    do: Annotated[list[Step], Field(min_length=1)]


class SwitchStep(StepBase):
    switch: Annotated[list[Case], Field(min_length=1)]
    else_: Annotated[list[Step], Field(min_length=1)] | None = Field(default=None, alias="else")

    def sequences(self) -> list[Nested]:
        cases = [Nested(("switch", i, "do"), f"case {i}", case.do, case.if_) for i, case in enumerate(self.switch)]
        return cases + ([Nested(("else",), "else", self.else_)] if self.else_ else [])


MAX_LOOP_DELAY_S = 600.0


class LoopBody(Model):
    """Run ``do`` again and again: ``until`` is checked after each iteration, ``while`` before
    each (exactly one of them); ``max_iterations`` bounds it; ``delay`` waits between
    iterations without holding a worker."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["until"]}, {"required": ["while"]}]})

    do: Annotated[list[Step], Field(min_length=1)]
    until: Value = Field(default=None, description=(
        "checked after each iteration, over its `steps.<id>` and `iteration`: the loop ends when it holds"))
    while_: Value = Field(default=None, alias="while", description=(
        "checked before each iteration (`iteration`: the one about to start; `steps.<id>`: the previous one's): "
        "the loop ends when it does not hold"))
    max_iterations: int = Field(ge=1, description="required: at most this many iterations (capped by "
                                                  "MILLRACE_MAX_LOOP_ITERATIONS); reaching it fails the step")
    delay: Duration | None = None

    @model_validator(mode="after")
    def _one_condition(self) -> LoopBody:
        if (self.until is None) == (self.while_ is None):
            raise ValueError("a loop has exactly one of `until:` (checked after each iteration) or `while:` "
                             "(checked before each), e.g. until: ${{ steps.check.result.done }}")
        if self.delay is not None and self.delay > MAX_LOOP_DELAY_S:
            raise ValueError(f"a loop's delay is at most {MAX_LOOP_DELAY_S:g}s (its next iteration is a message "
                             "held with a countdown); for longer waits put a `sleep:` step in `do`")
        return self


class LoopStep(StepBase):
    loop: LoopBody

    def sequences(self) -> list[Nested]:
        return [Nested(("loop", "do"), "do", self.loop.do)]


class ApprovalStep(StepBase):
    approval: Approval


class SleepStep(StepBase):
    sleep: Duration


# Exactly one of these keys names a step's kind. `for_each` comes before `parallel`
# because a for_each step uses `parallel` as an option.
KINDS: dict[str, type[StepBase]] = {
    "python": PythonStep,
    "bash": BashStep,
    "javascript": JavaScriptStep,
    "typescript": TypeScriptStep,
    "sql": SqlStep,
    "script": ScriptStep,
    "flow": SubflowStep,
    "for_each": ForEachStep,
    "parallel": ParallelStep,
    "switch": SwitchStep,
    "loop": LoopStep,
    "approval": ApprovalStep,
    "sleep": SleepStep,
}
EXECUTABLE_KINDS = frozenset({"python", "bash", "javascript", "typescript", "sql", "script"})


def step_kind(data: Any) -> str | None:
    """The kind of a raw or parsed step, or None when it names none."""
    if isinstance(data, StepBase):
        return next(kind for kind, cls in KINDS.items() if isinstance(data, cls))
    if isinstance(data, dict):
        if "for_each" in data:
            return "for_each"
        return next((kind for kind in KINDS if kind in data), None)
    return None


def _check_kind(data: Any) -> Any:
    if not isinstance(data, dict):
        return data
    named = [kind for kind in KINDS if kind in data and not (kind == "parallel" and "for_each" in data)]
    if len(named) > 1:
        raise ValueError(f"a step has exactly one kind, this one names {' and '.join(named)}")
    if not named:
        known = set(StepBase.model_fields) | {"with", "if", "do", "else", "database"}
        unknown = sorted(k for k in data if k not in known)
        if unknown:
            raise ValueError(f"unknown step kind '{unknown[0]}'{did_you_mean(unknown[0], KINDS)}; expected one "
                             f"of {', '.join(KINDS)}")
        raise ValueError(f"step has no kind; expected one of {', '.join(KINDS)}")
    return data


Step = Annotated[
    Union[tuple(Annotated[cls, Tag(kind)] for kind, cls in KINDS.items())],  # noqa: UP007
    Discriminator(step_kind),
    BeforeValidator(_check_kind),
]


def walk_sequence(steps: list[StepBase], prefix: tuple[str | int, ...]) -> Iterator[tuple[StepBase, tuple]]:
    """The steps of a list and of everything nested in them, with their JSON path parts."""
    for i, step in enumerate(steps):
        path = (*prefix, i)
        yield step, path
        for nested in step.sequences():
            yield from walk_sequence(nested.steps, (*path, *nested.where))


Branch.model_rebuild()
ForEachStep.model_rebuild()
Case.model_rebuild()
SwitchStep.model_rebuild()
LoopBody.model_rebuild()
LoopStep.model_rebuild()
