"""amqp triggers on real RabbitMQ: one run per message, redeliveries start nothing, a
malformed message is refused and acknowledged, the listener reconnects."""
from __future__ import annotations

import json
import os

import kombu
import pytest

from tests.conftest import AMQP
from tests.integration.event_triggers import (
    ListenerProcess,
    doubling_flow,
    finished_runs,
    save,
    unique,
    wait_fires,
    wait_state,
)

pytestmark = pytest.mark.integration


def publish(url: str, queue: str, body: bytes | str, **properties) -> None:
    with kombu.Connection(url) as conn:
        producer = conn.Producer()
        producer.publish(body, routing_key=queue, exchange="", content_type="application/json",
                         content_encoding="utf-8", serializer=None, **properties)


def pending(url: str, queue: str) -> int:
    with kombu.Connection(url) as conn, conn.channel() as channel:
        return channel.queue_declare(queue, passive=True).message_count


def test_each_message_is_one_run_with_its_inputs_and_a_redelivery_starts_nothing(engine, worker, amqp_queue):
    queue = amqp_queue
    flow_id = unique("amqp_orders")
    save(engine, doubling_flow(flow_id, f"    amqp: {{queue: {queue}}}"))
    listener = ListenerProcess()
    try:
        wait_state(engine, flow_id, "events", "connected", listener)
        for n in range(3):
            publish(AMQP, queue, json.dumps({"n": n}), message_id=f"order-{n}")
        publish(AMQP, queue, json.dumps({"n": 1}), message_id="order-1")  # the same message again
        publish(AMQP, queue, json.dumps({"n": 7}))  # no message_id: known by its content
        publish(AMQP, queue, json.dumps({"n": 7}))  # ... so the same content again is the same message
        runs = finished_runs(engine, flow_id, 4)
        fired = wait_fires(engine, flow_id, "events", 4, listener)
    finally:
        listener.stop()
    assert sorted(r.steps[0].result for r in runs) == [0, 2, 4, 14]
    assert all(r.status.value == "succeeded" and r.trigger == "amqp" for r in runs)
    assert sorted(f["message_key"] for f in fired if not f["message_key"].startswith("content:")) == [
        "order-0", "order-1", "order-2"]
    assert pending(AMQP, queue) == 0  # every message acknowledged, the repeated ones too


def test_a_malformed_message_is_refused_saying_why_and_acknowledged(engine, worker, amqp_queue):
    queue = amqp_queue
    flow_id = unique("amqp_refusals")
    save(engine, doubling_flow(flow_id, f"    amqp: {{queue: {queue}}}"))
    listener = ListenerProcess(env={"MILLRACE_TRIGGER_BODY_LIMIT": "100"})
    try:
        wait_state(engine, flow_id, "events", "connected", listener)
        publish(AMQP, queue, "not json", message_id="m-text")
        publish(AMQP, queue, json.dumps({"n": "seven"}), message_id="m-type")
        publish(AMQP, queue, json.dumps({"n": 1, "pad": "x" * 200}), message_id="m-big")
        publish(AMQP, queue, json.dumps({"n": 5}), message_id="m-good")
        fired = {f["message_key"]: f for f in wait_fires(engine, flow_id, "events", 4, listener)}
        finished_runs(engine, flow_id, 1)
        row = wait_state(engine, flow_id, "events", "connected", listener)
    finally:
        listener.stop()
    assert fired["m-good"]["status"] == "started"
    assert fired["m-text"]["status"] == "refused" and "not a JSON object" in fired["m-text"]["reason"]
    assert fired["m-type"]["status"] == "refused" and fired["m-type"]["reason"].startswith("inputs.n:")
    assert fired["m-big"]["status"] == "refused" and "over this installation's limit of 100" in fired["m-big"]["reason"]
    assert (row.fired, row.refused) == (1, 3)
    assert pending(AMQP, queue) == 0


def test_inputs_mapping_reads_the_body_headers_and_routing_key_from_an_exchange(engine, worker):
    flow_id = unique("amqp_mapped")
    exchange = unique("millrace_evt_exchange")
    with kombu.Connection(AMQP) as conn, conn.channel() as channel:
        channel.exchange_declare(exchange, "topic", durable=False, auto_delete=False)
    text = f"""
id: {flow_id}
inputs:
  n: {{type: integer}}
  who: {{type: string}}
  topic: {{type: string}}
triggers:
  - amqp: {{exchange: {exchange}, routing_key: "orders.*"}}
    inputs: {{n: "${{{{ trigger.body.count }}}}", who: "${{{{ trigger.headers.sender }}}}",
              topic: "${{{{ trigger.topic }}}}"}}
steps:
  - id: say
    python: |
      def main(n, who, topic):
          return f"{{who}} sent {{n}} on {{topic}}"
    with: {{n: "${{{{ inputs.n }}}}", who: "${{{{ inputs.who }}}}", topic: "${{{{ inputs.topic }}}}"}}
"""
    save(engine, text)
    listener = ListenerProcess()
    try:
        wait_state(engine, flow_id, "amqp-1", "connected", listener)
        with kombu.Connection(AMQP) as conn:
            conn.Producer().publish(json.dumps({"count": 3}), exchange=exchange, routing_key="orders.eu",
                                    headers={"sender": "shop"}, message_id="x-1", serializer=None)
            conn.Producer().publish(json.dumps({"count": 4}), exchange=exchange, routing_key="invoices.eu",
                                    message_id="x-2", serializer=None)  # not bound: never reaches the trigger
        runs = finished_runs(engine, flow_id, 1)
    finally:
        listener.stop()
        with kombu.Connection(AMQP) as conn, conn.channel() as channel:
            from orchestrator.store.event_triggers import broker_name, event_trigger_id

            channel.queue_delete(broker_name(event_trigger_id(flow_id, "amqp-1"), "amqp"))
            channel.exchange_delete(exchange)
    assert [r.steps[0].result for r in runs] == ["shop sent 3 on orders.eu"]


def test_millraces_own_queues_are_refused_at_save(engine):
    from orchestrator.errors import ValidationError
    from tests.conftest import QUEUE

    for name in (QUEUE, "celeryev.abc", "celery@host.celery.pidbox"):
        with pytest.raises(ValidationError) as refused:
            from orchestrator.definitions.events import OwnNames
            from orchestrator.definitions.parser import parse_flow
            from orchestrator.services.saving import save_flow

            text = doubling_flow(unique("amqp_own"), f"    amqp: {{queue: '{name}'}}")
            save_flow(engine, parse_flow(text), text, own=OwnNames(QUEUE, QUEUE.rsplit(".", 1)[0] + "."))
        assert refused.value.problems[0].path == "triggers[0].amqp.queue"
        assert "Millrace's or Celery's own queues" in refused.value.problems[0].message


def test_the_listener_reconnects_after_its_broker_went_away(engine, worker, private_rabbit):
    from orchestrator.store.variables import set_variable


    set_variable(engine, "private_rabbit_url", private_rabbit.url, secret=True,
                 keys=(os.environ["MILLRACE_SECRET_KEY"],), actor="test")
    queue = unique("millrace_evt_private")
    with kombu.Connection(private_rabbit.url) as conn, conn.channel() as channel:
        channel.queue_declare(queue, durable=True, auto_delete=False)
    flow_id = unique("amqp_reconnects")
    save(engine, doubling_flow(flow_id, f"    amqp: {{queue: {queue}, url: private_rabbit_url}}"))
    listener = ListenerProcess()
    try:
        wait_state(engine, flow_id, "events", "connected", listener)
        publish(private_rabbit.url, queue, json.dumps({"n": 1}), message_id="before")
        finished_runs(engine, flow_id, 1)
        private_rabbit.stop_app()
        down = wait_state(engine, flow_id, "events", "disconnected", listener)
        assert private_rabbit.url not in down.state_detail and "guest:guest" not in down.state_detail
        private_rabbit.start_app()
        wait_state(engine, flow_id, "events", "connected", listener, timeout=90)
        publish(private_rabbit.url, queue, json.dumps({"n": 2}), message_id="after")
        runs = finished_runs(engine, flow_id, 2)
    finally:
        listener.stop()
    assert sorted(r.steps[0].result for r in runs) == [2, 4]
