"""Code steps: python, bash, javascript, typescript, sql and saved scripts, run in batches.

Consecutive code steps of one queue share one ``millrace.step`` task (a batch, with the
run's start or finish beside them); each still runs in its own process and has its own
attempt row.
"""
from __future__ import annotations

import contextlib
import time
from functools import partial
from typing import Any

from celery import Task

from orchestrator.definitions.script_inputs import split_ref
from orchestrator.errors import DependencyError, ExpressionError, ValidationError
from orchestrator.execution.compiler import compile_units
from orchestrator.execution.context import Context, Wire
from orchestrator.execution.messages import Finish, RunRef, Start, StepAt, units_of
from orchestrator.executors.base import StepCall
from orchestrator.services.limits import limits_for
from orchestrator.store.attempts import follow_logs
from orchestrator.store.cache import cache_key, cached_result, store_cached_result
from orchestrator.store.database import flush_commits
from orchestrator.store.variables import mask
from tasks.app import app, settings
from tasks.attempt import Deferred, StepDelivery, fail, run_attempt, succeed
from tasks.boundaries import finish_run, start_run
from tasks.runtime import runtime


@app.task(name="millrace.step", bind=True)
def step(self: Task, wire: Wire, **kw: Any) -> Wire | None:
    """A batch: consecutive code steps of one queue (and the run's start or finish next to
    them), in order, each in its own process and with its own attempt row.

    A redelivered batch replays the steps that have an outcome and runs the rest. One that
    has run longer than ``MILLRACE_STEP_BATCH_S`` hands its remaining steps on as a new
    task, so no task nears the hard time limit and Flower shows where a long run is.
    """
    units = units_of(kw)
    ref = RunRef.from_kwargs(kw)
    ctx = Context.from_wire(wire)
    began = time.monotonic()
    # The first code step is the one the message was queued for, and the only one whose
    # attempt number is the task's (a retrying step is always first: the compiler sees to it).
    first_step = True
    deferred = Deferred()  # a step's outcome the next step's attempt writes, in one statement with it
    try:
        for i, unit in enumerate(units):
            # Handed on only after a code step ran: the first one keeps the task's retry count. The
            # run's finish is never handed on: it is short, and it flushes the step before it.
            if not first_step and not isinstance(unit, Finish) and time.monotonic() - began > settings.batch_seconds:
                rt = runtime(settings)
                deferred.write(rt)
                flush_commits(rt.engine)  # the step before was not flushed: it is, before this task is acked
                raise self.replace(compile_units(rt.plan(ref.flow_id, ref.version), ref, units[i:]).clone(
                    args=(ctx.to_wire(),)))
            if isinstance(unit, Start):
                if i + 1 < len(units) and isinstance(units[i + 1], StepAt):
                    deferred.start_of = ref.run_id  # its first step's attempt writes it
                else:
                    start_run(ref)
            elif isinstance(unit, Finish):
                finish_run(ctx, ref)
                return None
            else:
                number = self.request.retries + 1 if first_step else 1
                # A step's outcome followed by more of this task needs no flush of its own: what ends
                # the task (the run's finish, its last step's outcome, a hand-off) flushes, and with
                # it everything before, before the task's message is acked (see sql.unflushed).
                last = i + 1 == len(units)
                defer = deferred if not last and isinstance(units[i + 1], StepAt) else None
                body = partial(_code_step, elapsed=time.monotonic() - began, flush=last, defer=defer)
                ctx = run_attempt(self, ctx, ref, unit, body, number=number, first=first_step, deferred=deferred)
                first_step = False
    except BaseException:
        if deferred.outcome is not None:  # what went wrong came after it: it is still that step's outcome
            with contextlib.suppress(Exception):
                deferred.write(runtime(settings))
        raise
    return ctx.to_wire()


def _code_step(s: StepDelivery, *, elapsed: float, flush: bool, defer: Deferred | None) -> Context:
    """One code step of a batch, ``elapsed`` seconds into its task; ``flush``: whether its
    outcome's commit waits for the disk (see ``store/sql.unflushed``); ``defer``: where its
    success is left for the next step of the batch to write."""
    node = s.node
    try:
        args = node.arguments.render(s.names)
    except ExpressionError as exc:
        return fail(s, f"with: {exc}", retryable=False)
    kind, code = node.kind, getattr(node.step, node.kind)
    if kind == "script":
        pinned = s.ctx.run.scripts.get(code)
        if pinned is None:
            return fail(s, f"script '{code}' was not pinned when the run started", retryable=False)
        kind, code = s.rt.script(split_ref(code)[0], pinned)
    cache = node.step.cache
    if cache is not None:
        key = cache_key(s.ref.flow_id, node.path, code, args)
        hit, result = cached_result(s.rt.engine, key)
        if hit:
            return succeed(s, result, cached=True, flush=flush, defer=defer)
    if kind == "typescript":  # run as JavaScript: the code kept for it when it was saved
        try:
            kind, code = "javascript", s.rt.javascript_for(code)
        except (DependencyError, ValidationError) as exc:
            return fail(s, f"typescript: {exc}", retryable=False)
    try:
        executor = s.rt.executor(kind, code)
        node_modules = s.rt.node_modules_for(code) if kind == "javascript" else None
    except DependencyError as exc:
        return fail(s, f"dependencies: {exc}", retryable=False)
    env = {
        "MILLRACE_RUN_ID": s.ref.run_id,
        "MILLRACE_FLOW_ID": s.ref.flow_id,
        "MILLRACE_STEP_PATH": s.path,
        "MILLRACE_ATTEMPT": str(s.number),
    }
    if s.ctx.error:
        env["MILLRACE_ERROR"] = s.ctx.error
    # Never past the task's hard limit (what the batch has used of it counted): a task
    # killed there ends failed and its message is gone.
    ceiling = settings.task_time_limit - 60 - elapsed
    timeout = min(node.step.timeout or ceiling, ceiling)
    database_url = None
    if kind == "sql":
        database = getattr(node.step, "database", None)
        database_url = s.secrets.get(database) if database else (
            settings.database_url if settings.sql_own_database else None)
        if not isinstance(database_url, str):
            why = (f"secret '{database}' holds no connection URL" if database else
                   "an sql step names its `database:` (a secret holding a PostgreSQL URL); Millrace's own "
                   "database is allowed only with MILLRACE_SQL_OWN_DATABASE=1")
            return fail(s, why, retryable=False)
    limits = limits_for(s.rt.limits, s.rt.ceiling, s.plan.flow, node.step)
    network = node.step.network or s.plan.flow.network or settings.step_network
    execution = executor.run(StepCall(code, args, timeout, env, database_url, node_modules, limits, network,
                                      on_output=_follower(s)))
    if not execution.ok:
        return fail(s, execution.error or "failed", logs=execution.logs)
    result = mask(execution.result, s.secrets)  # the cache keeps it masked, as the attempt does
    if cache is not None:
        store_cached_result(s.rt.engine, key, result, cache.ttl)
    return succeed(s, result, logs=execution.logs, flush=flush, defer=defer)


def _follower(s: StepDelivery) -> Any:
    """What a running step has written, masked and recorded at most once a second, so that
    the console (and GET .../logs) can follow it before its outcome is written."""
    attempt = s.attempt
    if attempt is None:
        return None
    engine, secrets = s.rt.engine, s.secrets

    def follow(logs: str) -> None:
        follow_logs(engine, attempt.id, mask(logs, secrets))

    return follow
