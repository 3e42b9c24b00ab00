"""mqtt, nats and redis triggers whose server goes away and comes back: the listener says
it lost the connection, reconnects with backoff, and the next message starts its run."""
from __future__ import annotations

import asyncio
import json

import pytest

from tests.integration import event_sources
from tests.integration.event_triggers import ListenerProcess, doubling_flow, finished_runs, save, unique, wait_state
from tests.integration.private_brokers import PrivateBroker

pytestmark = pytest.mark.integration


def prepare(broker: PrivateBroker) -> tuple[str, object]:
    """The trigger's YAML lines on the private server, and a way to publish one message to it."""
    name = unique("private")
    if broker.kind == "mqtt":
        import paho.mqtt.client as mqtt

        def publish(body: bytes) -> None:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            client.connect("127.0.0.1", broker.port)
            client.loop_start()
            client.publish(f"{name}/x", body, qos=1).wait_for_publish(10)
            client.loop_stop()
            client.disconnect()
        return f"mqtt: {{topic: '{name}/x', url: private_mqtt}}", publish
    if broker.kind == "nats":
        import nats

        async def send(body: bytes, make: bool = False) -> None:
            nc = await nats.connect(broker.url)
            if make:
                await nc.jetstream().add_stream(name=name, subjects=[f"{name}.>"])
            else:
                await nc.jetstream().publish(f"{name}.x", body)
            await nc.close()
        asyncio.run(send(b"", make=True))
        return f"nats: {{subject: '{name}.x', stream: {name}, url: private_nats}}", lambda body: asyncio.run(send(body))
    import redis

    return f"redis: {{stream: {name}, url: private_redis}}", lambda body: redis.Redis.from_url(broker.url).xadd(
        name, {"body": body})


@pytest.mark.parametrize("kind", ["mqtt", "nats", "redis"])
def test_the_listener_reconnects_after_its_server_went_away(engine, worker, kind):
    broker = PrivateBroker(kind)
    listener = None
    try:
        event_sources.keep_secret(engine, f"private_{kind}", broker.url)
        trigger, publish = prepare(broker)
        flow_id = unique(f"{kind}_reconnects")
        save(engine, doubling_flow(flow_id, f"    {trigger}"))
        listener = ListenerProcess()
        wait_state(engine, flow_id, "events", "connected", listener)
        publish(json.dumps({"n": 1}).encode())
        finished_runs(engine, flow_id, 1)
        broker.stop()
        wait_state(engine, flow_id, "events", "disconnected", listener)
        broker.start()
        wait_state(engine, flow_id, "events", "connected", listener, timeout=90)
        publish(json.dumps({"n": 2}).encode())
        runs = finished_runs(engine, flow_id, 2)
    finally:
        if listener is not None:
            listener.stop()
        broker.remove()
    assert sorted(r.steps[0].result for r in runs) == [2, 4]
