"""Record, then send, then mark sent: the one path by which a message leaves for the broker.

Whatever makes a message owed (a run recorded, a run failed with on_failure steps, a
run whose finally steps are due, a waiting step decided) writes it to the outbox in the
same transaction (``store/outbox.py``) and hands the owed row here after the commit.
:meth:`Publisher.deliver` sends it and marks it done; a process that dies in between, or a
broker that does not answer, leaves the row to the sweeper, which delivers it through the
same method.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import amqp.exceptions
import kombu.exceptions
from celery import Signature
from sqlalchemy import Engine

from orchestrator.execution.compiler import compile_handlers, compile_run
from orchestrator.execution.context import Context
from orchestrator.execution.lifecycle import Phase
from orchestrator.execution.messages import RunRef
from orchestrator.execution.plan import Plan
from orchestrator.store import outbox, views
from orchestrator.store.outbox import Owed, OwedKind
from orchestrator.store.views import RunView

log = logging.getLogger("millrace.publisher")
# What a send raises when the broker cannot be reached (connection refused, reset, timed out),
# or refuses the queue (a channel error: one declared before priorities, see tasks/queues.py).
BROKER_ERRORS = (kombu.exceptions.OperationalError, ConnectionError, TimeoutError, amqp.exceptions.ChannelError)
Send = Callable[[Signature], Any]  # publishes a Celery signature (given by the composition root)
Revoke = Callable[[list[str]], Any]  # stops the Celery tasks with these ids wherever they run


class Plans(Protocol):
    def plan(self, flow_id: str, version: int | None) -> Plan:
        """The plan of a flow version (None: the latest)."""
        ...


class Publisher:
    """Sends what is owed and marks it done; holds what every caller needs for that."""

    def __init__(self, engine: Engine, send: Send, plans: Plans):
        self.engine = engine
        self.send = send
        self.plans = plans

    def deliver(self, owed: Owed | None, message: Signature | None = None) -> None:
        """Send ``owed`` (``message`` when the caller has built it, else its kept message, else
        a run's first message built from its record), then mark it done."""
        if owed is None:
            return
        try:
            self.send(message if message is not None else self.message_of(owed))
        except BROKER_ERRORS as exc:
            # Still owed: the sweeper sends it once the broker answers again. The caller goes
            # on as if it were sent (an API answers 202: the run will start), never twice.
            log.warning("broker unreachable or refusing, %s for run %s stays owed: %s", owed.kind.value, owed.run_id,
                        exc)
            return
        outbox.done(self.engine, owed)

    def deliver_run(self, owed: Owed | None, plan: Plan, inputs: dict[str, Any], depth: int = 0,
                    scripts: dict[str, int] | None = None, priority: int | None = None) -> None:
        """Send a just-recorded run's first message, built from what the caller holds."""
        if owed is not None:
            self.deliver(owed, owed_message(owed) or run_message(plan, owed.run_id, inputs, depth, scripts, priority))

    def message_of(self, owed: Owed) -> Signature:
        kept = owed_message(owed)
        if kept is not None:
            return kept
        if owed.kind is OwedKind.FINALLY:
            run = views.get_run(self.engine, owed.run_id)
            return finally_message(self.plans.plan(run.flow_id, run.flow_version), run)
        if owed.kind not in (OwedKind.RUN, OwedKind.DEBOUNCED):
            raise ValueError(f"{owed.kind} {owed.id} keeps no message")
        # from the run's row: a debounced run's inputs are the latest start's
        run = views.get_run(self.engine, owed.run_id, with_steps=False)
        plan = self.plans.plan(run.flow_id, run.flow_version)
        return run_message(plan, owed.run_id, run.inputs, run.depth, run.scripts, run.priority)


def owed_message(owed: Owed) -> Signature | None:
    return None if owed.message is None else Signature.from_dict(owed.message)


def run_message(plan: Plan, run_id: str, inputs: dict[str, Any], depth: int = 0,
                scripts: dict[str, int] | None = None, priority: int | None = None) -> Signature:
    """A run's whole canvas, from its first context; every message of it sent at ``priority``."""
    ref = RunRef(run_id, plan.flow_id, plan.version, priority=priority)
    return compile_run(plan, ref, Context.new(run_id, plan.flow_id, plan.version, inputs, depth, scripts))


def finally_message(plan: Plan, run: RunView) -> Signature:
    """A run's finally steps, built from its record however its steps ended (their end, a
    failure, a stop_if, a cancel): ``run.status`` is its ending, ``run.error`` its error, and
    its top-level steps' outcomes are ``steps.<id>``."""
    ctx = Context.new(run.id, plan.flow_id, plan.version, run.inputs, run.depth, run.scripts)
    top = set(plan.main)
    for step in run.steps:  # in the order they were made: a later attempt's outcome wins
        if step.path in top and step.status.finished:
            ctx.set_outcome(step.step_id, step.status.value, step.result, step.error)
    ending = run.ending.value if run.ending is not None else run.status.value
    ref = RunRef(run.id, plan.flow_id, plan.version, priority=run.priority)  # the run's, like its other messages
    return compile_handlers(plan, ref, Phase.FINALLY, ctx.for_handlers(run.error, ending))
