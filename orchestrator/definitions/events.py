"""Event triggers: a flow started by each message of a broker or a database, as typed models.

Saving a flow stores them as rows of ``event_triggers`` (``store/event_triggers.py``); the
listener (``orchestrator/listeners/``) consumes them. The checks that need the
installation's own names (which queues are Millrace's) are :func:`check_reserved_names`,
called when a flow is saved.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, model_validator

from orchestrator.definitions.steps import Model
from orchestrator.errors import Problem

EVENT_KINDS = ("amqp",)
# Names a secret may have (``store/variables.NAME``): the secret holds the connection URL.
SecretName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,99}$",
                                  description="the name of a secret holding the connection URL")]
Name = Annotated[str, Field(min_length=1, max_length=255)]
_URL = "a secret holding the URL; default: "


class AmqpSource(Model):
    """A queue to consume, or an exchange to bind a queue of the trigger's own to."""

    queue: Name | None = Field(default=None, description="an existing queue (declared durable if it is missing)")
    exchange: Name | None = Field(default=None, description="bind a durable queue of the trigger's own to it")
    routing_key: Annotated[str, Field(max_length=255)] = Field(default="#", description="with `exchange:`")
    url: SecretName | None = Field(default=None, description=_URL + "Millrace's own broker")

    @model_validator(mode="after")
    def _queue_or_exchange(self) -> AmqpSource:
        if (self.queue is None) == (self.exchange is None):
            raise ValueError("give `queue:` or `exchange:` (with `routing_key:`), not both and not neither")
        return self


_INPUTS = ("the run's inputs; expressions read `trigger.body` (JSON, or text), `trigger.headers` and "
           "`trigger.topic`; default: the body, a JSON object, is the inputs")
_EVENT_ID = "default: its kind and position among the flow's triggers of that kind (amqp-1, amqp-2)"


class EventTrigger(Model):
    """What every event trigger has besides its source."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")] | None = Field(
        default=None, description=_EVENT_ID)  # always set once Flow has read it
    inputs: dict[str, Any] | None = Field(default=None, description=_INPUTS)
    enabled: bool = True

    @property
    def kind(self) -> str:
        return next(k for k in EVENT_KINDS if k in type(self).model_fields)

    @property
    def source(self) -> Model:
        return getattr(self, self.kind)


class AmqpTrigger(EventTrigger):
    """Run the flow for each message of an AMQP queue (exactly once: `message_id` is the key)."""

    amqp: AmqpSource


EVENT_MODELS: dict[str, type[EventTrigger]] = {"amqp": AmqpTrigger}

# Celery's broadcast and event names (with the installation's prefix before them).
_CELERY_NAMES = ("celeryev*", "celery.pidbox", "reply.celery.pidbox", "*.celery.pidbox", "celery@*", "celery")


@dataclass(frozen=True)
class OwnNames:
    """The installation's own names no trigger may consume: its default queue and queue
    prefix (``MILLRACE_DEFAULT_QUEUE``, ``MILLRACE_QUEUE_PREFIX``)."""

    default_queue: str = "millrace"
    prefix: str = ""


def check_own_names(triggers: list[Any], step_queues: set[str], own: OwnNames) -> list[Problem]:
    """An amqp trigger may not consume Millrace's own queues (the default queue, the queues
    the flow's steps name, any name under the installation's prefix) nor Celery's event and
    control queues and exchanges: it would take tasks away from the workers."""
    problems = []
    default_queue, prefix = own.default_queue, own.prefix
    for i, trigger in enumerate(triggers):
        if not isinstance(trigger, AmqpTrigger):
            continue
        for kind in ("queue", "exchange"):
            name = getattr(trigger.amqp, kind)
            if name is None:
                continue
            bare = name[len(prefix):] if prefix and name.startswith(prefix) else name
            if (name in {default_queue, *step_queues} or (prefix and name.startswith(prefix))
                    or any(fnmatch.fnmatchcase(bare, pattern) for pattern in _CELERY_NAMES)):
                problems.append(Problem(f"triggers[{i}].amqp.{kind}", (
                    f"'{name}' is one of Millrace's or Celery's own {kind}s; a trigger consuming it would take "
                    f"tasks or events from the workers: publish the events to a {kind} of your own")))
    return problems
