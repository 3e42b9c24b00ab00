"""The queues a worker consumes, checked before it starts: each must be declarable as configured.

A RabbitMQ queue keeps the type and arguments it was declared with, an exchange its type. A
classic queue declared before priorities (``x-max-priority``, MILLRACE_QUEUE_MAX_PRIORITY)
refuses to be declared again with it; a classic queue cannot become a quorum queue
(MILLRACE_QUEUE_TYPE) nor its direct exchange the topic exchange quorum queues are bound
through. A worker that consumed it anyway would fail on its channel. The worker stops
instead, saying how to move on.
"""
from __future__ import annotations

from typing import Any

from amqp.exceptions import PreconditionFailed
from celery.signals import worker_init

from config.settings import Settings


def check_queues(app: Any, queues: list[Any], settings: Settings) -> None:
    """Declare ``queues`` as Celery will; SystemExit naming the first that RabbitMQ refuses."""
    with app.connection_for_write() as conn:
        for queue in queues:
            try:
                queue(conn.default_channel).declare()
            except PreconditionFailed as exc:
                raise SystemExit(_how_to_move_on(queue.name, settings, exc)) from None


def _how_to_move_on(name: str, settings: Settings, exc: PreconditionFailed) -> str:
    drain = (f"Stop what publishes to it, let the workers empty it, delete it (rabbitmqctl delete_queue {name}; "
             f"for a change of type its exchange too: rabbitmqadmin delete exchange name={name}) and start again")
    if settings.queue_type == "quorum":
        return (f"queue '{name}' was declared before as a classic queue (or its exchange as a direct one): "
                f"RabbitMQ cannot make it a quorum queue (MILLRACE_QUEUE_TYPE=quorum). {drain}; or set "
                f"MILLRACE_QUEUE_TYPE=classic to keep it. RabbitMQ said: {exc}")
    if not settings.queue_max_priority:
        return (f"queue '{name}' was declared before as a quorum queue: RabbitMQ cannot make it a classic one "
                f"(MILLRACE_QUEUE_TYPE=classic). {drain}; or set MILLRACE_QUEUE_TYPE=quorum to keep it. "
                f"RabbitMQ said: {exc}")
    return (f"queue '{name}' was declared without priorities (before x-max-priority {settings.queue_max_priority}, "
            f"MILLRACE_QUEUE_MAX_PRIORITY) or as a quorum queue: RabbitMQ cannot change it. {drain}; or set "
            f"MILLRACE_QUEUE_MAX_PRIORITY=0 (runs' priority is then ignored) or MILLRACE_QUEUE_TYPE=quorum to "
            f"keep it. RabbitMQ said: {exc}")


@worker_init.connect
def _check_at_start(sender: Any = None, **_: object) -> None:
    from tasks.app import settings

    if sender is None or not settings.broker_url.startswith(("amqp", "pyamqp")):
        return
    check_queues(sender.app, list(sender.app.amqp.queues.consume_from.values()), settings)
