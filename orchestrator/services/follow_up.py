"""What a run's end sets off, and what the sweeper repairs of what was owed.

A run's end (recorded by ``store/runs.py`` with its follow-up owed in the same transaction)
starts the runs its flow triggers and lets runs held by its concurrency limit take its
slot; each part is safe to do twice, and the follow-up is marked done only after both.
"""
from __future__ import annotations

import logging
from typing import Any

from orchestrator.definitions.expressions import compile_value
from orchestrator.definitions.inputs import validate_inputs
from orchestrator.errors import Conflict, FlowError
from orchestrator.services.publisher import Publisher
from orchestrator.services.runs import start_saved
from orchestrator.store import admission, audit, outbox, runs, triggers, views
from orchestrator.store.outbox import Owed, OwedKind
from orchestrator.store.views import RunView

log = logging.getLogger("millrace.sweeper")
NO_LIMIT = 1_000_000  # a flow whose limit was removed lets every held run go


def follow_up(publisher: Publisher, owed: Owed | None) -> None:
    """Do a run's follow-up (``owed``, as its end left it owed), then mark it done."""
    if owed is None:
        return
    run = views.get_run(publisher.engine, owed.run_id, with_steps=False)
    for trigger in triggers.downstream_triggers(publisher.engine, run.flow_id, run.status.value):
        _start_triggered(publisher, trigger, run)
    if run.concurrency_key is not None:
        release(publisher, run.flow_id, run.concurrency_key)
    outbox.done(publisher.engine, owed)


def release(publisher: Publisher, flow_id: str, key: str) -> None:
    """Publish the held runs of ``flow_id`` and ``key`` that fit under its limit now."""
    latest = publisher.plans.plan(flow_id, None)
    rule = latest.flow.concurrency
    limit = NO_LIMIT if rule is None or rule.limit is None else rule.limit
    for owed in admission.release_held(publisher.engine, flow_id, key, limit):
        publisher.deliver(owed)


def _start_triggered(publisher: Publisher, trigger: Any, upstream: RunView) -> None:
    names = {"trigger": {"run_id": upstream.id, "flow": upstream.flow_id, "status": upstream.status.value,
                         "result": upstream.result, "error": upstream.error}}
    try:
        plan = publisher.plans.plan(trigger.flow_id, None)
        inputs = validate_inputs(plan.flow.inputs, compile_value(trigger.inputs).render(names))
        start_saved(publisher, plan, inputs, trigger=f"flow:{upstream.flow_id}", actor="trigger",
                    idempotency_key=f"trigger:{trigger.trigger_id}:{upstream.id}")
    except (FlowError, Conflict) as exc:  # its inputs do not fit, its limit refuses: said, not lost
        audit.record_event(publisher.engine, "trigger", "trigger.refused", f"flow:{trigger.flow_id}",
                           trigger=trigger.trigger_id, upstream_run=upstream.id, error=str(exc))


def deliver_overdue(publisher: Publisher, grace: dict[OwedKind, float]) -> int:
    """Do what has been owed past its kind's grace period (whoever owed it died first);
    returns how many were done."""
    done = 0
    for owed in outbox.overdue(publisher.engine, grace):
        if owed.kind is OwedKind.DEBOUNCED:  # due, not overdue: its window has ended
            publisher.deliver(owed)
            done += 1
            continue
        log.warning("doing what %s owed for run %s: %s", owed.kind.value, owed.run_id,
                    "its doer died before" if owed.kind is not OwedKind.RUN else "publishing it")
        if owed.kind is OwedKind.FOLLOW_UP:
            follow_up(publisher, owed)
        elif owed.kind is OwedKind.RUN and owed.message is None and _restart_without_message(publisher, owed):
            continue
        else:
            publisher.deliver(owed)
        done += 1
    return done


def _restart_without_message(publisher: Publisher, owed: Owed) -> bool:
    """A restart recorded before restarts kept their message: which step it restarts from
    was only in the lost message, so it fails saying so rather than guess."""
    run = views.get_run(publisher.engine, owed.run_id, with_steps=False)
    if not run.restarted_from:
        return False
    runs.abandon_unpublished(publisher.engine, owed, "this restart was never sent; restart "
                             f"{run.restarted_from} again", "sweeper")
    return True
