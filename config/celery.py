"""Celery configuration for at-least-once delivery, built from Settings."""
from __future__ import annotations

from typing import Any

from config.settings import Settings


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings every Millrace process uses."""
    transport_options: dict[str, Any] = {}
    if settings.broker_url.startswith("filesystem"):
        folder = str(settings.broker_folder)
        settings.broker_folder.mkdir(parents=True, exist_ok=True)
        transport_options = {
            "data_folder_in": folder,
            "data_folder_out": folder,
            "control_folder": str(settings.broker_folder / "control"),
            "store_processed": False,
            "polling_interval": 0.05,
        }
    elif settings.broker_url.startswith(("amqp", "pyamqp")):
        # Publisher confirms: a publish returns only once RabbitMQ has the message.
        transport_options = {"confirm_publish": True}
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": transport_options,
        "broker_connection_retry_on_startup": True,
        # A publish gives up within about 5 s when the broker is away: what it owed stays in
        # the outbox and the sweeper sends it when the broker is back (an API answers 202).
        "broker_connection_timeout": 2,
        "task_publish_retry_policy": {"max_retries": 1, "interval_start": 0.2, "interval_step": 0.5,
                                      "interval_max": 0.5},
        "broker_heartbeat": 30,
        "result_backend": "tasks.backend:DatabaseBackend",
        "millrace_database_url": settings.database_url,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        # The default exchange and routing key are the queue's name: prefixed with it.
        "task_default_queue": settings.default_queue,
        # Broadcast commands (revoke, inspect) and task events go through exchanges that every
        # worker and monitor (Flower too: it reads these from the app) of a broker shares.
        "control_exchange": f"{settings.queue_prefix}celery",
        "event_exchange": f"{settings.queue_prefix}celeryev",
        "event_queue_prefix": f"{settings.queue_prefix}celeryev",
        "task_ignore_result": True,
        # A message is acknowledged only after its task has committed its state; a worker
        # that dies mid-task gets its message redelivered to another.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": settings.task_time_limit,
        "worker_hijack_root_logger": False,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_create_missing_queues": True,
        # Priority queues (classic queues only: RabbitMQ 3.10 has none on quorum queues). A
        # queue declared before without the argument cannot take it: see tasks/queues.py.
        "task_queue_max_priority": settings.queue_max_priority or None,
        **_queue_type_config(settings),
        # For Flower: workers report each task's life, publishers report each send.
        "worker_send_task_events": settings.task_events,
        "task_send_sent_event": settings.task_events,
    }


def _queue_type_config(settings: Settings) -> dict[str, Any]:
    """What quorum queues need of Celery: every queue (the default one, those steps name)
    declared quorum, and countdowns (retry delays, sleeps, loop delays) held by RabbitMQ.

    A quorum queue has no per-message delay a worker can hold cheaply (its prefetch is fixed
    per consumer), so a countdown goes through Celery's native delayed delivery: the
    ``celery_delayed_*`` queues, declared by each worker at start, dead-letter it back into
    the queue's exchange when it is due. That exchange must be a topic exchange to be bound.
    """
    if settings.queue_type != "quorum":
        return {}
    return {
        # The delay queues are the broker's, shared: a due message goes to every queue bound by
        # a routing key its own ends with, words split at dots. Without dots, the default queue
        # of `ci7.millrace` does not also take what is due to another installation's `millrace`.
        "task_default_routing_key": settings.default_queue.replace(".", "_"),
        "task_default_queue_type": "quorum",
        "task_create_missing_queue_type": "quorum",
        "task_default_exchange_type": "topic",
        "task_create_missing_queue_exchange_type": "topic",
        # Global QoS is refused on quorum queues: the worker detects them and sets it per consumer.
        "worker_detect_quorum_queues": True,
        "broker_native_delayed_delivery_queue_type": "quorum",
    }
