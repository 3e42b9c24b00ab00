"""Each event trigger kind as the trial sees it: the trigger's YAML lines, a way to publish
one message with an id, and the cleanup of what it made on the shared server."""
from __future__ import annotations

import kombu

from tests.conftest import AMQP
from tests.integration.event_triggers import unique

EXACTLY_ONCE = ("amqp",)


class AmqpQueue:
    def __init__(self, engine):
        self.queue = unique("millrace_evt_trial")
        with kombu.Connection(AMQP) as conn, conn.channel() as channel:
            channel.queue_declare(self.queue, durable=True, auto_delete=False)
        self.trigger_yaml = f"    amqp: {{queue: {self.queue}}}"
        self._conn = kombu.Connection(AMQP)
        self._producer = self._conn.Producer()

    def publish(self, body: bytes, message_id: str) -> None:
        self._producer.publish(body, routing_key=self.queue, exchange="", serializer=None, message_id=message_id,
                               content_type="application/json", delivery_mode=2)

    def close(self) -> None:
        self._conn.release()
        with kombu.Connection(AMQP) as conn, conn.channel() as channel:
            channel.queue_delete(self.queue)


def make(kind: str, engine):
    return {"amqp": AmqpQueue}[kind](engine)
