"""`millrace listener`: consumes every enabled event trigger, one lane (thread) each.

Run two for availability: like the scheduler, each tries a Postgres advisory lock on a
connection of its own (``store/leases.Lease``, key ``LISTENER``) and only the holder
consumes; a standby takes over within a poll interval of the leader's connection ending.
Every few seconds the leader reads the triggers table and starts, restarts (its
declaration changed) or stops lanes to match, so flows saved, changed or deleted while it
runs are picked up. Even two leaders at once (a network split) start one run per message:
a fire is unique per (trigger, message key), written with its run.
"""
from __future__ import annotations

import logging
import os
import socket
import threading

from sqlalchemy import Engine

from config.settings import Settings
from orchestrator.listeners.lanes import Lane, Source
from orchestrator.listeners.sources import make_source, remove_source
from orchestrator.services import events
from orchestrator.services.publisher import Publisher
from orchestrator.store import event_triggers, leases
from orchestrator.store.event_triggers import EventTriggerRow

log = logging.getLogger("millrace.listener")


class Listener:
    """The lanes of the triggers this process consumes while it leads."""

    def __init__(self, settings: Settings, publisher: Publisher):
        self.settings = settings
        self.publisher = publisher
        self.engine: Engine = publisher.engine
        self.identity = f"listener:{socket.gethostname()}:{os.getpid()}"
        self.policy = events.Policy(body_limit=settings.trigger_body_limit,
                                    dedupe_window=settings.trigger_dedupe_window)
        self.lanes: dict[str, Lane] = {}
        self._lease = leases.lease_for(settings.database_url, leases.LISTENER)

    def run(self, stop: threading.Event) -> None:
        """Lead (or wait to) and keep the lanes in step with the table, until ``stop``."""
        leading = False
        try:
            while not stop.is_set():
                now_leading = self._lease.holding()
                if now_leading != leading:
                    log.warning("%s %s", self.identity, "leads: consuming event triggers" if now_leading
                                else "lost the lead (its database connection broke); stopping its triggers")
                    leading = now_leading
                if leading:
                    try:
                        self.sync()
                    except Exception:  # noqa: BLE001 - the database is away: lanes go on, read again soon
                        log.exception("could not read the triggers table; trying again")
                else:
                    self.stop_all()
                stop.wait(self.settings.listener_poll)
        finally:
            self.stop_all()
            self._lease.close()

    def sync(self) -> None:
        """Start a lane for each active trigger, restart those whose declaration changed,
        stop those gone (deleted, disabled, their flow deleted)."""
        wanted = {row.id: row for row in event_triggers.active(self.engine)}
        for trigger_id, lane in list(self.lanes.items()):
            row = wanted.get(trigger_id)
            if row is None or row.updated_at != lane.row.updated_at or not lane.is_alive():
                lane.stop()
                del self.lanes[trigger_id]
            if row is None and event_triggers.get(self.engine, trigger_id) is None:  # removed, not disabled
                self._remove(lane.row)
        for trigger_id, row in wanted.items():
            if trigger_id not in self.lanes:
                lane = Lane(row, lambda row=row: self._source(row), lambda m, row=row: self._fire(row, m),
                            lambda *state: event_triggers.report_state(self.engine, *state))
                self.lanes[trigger_id] = lane
                lane.start()

    def stop_all(self) -> None:
        for lane in self.lanes.values():
            lane.stop()
        self.lanes.clear()

    def _remove(self, row: EventTriggerRow) -> None:
        try:
            remove_source(self.engine, self.settings, row)
        except Exception:  # noqa: BLE001 - its database is away: what it made stays, said here
            log.exception("could not remove what trigger %s/%s made in its database", row.flow_id, row.trigger_id)

    def _source(self, row: EventTriggerRow) -> tuple[Source, str | None]:
        return make_source(self.engine, self.settings, row)

    def _fire(self, row: EventTriggerRow, message: events.Message) -> None:
        fired = events.fire(self.publisher, row, message, self.policy, actor=self.identity)
        if fired.status == "refused":
            log.warning("trigger %s/%s refused a message: %s", row.flow_id, row.trigger_id, fired.reason)


def run_listener(settings: Settings, publisher: Publisher) -> None:
    """Run the listener in this process until SIGTERM or SIGINT."""
    import signal

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    Listener(settings, publisher).run(stop)
