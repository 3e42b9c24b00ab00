"""A run's two ends: ``start`` (queued -> running) and ``finish`` (succeeded, or failed after
its on_failure steps; with finally steps, the end of each phase sends them, and theirs ends
the run). In a chain they usually share the task of the code steps beside them (see
``tasks/code.py``)."""
from __future__ import annotations

from typing import Any

from celery import Task
from celery.exceptions import Ignore

from orchestrator.execution.context import Context, Wire
from orchestrator.execution.messages import RunRef
from orchestrator.store import runs
from tasks.app import app, settings
from tasks.attempt import ended
from tasks.runtime import runtime


@app.task(name="millrace.start", bind=True)
def start(self: Task, ctx: Wire, **kw: Any) -> Wire:
    start_run(RunRef.from_kwargs(kw))
    return ctx


@app.task(name="millrace.finish", bind=True)
def finish(self: Task, ctx: Wire, **kw: Any) -> None:
    finish_run(Context.from_wire(ctx), RunRef.from_kwargs(kw))


def start_run(ref: RunRef, *, flush: bool = True) -> None:
    """queued -> running (a redelivery finds it running and goes on); a run that ended
    meanwhile (cancelled) goes no further. ``flush=False`` in a batch, whose steps' writes
    after it flush it."""
    rt = runtime(settings)
    if not runs.start_run(rt.engine, ref.run_id, rt.worker, flush=flush):
        raise Ignore()


def finish_run(ctx: Context, ref: RunRef) -> None:
    rt = runtime(settings)
    has_finally = bool(rt.plan(ref.flow_id, ref.version).finally_)
    ending = runs.finish_run(rt.engine, ref.run_id, ref.phase, ctx.last, rt.worker, has_finally)
    if ending is not None:
        ended(rt, ending)
