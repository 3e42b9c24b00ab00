"""mqtt triggers on the real Mosquitto: one run per message (a `message_id` user property
is its key, else its topic and payload), a malformed message is refused and acknowledged,
and nothing stays unacknowledged in the trigger's persistent session."""
from __future__ import annotations

import json
import time

import paho.mqtt.client as mqtt
import pytest

from tests.integration.event_sources import MQTT, MqttTopic
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


@pytest.fixture
def topic(engine):
    source = MqttTopic(engine)
    yield source
    source.close()


def unacknowledged(flow_id: str, seconds: float = 2.0) -> list[bytes]:
    """What the broker sends the trigger's session when it connects as the listener would."""
    from orchestrator.store.event_triggers import broker_name, event_trigger_id

    got: list[bytes] = []
    client_id = broker_name(event_trigger_id(flow_id, "events"), "mqtt")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True)
    client.on_message = lambda _c, _u, message: got.append(message.payload)
    client.connect("127.0.0.1", int(MQTT.rsplit(":", 1)[1]), clean_start=False)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        client.loop(0.2)
    client.disconnect()
    return got


def test_each_message_is_one_run_with_its_inputs_and_a_redelivery_starts_nothing(engine, worker, topic):
    flow_id = unique("mqtt_orders")
    save(engine, doubling_flow(flow_id, topic.trigger_yaml))
    listener = ListenerProcess()
    try:
        wait_state(engine, flow_id, "events", "connected", listener)
        for n in range(3):
            topic.publish(json.dumps({"n": n}).encode(), f"order-{n}")
        topic.publish(json.dumps({"n": 1}).encode(), "order-1")  # the same message again
        topic.publish(json.dumps({"n": 7}).encode())  # no message_id: known by its topic and payload
        topic.publish(json.dumps({"n": 7}).encode())  # ... so the same payload again is the same message
        runs = finished_runs(engine, flow_id, 4)
        fired = wait_fires(engine, flow_id, "events", 4, listener)
    finally:
        listener.stop()
    topic.publish(json.dumps({"n": 2}).encode(), "order-2")  # while no listener runs: kept for its session
    listener = ListenerProcess()
    try:
        wait_state(engine, flow_id, "events", "connected", listener)
        wait_fires(engine, flow_id, "events", 4, listener)
        time.sleep(2)
    finally:
        listener.stop()
    assert len(finished_runs(engine, flow_id, 4)) == 4
    assert sorted(r.steps[0].result for r in runs) == [0, 2, 4, 14]
    assert all(r.status.value == "succeeded" and r.trigger == "mqtt" for r in runs)
    assert sorted(f["message_key"] for f in fired if not f["message_key"].startswith("content:")) == [
        "order-0", "order-1", "order-2"]
    assert unacknowledged(flow_id) == []  # every message acknowledged, the repeated ones too


def test_a_malformed_message_is_refused_saying_why_and_acknowledged(engine, worker, topic):
    flow_id = unique("mqtt_refusals")
    save(engine, doubling_flow(flow_id, topic.trigger_yaml))
    listener = ListenerProcess(env={"MILLRACE_TRIGGER_BODY_LIMIT": "100"})
    try:
        wait_state(engine, flow_id, "events", "connected", listener)
        topic.publish(b"not json", "m-text")
        topic.publish(json.dumps({"n": "seven"}).encode(), "m-type")
        topic.publish(json.dumps({"n": 1, "pad": "x" * 200}).encode(), "m-big")
        topic.publish(json.dumps({"n": 5}).encode(), "m-good")
        fired = {f["message_key"]: f for f in wait_fires(engine, flow_id, "events", 4, listener)}
        finished_runs(engine, flow_id, 1)
    finally:
        listener.stop()
    assert fired["m-good"]["status"] == "started"
    assert fired["m-text"]["status"] == "refused" and "not a JSON object" in fired["m-text"]["reason"]
    assert fired["m-type"]["status"] == "refused" and fired["m-type"]["reason"].startswith("inputs.n:")
    assert fired["m-big"]["status"] == "refused" and "over this installation's limit of 100" in fired["m-big"]["reason"]
    assert unacknowledged(flow_id) == []


def test_inputs_mapping_reads_the_topic_and_user_properties(engine, worker, topic):
    flow_id = unique("mqtt_mapped")
    save(engine, doubling_flow(flow_id, topic.trigger_yaml, inputs=(
        '    inputs: {n: "${{ trigger.body.count + (trigger.headers.extra | int) + trigger.topic.count(\'/\') }}"}')))
    listener = ListenerProcess()
    try:
        wait_state(engine, flow_id, "events", "connected", listener)
        topic.publish(json.dumps({"count": 3}).encode(), "x-1", extra="10")
        runs = finished_runs(engine, flow_id, 1)
    finally:
        listener.stop()
    assert [r.steps[0].result for r in runs] == [2 * (3 + 10 + 1)]
