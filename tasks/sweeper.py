"""Repairs what a crash between a commit and a publish leaves behind, every few seconds.

It runs as a thread of each worker's main process; on Postgres an advisory lock lets one
worker sweep at a time.
"""
from __future__ import annotations

import logging
import threading

from celery.signals import worker_ready, worker_shutdown
from sqlalchemy import text

from orchestrator import records
from orchestrator.models import StepStatus
from orchestrator.submission import follow_up, publish_continuation, publish_on_failure, publish_run
from tasks.app import settings
from tasks.runtime import Runtime
from tasks.steps import send

log = logging.getLogger("millrace.sweeper")
_SWEEP_LOCK = 0x6D696C6C  # "mill"
UNPUBLISHED_AFTER_S = 30.0
UNSENT_AFTER_S = 60.0
FOLLOW_UP_AFTER_S = 30.0  # a run ended this long ago with no follow-up: its worker died first


def sweep(rt: Runtime, unpublished_after: float = UNPUBLISHED_AFTER_S,
          unsent_after: float = UNSENT_AFTER_S) -> None:
    """One pass: publish forgotten runs, on_failure steps and continuations, time out approvals."""
    for run in records.unpublished_runs(rt.engine, unpublished_after):
        if run.restarted_from:
            # Which step it restarts from was only in the lost message: say so, do not guess.
            records.abandon_unpublished(rt.engine, run.id, "this restart was never sent; restart "
                                        f"{run.restarted_from} again", "sweeper")
            continue
        log.warning("publishing run %s, left unpublished", run.id)
        publish_run(send, rt.plan(run.flow_id, run.flow_version), run.id, run.inputs, run.depth, run.scripts)
        records.mark_published(rt.engine, run.id)
    for run_id in records.ended_runs_to_follow_up(rt.engine, FOLLOW_UP_AFTER_S):
        log.warning("following up run %s, ended without it", run_id)
        follow_up(rt.engine, send, run_id, rt.plan_of)
    for row in records.unsent_on_failure(rt.engine, unsent_after):
        log.warning("sending the on_failure steps of run %s, left unsent", row.id)
        publish_on_failure(rt.engine, send, row.id, row.on_failure)
    for row in records.unsent_continuations(rt.engine, unsent_after):
        log.warning("re-sending continuation of step attempt %s", row.id)
        publish_continuation(rt.engine, send, row.id, row.continuation)
    for attempt_id in records.expired_approvals(rt.engine):
        cont = records.resume_attempt(rt.engine, attempt_id, StepStatus.FAILED,
                                      error="approval timed out", actor="sweeper")
        if cont is not None:
            publish_continuation(rt.engine, send, attempt_id, cont)


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
        if self.rt.engine.dialect.name != "postgresql":
            sweep(self.rt)
            return
        with self.rt.engine.connect() as conn:
            if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _SWEEP_LOCK}).scalar():
                return
            try:
                sweep(self.rt)
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _SWEEP_LOCK})
                conn.commit()


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
