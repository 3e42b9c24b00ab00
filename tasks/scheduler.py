"""`millrace scheduler`: Celery beat whose schedule lives in Postgres.

Run two or more for availability. Each holds a connection and tries a session-level
advisory lock on it; the one that gets it is the leader and decides due slots
(:func:`orchestrator.services.scheduling.fire_due`) about once a second; the others retry the lock
every second. A leader that dies closes its connection, which frees the lock. A leader
whose connection breaks stops deciding at once. Two leaders at the same moment (a
network split) still cannot fire a slot twice: each slot is a unique row, written in the
transaction that creates its run.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from typing import Any

import psycopg
from celery import beat

from orchestrator.services.scheduling import Started, fire_due, next_due
from tasks.app import app, settings
from tasks.runtime import runtime

log = logging.getLogger("millrace.scheduler")
LEADER_LOCK = 0x6D696C73  # "mils"
MAX_SLEEP_S = 1.0  # how soon a change made through the API is seen


class DatabaseScheduler(beat.Scheduler):
    """A beat scheduler with nothing in memory: every tick reads the schedules table."""

    def __init__(self, *args: Any, **kwargs: Any):
        self._leader_conn: psycopg.Connection | None = None
        self._leading = False
        self.identity = f"scheduler:{socket.gethostname()}:{os.getpid()}"
        super().__init__(*args, **kwargs)

    def setup_schedule(self) -> None:
        pass  # nothing to install: the schedule is the database

    @property
    def info(self) -> str:
        return "    . db -> millrace schedules (leader elected by a Postgres advisory lock)"

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if not self._lead():
            return MAX_SLEEP_S
        rt = runtime(settings)
        now = dt.datetime.now(dt.UTC)
        try:
            for started in fire_due(rt.engine, now, actor=self.identity):
                self._publish(started)  # a run left unpublished by a failure here: the sweeper's
            upcoming = next_due(rt.engine)
        except Exception:  # the database or broker went away: log it, lead again next tick
            log.exception("scheduler pass failed; trying again")
            return MAX_SLEEP_S
        if upcoming is None:
            return MAX_SLEEP_S
        return min(max((upcoming - dt.datetime.now(dt.UTC)).total_seconds(), 0.01), MAX_SLEEP_S)

    def _publish(self, started: Started) -> None:
        runtime(settings).publisher.deliver(started.owed)

    def _lead(self) -> bool:
        """Whether this process holds the leader lock now (taking it if it is free)."""
        try:
            if self._leader_conn is None or self._leader_conn.closed:
                # keepalives: a half-open connection is noticed in seconds, not hours, so a
                # leader cut off from the database stops leading and the server frees its lock
                self._leader_conn = psycopg.connect(
                    _libpq_url(settings.database_url), autocommit=True, connect_timeout=5, keepalives=1,
                    keepalives_idle=5, keepalives_interval=2, keepalives_count=3, tcp_user_timeout=10_000)
                self._leading = False
            if self._leading:
                self._leader_conn.execute("SELECT 1")  # still connected: still the holder
                return True
            got = self._leader_conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,)).fetchone()[0]
            if got:
                log.warning("%s is the scheduler leader", self.identity)
            self._leading = bool(got)
            return self._leading
        except psycopg.Error as exc:
            log.warning("scheduler lost its database connection (%s); not leading", exc)
            if self._leader_conn is not None:
                self._leader_conn.close()
            self._leader_conn = None
            self._leading = False
            return False

    def close(self) -> None:
        if self._leader_conn is not None:
            self._leader_conn.close()
        super().close()


def _libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def run_scheduler(loglevel: str = "INFO") -> None:
    """Run beat with the database scheduler in this process, until stopped."""
    app.Beat(scheduler=DatabaseScheduler, loglevel=loglevel, max_interval=MAX_SLEEP_S, quiet=True).run()
