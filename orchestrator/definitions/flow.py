"""The flow document as typed models: its inputs, triggers, concurrency and steps.

The steps are ``steps.py``, the triggers ``triggers.py``; parsing text into these models is
``parser.py``; checks across steps (ids, references, expressions) are ``validation.py``.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from orchestrator.definitions.durations import Duration
from orchestrator.definitions.labels import Labels
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


Priority = Annotated[int, Field(ge=0, le=9, description=(
    "0 (the default) to 9: a queued run of higher priority is taken before lower ones (RabbitMQ priority "
    "queues; ignored on quorum queues)"), examples=[5])]


class Concurrency(Model):
    """How many runs at once (``limit``, per ``key``) and how close starts coalesce (``debounce``)."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [{"required": ["limit"]}, {"required": ["debounce"]}]})

    limit: int | None = Field(default=None, ge=1, description="at most this many active runs per key value")
    key: str | None = Field(default=None, description="an expression over `inputs`: limits and debounces count "
                                                      "per value", examples=["${{ inputs.customer }}"])
    on_limit: Literal["queue", "cancel", "fail"] = "queue"
    debounce: Duration | None = Field(default=None, description=(
        "starts with the same key within this window (from the first) are one run, with the latest inputs, "
        "started at the window's end; every caller gets its id"), examples=["30s"])

    @model_validator(mode="after")
    def _something(self) -> Concurrency:
        if self.limit is None and not self.debounce:
            raise ValueError("concurrency needs `limit`, `debounce`, or both")
        return self


class Retention(Model):
    """How long the flow's finished runs are kept before the scheduler's leader purges them."""

    keep: Duration = Field(gt=0, description=(
        "finished runs (with their steps, logs and owed sends) older than this, by when they finished, are "
        "purged; over MILLRACE_RETENTION for this flow's runs, and never within the idempotency window"),
        examples=["30d"])


class Flow(Model):
    """A flow document."""

    id: FlowId
    summary: str | None = None
    description: str | None = None
    inputs: dict[Annotated[str, Field(pattern=INPUT_NAME)], InputSpec] = Field(default_factory=dict)
    triggers: list[Trigger] = Field(default_factory=list)
    concurrency: Concurrency | None = None
    labels: Labels = Field(default_factory=dict)
    priority: Priority | None = None
    network: Network | None = Field(default=None, description="its steps' network (default: the worker's)")
    limits: StepLimits | None = Field(default=None, description="its steps' limits, unless a step says")
    retention: Retention | None = Field(default=None, description=(
        "how long its finished runs are kept (default: MILLRACE_RETENTION, forever unless set); a run and its "
        "subflow runs are purged together, by the top run's flow"))
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
