"""The flow document as typed models: its inputs, triggers, concurrency and steps.

The steps are ``steps.py``, the triggers ``triggers.py``; parsing text into these models is
``parser.py``; checks across steps (ids, references, expressions) are ``validation.py``.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from orchestrator.definitions.steps import INPUT_NAME, FlowId, Model, Network, Step, StepBase, StepLimits, walk_sequence
from orchestrator.definitions.triggers import Trigger, with_trigger_ids


class InputSpec(Model):
    """One input of a flow, a JSON-Schema subset."""

    type: Literal["string", "integer", "number", "boolean", "array", "object"] = "string"
    format: Literal["date", "date-time", "email", "uri"] | None = None
    description: str | None = None
    default: Any = None
    enum: list[Any] | None = None
    items: InputSpec | None = None
    minimum: float | None = None
    maximum: float | None = None

    @property
    def required(self) -> bool:
        return "default" not in self.model_fields_set


class Concurrency(Model):
    limit: int = Field(ge=1)
    key: str | None = None
    on_limit: Literal["queue", "cancel", "fail"] = "queue"


class Flow(Model):
    """A flow document."""

    id: FlowId
    summary: str | None = None
    description: str | None = None
    inputs: dict[Annotated[str, Field(pattern=INPUT_NAME)], InputSpec] = Field(default_factory=dict)
    triggers: list[Trigger] = Field(default_factory=list)
    concurrency: Concurrency | None = None
    network: Network | None = Field(default=None, description="its steps' network (default: the worker's)")
    limits: StepLimits | None = Field(default=None, description="its steps' limits, unless a step says")
    steps: Annotated[list[Step], Field(min_length=1)]
    on_failure: list[Step] = Field(default_factory=list, description=(
        "steps run when the run fails, with the error in ${{ run.error }}"))
    finally_: list[Step] = Field(default_factory=list, alias="finally", description=(
        "steps run after the others end, whether the run succeeded, failed (after on_failure) or was cancelled; "
        "${{ run.status }} and ${{ run.error }} say how it went; a failing finally step fails a succeeded run"),
        examples=[[{"id": "cleanup", "bash": "echo \"run ended $STATUS\"", "with": {"STATUS": "${{ run.status }}"}}]])

    @model_validator(mode="before")
    @classmethod
    def _trigger_ids(cls, data: Any) -> Any:
        return with_trigger_ids(data)

    def walk(self) -> Iterator[tuple[StepBase, tuple[str | int, ...]]]:
        """Every step, nested ones included, in document order, with its JSON path parts."""
        for key, steps in (("steps", self.steps), ("on_failure", self.on_failure), ("finally", self.finally_)):
            yield from walk_sequence(steps, (key,))


Flow.model_rebuild()
