"""Which source a trigger's kind reads from, and with what URL: a secret it names
(decrypted here, in the listener, which holds MILLRACE_SECRET_KEY), else the default."""
from __future__ import annotations

from sqlalchemy import Engine

from config.settings import Settings
from orchestrator.errors import FlowError
from orchestrator.listeners.lanes import Source
from orchestrator.store import variables
from orchestrator.store.event_triggers import EventTriggerRow


def connection_url(engine: Engine, settings: Settings, row: EventTriggerRow) -> str:
    """The URL a trigger connects to: its `url:` secret's value, or Millrace's own broker."""
    name = row.source.get("url")
    if name is None:
        return settings.broker_url
    _, found = variables.resolve(engine, settings.secret_keys, frozenset(), frozenset({name}))
    url = found[name]
    if not isinstance(url, str):
        raise FlowError(f"secret '{name}' must hold a URL as text")
    return url


def make_source(engine: Engine, settings: Settings, row: EventTriggerRow) -> tuple[Source, str | None]:
    """A source for ``row`` (not yet open), and the URL it will connect to."""
    url = connection_url(engine, settings, row)
    names = f"millrace.trigger.{row.id}"  # the broker-side names this trigger keeps, stable across restarts
    if row.kind == "amqp":
        from orchestrator.listeners.amqp import AmqpSource

        return AmqpSource(url, row.source, names), url
    raise FlowError(f"no listener for {row.kind} triggers")
