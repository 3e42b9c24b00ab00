"""What the API answers, as pydantic models: views build their answers from these and the
OpenAPI document describes every 2xx with them, so a generated client's types and the bytes
on the wire are the same thing."""
from __future__ import annotations

import datetime as dt
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

from orchestrator.execution.lifecycle import RunStatus, StepStatus
from orchestrator.store.access import Role

Item = TypeVar("Item")


class Answer(BaseModel):
    """Times are ISO 8601 with an offset (UTC)."""


class Page(Answer, Generic[Item]):
    """One page of a list: pass ``next_cursor`` back as ``cursor`` for the next; null on the last."""

    items: list[Item]
    next_cursor: str | None = Field(description="the `cursor` of the next page; null when this is the last")


class Links(Answer):
    self: str = Field(description="this object's URL")


class StepAttempt(Answer):
    """One attempt of one step (or of one for_each item)."""

    path: str = Field(description="where the step is in the flow: `build`, `each[2].upload`, `pick.fast.run`")
    step_id: str
    kind: str = Field(description="python, bash, javascript, typescript, sql, script, approval, for_each, ...")
    item_index: int | None = Field(description="the for_each item this attempt is for, or null")
    attempt: int = Field(description="1 for the first try, then 2, 3... for retries")
    status: StepStatus
    deliveries: int = Field(description="how often a worker received it (more than 1 after a worker died)")
    worker: str | None
    result: Any = Field(description="the step's return value (JSON), null until it succeeded")
    error: str | None
    error_type: str | None = Field(default=None, description=(
        "the error's type as `steps.<id>.error.type` and `retry.if` see it: the exception's class (ValueError), "
        "Timeout, `exit 3`, SIGKILL, ...; null without an error"))
    broke_at: str | None = Field(default=None, description=(
        "a for_each or loop that a break_if ended: the path of the step that broke it (later items never started)"))
    cached: bool = Field(description="the result came from the step's cache; nothing ran")
    reused_from: str | None = Field(default=None, description=(
        "a restart reused this outcome: the id of the run that recorded it (nothing ran in this run; its times "
        "are when it was reused)"))
    created_at: dt.datetime | None = Field(description="when it was sent to the workers")
    started_at: dt.datetime | None = Field(description="when a worker started it")
    finished_at: dt.datetime | None


class RunSummary(Answer):
    """A run as a list shows it."""

    id: str
    flow: str
    version: int
    status: RunStatus
    trigger: str = Field(description="api, webhook, schedule, event, subflow, restart, cli...")
    error: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    labels: dict[str, str] = Field(description="its flow's, its start's, its parent's and its steps' labels")
    links: Links


class Run(RunSummary):
    """A run with its inputs, result, origin and every step attempt."""

    inputs: dict[str, Any]
    result: Any = Field(description="the last step's result (JSON), null until the run succeeded")
    parent_run_id: str | None = Field(description="the run whose subflow step started this one")
    restarted_from: str | None = Field(description="the run this one restarted")
    stopped_at: str | None = Field(default=None, description=(
        "the path of the step whose stop_if ended the run (its result is the run's); null otherwise"),
        examples=["each[2].check"])
    ending: RunStatus | None = Field(default=None, description=(
        "while the run's finally steps run (its status still running): the status it ends with after them"))
    priority: int | None = Field(description="0-9: its messages' RabbitMQ priority (null: none)")
    debounce_until: dt.datetime | None = Field(description=(
        "a debounced run: until then starts with its flow and key are this run; it starts then (null: not debounced)"))
    steps: list[StepAttempt] = Field(description="every attempt, in the order they were made")


class RunAccepted(Answer):
    """A run that goes on: follow ``links.self`` (or the Location header)."""

    id: str
    status: RunStatus
    restarted_from: str | None = None
    links: Links


class AttemptLogs(Answer):
    attempt: int
    status: StepStatus
    logs: str = Field(description="stdout and stderr as captured, secrets masked")


class StepLogs(Answer):
    run: str
    step: str
    attempts: list[AttemptLogs]


class DecisionMade(Answer):
    run: str
    step: str
    decision: Literal["approved", "rejected"]
    result: Any = Field(default=None, description="the step's result when approved: the form's values, typed")


class ApprovalLinks(Answer):
    """Links a person can open to decide without a token: each works once, until `expires_at`."""

    approver: str = Field(description="who the links decide as: `role:<name>` or `token:<id>`")
    resume: str = Field(description="a page with the form: approve with its values, or reject")
    cancel: str = Field(description="a page that cancels the run")
    expires_at: dt.datetime


class FormFieldAnswer(Answer):
    type: Literal["string", "integer", "number", "boolean", "enum"]
    required: bool
    default: Any
    description: str | None
    enum: list[Any] | None


class WaitingApproval(Answer):
    """An approval step waiting for a decision: its form, who may decide, and its links."""

    step: str = Field(description="the step's path")
    description: str | None
    form: dict[str, FormFieldAnswer] = Field(description="the values approving takes (`values` of approve)")
    approvers: dict[str, list[Any]] | None = Field(description="{roles, tokens}; null: any token that may operate")
    self_approval: bool
    on_timeout: Literal["reject", "approve"]
    timeout_at: dt.datetime | None = Field(description="when the timeout decides it, or null")
    links: ApprovalLinks | None = Field(description="links for `?approver=` (default: the caller's token), or null")
    links_refused: str | None = Field(default=None, description="why `links` is null")


class ApprovalList(Answer):
    items: list[WaitingApproval]


class SavedFlow(Answer):
    """A saved flow as a list shows it."""

    id: str
    latest_version: int
    updated_at: dt.datetime


class FlowVersion(Answer):
    """One saved version of a flow: the parsed document and the text it was saved as."""

    id: str
    version: int
    created_at: dt.datetime
    document: dict[str, Any] = Field(description="the flow as parsed (the `Flow` schema, as JSON)")
    source: str = Field(description="the document exactly as it was sent")
    links: Links


class VersionDiff(Answer):
    """A version with a unified diff of its text against the version before."""

    version: int
    created_at: dt.datetime
    diff: str


class Validated(Answer):
    valid: Literal[True]
    id: str
    steps: int


class SavedScript(Answer):
    path: str
    latest_version: int
    updated_at: dt.datetime


class Script(Answer):
    """One saved version of a script with the input schema read from its code."""

    path: str
    version: int
    language: Literal["python", "bash", "javascript", "typescript", "sql"]
    summary: str | None
    code: str
    input_schema: dict[str, Any] = Field(description="JSON Schema of `main`'s parameters")
    dependencies: dict[str, Any] | None = Field(description="Python: requirements and their lock; else null")
    created_at: dt.datetime
    created_by: str
    links: Links


class ScheduleLinks(Links):
    fires: str = Field(description="the schedule's decided slots")


class Schedule(Answer):
    id: str
    flow: str
    trigger: str | None = Field(description="the trigger's id when declared in the flow, else null")
    cron: str
    timezone: str
    inputs: dict[str, Any]
    labels: dict[str, str] = Field(description="put on every run it starts, over the flow's")
    catchup: Literal["none", "last", "all"]
    max_catchup: int
    overlap: Literal["allow", "skip", "queue"]
    enabled: bool
    paused_until: dt.datetime | None
    next_fire_at: dt.datetime
    declared_in_flow: bool
    next: list[dt.datetime] | None = Field(default=None, description="the next fire times, when asked for")
    links: ScheduleLinks


class Fire(Answer):
    """A decided slot of a schedule."""

    fire_at: dt.datetime
    status: Literal["started", "skipped", "missed", "queued"]
    run_id: str | None
    reason: str | None
    recorded_at: dt.datetime
    recorded_by: str


class EventTriggerLinks(Links):
    fires: str = Field(description="the messages it received: the runs they started, or why none")


class EventTrigger(Answer):
    """A flow's event trigger (`amqp:`, `mqtt:`, ...) and what the listener last said of its connection."""

    id: str
    flow: str
    trigger: str = Field(description="the trigger's id in its flow")
    kind: str = Field(description="amqp, mqtt, nats, redis or postgres")
    source: dict[str, Any] = Field(description="the kind's mapping as declared (`url` names a secret, never a URL)")
    inputs: dict[str, Any] | None = Field(description="the inputs mapping; null: the message body is the inputs")
    enabled: bool
    state: Literal["pending", "connected", "disconnected", "stale"] = Field(description=(
        "pending: no listener has reported it yet; stale: connected when last reported, but no "
        "listener has said so for a while (none runs, or it lost the lead)"))
    state_detail: str | None = Field(description="why it is disconnected, credentials masked")
    state_at: dt.datetime | None = Field(description="when the listener last reported it")
    fired: int = Field(description="messages that started a run")
    refused: int = Field(description="messages that started none (see its fires)")
    links: EventTriggerLinks


class TriggerFire(Answer):
    """One message an event trigger received."""

    id: int
    message_key: str = Field(description="the key that makes a redelivery start nothing new")
    status: Literal["started", "refused"]
    run_id: str | None
    reason: str | None = Field(description="why a refused message started no run")
    topic: str | None = Field(description="where it arrived: queue, topic, subject, stream or table")
    recorded_at: dt.datetime


class Backfilled(Answer):
    schedule: str
    started: list[str] = Field(description="the ids of the runs started")
    already_done: int = Field(description="slots in the range that had run or are queued")


class AuditEvent(Answer):
    id: int
    at: dt.datetime
    actor: str
    action: str = Field(description="e.g. run.started, step.succeeded, flow.saved, token.created")
    target: str = Field(description="e.g. run:<id>, flow:<id>, token:<name>")
    details: dict[str, Any] | None


class Variable(Answer):
    """A variable with its value, or a secret without (``value`` is then absent)."""

    name: str
    secret: bool
    value: Any = Field(default=None, description="the value; never there for a secret")
    updated_at: dt.datetime


class Token(Answer):
    id: int
    name: str
    role: Role
    secrets: list[str]
    created_at: dt.datetime
    revoked_at: dt.datetime | None


class NewTokenMade(Answer):
    id: int
    name: str
    role: Role
    secrets: list[str]
    token: str = Field(description="the token itself: shown in this answer and nowhere else")


class Webhook(Answer):
    flow: str
    url: str
    token: str = Field(description="the webhook's token: shown in this answer and nowhere else")


class Health(Answer):
    status: Literal["ok"]


class Ready(Answer):
    status: Literal["ready", "degraded"] = Field(description=(
        "ready: the database and the broker answer and every event trigger is connected; degraded: they "
        "answer, but an event trigger is not consuming (see `checks`), which runs started through the API "
        "do not need"))
    checks: dict[str, str]


class RunPage(Page[RunSummary]):
    pass


class FlowPage(Page[SavedFlow]):
    pass


class ScriptPage(Page[SavedScript]):
    pass


class VersionPage(Page[VersionDiff]):
    pass


class SchedulePage(Page[Schedule]):
    pass


class FirePage(Page[Fire]):
    pass


class EventTriggerPage(Page[EventTrigger]):
    pass


class TriggerFirePage(Page[TriggerFire]):
    pass


class AuditPage(Page[AuditEvent]):
    pass


class VariablePage(Page[Variable]):
    pass


class TokenPage(Page[Token]):
    pass
