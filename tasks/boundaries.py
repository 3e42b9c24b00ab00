"""A run's two ends: ``start`` (queued -> running) and ``finish`` (succeeded, or failed after
its on_failure steps). In a chain they usually share the task of the code steps beside
them (see ``tasks/code.py``)."""
from __future__ import annotations

from typing import Any

from celery import Task
from celery.exceptions import Ignore

from orchestrator.execution.context import Context
from orchestrator.store import runs
from tasks.app import app, settings
from tasks.attempt import ended, run_ref
from tasks.runtime import runtime


@app.task(name="millrace.start", bind=True)
def start(self: Task, ctx: Context, **kw: Any) -> Context:
    return start_run(ctx, kw)


@app.task(name="millrace.finish", bind=True)
def finish(self: Task, ctx: Context, **kw: Any) -> None:
    finish_run(ctx, kw)


def start_run(ctx: Context, kw: dict[str, Any]) -> Context:
    rt = runtime(settings)
    if not runs.start_run(rt.engine, kw["run"], rt.worker):
        raise Ignore()
    return ctx


def finish_run(ctx: Context, kw: dict[str, Any]) -> None:
    rt = runtime(settings)
    ending = runs.finish_run(rt.engine, kw["run"], run_ref(kw).phase, ctx.get("last"), rt.worker)
    if ending is not None:
        ended(rt, ending)
