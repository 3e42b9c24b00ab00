"""One delivery of one step, from its prologue to what follows its outcome.

Every step-like task starts the same way (:func:`begin`): enter its for_each item, check
its ``if``, open its attempt row (which also checks the run is still active). A redelivered
message whose attempt has an outcome replays it (:func:`replay`). A task that must not go
on raises ``Ignore``: its chain stops and, inside a chord, it never counts. What follows a
failure is decided by the pure failure policy (``execution/lifecycle.after_failure``) and
acted on here (:func:`act_on`).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery import Task
from celery.exceptions import Ignore

from orchestrator.errors import ExpressionError
from orchestrator.execution.checks import added_labels, retry_wanted
from orchestrator.execution.compiler import compile_handlers
from orchestrator.execution.context import Context, Wire
from orchestrator.execution.lifecycle import CarryOn, Decision, FailRun, Phase, RetryStep, StepStatus, after_failure
from orchestrator.execution.messages import RunRef, StepAt, unit_from_wire
from orchestrator.execution.plan import Node, Plan, truthy
from orchestrator.services.decisions import settle_parent
from orchestrator.services.follow_up import follow_up
from orchestrator.store import attempts, outcomes, runs
from orchestrator.store.attempts import Attempt
from orchestrator.store.runs import Ending
from orchestrator.store.variables import mask
from orchestrator.store.variables import resolve as resolve_variables
from tasks.app import app, settings
from tasks.checks import break_holds, break_loop, fail_if_held, stop_holds, stop_run, stopped_by_break
from tasks.runtime import Runtime, runtime


@dataclass
class Deferred:
    """What a batch has not written yet: a plain step's success, with a plain step after it
    in the same task, or the run's start before its first step; that step's attempt writes
    it first, in one statement (``attempts.open_attempt``: the events in their order).
    Whatever else comes next writes it on its own (``write``) before anything else."""

    outcome: dict[str, Any] | None = None
    start_of: str | None = None  # a run whose start (a batch's first unit) its first step's attempt writes

    def take(self) -> dict[str, Any] | None:
        outcome, self.outcome = self.outcome, None
        return outcome

    def take_start(self) -> bool:
        starting, self.start_of = self.start_of is not None, None
        return starting

    def write(self, rt: Runtime) -> None:
        if self.start_of is not None and not runs.start_run(rt.engine, self.start_of, rt.worker, flush=False):
            raise Ignore()  # the run ended meanwhile (cancelled): it goes no further
        self.start_of = None
        outcome = self.take()
        if outcome is not None and not outcomes.write_outcome(rt.engine, outcome, flush=False):
            raise Ignore()  # another delivery recorded it first, and goes on itself


@dataclass
class StepDelivery:
    """One delivery of one step: where it is and what it may read."""

    task: Task
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
    deferred: Deferred | None = None  # its batch's: the outcome of the step before, not written yet
    _names: dict[str, Any] | None = None

    @property
    def names(self) -> dict[str, Any]:
        """What its expressions see; the variables and secrets they read are fetched once."""
        if self._names is None:
            found_vars: dict[str, Any] = {}
            if self.node.variables or self.node.secrets:
                found_vars, self.secrets = resolve_variables(
                    self.rt.engine, settings.secret_keys, self.node.variables, self.node.secrets)
            self._names = self.ctx.expression_names(found_vars, self.secrets)
        return self._names


Body = Callable[[StepDelivery], Context]


def run_attempt(task: Task, ctx: Context, ref: RunRef, unit: StepAt, body: Body, *, number: int | None = None,
                first: bool = True, retry_replayed: bool = True, deferred: Deferred | None = None) -> Context:
    """The prologue every step shares, then ``body`` for an attempt that has no outcome yet.

    A skipped step hands its context on; a recorded outcome is replayed (a failure acted on
    again, retrying it only when ``retry_replayed``). ``deferred``: its batch's outcome not
    written yet (see ``Deferred``)."""
    begun = begin(task, ctx, ref, unit, number, first, deferred)
    if not isinstance(begun, StepDelivery):
        return begun
    if begun.attempt.status.finished:
        return replay(begun, retryable=retry_replayed)
    return body(begun)


def step_task(name: str, *, retry_replayed: bool = True) -> Callable[[Body], Task]:
    """A Celery task whose body runs one step attempt after the shared prologue."""
    def register(body: Body) -> Task:
        def task(self: Task, ctx: Wire, **kw: Any) -> Wire:
            unit = unit_from_wire(kw)
            assert isinstance(unit, StepAt)
            return run_attempt(self, Context.from_wire(ctx), RunRef.from_kwargs(kw), unit, body,
                               retry_replayed=retry_replayed).to_wire()
        task.__name__ = task.__qualname__ = body.__name__
        task.__doc__ = body.__doc__
        return app.task(name=name, bind=True)(task)
    return register


def begin(task: Task, ctx: Context, ref: RunRef, unit: StepAt, number: int | None = None,
          first: bool = True, deferred: Deferred | None = None) -> StepDelivery | Context:
    """Open this step's attempt; returns the context to hand on when the step is skipped.

    ``number`` is the attempt's number, by default the task's (its retries + 1); ``first``
    says whether it is the first step of its task (later ones of a batch never queued).
    ``deferred``: its batch's outcome not written yet, written with this attempt when nothing
    is written between them (no ``if``, no broken loop), else first.
    """
    rt = runtime(settings)
    plan = rt.plan(ref.flow_id, ref.version)
    node = plan.node(unit.node)
    if deferred is not None and node.condition is not None:
        deferred.write(rt)
    if ctx.loops and stopped_by_break(rt, plan, node, ref, ctx, unit.enter is not None):
        if deferred is not None:
            deferred.write(rt)
        return ctx  # a break_if ended this loop: no further item or step of it starts
    if unit.enter is not None:
        ctx.enter_item(unit.enter.index, unit.enter.item)
    idx = ctx.indices()
    step = StepDelivery(task, rt, plan, node, ref, ctx, node.concrete_path(idx), idx[-1] if idx else None,
                        task.request.retries + 1 if number is None else number, first, deferred=deferred)
    try:
        holds = node.condition is None or truthy(node.condition, step.names)
    except ExpressionError as exc:
        _open(step)
        if step.attempt.status.finished:
            return step  # decided before (what it reads may have changed since): the caller replays it
        return fail(step, f"if: {exc}", retryable=False)
    # A step that has a row already was decided when it was made: its recorded outcome is
    # replayed (or its attempt run again) even if the condition reads differently now.
    if not holds and attempts.record_skipped(rt.engine, run_id=ref.run_id, path=step.path, step_id=node.id,
                                             kind=node.kind, item_index=step.item_index, worker=rt.worker):
        return ctx.set_outcome(node.id, StepStatus.SKIPPED.value, None)
    _open(step)
    deliveries = step.attempt.deliveries
    if step.attempt.status is StepStatus.RUNNING and deliveries > settings.max_deliveries:
        # A poison message: each delivery so far ended with its worker (a step that kills
        # its process, or the machine) before any outcome. It ends here, by the failure policy.
        return fail(step, f"the worker died {deliveries - 1} times running this step (limit: "
                          f"MILLRACE_MAX_DELIVERIES={settings.max_deliveries})")
    return step


def _open(step: StepDelivery) -> None:
    request = step.task.request
    sent = request.get("millrace_sent_at") if step.first else None
    attempt = attempts.open_attempt(
        step.rt.engine, run_id=step.ref.run_id, phase=step.ref.phase, path=step.path,
        step_id=step.node.id, kind=step.node.kind, item_index=step.item_index,
        attempt=step.number, worker=step.rt.worker, task_id=request.id,
        created_at=dt.datetime.fromtimestamp(sent, dt.UTC) if sent else None,
        after=step.deferred.take() if step.deferred is not None else None,
        starting=step.deferred.take_start() if step.deferred is not None else False,
    )
    if attempt is None:
        raise Ignore()  # the run has ended or failed (or another delivery goes on): nothing more of it runs
    step.attempt = attempt


def succeed(step: StepDelivery, result: Any, logs: str | None = None, cached: bool = False,
            flush: bool = True, defer: Deferred | None = None) -> Context:
    """Record the step's result; the secrets it read are masked in what is written.
    ``flush=False``: the caller's next write flushes it (``store/sql.unflushed``). ``defer``:
    a step with no checks leaves its outcome there, for the next step of its batch to write."""
    result, logs = mask(result, step.secrets), mask(logs, step.secrets)
    checks = step.node.checks
    if defer is not None and checks.plain:
        defer.outcome = outcomes.outcome_values(step.attempt.id, StepStatus.SUCCEEDED, result, logs=logs,
                                                cached=cached)
        return step.ctx.set_outcome(step.node.id, StepStatus.SUCCEEDED.value, defer.outcome["result"])
    if checks.fail_if is not None:
        failed = fail_if_held(step, result)
        if failed is not None:
            return fail(step, failed[0], logs=logs, retryable=failed[1])
    try:
        broke = checks.break_if is not None and break_holds(step, result)
    except ExpressionError as exc:
        return fail(step, f"break_if: {exc}", logs=logs, retryable=False)
    try:
        stops = checks.stop_if is not None and stop_holds(step, result)
    except ExpressionError as exc:
        return fail(step, f"stop_if: {exc}", logs=logs, retryable=False)
    labels = None
    if checks.labels is not None:  # only then does recording the outcome also touch the run's row
        try:
            labels = (step.ref.run_id, mask(added_labels(checks.labels, step.names, result), step.secrets))
        except ExpressionError as exc:
            return fail(step, f"labels: {exc}", logs=logs, retryable=False)
    status, result, error = attempts.record_outcome(
        step.rt.engine, step.attempt.id, StepStatus.SUCCEEDED, result, logs=logs, cached=cached, labels=labels,
        flush=flush)
    if status is StepStatus.FAILED:
        raise Ignore()  # an earlier delivery recorded a failure and acted on it
    if stops and status is StepStatus.SUCCEEDED:
        stop_run(step, result)
    if broke and status is StepStatus.SUCCEEDED:
        break_loop(step)
    return step.ctx.set_outcome(step.node.id, status.value, result)


def fail(step: StepDelivery, error: str, *, logs: str | None = None, retryable: bool = True) -> Context:
    """Record a failed attempt, then do what the failure policy decides. The secrets the
    step read are masked in the error and logs before anything is written: the attempt,
    the run's error and the audit trail all take the error from here."""
    error, logs = mask(error, step.secrets), mask(logs, step.secrets)
    status, result, error = attempts.record_outcome(
        step.rt.engine, step.attempt.id, StepStatus.FAILED, error=error, logs=logs)
    if status is not StepStatus.FAILED:  # an earlier delivery recorded another outcome
        return step.ctx.set_outcome(step.node.id, status.value, result)
    return act_on(step, decide(step, error, retryable), error)


def decide(step: StepDelivery, error: str, retryable: bool) -> Decision:
    spec = step.node.step
    retry = getattr(spec, "retry", None)
    if retryable and retry is not None and step.number < retry.attempts:
        # retry.if: a failure it does not hold for goes on as if the attempts were used up
        retryable = retry_wanted(step.node.checks.retry_if, step.names, error)
    return after_failure(path=step.path, error=error, attempt=step.number, retry=retry,
                         continue_on_error=spec.continue_on_error, retryable=retryable, phase=step.ref.phase,
                         has_on_failure=bool(step.plan.on_failure))


class StepFailed(Exception):
    """What Flower shows of a failed step: the step's own error (masked), not Millrace's."""


def act_on(step: StepDelivery, decision: Decision, error: str) -> Context:
    label = step.ref.label(step.path)
    if isinstance(decision, RetryStep):
        # A step with retry is the first step of its task (the compiler sees to it): the
        # task's retry runs it again, and nothing before it. The retry keeps the step's label.
        raise step.task.retry(countdown=decision.countdown, max_retries=decision.max_retries,
                              exc=StepFailed(error), argsrepr=label, kwargsrepr="{}")
    if isinstance(decision, CarryOn):
        return step.ctx.set_outcome(step.node.id, StepStatus.FAILED.value, None, decision.error)
    assert isinstance(decision, FailRun)
    fail_run(step.rt, step.plan, step.ref, step.ctx, decision)
    # The task stops here (Ignore: its chain goes no further), which Celery reports to no
    # one: Flower hears of the failure from this event, with the step's (masked) error.
    _report_failure(step.task, f"{label}: {decision.error}")
    raise Ignore()


def _report_failure(task: Task, error: str) -> None:
    if not settings.task_events:
        return
    try:
        task.send_event("task-failed", exception=repr(StepFailed(error)), traceback=error)
    except Exception:  # noqa: BLE001 - an event lost is a monitor's gap, not the run's
        pass


def replay(step: StepDelivery, *, retryable: bool = True) -> Context:
    """A redelivered message whose attempt already has an outcome: hand that outcome on.

    A failure is acted on again (retry, carry on, or fail the run): the delivery that
    recorded it may have died before acting. Failing a run is done once whatever the count.
    """
    attempt = step.attempt
    if attempt.status is StepStatus.FAILED:
        return act_on(step, decide(step, attempt.error or "failed", retryable), attempt.error or "failed")
    if attempt.status is StepStatus.SUCCEEDED and step.node.checks.stop_if is not None:
        try:  # the delivery that recorded it may have died before it stopped the run
            if stop_holds(step, attempt.result):
                stop_run(step, attempt.result)
        except ExpressionError:
            pass  # it held no stop when it was recorded either: that delivery would have failed it
    if attempt.status is StepStatus.SUCCEEDED and step.node.checks.break_if is not None:
        try:  # the delivery that recorded it may have died before it marked the break
            if break_holds(step, attempt.result):
                break_loop(step)
        except ExpressionError:
            pass  # it held no break when it was recorded either: that delivery would have failed it
    return step.ctx.set_outcome(step.node.id, attempt.status.value, attempt.result, attempt.error)


def fail_run(rt: Runtime, plan: Plan, ref: RunRef, ctx: Context, decision: FailRun) -> None:
    """Record the run's failure; its on_failure or finally steps (owed with it) are sent now."""
    has_finally = bool(plan.finally_)
    if ref.phase is Phase.ON_FAILURE:  # a failing on_failure step: the run ends failed (after finally)
        ending = runs.finish_run(rt.engine, ref.run_id, Phase.ON_FAILURE, None, rt.worker, has_finally)
    elif ref.phase is Phase.FINALLY:  # a failing finally step: the run ends failed now
        ending = runs.fail_finally(rt.engine, ref.run_id, decision.error, rt.worker)
    else:
        handlers = None
        if decision.on_failure:
            handlers = dict(compile_handlers(plan, ref, Phase.ON_FAILURE, ctx.for_handlers(decision.error)))
        ending = runs.fail_run(rt.engine, ref.run_id, decision.error, handlers, rt.worker, has_finally)
    if ending is not None:
        ended(rt, ending)


def ended(rt: Runtime, ending: Ending) -> None:
    """A run ended: its parent's step, its flow triggers and its concurrency slot follow. A
    run that goes on (its on_failure or finally steps owed) has them sent instead."""
    if not ending.status.finished:
        rt.publisher.deliver(ending.owed)
        return
    settle_parent(rt.publisher, ending, rt.worker)
    follow_up(rt.publisher, ending.owed)
