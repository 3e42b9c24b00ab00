"""One event trigger's connection, kept up: open its source, hand each message to the
handler (which commits its fire), acknowledge it, and after a failure reconnect with
backoff, saying each change of state."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit

from orchestrator.services.events import Message
from orchestrator.store.event_triggers import REPORT_S, EventTriggerRow
from orchestrator.store.variables import mask

log = logging.getLogger("millrace.listener")
Handler = Callable[[Message], None]
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
RECEIVE_S = 1.0  # a source returns at least this often, so a stop is seen within about a second


class Source(Protocol):
    """A connection to where a trigger's messages come from."""

    def open(self) -> None:
        """Connect, and make what the trigger consumes through (a queue, a group, a consumer)."""

    def receive(self, handle: Handler, timeout: float) -> None:
        """Give ``handle`` what arrives within ``timeout`` seconds, acknowledging each message
        only after ``handle`` returned (an exception leaves it unacknowledged)."""

    def close(self) -> None:
        """Let go of the connection (after a failure too)."""


class Lane(threading.Thread):
    """A thread that keeps one trigger's source connected until stopped."""

    def __init__(self, row: EventTriggerRow, make: Callable[[], tuple[Source, str | None]], handle: Handler,
                 report: Callable[[str, str, str | None], None]):
        super().__init__(name=f"trigger {row.flow_id}/{row.trigger_id}", daemon=True)
        self.row = row
        self._make = make
        self._handle = handle
        self._report = report
        self._stopping = threading.Event()

    def stop(self, wait: float = 10.0) -> None:
        self._stopping.set()
        self.join(wait)

    def run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            source, url = None, None
            try:
                source, url = self._make()
                source.open()
                self._say("connected", None, url)
                failures = 0
                said = time.monotonic()
                while not self._stopping.is_set():
                    source.receive(self._handle, RECEIVE_S)
                    if time.monotonic() - said > REPORT_S:
                        self._say("connected", None, url)
                        said = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - any failure: say it, reconnect after a pause
                pause = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
                failures += 1
                self._say("disconnected", f"{type(exc).__name__}: {exc} (reconnecting in {pause:g} s)", url)
                self._stopping.wait(pause)
            finally:
                if source is not None:
                    try:
                        source.close()
                    except Exception:  # noqa: BLE001 - a broken connection may fail to close too
                        log.debug("closing %s failed", self.name, exc_info=True)

    def _say(self, state: str, detail: str | None, url: str | None) -> None:
        if detail is not None:
            detail = without_credentials(detail, url)
            log.warning("%s: %s", self.name, detail)
        try:
            self._report(self.row.id, state, detail)
        except Exception:  # noqa: BLE001 - the database is away too: the next report says it
            log.warning("%s: could not record its state (%s)", self.name, state, exc_info=True)


def without_credentials(text: str, url: str | None) -> str:
    """``text`` with the connection URL and its password masked: an error of a client
    library may quote the URL it failed to reach, and the URL came from a secret."""
    if not url:
        return text
    secrets = {"url": url}
    password = urlsplit(url).password
    if password:
        secrets["password"] = password
    return mask(text, secrets)
