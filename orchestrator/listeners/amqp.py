"""AMQP sources (kombu): a queue consumed as it is, or a durable queue of the trigger's own
bound to an exchange. A message's key is its ``message_id`` property; one without is known
by its content's hash (``services/events.py``)."""
from __future__ import annotations

from typing import Any

import kombu
from kombu.exceptions import ChannelError

from orchestrator.listeners.lanes import Handler
from orchestrator.listeners.values import jsonable
from orchestrator.services.events import Message

PREFETCH = 10


class AmqpSource:
    def __init__(self, url: str, source: dict[str, Any], own_queue: str):
        self.url = url
        self.queue = source.get("queue")
        self.exchange = source.get("exchange")
        self.routing_key = source.get("routing_key", "#")
        self.own_queue = own_queue  # with `exchange:`: the queue this trigger keeps (survives the listener)
        self._conn: kombu.Connection | None = None
        self._handle: Handler | None = None

    def open(self) -> None:
        self._conn = kombu.Connection(self.url, connect_timeout=5, heartbeat=20)
        self._conn.ensure_connection(max_retries=1)
        channel = self._conn.channel()
        if self.exchange is not None:
            channel.exchange_declare(self.exchange, "topic", passive=True)  # it must exist: it is the publisher's
            channel.queue_declare(self.own_queue, durable=True, auto_delete=False)
            channel.queue_bind(self.own_queue, self.exchange, self.routing_key)
            name = self.own_queue
        else:
            name = self.queue
            try:
                channel.queue_declare(name, passive=True)
            except ChannelError:  # missing: make it durable, so that what is published meanwhile waits
                channel = self._conn.channel()
                channel.queue_declare(name, durable=True, auto_delete=False)
        channel.basic_qos(0, PREFETCH, False)
        consumer = kombu.Consumer(channel, queues=[kombu.Queue(name, no_declare=True)], on_message=self._on_message,
                                  auto_declare=False)
        consumer.consume()

    def receive(self, handle: Handler, timeout: float) -> None:
        assert self._conn is not None
        self._handle = handle
        self._conn.heartbeat_check()
        try:
            self._conn.drain_events(timeout=timeout)
        except TimeoutError:
            pass

    def _on_message(self, message: Any) -> None:
        assert self._handle is not None
        body = message.body if isinstance(message.body, bytes) else str(message.body).encode()
        key = message.properties.get("message_id")
        self._handle(Message(body=body, headers=jsonable(message.headers or {}),
                             topic=message.delivery_info.get("routing_key") or "", key=str(key) if key else None))
        message.ack()  # only now: the fire is committed

    def close(self) -> None:
        if self._conn is not None:
            self._conn.release()
        self._conn = None
