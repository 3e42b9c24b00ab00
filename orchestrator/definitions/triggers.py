"""What starts a flow besides a person or a client: its triggers, as typed models.

Saving a flow stores them as schedules and flow triggers (``store/triggers.py``).
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from orchestrator.definitions.events import (
    EVENT_KINDS,
    AmqpTrigger,
    EventTrigger,
    MqttTrigger,
    NatsTrigger,
    PostgresTrigger,
    RedisTrigger,
)
from orchestrator.definitions.labels import Labels
from orchestrator.definitions.steps import FlowId, Model

CATCHUP = ("none", "last", "all")
OVERLAP = ("allow", "skip", "queue")


TriggerId = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")]
_TRIGGER_ID = "default: its kind and position among the flow's triggers of that kind (cron-1, cron-2, flow-1)"


class CronTrigger(Model):
    """Run the flow on a cron schedule (kept in sync with ``/api/v1/schedules``)."""

    id: TriggerId | None = Field(default=None, description=_TRIGGER_ID)  # always set once Flow has read it
    cron: str = Field(description="5 fields, 6 with seconds first, or @hourly/@daily/@weekly/@monthly/@yearly")
    timezone: str = Field(default="UTC", description="IANA time zone the fields are read in")
    inputs: dict[str, Any] = Field(default_factory=dict)
    labels: Labels = Field(default_factory=dict)
    catchup: Literal["none", "last", "all"] = Field(
        default="last", description="slots missed while no scheduler ran: skip them, run the last, or run all")
    max_catchup: int = Field(default=100, ge=1, le=10_000, description="with catchup: all, at most this many")
    overlap: Literal["allow", "skip", "queue"] = Field(
        default="allow", description="when the previous scheduled run is still going")
    enabled: bool = True


class FlowTrigger(Model):
    """Run the flow when a run of another flow ends in one of ``status``."""

    id: TriggerId | None = Field(default=None, description=_TRIGGER_ID)  # always set once Flow has read it
    flow: FlowId
    status: Annotated[list[Literal["succeeded", "failed", "cancelled"]], Field(min_length=1)] = ["succeeded"]
    inputs: dict[str, Any] = Field(default_factory=dict, description=(
        "the new run's inputs; expressions read `trigger.run_id`, `.flow`, `.status`, `.result`, `.error`"))


_KINDS = ("cron", "flow", *EVENT_KINDS)


def _trigger_kind(data: Any) -> str | None:
    if isinstance(data, CronTrigger | FlowTrigger):
        return "cron" if isinstance(data, CronTrigger) else "flow"
    if isinstance(data, EventTrigger):
        return data.kind
    if isinstance(data, dict):
        return next((kind for kind in _KINDS if kind in data), None)
    return None


Trigger = Annotated[
    Annotated[CronTrigger, Tag("cron")] | Annotated[FlowTrigger, Tag("flow")]
    | Annotated[AmqpTrigger, Tag("amqp")] | Annotated[MqttTrigger, Tag("mqtt")]
    | Annotated[NatsTrigger, Tag("nats")] | Annotated[RedisTrigger, Tag("redis")]
    | Annotated[PostgresTrigger, Tag("postgres")],
    Discriminator(_trigger_kind, custom_error_type="trigger_kind", custom_error_message=(
        "a trigger has one of `cron:`, `flow:`, `amqp:`, `mqtt:`, `nats:`, `redis:` or `postgres:`")),
]


def with_trigger_ids(data: Any) -> Any:
    """A trigger without an id gets one by its kind and position, so editing its
    expression keeps its schedule's fire history and pause state."""
    if not isinstance(data, dict) or not isinstance(data.get("triggers"), list):
        return data
    named = {t.get("id") for t in data["triggers"] if isinstance(t, dict) and t.get("id") is not None}
    counts: dict[str, int] = {}
    triggers = []
    for trigger in data["triggers"]:
        kind = _trigger_kind(trigger)
        if kind is not None:
            counts[kind] = counts.get(kind, 0) + 1
            if isinstance(trigger, dict) and trigger.get("id") is None:
                while f"{kind}-{counts[kind]}" in named:  # a number a named trigger took: the next
                    counts[kind] += 1
                trigger = {**trigger, "id": f"{kind}-{counts[kind]}"}
        triggers.append(trigger)
    return {**data, "triggers": triggers}
