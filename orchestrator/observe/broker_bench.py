"""``millrace bench broker``: what the broker costs a message, apart from Millrace: persistent
publishes with their confirms by ``publishers`` connections at once, then the same messages
delivered and acknowledged one at a time (prefetch 1, as workers take them) by one consumer.

The queue is the installation's own type (``MILLRACE_QUEUE_TYPE``), named under its queue
prefix with a random tail, and deleted at the end whatever happens.
"""
from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from kombu import Connection, Queue

PAYLOAD = "x" * 400  # about the size of a one-step task's arguments


def measure_broker(broker_url: str, queue_prefix: str, queue_type: str, publishers: int = 1,
                   messages: int = 1000) -> dict[str, Any]:
    """Publishes/s (all publishers together) and deliveries/s of ``messages`` per publisher."""
    name = f"{queue_prefix}bench_broker_{uuid.uuid4().hex[:8]}"
    arguments = {"x-queue-type": queue_type}
    with Connection(broker_url) as conn:
        queue = Queue(name, durable=True, queue_arguments=arguments, channel=conn.channel())
        queue.declare()
        try:
            publish_s = _publish(broker_url, name, publishers, messages)
            total = publishers * messages
            deliver_s = _deliver(conn, queue, total)
        finally:
            queue.delete()
    return {"queue": name, "queue_type": queue_type, "publishers": publishers, "messages": total,
            "publishes_per_s": round(total / publish_s, 1), "publish_ms": round(publish_s * 1000 / messages, 3),
            "deliveries_per_s": round(total / deliver_s, 1), "deliver_ms": round(deliver_s * 1000 / total, 3)}


def _publish(broker_url: str, name: str, publishers: int, messages: int) -> float:
    """Seconds from the start line to the last publisher's last confirm (connections made before)."""
    start = threading.Barrier(publishers + 1, timeout=60)
    failures: list[BaseException] = []

    def publisher() -> None:
        try:
            with Connection(broker_url, transport_options={"confirm_publish": True}) as conn:
                producer = conn.Producer(conn.channel())
                start.wait()
                for i in range(messages):
                    producer.publish({"i": i, "pad": PAYLOAD}, routing_key=name, delivery_mode=2, retry=False)
        except BaseException as error:  # re-raised in the caller
            failures.append(error)
            start.abort()

    threads = [threading.Thread(target=publisher, daemon=True) for _ in range(publishers)]
    for thread in threads:
        thread.start()
    try:
        start.wait()
    except threading.BrokenBarrierError:
        pass  # a publisher could not connect: its error is raised below
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return time.perf_counter() - began


def _deliver(conn: Connection, queue: Queue, total: int) -> float:
    channel = conn.channel()
    channel.basic_qos(0, 1, False)
    got = 0

    def received(_body: Any, message: Any) -> None:
        nonlocal got
        got += 1
        message.ack()

    began = time.perf_counter()
    with conn.Consumer(queues=[queue(channel)], channel=channel, callbacks=[received]):
        while got < total:
            conn.drain_events(timeout=30)
    return time.perf_counter() - began
