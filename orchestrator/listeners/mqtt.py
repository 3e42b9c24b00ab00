"""MQTT sources (paho-mqtt, MQTT 5): a topic filter subscribed to with QoS 1 in a persistent
session of the trigger's own (its client id, ``clean_start`` off, a week's session expiry), so
what is published while the listener is away waits for it. Messages are acknowledged by
hand (PUBACK) only after their fire is committed; one left unacknowledged is sent again
when the session reconnects. A message's key is its ``message_id`` user property; one
without is known by its topic's and payload's hash (``services/events.py``)."""
from __future__ import annotations

import time
from collections import deque
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from orchestrator.listeners.lanes import Handler
from orchestrator.services.events import Message

SESSION_EXPIRY_S = 7 * 24 * 3600  # how long the broker keeps the session (and its messages) for a listener away
CONNECT_S = 10.0
KEEPALIVE_S = 30


class MqttSource:
    def __init__(self, url: str, source: dict[str, Any], client_id: str):
        self.url = url
        self.topic = source["topic"]
        self.client_id = client_id
        self._client: mqtt.Client | None = None
        self._arrived: deque[mqtt.MQTTMessage] = deque()  # received, not yet fired nor acknowledged
        self._subscribed = False
        self._refused: str | None = None

    def open(self) -> None:
        parts = urlsplit(self.url)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5,
                             manual_ack=True)
        tls = parts.scheme in ("mqtts", "ssl")
        if tls:
            client.tls_set()
        if parts.username:
            client.username_pw_set(unquote(parts.username), unquote(parts.password or "") or None)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = lambda _client, _userdata, message: self._arrived.append(message)
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        self._client = client
        client.connect(parts.hostname or "localhost", parts.port or (8883 if tls else 1883),
                       keepalive=KEEPALIVE_S, clean_start=False, properties=properties)
        deadline = time.monotonic() + CONNECT_S
        while not self._subscribed:
            self._loop(0.2)
            if self._refused is not None:
                raise ConnectionError(self._refused)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no subscription to '{self.topic}' within {CONNECT_S:g} s")

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _properties: Any) -> None:
        if reason.is_failure:
            self._refused = f"the broker refused the connection: {reason}"
            return
        # Retained messages only on a new subscription: not again at every reconnect.
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        client.subscribe(self.topic, options=options)

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, _mid: int, reasons: list[Any],
                      _properties: Any) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            self._refused = f"the broker refused the subscription to '{self.topic}': {', '.join(refused)}"
        else:
            self._subscribed = True

    def _loop(self, timeout: float) -> None:
        assert self._client is not None
        code = self._client.loop(timeout)
        if code != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"the connection to the broker ended: {mqtt.error_string(code)}")

    def receive(self, handle: Handler, timeout: float) -> None:
        assert self._client is not None
        if not self._arrived:
            self._loop(timeout)
        while self._arrived:
            message = self._arrived[0]
            handle(message_of(message))
            self._arrived.popleft()
            self._client.ack(message.mid, message.qos)  # only now: the fire is committed

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop(0.1)  # lets the DISCONNECT out; the session stays (clean_start off)
        self._client = None


def message_of(message: mqtt.MQTTMessage) -> Message:
    """An MQTT message as a trigger's: its user properties are the headers, ``message_id`` among them its key."""
    headers = {str(k): str(v) for k, v in getattr(message.properties, "UserProperty", None) or []}
    key = headers.get("message_id")
    return Message(body=message.payload, headers=headers, topic=message.topic, key=key or None)
