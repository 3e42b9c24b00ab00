"""What the workers of a queue can run at once: the slots a for_each's lanes are sized by.

This worker's pool size, recorded when it starts (before its pool forks, so every pool
process knows it), times the consumers RabbitMQ counts on the queue (a Celery worker is one
consumer of each queue it takes, whatever its pool size), so workers on other machines
count too, on the assumption that they run pools of the same size. The count is asked at
most once per ``CONSUMERS_TTL_S`` per queue and process: a for_each pays no broker round
trip in the common case, and one started within that time of a worker joining or leaving
is sized by the count before.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from celery.signals import celeryd_after_setup

from tasks.app import app, settings

log = logging.getLogger("millrace.capacity")
CONSUMERS_TTL_S = 30.0

_pool_size: int | None = None  # None: not in a worker (or one that did not say)
_consumers: dict[str, tuple[float, int]] = {}  # queue -> (when asked, consumers)


def slots(queue: str) -> int | None:
    """How many steps the workers consuming ``queue`` run at once; None when not known."""
    if _pool_size is None:
        return None
    return _pool_size * max(1, _consumers_of(queue))


def _consumers_of(queue: str) -> int:
    if not settings.broker_url.startswith(("amqp", "pyamqp")):
        return 1  # the file-system broker (local mode) cannot say; it has one worker
    now = time.monotonic()
    known = _consumers.get(queue)
    if known is not None and now - known[0] < CONSUMERS_TTL_S:
        return known[1]
    try:
        with app.pool.acquire(block=True, timeout=2) as conn:
            channel = conn.channel()
            try:
                count = channel.queue_declare(queue, passive=True).consumer_count
            finally:
                channel.close()
    except Exception as exc:  # noqa: BLE001 - a broker that cannot say leaves this worker's own pool
        log.warning("could not count the consumers of %s: %s", queue, exc)
        count = 1
    _consumers[queue] = (now, count)
    return count


@celeryd_after_setup.connect
def _record_pool_size(instance: Any = None, **_: object) -> None:
    # Sent once the pool size is settled ("auto" resolved), before the pool forks.
    global _pool_size
    size = getattr(instance, "max_concurrency", None) or getattr(instance, "concurrency", None)
    _pool_size = int(size) if size else None
