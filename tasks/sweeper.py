"""Repairs what a crash between a commit and a publish leaves behind, every few seconds.

It runs as a thread of each worker's main process; on Postgres an advisory lock lets one
worker sweep at a time.
"""
from __future__ import annotations

import logging
import threading

from celery.signals import worker_ready, worker_shutdown

from orchestrator.services.approvals import time_out
from orchestrator.services.follow_up import deliver_overdue
from orchestrator.store import approvals, leases
from orchestrator.store.outbox import OwedKind
from tasks.app import settings
from tasks.runtime import Runtime

log = logging.getLogger("millrace.sweeper")
UNPUBLISHED_AFTER_S = 30.0
UNSENT_AFTER_S = 60.0
FOLLOW_UP_AFTER_S = 30.0  # a run ended this long ago with no follow-up: its worker died first


def sweep(rt: Runtime, unpublished_after: float = UNPUBLISHED_AFTER_S,
          unsent_after: float = UNSENT_AFTER_S) -> None:
    """One pass: do what is owed past its time (runs, on_failure and finally steps, continuations,
    follow-ups), send debounced runs whose window has ended, time out approvals."""
    publisher = rt.publisher
    deliver_overdue(publisher, {OwedKind.RUN: unpublished_after, OwedKind.ON_FAILURE: unsent_after,
                                OwedKind.FINALLY: unsent_after, OwedKind.CONTINUATION: unsent_after,
                                OwedKind.FOLLOW_UP: FOLLOW_UP_AFTER_S,
                                OwedKind.DEBOUNCED: 0.0})  # owed from its window's end: sent now
    for attempt in approvals.expired_approvals(rt.engine):
        time_out(publisher, attempt)


class Sweeper(threading.Thread):
    def __init__(self, interval: float):
        super().__init__(name="millrace-sweeper", daemon=True)
        self.interval = interval
        self.stopped = threading.Event()
        self.rt = Runtime(settings)

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.sweep_once()

    def sweep_once(self) -> None:
        try:
            self._locked_sweep()
        except Exception:  # a broken pass must not end the thread
            log.exception("sweep failed")

    def _locked_sweep(self) -> None:
        with leases.held(self.rt.engine, leases.SWEEP) as mine:
            if mine:
                sweep(self.rt)


_sweeper: Sweeper | None = None


@worker_ready.connect
def _start(**_: object) -> None:
    global _sweeper
    _sweeper = Sweeper(settings.sweep_interval)
    # The first pass runs here, in the main thread: the modules a sweep needs (the database
    # driver above all) are imported now. A pool process forked later while the thread was
    # importing one would inherit that module's import lock held, and hang on it.
    _sweeper.sweep_once()
    _sweeper.start()


@worker_shutdown.connect
def _stop(**_: object) -> None:
    if _sweeper is not None:
        _sweeper.stopped.set()
