"""The Celery application, configured from the environment."""
from __future__ import annotations

import time

from celery import Celery
from celery.signals import before_task_publish

from config.celery import celery_config
from config.settings import load_settings

settings = load_settings()
app = Celery("millrace", set_as_current=True)
app.config_from_object(celery_config(settings))
app.conf.include = ["tasks.steps", "tasks.sweeper", "tasks.bench"]


@before_task_publish.connect
def _stamp_sent_time(headers: dict | None = None, **_: object) -> None:
    # A step's `created_at` is when its message was sent: the wait in the queue shows.
    if headers is not None:
        headers["millrace_sent_at"] = time.time()
