"""Redis stream sources (redis-py): a consumer group of the trigger's own on a stream (both
made when missing), read with XREADGROUP and each entry acknowledged (XACK) only after its
fire is committed. On every (re)connection the entries delivered before and never
acknowledged are read again first: the group's consumer is one name, so they are its own
pending entries, and XAUTOCLAIM takes over those another consumer name left idle. An
entry's key is its id. Its ``body`` field is the message body (the other fields its
headers); an entry without one is its fields as a JSON object."""
from __future__ import annotations

import json
from typing import Any

import redis
from redis.exceptions import ResponseError

from orchestrator.listeners.lanes import Handler
from orchestrator.services.events import Message

CONSUMER = "millrace"
BATCH = 10
CLAIM_IDLE_MS = 60_000  # another consumer's entry unacknowledged this long is taken over


class RedisStreamSource:
    def __init__(self, url: str, source: dict[str, Any], group: str):
        self.url = url
        self.stream = source["stream"]
        self.group = group
        self._client: redis.Redis | None = None
        self._backlog = True

    def open(self) -> None:
        self._client = redis.Redis.from_url(self.url, socket_connect_timeout=5, socket_timeout=30,
                                            health_check_interval=15)
        try:
            self._client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):  # it exists: what it has read stays read
                raise
        start = "0-0"
        while True:  # what other consumer names of the group left pending becomes this one's
            start, *_ = self._client.xautoclaim(self.stream, self.group, CONSUMER, CLAIM_IDLE_MS, start_id=start,
                                                count=100)
            if start in (b"0-0", "0-0"):
                break
        self._backlog = True

    def receive(self, handle: Handler, timeout: float) -> None:
        assert self._client is not None
        if self._backlog:  # delivered before, never acknowledged: read again from the start
            entries = self._read("0", None)
            if not entries:
                self._backlog = False
                return
        else:
            entries = self._read(">", max(1, int(timeout * 1000)))
        for entry_id, fields in entries:
            if fields:  # pending entries deleted from the stream meanwhile come back without fields
                handle(message_of(self.stream, entry_id.decode(), fields))
            self._client.xack(self.stream, self.group, entry_id)  # only now: the fire is committed

    def _read(self, start: str, block_ms: int | None) -> list[tuple[bytes, dict[bytes, bytes]]]:
        assert self._client is not None
        found = self._client.xreadgroup(self.group, CONSUMER, {self.stream: start}, count=BATCH, block=block_ms)
        return found[0][1] if found else []

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None


def message_of(stream: str, entry_id: str, fields: dict[bytes, bytes]) -> Message:
    values = {k.decode("utf-8", "replace"): v for k, v in fields.items()}
    body = values.pop("body", None)
    headers = {k: v.decode("utf-8", "replace") for k, v in values.items()}
    if body is None:
        body, headers = json.dumps(headers).encode(), {}
    return Message(body=body, headers=headers, topic=stream, key=entry_id)
