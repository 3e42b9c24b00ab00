"""The Celery application, configured from the environment."""
from __future__ import annotations

import logging
import time

from celery import Celery, Signature, Task
from celery.exceptions import Ignore, Reject, Retry
from celery.signals import before_task_publish
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from config.celery import celery_config
from config.settings import load_settings

log = logging.getLogger("millrace.tasks")
# While the database is unreachable a message goes back to the queue at this pace.
DATABASE_RETRY_PAUSE_S = 1.0


class MillraceTask(Task):
    """A task whose message goes back to the queue, unchanged, when the database fails it.

    Every write a task makes is idempotent, so running it again from the start is safe;
    the attempt number (``retries``) is kept, unlike with ``Task.retry``.
    """

    # What task events (and so Flower) show of a return value: a context is long; its
    # head is enough there, the run's record has all of it.
    resultrepr_maxsize = 300

    def apply_async(self, args=None, kwargs=None, *more, **options):  # type: ignore[no-untyped-def]
        # Celery's native delayed delivery (quorum queues) routes a countdown by its whole
        # seconds and refuses one under a second: such a countdown waits a second instead.
        countdown = options.get("countdown")
        if countdown and 0 < countdown < 1 and settings.queue_type == "quorum":
            options["countdown"] = 1
        return super().apply_async(args, kwargs, *more, **options)

    def __call__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return super().__call__(*args, **kwargs)
        except (Ignore, Retry, Reject):
            raise  # how a task stops, retries or goes back to the queue on purpose
        except DBAPIError as exc:
            if not _is_connection_problem(exc):
                _end_run(self.name, kwargs, exc)
                raise
            log.warning("database unavailable in %s, requeueing: %s", self.name, exc.orig)
            time.sleep(DATABASE_RETRY_PAUSE_S)
            raise Reject(str(exc.orig), requeue=True) from None
        except Exception as exc:
            _end_run(self.name, kwargs, exc)
            raise


def _end_run(task: str, kwargs: dict, exc: BaseException) -> None:
    """A task failed in a way Millrace did not foresee (a bug): its message is done with, so
    its run would never go on. It ends failed instead, saying where, and what follows a
    run's end (its parent, its triggers, its concurrency slot) follows."""
    run_id = kwargs.get("run")
    if not isinstance(run_id, str):
        return
    log.exception("internal error in %s for run %s; the run ends failed", task, run_id)
    try:
        from orchestrator.store import runs
        from tasks.attempt import ended
        from tasks.runtime import runtime

        rt = runtime(settings)
        error = f"internal error in {task}: {type(exc).__name__}: {exc}"[:2000]
        ending = runs.fail_run(rt.engine, run_id, error, None, rt.worker)
        if ending is not None:
            ended(rt, ending)
    except Exception:  # noqa: BLE001 - the original error is what the task reports
        log.exception("could not end run %s after the internal error", run_id)


def _is_connection_problem(exc: DBAPIError) -> bool:
    return exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)


settings = load_settings()
app = Celery("millrace", set_as_current=True, task_cls=MillraceTask)
app.config_from_object(celery_config(settings))
app.conf.include = [
    "tasks.confinement", "tasks.boundaries", "tasks.code", "tasks.composite", "tasks.waiting", "tasks.sweeper",
    "tasks.bench", "tasks.loops", "tasks.queues"]
# The app of every thread, not only of the one that imported this: signatures sent from
# another thread (the sweeper, an API server's request threads) would otherwise fall back to
# Celery's default app and its localhost broker.
app.set_default()


def send(signature: Signature) -> None:
    """Publish a signature through this app (what the publisher is given on workers)."""
    signature.apply_async()


def revoke(task_ids: list[str]) -> None:
    """Kill the processes running these tasks (their messages are then dropped, not redone)."""
    app.control.revoke(task_ids, terminate=True, signal="SIGKILL")


@before_task_publish.connect
def _stamp_sent_time(headers: dict | None = None, **_: object) -> None:
    # A step's `created_at` is when its message was sent: the wait in the queue shows.
    if headers is not None:
        headers["millrace_sent_at"] = time.time()
