"""Queue types: a worker finds out at start that a queue is of the other type and says what to do.

The delivery tests themselves (test_crash.py, test_engine.py, test_loops.py: kills, retries
with delays, sleeps, loop delays) run on quorum queues with MILLRACE_TEST_QUEUE_TYPE=quorum.
"""
from __future__ import annotations

import kombu
import pytest

from tests.conftest import AMQP, QUEUE, Worker

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("declared", "worker_type", "says"), [
    ("classic", "quorum", "declared before as a classic queue"),
    ("quorum", "classic", "or as a quorum queue"),
])
def test_a_worker_refuses_a_queue_of_the_other_type_and_says_what_to_do(database_url, declared, worker_type, says):
    name = f"{QUEUE}_was_{declared}"
    arguments, kind = ({"x-queue-type": "quorum"}, "topic") if declared == "quorum" else (
        {"x-max-priority": 9}, "direct")
    with kombu.Connection(AMQP) as conn:  # as an installation of the other type declared it
        kombu.Queue(name, kombu.Exchange(name, kind), name, queue_arguments=arguments)(conn.default_channel).declare()
    try:
        with pytest.raises(RuntimeError) as refused:
            Worker([name], concurrency=1, env={"MILLRACE_QUEUE_TYPE": worker_type})
        assert f"queue '{name}' was declared" in str(refused.value) and says in str(refused.value)
        assert f"rabbitmqctl delete_queue {name}" in str(refused.value)
        assert f"MILLRACE_QUEUE_TYPE={declared}" in str(refused.value)  # or keep it as it is
        kept = Worker([name], concurrency=1, env={"MILLRACE_QUEUE_TYPE": declared})
        kept.stop()
    finally:
        with kombu.Connection(AMQP) as conn:
            conn.default_channel.queue_delete(name)
            conn.default_channel.exchange_delete(name)
