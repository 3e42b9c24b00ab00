"""The tasks a run is made of. Each records in Postgres before its message is acknowledged.

Every step-like task starts the same way (:func:`_begin`): enter its for_each item, check
its ``if``, open its attempt row (which also checks the run is still active). A task that
must not go on raises ``Ignore``: its chain stops and, inside a chord, it never counts.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

from celery import Signature, Task
from celery.exceptions import Ignore

from orchestrator import compiler, records
from orchestrator.compiler import RunRef
from orchestrator.context import (
    Context,
    close_loop,
    drop_steps,
    enter_item,
    expression_names,
    indices,
    set_outcome,
)
from orchestrator.deps import DependencyError
from orchestrator.errors import ExpressionError, FlowError, ValidationError
from orchestrator.inputs import validate_inputs
from orchestrator.models import StepStatus
from orchestrator.plan import Node, Plan, truthy
from orchestrator.records import Attempt, Ending
from orchestrator.scripts import pin_scripts, split_ref
from orchestrator.submission import follow_up, publish_continuation, publish_on_failure, publish_run
from orchestrator.variables import mask
from orchestrator.variables import resolve as resolve_variables
from tasks.app import app, settings
from tasks.runtime import Runtime, runtime

# Sleeps are re-published in slices so no message is held unacked near RabbitMQ's limit.
SLEEP_SLICE_S = 600.0
MAX_SUBFLOW_DEPTH = 10


@dataclass
class _Step:
    """One delivery of one step: where it is and what it may read."""

    rt: Runtime
    plan: Plan
    node: Node
    ref: RunRef
    ctx: Context
    path: str
    item_index: int | None
    number: int  # which attempt of the step this delivery is
    first: bool  # the first step of its task: it waited in the queue since the message was sent
    attempt: Attempt | None = None
    secrets: dict[str, Any] = field(default_factory=dict)  # the values to mask in what it records
    _names: dict[str, Any] | None = None

    @property
    def names(self) -> dict[str, Any]:
        """What its expressions see; the variables and secrets they read are fetched once."""
        if self._names is None:
            found_vars: dict[str, Any] = {}
            if self.node.variables or self.node.secrets:
                found_vars, self.secrets = resolve_variables(
                    self.rt.engine, settings.secret_keys, self.node.variables, self.node.secrets)
            self._names = expression_names(self.ctx, found_vars, self.secrets)
        return self._names


def send(signature: Signature) -> None:
    signature.apply_async()


def _ref(kw: dict[str, Any]) -> RunRef:
    return RunRef(kw["run"], kw["flow"], kw["version"], kw.get("phase", "main"))


def _begin(task: Task, ctx: Context, kw: dict[str, Any], number: int | None = None,
           first: bool = True) -> _Step | Context:
    """Open this step's attempt; returns the context to hand on when the step is skipped.

    ``number`` is the attempt's number, by default the task's (its retries + 1); ``first``
    says whether it is the first step of its task (later ones of a batch never queued).
    """
    rt = runtime(settings)
    ref = _ref(kw)
    plan = rt.plan(ref.flow_id, ref.version)
    node = plan.node(kw["node"])
    enter = kw.get("enter")
    if enter is not None:
        enter_item(ctx, enter["index"], enter["item"])
    idx = indices(ctx)
    step = _Step(rt, plan, node, ref, ctx, node.concrete_path(idx), idx[-1] if idx else None,
                 task.request.retries + 1 if number is None else number, first)
    try:
        holds = node.condition is None or truthy(node.condition, step.names)
    except ExpressionError as exc:
        _open(task, step)
        if step.attempt.status.finished:
            return step  # decided before (what it reads may have changed since): the caller replays it
        return _fail(task, step, f"if: {exc}", retryable=False)
    # A step that has a row already was decided when it was made: its recorded outcome is
    # replayed (or its attempt run again) even if the condition reads differently now.
    if not holds and records.record_skipped(rt.engine, run_id=ref.run_id, path=step.path, step_id=node.id,
                                            kind=node.kind, item_index=step.item_index, worker=rt.worker):
        return set_outcome(ctx, node.id, StepStatus.SKIPPED.value, None)
    _open(task, step)
    return step


def _open(task: Task, step: _Step) -> None:
    sent = task.request.get("millrace_sent_at") if step.first else None
    attempt = records.open_attempt(
        step.rt.engine, run_id=step.ref.run_id, phase=step.ref.phase, path=step.path,
        step_id=step.node.id, kind=step.node.kind, item_index=step.item_index,
        attempt=step.number, worker=step.rt.worker, task_id=task.request.id,
        created_at=dt.datetime.fromtimestamp(sent, dt.UTC) if sent else None,
    )
    if attempt is None:
        raise Ignore()  # the run has ended or failed: nothing more of it runs
    step.attempt = attempt


def _succeed(step: _Step, result: Any, logs: str | None = None, cached: bool = False) -> Context:
    status, result, error = records.record_outcome(
        step.rt.engine, step.attempt.id, StepStatus.SUCCEEDED, result, logs=logs, cached=cached)
    if status is StepStatus.FAILED:
        raise Ignore()  # an earlier delivery recorded a failure and acted on it
    return set_outcome(step.ctx, step.node.id, status.value, result)


def _fail(task: Task, step: _Step, error: str, *, logs: str | None = None, retryable: bool = True) -> Context:
    """Record a failed attempt, then retry, carry on (continue_on_error) or fail the run."""
    status, result, error = records.record_outcome(
        step.rt.engine, step.attempt.id, StepStatus.FAILED, error=error, logs=logs)
    if status is not StepStatus.FAILED:  # an earlier delivery recorded another outcome
        return set_outcome(step.ctx, step.node.id, status.value, result)
    return _after_failure(task, step, error, retryable)


def _after_failure(task: Task, step: _Step, error: str, retryable: bool) -> Context:
    retry = getattr(step.node.step, "retry", None)
    # A step with retry is the first step of its task (the compiler sees to it): the task's
    # retry runs it again, and nothing before it.
    if retryable and retry is not None and step.number < retry.attempts:
        raise task.retry(countdown=retry.delay_before(step.number + 1), max_retries=retry.attempts)
    if step.node.step.continue_on_error:
        return set_outcome(step.ctx, step.node.id, StepStatus.FAILED.value, None, error)
    _fail_run(step.rt, step.plan, step.ref, step.ctx, f"step {step.path} failed: {error}")
    raise Ignore()


def _fail_run(rt: Runtime, plan: Plan, ref: RunRef, ctx: Context, error: str) -> None:
    if ref.phase == "on_failure":
        ending = records.finish_run(rt.engine, ref.run_id, "on_failure", None, rt.worker)
    else:
        handlers = None
        if plan.on_failure:
            handler_ctx = {**ctx, "error": error, "loops": [], "last": None}
            handlers = dict(compiler.compile_on_failure(plan, ref, handler_ctx))
        ending = records.fail_run(rt.engine, ref.run_id, error, handlers, rt.worker)
        if ending is not None and handlers is not None:
            # kept on the run since the commit: a worker dying now leaves them to the sweeper
            publish_on_failure(rt.engine, send, ref.run_id, handlers)
            return
    if ending is not None:
        _ended(rt, ending)


def _ended(rt: Runtime, ending: Ending) -> None:
    """A run ended: its parent's step, its flow triggers and its concurrency slot follow."""
    _notify_parent(rt, ending)
    if ending.status.finished:
        follow_up(rt.engine, send, ending.run_id, rt.plan_of)


def _notify_parent(rt: Runtime, ending: Ending) -> None:
    """A subflow's run ended: decide the parent's waiting step and let the parent go on."""
    if ending.parent_step_run_id is None:
        return
    if ending.status.value == "succeeded":
        cont = records.resume_attempt(rt.engine, ending.parent_step_run_id, StepStatus.SUCCEEDED,
                                      ending.result, actor=rt.worker)
    else:
        cont = records.resume_attempt(rt.engine, ending.parent_step_run_id, StepStatus.FAILED,
                                      error=f"subflow run {ending.run_id} {ending.status.value}: "
                                            f"{ending.error}", actor=rt.worker)
    if cont is not None:
        publish_continuation(rt.engine, send, ending.parent_step_run_id, cont)


def _replay(task: Task, step: _Step) -> Context:
    """A redelivered message whose attempt already has an outcome: hand that outcome on.

    A failure is acted on again (retry, carry on, or fail the run): the delivery that
    recorded it may have died before acting. Failing a run is done once whatever the count.
    """
    attempt = step.attempt
    if attempt.status is StepStatus.FAILED:
        return _after_failure(task, step, attempt.error or "failed", retryable=True)
    return set_outcome(step.ctx, step.node.id, attempt.status.value, attempt.result, attempt.error)


# --- run boundaries ----------------------------------------------------------------------

@app.task(name="millrace.start", bind=True)
def start(self: Task, ctx: Context, **kw: Any) -> Context:
    return _start(ctx, kw)


@app.task(name="millrace.finish", bind=True)
def finish(self: Task, ctx: Context, **kw: Any) -> None:
    _finish(ctx, kw)


def _start(ctx: Context, kw: dict[str, Any]) -> Context:
    rt = runtime(settings)
    if not records.start_run(rt.engine, kw["run"], rt.worker):
        raise Ignore()
    return ctx


def _finish(ctx: Context, kw: dict[str, Any]) -> None:
    rt = runtime(settings)
    ending = records.finish_run(rt.engine, kw["run"], kw.get("phase", "main"), ctx.get("last"), rt.worker)
    if ending is not None:
        _ended(rt, ending)


# --- code steps --------------------------------------------------------------------------

@app.task(name="millrace.step", bind=True)
def step(self: Task, ctx: Context, **kw: Any) -> Context | None:
    """A batch: consecutive code steps of one queue (and the run's start or finish next to
    them), in order, each in its own process and with its own attempt row.

    A redelivered batch replays the steps that have an outcome and runs the rest. One that
    has run longer than ``MILLRACE_STEP_BATCH_S`` hands its remaining steps on as a new
    task, so no task nears the hard time limit and Flower shows where a long run is.
    """
    # A message sent before batches (a continuation kept by a waiting step, a retry) names one step.
    units = kw.get("units") or [{k: kw[k] for k in ("node", "enter") if k in kw}]
    ref = {k: v for k, v in kw.items() if k not in ("units", "node", "enter")}
    began = time.monotonic()
    # The first code step is the one the message was queued for, and the only one whose
    # attempt number is the task's (a retrying step is always first: the compiler sees to it).
    first_step = True
    for i, unit in enumerate(units):
        # Handed on only after a code step ran: the first one keeps the task's retry count.
        if not first_step and time.monotonic() - began > settings.batch_seconds:
            rest = compiler.compile_units(runtime(settings).plan(kw["flow"], kw["version"]), _ref(kw), units[i:])
            raise self.replace(rest.clone(args=(ctx,)))
        if "start" in unit:
            ctx = _start(ctx, ref)
        elif "finish" in unit:
            return _finish(ctx, ref)
        else:
            number = self.request.retries + 1 if first_step else 1
            ctx = _code_step(self, ctx, {**ref, **unit}, number, first_step, time.monotonic() - began)
            first_step = False
    return ctx


def _code_step(task: Task, ctx: Context, kw: dict[str, Any], number: int, first: bool,
               elapsed: float) -> Context:
    """One code step of a batch, ``elapsed`` seconds into its task."""
    begun = _begin(task, ctx, kw, number, first)
    if not isinstance(begun, _Step):
        return begun
    s = begun
    if s.attempt.status.finished:
        return _replay(task, s)
    node = s.node
    try:
        args = node.arguments.render(s.names)
    except ExpressionError as exc:
        return _fail(task, s, f"with: {exc}", retryable=False)
    kind, code = node.kind, getattr(node.step, node.kind)
    if kind == "script":
        pinned = s.ctx["run"].get("scripts", {}).get(code)
        if pinned is None:
            return _fail(task, s, f"script '{code}' was not pinned when the run started", retryable=False)
        kind, code = s.rt.script(split_ref(code)[0], pinned)
    cache = node.step.cache
    if cache is not None:
        key = records.cache_key(s.ref.flow_id, node.path, code, args)
        hit, result = records.cached_result(s.rt.engine, key)
        if hit:
            return _succeed(s, result, cached=True)
    try:
        executor = s.rt.python_for(code) if kind == "python" else _executor(s.rt, kind)
    except DependencyError as exc:
        return _fail(task, s, f"dependencies: {exc}", retryable=False)
    env = {
        "MILLRACE_RUN_ID": s.ref.run_id,
        "MILLRACE_FLOW_ID": s.ref.flow_id,
        "MILLRACE_STEP_PATH": s.path,
        "MILLRACE_ATTEMPT": str(s.number),
    }
    if s.ctx.get("error"):
        env["MILLRACE_ERROR"] = s.ctx["error"]
    # Never past the task's hard limit (what the batch has used of it counted): a task
    # killed there ends failed and its message is gone.
    ceiling = settings.task_time_limit - 60 - elapsed
    timeout = min(node.step.timeout or ceiling, ceiling)
    if kind == "sql":
        database = getattr(node.step, "database", None)
        url = s.secrets.get(database) if database else settings.database_url if settings.sql_own_database else None
        if not isinstance(url, str):
            why = (f"secret '{database}' holds no connection URL" if database else
                   "an sql step names its `database:` (a secret holding a PostgreSQL URL); Millrace's own "
                   "database is allowed only with MILLRACE_SQL_OWN_DATABASE=1")
            return _fail(task, s, why, retryable=False)
        execution = executor.run(code, args, url=url, timeout=timeout)
    elif kind == "javascript":
        try:
            modules = s.rt.node_modules_for(code)
        except DependencyError as exc:
            return _fail(task, s, f"dependencies: {exc}", retryable=False)
        execution = executor.run(code, args, timeout=timeout, env=env, node_modules=modules)
    else:
        execution = executor.run(code, args, timeout=timeout, env=env)
    logs = mask(execution.logs, s.secrets)
    if not execution.ok:
        return _fail(task, s, mask(execution.error or "failed", s.secrets), logs=logs)
    result = mask(execution.result, s.secrets)
    if cache is not None:
        records.store_cached_result(s.rt.engine, key, result, cache.ttl)
    return _succeed(s, result, logs=logs)


def _executor(rt: Runtime, kind: str) -> Any:
    return getattr(rt, kind)  # python, bash, javascript, sql: the runtime's executor of that name


# --- composite steps ---------------------------------------------------------------------

@app.task(name="millrace.expand", bind=True)
def expand(self: Task, ctx: Context, **kw: Any) -> Context:
    """parallel and for_each: replace this task with a chord over branches or item lanes."""
    begun = _begin(self, ctx, kw)
    if not isinstance(begun, _Step):
        return begun
    s = begun
    if s.attempt.status.finished:
        # Recorded by its join, or by this task (no items, bad items) whose delivery died
        # before handing on: hand on what is recorded (again, at worst: the rest replays).
        return _replay(self, s)
    if s.node.kind == "parallel":
        raise self.replace(compiler.compile_parallel(s.plan, s.node, s.ref, s.ctx))
    try:
        items = s.node.items.render(s.names)
    except ExpressionError as exc:
        return _fail(self, s, f"for_each: {exc}", retryable=False)
    if not isinstance(items, list):
        return _fail(self, s, f"for_each: expected a list, got {type(items).__name__}", retryable=False)
    if not items:
        return drop_steps(_succeed(s, []), s.node.inner_ids)
    parallel = s.node.step.parallel
    width = len(items) if parallel is True else 1 if parallel is False else parallel
    raise self.replace(compiler.compile_for_each(s.plan, s.node, s.ref, s.ctx, items, width))


@app.task(name="millrace.join", bind=True)
def join(self: Task, parts: list[Context], **kw: Any) -> Context:
    """All branches or lanes are done: record the composite step's result and go on."""
    rt = runtime(settings)
    ref = _ref(kw)
    node = rt.plan(ref.flow_id, ref.version).node(kw["node"])
    if node.kind == "for_each":
        ctx, result = close_loop(parts, kw["count"])
    else:
        ctx = parts[0]
        result = {label: part["last"] for label, part in zip(node.labels, parts, strict=True)}
    return _close(rt, node, ref, drop_steps(ctx, node.inner_ids), result)


@app.task(name="millrace.switch", bind=True)
def switch(self: Task, ctx: Context, **kw: Any) -> Context:
    """Replace this task with the first case whose `if` holds (or else); none: result null."""
    begun = _begin(self, ctx, kw)
    if not isinstance(begun, _Step):
        return begun
    s = begun
    if s.attempt.status.finished:
        return _replay(self, s)  # recorded by its close, or by this task (no case held, a bad if)
    names = s.names
    chosen = None
    for i, condition in enumerate(s.node.case_conditions):
        try:
            if truthy(condition, names):
                chosen = i
                break
        except ExpressionError as exc:
            return _fail(self, s, f"switch[{i}].if: {exc}", retryable=False)
    if chosen is None and len(s.node.sequences) > len(s.node.case_conditions):
        chosen = len(s.node.case_conditions)  # else
    if chosen is None:
        return _succeed(s, None)
    raise self.replace(compiler.compile_case(s.plan, s.node, s.ref, s.ctx, chosen))


@app.task(name="millrace.close", bind=True)
def close(self: Task, ctx: Context, **kw: Any) -> Context:
    """The chosen case of a switch is done: its last result is the switch's result."""
    rt = runtime(settings)
    ref = _ref(kw)
    node = rt.plan(ref.flow_id, ref.version).node(kw["node"])
    return _close(rt, node, ref, drop_steps(ctx, node.inner_ids), ctx.get("last"))


def _close(rt: Runtime, node: Node, ref: RunRef, ctx: Context, result: Any) -> Context:
    path = node.concrete_path(indices(ctx))
    attempt_id = records.attempt_id(rt.engine, ref.run_id, path, 1)
    status, result, error = records.record_outcome(rt.engine, attempt_id, StepStatus.SUCCEEDED, result)
    if status is StepStatus.FAILED:
        raise Ignore()
    return set_outcome(ctx, node.id, status.value, result)


# --- waiting steps -----------------------------------------------------------------------

@app.task(name="millrace.wait", bind=True)
def wait(self: Task, ctx: Context, **kw: Any) -> Context:
    """approval, sleep and flow: park the step with its continuation until it is decided."""
    begun = _begin(self, ctx, kw)
    if not isinstance(begun, _Step):
        return begun
    s = begun
    attempt = s.attempt
    if attempt.status.finished:
        return _replay(self, s) if attempt.status is not StepStatus.FAILED else _after_failure(
            self, s, attempt.error or "failed", retryable=False)
    if s.node.kind == "sleep":
        return _sleep(self, s)
    if attempt.status is StepStatus.WAITING:
        raise Ignore()  # a redelivery of the message that parked it
    continuation = _continuation(self, s.ctx)
    if s.node.kind == "approval":
        timeout = s.node.step.approval.timeout
        resume_at = records.now() + dt.timedelta(seconds=timeout) if timeout else None
        records.suspend_attempt(s.rt.engine, attempt.id, s.ref.run_id, continuation,
                                resume_at=resume_at, suspend_run=True, worker=s.rt.worker)
        raise Ignore()
    return _start_subflow(self, s, continuation)


def _continuation(task: Task, ctx: Context, **options: Any) -> dict[str, Any]:
    kwargs = {k: v for k, v in task.request.kwargs.items() if k != "enter"}
    sig = task.signature_from_request(args=(ctx,), kwargs=kwargs, **options)
    return dict(sig)


def _sleep(task: Task, s: _Step) -> Context:
    attempt = s.attempt
    now = records.now()
    if attempt.status is StepStatus.WAITING and attempt.resume_at and attempt.resume_at <= now:
        return _succeed(s, None)
    if attempt.status is StepStatus.RUNNING:
        resume_at = now + dt.timedelta(seconds=s.node.step.sleep)
        records.suspend_attempt(s.rt.engine, attempt.id, s.ref.run_id, {}, resume_at=resume_at,
                                suspend_run=False, worker=s.rt.worker)
    else:
        resume_at = attempt.resume_at
    remaining = (resume_at - now).total_seconds()
    if remaining <= 0:
        return _succeed(s, None)
    kwargs = {k: v for k, v in task.request.kwargs.items() if k != "enter"}
    task.signature_from_request(args=(s.ctx,), kwargs=kwargs).apply_async(
        countdown=min(remaining, SLEEP_SLICE_S))
    raise Ignore()


def _start_subflow(task: Task, s: _Step, continuation: dict[str, Any]) -> Context:
    rt = s.rt
    ref_text = s.node.step.flow
    flow_id, _, version_text = ref_text.partition("@")
    depth = s.ctx["run"].get("depth", 0) + 1
    if depth > MAX_SUBFLOW_DEPTH:
        return _fail(task, s, f"subflows nest deeper than {MAX_SUBFLOW_DEPTH}", retryable=False)
    try:
        args = s.node.arguments.render(s.names)
        version, _ = records.load_flow_document(rt.engine, flow_id, int(version_text) if version_text else None)
        child_plan = rt.plan(flow_id, version)
        inputs = validate_inputs(child_plan.flow.inputs, args)
        pins = pin_scripts(rt.engine, child_plan.flow)
    except (FlowError, ValidationError) as exc:
        return _fail(task, s, f"flow {ref_text}: {exc}", retryable=False)
    child_id = records.start_subflow(
        rt.engine, parent_run_id=s.ref.run_id, attempt_id=s.attempt.id, continuation=continuation,
        flow_id=flow_id, version=version, inputs=inputs, depth=depth, worker=rt.worker, scripts=pins)
    if child_id is None:
        raise Ignore()  # the step ended meanwhile: its run was cancelled
    publish_run(send, child_plan, child_id, inputs, depth, pins)
    records.mark_published(rt.engine, child_id)
    raise Ignore()
