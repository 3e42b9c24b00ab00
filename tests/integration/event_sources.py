"""Each event trigger kind as the tests see it: the trigger's YAML lines, a way to publish
one message (with an id, where the kind carries one), and the cleanup of what it made on the
shared server. Names begin with the session's unique prefix; URLs are secrets, as users keep them."""
from __future__ import annotations

import asyncio
import os

import kombu
import paho.mqtt.client as mqtt
import psycopg
import redis
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.conftest import AMQP
from tests.integration.event_triggers import unique

MQTT = os.environ.get("MILLRACE_TEST_MQTT", "mqtt://127.0.0.1:1883")
NATS = os.environ.get("MILLRACE_TEST_NATS", "nats://127.0.0.1:4222")
REDIS = os.environ.get("MILLRACE_TEST_REDIS", "redis://127.0.0.1:6379/0")
EXACTLY_ONCE = ("amqp", "mqtt", "nats", "redis", "postgres")


def keep_secret(engine, name: str, url: str) -> str:
    from orchestrator.store.variables import set_variable

    set_variable(engine, name, url, secret=True, keys=(os.environ["MILLRACE_SECRET_KEY"],), actor="test")
    return name


class AmqpQueue:
    def __init__(self, engine):
        self.queue = unique("millrace_evt_trial")
        with kombu.Connection(AMQP) as conn, conn.channel() as channel:
            channel.queue_declare(self.queue, durable=True, auto_delete=False)
        self.trigger_yaml = f"    amqp: {{queue: {self.queue}}}"
        self._conn = kombu.Connection(AMQP)
        self._producer = self._conn.Producer()

    def publish(self, body: bytes, message_id: str | None = None) -> None:
        self._producer.publish(body, routing_key=self.queue, exchange="", serializer=None, message_id=message_id,
                               content_type="application/json", delivery_mode=2)

    def close(self) -> None:
        self._conn.release()
        with kombu.Connection(AMQP) as conn, conn.channel() as channel:
            channel.queue_delete(self.queue)


class MqttTopic:
    """A topic of the shared Mosquitto; messages published QoS 1 with MQTT 5 user properties."""

    def __init__(self, engine):
        self.topic = f"{unique('millrace_t')}/orders"
        self.trigger_yaml = f"    mqtt: {{topic: '{self.topic}', url: {keep_secret(engine, 'test_mqtt_url', MQTT)}}}"
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self._client.connect("127.0.0.1", int(MQTT.rsplit(":", 1)[1]))
        self._client.loop_start()

    def publish(self, body: bytes, message_id: str | None = None, **user_properties: str) -> None:
        properties = Properties(PacketTypes.PUBLISH)
        pairs = [*([("message_id", message_id)] if message_id else []), *user_properties.items()]
        if pairs:
            properties.UserProperty = pairs
        self._client.publish(self.topic, body, qos=1, properties=properties).wait_for_publish(10)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


class NatsStream:
    """A JetStream stream of its own on the shared NATS server, deleted after."""

    def __init__(self, engine):
        self.stream = unique("millrace_t")
        self.subject = f"{self.stream}.orders"
        self.trigger_yaml = (f"    nats: {{subject: '{self.subject}', stream: {self.stream}, "
                             f"url: {keep_secret(engine, 'test_nats_url', NATS)}}}")
        self._loop = asyncio.new_event_loop()
        self._nc = self._run(self._connect())

    def _run(self, work):
        return self._loop.run_until_complete(work)

    async def _connect(self):
        import nats

        nc = await nats.connect(NATS)
        await nc.jetstream().add_stream(name=self.stream, subjects=[f"{self.stream}.>"])
        return nc

    def publish(self, body: bytes, message_id: str | None = None, subject: str | None = None) -> None:
        self._run(self._nc.jetstream().publish(subject or self.subject, body, headers={"sender": "shop"}))

    def consumer(self, durable: str):
        return self._run(self._nc.jetstream().consumer_info(self.stream, durable))

    def delete_consumer(self, durable: str) -> None:
        self._run(self._nc.jetstream().delete_consumer(self.stream, durable))

    def close(self) -> None:
        self._run(self._nc.jetstream().delete_stream(self.stream))
        self._run(self._nc.close())
        self._loop.close()


class RedisStream:
    """A stream key of its own on the shared Redis, deleted after."""

    def __init__(self, engine):
        self.stream = unique("millrace_t")
        self.trigger_yaml = f"    redis: {{stream: {self.stream}, url: {keep_secret(engine, 'test_redis_url', REDIS)}}}"
        self.client = redis.Redis.from_url(REDIS)

    def publish(self, body: bytes, message_id: str | None = None, **fields: str) -> str:
        return self.client.xadd(self.stream, {"body": body, **fields}).decode()

    def close(self) -> None:
        self.client.delete(self.stream)
        self.client.close()


class PostgresTable:
    """A table of its own in the session's database (Millrace's own: the default URL)."""

    def __init__(self, engine, on: str = "[insert]"):
        self.table = unique("millrace_t_orders")
        self.url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE {self.table} (id serial PRIMARY KEY, n integer, note text)")
        self.trigger_yaml = f"    postgres: {{table: {self.table}, on: {on}}}"

    def execute(self, statement: str, *params) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(statement.replace("{table}", self.table), params)

    def publish(self, body: bytes, message_id: str | None = None) -> None:
        import json

        self.execute("INSERT INTO {table} (n) VALUES (%s)", json.loads(body)["n"])

    def close(self) -> None:
        self.execute("DROP TABLE {table}")


def make(kind: str, engine):
    return {"amqp": AmqpQueue, "mqtt": MqttTopic, "nats": NatsStream, "redis": RedisStream,
            "postgres": PostgresTable}[kind](engine)
