"""The queues a worker consumes, checked before it starts: each must take priorities.

A RabbitMQ queue keeps the arguments it was declared with. One declared before priorities
(``x-max-priority``, MILLRACE_QUEUE_MAX_PRIORITY) refuses to be declared again with it, and
a worker that consumed it anyway would fail on its channel. The worker stops instead,
saying how to move on: drain the queue and delete it, or keep it without priorities.
"""
from __future__ import annotations

from typing import Any

from amqp.exceptions import PreconditionFailed
from celery.signals import worker_init


def check_priorities(app: Any, queues: list[Any], max_priority: int) -> None:
    """Declare ``queues`` as Celery will (with ``x-max-priority``); SystemExit naming the first
    that was declared before without it."""
    with app.connection_for_write() as conn:
        for queue in queues:
            try:
                queue(conn.default_channel).declare()
            except PreconditionFailed as exc:
                raise SystemExit(
                    f"queue '{queue.name}' was declared without priorities (before x-max-priority "
                    f"{max_priority}, MILLRACE_QUEUE_MAX_PRIORITY): RabbitMQ cannot add them to it. Stop what "
                    f"publishes to it, let the workers empty it, delete it (rabbitmqctl delete_queue {queue.name}) "
                    f"and start again; or set MILLRACE_QUEUE_MAX_PRIORITY=0 to keep it (runs' priority is then "
                    f"ignored). RabbitMQ said: {exc}") from None


@worker_init.connect
def _check_at_start(sender: Any = None, **_: object) -> None:
    from tasks.app import settings

    if sender is None or not settings.queue_max_priority or not settings.broker_url.startswith(("amqp", "pyamqp")):
        return
    check_priorities(sender.app, list(sender.app.amqp.queues.consume_from.values()), settings.queue_max_priority)
