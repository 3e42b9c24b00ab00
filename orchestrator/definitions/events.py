"""Event triggers: a flow started by each message of a broker or a database, as typed models.

Saving a flow stores them as rows of ``event_triggers`` (``store/event_triggers.py``); the
listener (``orchestrator/listeners/``) consumes them. The checks that need the
installation's own names (which queues and tables are Millrace's) are :func:`check_own_names`,
called when a flow is saved.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from orchestrator.definitions.steps import Model
from orchestrator.errors import Problem

EVENT_KINDS = ("amqp", "mqtt", "nats", "redis", "postgres")
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


class MqttSource(Model):
    """A topic filter subscribed to with QoS 1 in a persistent session of the trigger's own."""

    topic: Annotated[str, Field(min_length=1, max_length=65535, examples=["sensors/+/reading"])] = Field(
        description="an MQTT topic filter (`+` one level, `#` the rest)")
    url: SecretName = Field(description="a secret holding the URL: mqtt://user:password@host:1883 (mqtts:// for TLS)")


# JetStream names: no whitespace, '.', '*' or '>' (subjects may have dots and wildcards).
_StreamName = Annotated[str, Field(pattern=r"^[^\s.*>]{1,255}$")]


class NatsSource(Model):
    """A JetStream stream read through a durable consumer of the trigger's own."""

    subject: Annotated[str, Field(pattern=r"^\S{1,255}$", examples=["orders.>"])] = Field(
        description="the subjects of the stream this trigger takes (`*` one token, `>` the rest)")
    stream: _StreamName = Field(description="an existing JetStream stream holding those subjects")
    url: SecretName = Field(description="a secret holding the URL: nats://user:password@host:4222")


class RedisSource(Model):
    """A Redis stream read through a consumer group of the trigger's own."""

    stream: Name = Field(description="the stream's key (made, with the group, when missing)")
    url: SecretName = Field(description="a secret holding the URL: redis://:password@host:6379/0")


ROW_EVENTS = ("insert", "update", "delete")


class PostgresSource(Model):
    """A table's row changes through an outbox table its trigger fills (exactly once), or a
    LISTEN/NOTIFY channel (at most once: a notification sent while nobody listens is gone)."""

    table: Annotated[str, Field(pattern=r"^([A-Za-z_][A-Za-z0-9_$]{0,62}\.)?[A-Za-z_][A-Za-z0-9_$]{0,62}$",
                                examples=["orders", "shop.orders"])] | None = Field(
        default=None, description="a table Millrace puts a trigger on (`schema.table`; else found on the search path)")
    on: Annotated[list[Literal["insert", "update", "delete"]], Field(min_length=1)] = Field(
        default=["insert"], description="with `table:`: the changes that start a run")
    channel: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")] | None = Field(
        default=None, description="LISTEN on this channel instead: at most once, each payload a message")
    url: SecretName | None = Field(default=None, description=_URL + "Millrace's own database")

    @model_validator(mode="after")
    def _table_or_channel(self) -> PostgresSource:
        if (self.table is None) == (self.channel is None):
            raise ValueError("give `table:` (with `on:`) or `channel:`, not both and not neither")
        if len(set(self.on)) != len(self.on):
            raise ValueError("`on:` names a change twice")
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


class MqttTrigger(EventTrigger):
    """Run the flow for each message on an MQTT topic (exactly once with a `message_id` user
    property; without one, the same topic and payload within the dedupe window are one message)."""

    mqtt: MqttSource


class NatsTrigger(EventTrigger):
    """Run the flow for each message of a JetStream stream (exactly once: the stream sequence is the key)."""

    nats: NatsSource


class RedisTrigger(EventTrigger):
    """Run the flow for each entry of a Redis stream (exactly once: the entry id is the key)."""

    redis: RedisSource


class PostgresTrigger(EventTrigger):
    """Run the flow for each row change of a table (exactly once: the outbox row's id is the key)."""

    postgres: PostgresSource


EVENT_MODELS: dict[str, type[EventTrigger]] = {
    "amqp": AmqpTrigger, "mqtt": MqttTrigger, "nats": NatsTrigger, "redis": RedisTrigger,
    "postgres": PostgresTrigger}

# Celery's broadcast and event names (with the installation's prefix before them).
_CELERY_NAMES = ("celeryev*", "celery.pidbox", "reply.celery.pidbox", "*.celery.pidbox", "celery@*", "celery")


@dataclass(frozen=True)
class OwnNames:
    """The installation's own names no trigger may consume: its default queue and queue
    prefix (``MILLRACE_DEFAULT_QUEUE``, ``MILLRACE_QUEUE_PREFIX``)."""

    default_queue: str = "millrace"
    prefix: str = ""
    tables: frozenset[str] = frozenset()  # Millrace's own tables, in its database (a postgres trigger's default)


def check_own_names(triggers: list[Any], step_queues: set[str], own: OwnNames) -> list[Problem]:
    """An amqp trigger may not consume Millrace's own queues (the default queue, the queues
    the flow's steps name, any name under the installation's prefix) nor Celery's event and
    control queues and exchanges: it would take tasks away from the workers. A postgres
    trigger on Millrace's own database may not watch Millrace's own tables (each run it
    started would write rows that start runs)."""
    problems = []
    default_queue, prefix = own.default_queue, own.prefix
    for i, trigger in enumerate(triggers):
        if isinstance(trigger, PostgresTrigger) and trigger.postgres.table and trigger.postgres.url is None:
            schema, _, table = trigger.postgres.table.rpartition(".")
            if schema == "millrace_events" or (schema in ("", "public") and table in own.tables):
                problems.append(Problem(f"triggers[{i}].postgres.table", (
                    f"'{trigger.postgres.table}' is one of Millrace's own tables: watch a table of your own, "
                    "or give `url:` for another database")))
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
