"""Which source a trigger's kind reads from, and with what URL: a secret it names
(decrypted here, in the listener, which holds MILLRACE_SECRET_KEY), else the default."""
from __future__ import annotations

import re

from sqlalchemy import Engine

from config.settings import Settings
from orchestrator.errors import FlowError
from orchestrator.listeners.lanes import Source
from orchestrator.store import variables
from orchestrator.store.event_triggers import EventTriggerRow, broker_name


def connection_url(engine: Engine, settings: Settings, row: EventTriggerRow) -> str:
    """The URL a trigger connects to: its `url:` secret's value, or for amqp Millrace's own
    broker and for postgres Millrace's own database (mqtt, nats and redis name one always)."""
    name = row.source.get("url")
    if name is None:
        if row.kind == "postgres":
            return libpq_url(settings.database_url)
        return settings.broker_url
    _, found = variables.resolve(engine, settings.secret_keys, frozenset(), frozenset({name}))
    url = found[name]
    if not isinstance(url, str):
        raise FlowError(f"secret '{name}' must hold a URL as text")
    return libpq_url(url) if row.kind == "postgres" else url


def libpq_url(url: str) -> str:
    """A PostgreSQL URL as psycopg connects to it (SQLAlchemy's ``postgresql+psycopg://`` too)."""
    return re.sub(r"^postgres(?:ql)?\+\w+://", "postgresql://", url)


def make_source(engine: Engine, settings: Settings, row: EventTriggerRow) -> tuple[Source, str | None]:
    """A source for ``row`` (not yet open), and the URL it will connect to."""
    url = connection_url(engine, settings, row)
    names = broker_name(row.id, row.kind)
    if row.kind == "amqp":
        from orchestrator.listeners.amqp import AmqpSource

        return AmqpSource(url, row.source, names), url
    if row.kind == "mqtt":
        from orchestrator.listeners.mqtt import MqttSource

        return MqttSource(url, row.source, names), url
    if row.kind == "nats":
        from orchestrator.listeners.jetstream import JetStreamSource

        return JetStreamSource(url, row.source, names), url
    if row.kind == "redis":
        from orchestrator.listeners.redis_streams import RedisStreamSource

        return RedisStreamSource(url, row.source, names), url
    if row.kind == "postgres":
        from orchestrator.listeners.postgres import PostgresChannel, PostgresTable

        if row.source.get("channel"):
            return PostgresChannel(url, row.source["channel"], row.id), url
        return PostgresTable(url, row.source, row.id), url
    raise FlowError(f"no listener for {row.kind} triggers")


def remove_source(engine: Engine, settings: Settings, row: EventTriggerRow) -> None:
    """Undo what a removed trigger made in a database of the user's: a postgres table's row
    trigger and its outbox rows (a broker's queue, group or session is left to its owner)."""
    if row.kind == "postgres" and row.source.get("table"):
        from orchestrator.listeners.postgres import remove

        remove(connection_url(engine, settings, row), row.id)
