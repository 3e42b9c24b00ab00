"""`millrace scheduler`: Celery beat whose schedule lives in Postgres.

Run two or more for availability. Each holds a connection and tries a session-level
advisory lock on it; the one that gets it is the leader and decides due slots
(:func:`orchestrator.services.scheduling.fire_due`) about once a second; the others retry the lock
every second. The leader also purges finished runs past their retention
(:mod:`orchestrator.services.retention`), one batch per tick from every
``MILLRACE_RETENTION_INTERVAL_S`` until nothing is due. A leader that dies closes its
connection, which frees the lock. A leader whose connection breaks stops deciding at once.
Two leaders at the same moment (a network split) still cannot fire a slot twice: each slot
is a unique row, written in the transaction that creates its run.

The leader also seals the audit chains into a signed checkpoint every
``MILLRACE_AUDIT_CHECKPOINT_S`` seconds (:func:`orchestrator.store.checkpoints.seal`) when it
holds ``MILLRACE_AUDIT_KEY``, and, when it holds the key and ``MILLRACE_DATABASE_OWNER_URL`` and
``MILLRACE_AUDIT_RETENTION`` is set, purges the audit events past it after the runs, as whole
checkpoints, a batch per tick (:mod:`orchestrator.services.audit_retention`).
"""
from __future__ import annotations

import datetime as dt
import itertools
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from celery import beat

from orchestrator.services import audit_retention
from orchestrator.services.audit_retention import AuditPurged
from orchestrator.services.retention import Policy, Purged, due_batches
from orchestrator.services.scheduling import Started, fire_due
from orchestrator.store import checkpoints, leases
from orchestrator.store.database import make_engine
from orchestrator.store.schedules import next_due
from tasks.app import app, settings
from tasks.runtime import runtime

log = logging.getLogger("millrace.scheduler")
MAX_SLEEP_S = 1.0  # how soon a change made through the API is seen
PURGING_SLEEP_S = 0.05  # between two purge batches: due slots are still decided in between


class DatabaseScheduler(beat.Scheduler):
    """A beat scheduler with nothing in memory: every tick reads the schedules table."""

    def __init__(self, *args: Any, **kwargs: Any):
        self._lease = leases.lease_for(settings.database_url)
        self._leading = False
        self._purging: Iterator[Purged | AuditPurged] | None = None  # the batches of the purge under way
        self._purge_at = 0.0  # (monotonic) when the next purge begins
        self.identity = f"scheduler:{socket.gethostname()}:{os.getpid()}"
        try:
            self._audit_key = checkpoints.private_key(settings.audit_key) if settings.audit_key else None
        except ValueError as error:  # refuse to start rather than lead without sealing
            raise SystemExit(str(error)) from None
        self._checkpoint_file = Path(settings.audit_checkpoint_file) if settings.audit_checkpoint_file else None
        self._sealed_at = 0.0
        self._owner = None  # an engine of the schema owner's role: the one that may purge audit events
        if settings.audit_retention is not None:
            if self._audit_key is None or not settings.database_owner_url:
                log.warning("MILLRACE_AUDIT_RETENTION is set, but audit events are purged only with "
                            "MILLRACE_AUDIT_KEY and MILLRACE_DATABASE_OWNER_URL: keeping them all")
            else:
                self._owner = make_engine(settings.database_owner_url, 2)
        super().__init__(*args, **kwargs)

    def setup_schedule(self) -> None:
        pass  # nothing to install: the schedule is the database

    @property
    def info(self) -> str:
        return "    . db -> millrace schedules (leader elected by a Postgres advisory lock)"

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if not self._lead():
            self._purging = None
            return MAX_SLEEP_S
        rt = runtime(settings)
        purging = self._purge_batch(rt.engine)
        now = dt.datetime.now(dt.UTC)
        try:
            for started in fire_due(rt.engine, now, actor=self.identity):
                self._publish(started)  # a run left unpublished by a failure here: the sweeper's
            upcoming = next_due(rt.engine)
        except Exception:  # the database or broker went away: log it, lead again next tick
            log.exception("scheduler pass failed; trying again")
            return MAX_SLEEP_S
        self._seal_audit()
        most = PURGING_SLEEP_S if purging else MAX_SLEEP_S
        if upcoming is None:
            return most
        return min(max((upcoming - dt.datetime.now(dt.UTC)).total_seconds(), 0.01), most)

    def _purge_batch(self, engine: Any) -> bool:
        """Purge one batch of what retention makes due, when a purge is under way or its time
        has come; whether more batches may be due."""
        if self._purging is None:
            if time.monotonic() < self._purge_at:
                return False
            policy = Policy(settings.retention, settings.idempotency_window, settings.retention_batch)
            self._purging = itertools.chain(due_batches(engine, policy, actor=self.identity), self._audit_batches())
        try:
            found = next(self._purging)
        except StopIteration:
            self._purging, self._purge_at = None, time.monotonic() + settings.retention_interval
            return False
        except Exception:  # the database went away: try again at the next interval
            log.exception("retention purge failed; trying again in %ss", settings.retention_interval)
            self._purging, self._purge_at = None, time.monotonic() + settings.retention_interval
            return False
        log.info("retention purged %s", found.describe())
        return True

    def _audit_batches(self) -> Iterator[AuditPurged]:
        """The audit events past MILLRACE_AUDIT_RETENTION, a batch at a time (none: kept forever)."""
        if self._owner is None or settings.audit_retention is None:
            return
        before = audit_retention.cutoff(settings.audit_retention, dt.datetime.now(dt.UTC))
        yield from audit_retention.batches(self._owner, before, key=self._audit_key, actor=self.identity)

    def _seal_audit(self) -> None:
        """A checkpoint of the audit chains, when one is due (and a key to sign it is held)."""
        if self._audit_key is None or time.monotonic() - self._sealed_at < settings.audit_checkpoint_interval:
            return
        self._sealed_at = time.monotonic()
        try:
            checkpoints.seal(runtime(settings).engine, self._audit_key, self._checkpoint_file)
        except Exception:  # a failed seal leaves the chains unsealed until the next one
            log.exception("sealing an audit checkpoint failed; trying again")

    def _publish(self, started: Started) -> None:
        runtime(settings).publisher.deliver(started.owed)

    def _lead(self) -> bool:
        """Whether this process leads now (taking the lead if nobody holds it)."""
        was = self._leading
        self._leading = self._lease.holding()
        if self._leading and not was:
            log.warning("%s is the scheduler leader", self.identity)
        elif was and not self._leading:
            log.warning("%s lost the lead (its database connection broke); not leading", self.identity)
        return self._leading

    def close(self) -> None:
        self._lease.close()
        super().close()


def run_scheduler(loglevel: str = "INFO") -> None:
    """Run beat with the database scheduler in this process, until stopped."""
    app.Beat(scheduler=DatabaseScheduler, loglevel=loglevel, max_interval=MAX_SLEEP_S, quiet=True).run()
