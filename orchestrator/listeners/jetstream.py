"""NATS JetStream sources (nats-py): a durable pull consumer of the trigger's own on an
existing stream, so what is published while the listener is away waits in the stream. The
client is asyncio; each source runs its own event loop in its lane's thread. A message is
acknowledged (and the acknowledgement confirmed) only after its fire is committed; one left
unacknowledged comes again after ``ACK_WAIT_S``. A message's key is its stream sequence,
with the stream's creation time (a stream deleted and made again starts counting anew)."""
from __future__ import annotations

import asyncio
from typing import Any

import nats
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from orchestrator.listeners.lanes import Handler
from orchestrator.listeners.values import jsonable
from orchestrator.services.events import Message

BATCH = 10
ACK_WAIT_S = 30.0  # a message received and not acknowledged this long is delivered again


class JetStreamSource:
    def __init__(self, url: str, source: dict[str, Any], durable: str):
        self.url = url
        self.subject = source["subject"]
        self.stream = source["stream"]
        self.durable = durable
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nc: Any = None
        self._subscription: Any = None
        self._epoch = ""

    def _run(self, work: Any) -> Any:
        assert self._loop is not None
        return self._loop.run_until_complete(work)

    def open(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._run(self._open())

    async def _open(self) -> None:
        async def quiet(_error: Exception) -> None:  # a failure surfaces as the next call's exception
            return None

        self._nc = await nats.connect(self.url, connect_timeout=5, allow_reconnect=False, max_reconnect_attempts=0,
                                      error_cb=quiet)
        js = self._nc.jetstream()
        info = await js.stream_info(self.stream)  # it must exist: it is the publisher's
        self._epoch = str(info.created or "")
        try:
            existing = await js.consumer_info(self.stream, self.durable)
            if existing.config.filter_subject != self.subject:  # the trigger's subject changed: start it anew
                await js.delete_consumer(self.stream, self.durable)  # (what it fired before keeps its keys)
        except NotFoundError:
            pass
        config = ConsumerConfig(durable_name=self.durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S,
                                deliver_policy=DeliverPolicy.ALL, filter_subject=self.subject)
        self._subscription = await js.pull_subscribe(self.subject, durable=self.durable, stream=self.stream,
                                                     config=config)

    def receive(self, handle: Handler, timeout: float) -> None:
        self._run(self._receive(handle, timeout))

    async def _receive(self, handle: Handler, timeout: float) -> None:
        if self._nc.is_closed or not self._nc.is_connected:
            raise ConnectionError("the connection to the NATS server ended")
        try:
            messages = await self._subscription.fetch(BATCH, timeout=timeout)
        except NatsTimeout:
            return
        for message in messages:
            sequence = message.metadata.sequence.stream
            handle(Message(body=message.data, headers=jsonable(dict(message.headers or {})), topic=message.subject,
                           key=f"{self.stream}:{self._epoch}:{sequence}"))
            await message.ack_sync()  # only now: the fire is committed

    def close(self) -> None:
        if self._loop is None:
            return
        try:
            if self._nc is not None and not self._nc.is_closed:
                self._run(self._nc.close())
        finally:
            self._loop.close()
            self._loop = None
