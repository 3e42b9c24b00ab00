"""What each broker's message becomes as a trigger's message: body, headers, topic and key."""
from __future__ import annotations

import json

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from orchestrator.listeners import mqtt as mqtt_source
from orchestrator.listeners import redis_streams
from orchestrator.listeners.sources import libpq_url


def test_an_mqtt_message_id_user_property_is_the_key_and_the_user_properties_the_headers():
    message = mqtt.MQTTMessage(mid=3, topic=b"sensors/3/reading")
    message.payload = b'{"celsius": 21}'
    message.properties = Properties(PacketTypes.PUBLISH)
    message.properties.UserProperty = [("message_id", "r-981"), ("site", "north")]
    got = mqtt_source.message_of(message)
    assert (got.key, got.topic, got.body) == ("r-981", "sensors/3/reading", b'{"celsius": 21}')
    assert got.headers == {"message_id": "r-981", "site": "north"}


def test_an_mqtt_message_without_user_properties_has_no_key_its_content_stands_in():
    message = mqtt.MQTTMessage(mid=4, topic=b"a/b")
    message.payload = b"{}"
    got = mqtt_source.message_of(message)
    assert (got.key, got.headers) == (None, {})


def test_a_redis_entry_body_field_is_the_body_and_its_other_fields_the_headers():
    got = redis_streams.message_of("orders", "1700000000000-0", {b"body": b'{"n": 1}', b"source": b"shop"})
    assert (got.body, got.headers, got.topic, got.key) == (b'{"n": 1}', {"source": "shop"}, "orders",
                                                           "1700000000000-0")


def test_a_redis_entry_without_a_body_field_is_its_fields_as_a_json_object():
    got = redis_streams.message_of("orders", "1-0", {b"n": b"5", b"who": b"shop"})
    assert json.loads(got.body) == {"n": "5", "who": "shop"} and got.headers == {}


def test_a_sqlalchemy_postgres_url_is_given_to_psycopg_without_its_driver():
    assert libpq_url("postgresql+psycopg://u:p@db:5432/shop") == "postgresql://u:p@db:5432/shop"
    assert libpq_url("postgres://u@db/shop") == "postgres://u@db/shop"
